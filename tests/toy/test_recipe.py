"""``subject-inpaint toy train``: every stage runs, a finished stage is skipped on a rerun, and the export
writes a loadable half-precision model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from subject_inpainting import cli
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.toy import recipe, stages, world
from subject_inpainting.toy.evaluator import IdentityEncoder

pytestmark = pytest.mark.slow  # trains every stage of the toy recipe

STEPS = ["--vae-steps", "2", "--tower-steps", "2", "--evaluator-steps", "2", "--base-steps", "2", "--base-batch", "2"]
STEPS += ["--base-cache", "6"]  # a pool of 6 encoded examples


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    result = recipe.main(recipe.parse_args(["--out", str(out), *STEPS, "--quiet"]))
    return out, result


def test_every_stage_runs_and_a_rerun_skips_finished_ones(toy_run):
    out, result = toy_run
    assert list(result["seconds"]) == list(recipe.STAGES)
    for stage in ("vae", "tower", "evaluator", "model"):
        assert (out / stage / "DONE").is_file(), stage
    vae_info = json.loads((out / "vae" / "DONE").read_text())
    assert vae_info["latent_std"] > 0
    run = json.loads((out / "model" / "checkpoints" / "run.json").read_text())
    assert run["data"] == "toy-world" and run["cut_reference"] is True  # the model's references: cut out
    # the toy model predicts v and its learning rate decays to 0 (the options' defaults)
    assert json.loads((out / "model" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == (
        "v_prediction"
    )
    assert run["config"]["lr_decay"] == "cosine"
    before = written(out)
    again = recipe.main(recipe.parse_args(["--out", str(out), *STEPS, "--quiet"]))
    assert list(again["seconds"]) == list(recipe.STAGES)
    assert written(out) == before  # every stage had finished: none wrote anything again


def written(out) -> dict:
    """Every file of the run's stage folders with the time it was last written."""
    stages = ("vae", "tower", "evaluator", "init", "model")
    return {p: p.stat().st_mtime_ns for stage in stages for p in sorted((out / stage).rglob("*")) if p.is_file()}


def test_the_command_says_how_long_each_stage_took(toy_run, capsys):
    out, _ = toy_run
    assert cli.main(["toy", "train", "--out", str(out), *STEPS, "--quiet"]) == 0  # all finished: skipped
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert captured.err.startswith("time: vae 0.0 min, tower 0.0 min") and "in all" in captured.err


def test_the_trained_model_paints_and_exports_in_half_precision(toy_run, tmp_path, capsys):
    out, _ = toy_run
    assert cli.main(["toy", "export", str(out), "--to", str(tmp_path / "weights")]) == 0
    assert "exported" in capsys.readouterr().out
    assert (out / "model" / "latent-cache.safetensors").is_file()
    assert not list((tmp_path / "weights").rglob("latent-cache*"))  # the training pool stays in the run
    unet = load_file(str(tmp_path / "weights" / "model" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {v.dtype for v in unet.values()} == {torch.float16}
    pipe = SubjectInpaintPipeline.from_pretrained(tmp_path / "weights" / "model")
    assert next(pipe.unet.parameters()).dtype == torch.float32  # computed in float32 by default
    scene = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    result = pipe(
        Image.fromarray(scene),
        Image.fromarray(scene[:32, :32]),
        mask=Image.fromarray(mask),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    painted = np.asarray(result.images[0])
    assert painted.shape == (64, 64, 3) and np.array_equal(painted[mask == 0], scene[mask == 0])
    evaluator = IdentityEncoder.from_pretrained(tmp_path / "weights" / "evaluator")
    assert evaluator(torch.zeros(1, 3, 32, 32)).shape == (1, evaluator.config.embed_dim)


def test_a_run_started_with_another_prediction_type_is_named(toy_run, capsys):
    out, _ = toy_run
    assert cli.main(["toy", "train", "--out", str(out), *STEPS, "--base-prediction", "epsilon", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "predicts v_prediction, not epsilon" in err and "--base-prediction v_prediction" in err


def test_base_tilt_goes_to_base_training_and_is_checked_first(tmp_path, capsys, monkeypatch):
    from subject_inpainting.training import train

    seen = []
    monkeypatch.setattr(train, "train", lambda spec: seen.append(spec.data.tilt))
    (tmp_path / "run" / "model").mkdir(parents=True)  # which base training would make
    for extra in ([], ["--base-tilt", "10"], ["--base-tilt", str(world.TILT_RANGE)]):
        args = recipe.parse_args(["--out", str(tmp_path / "run"), *extra])
        stages.stage_base(tmp_path / "run", recipe.ToyRecipe.from_args(args))
    assert seen == [0.0, 10.0, world.TILT_RANGE]  # upright by default
    assert json.loads((tmp_path / "run" / "model" / "DONE").read_text())["tilt"] == world.TILT_RANGE
    assert cli.main(["toy", "train", "--out", str(tmp_path / "bad"), "--base-tilt", "200"]) == 2
    assert "--base-tilt: expected a number between 0 and 180, got 200" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before any stage ran


def test_export_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "run" / "model").mkdir(parents=True)
    assert cli.main(["toy", "export", str(tmp_path / "run"), "--to", str(tmp_path / "w")]) == 2
    assert "not a finished toy-training stage" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
