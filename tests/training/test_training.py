"""Base training and subject fine-tuning on tiny components: smoke runs, saving, loading back, resuming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES, accelerate_launch, run_launched
from subject_inpainting import cli
from subject_inpainting.data.augment import AugmentConfig
from subject_inpainting.loaders import load_components
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.training import finetune, loop, train

BEAR = FIXTURES / "dreambooth" / "bear_plushie"
BEAR_BOXES = FIXTURES / "dreambooth" / "bear_plushie_boxes.json"
FAST = ["--device", "cpu", "--quiet", "--warmup-steps", "0"]


@pytest.fixture(autouse=True)
def no_tensorboard_unless_asked(monkeypatch):
    monkeypatch.setenv("SI_NO_TENSORBOARD", "1")


def photo_folder(tmp_path: Path, names=("00.jpg", "01.jpg")) -> tuple[Path, Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    boxes = json.loads(BEAR_BOXES.read_text())
    for name in names:
        shutil.copy(BEAR / name, folder / name)
    (tmp_path / "boxes.json").write_text(json.dumps({n: boxes[n] for n in names}))
    return folder, tmp_path / "boxes.json"


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_base_training_two_steps(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SI_NO_TENSORBOARD")
    boxes = json.loads(BEAR_BOXES.read_text())
    manifest = tmp_path / "data.jsonl"
    manifest.write_text(
        "".join(json.dumps({"image": str(BEAR / n), "boxes": [boxes[n]]}) + "\n" for n in ("00.jpg", "01.jpg"))
    )
    out = tmp_path / "run"
    args = train.parse_args(
        [
            "--model",
            str(tiny_model_dir),
            "--manifest",
            str(manifest),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--save-every",
            "1",
            "--preview-every",
            "2",
            "--preview-steps",
            "2",
            "--log-every",
            "1",
            *FAST,
        ]
    )
    result = train.main(args)
    assert result["step"] == 2 and len(result["losses"]) == 2
    assert (out / "model_index.json").is_file()
    assert [p.name for p in loop.ckpt.list_checkpoints(out)] == ["step-00000001", "step-00000002"]
    assert (out / "previews" / "step-00000002.png").is_file()
    assert list((out / "logs").rglob("events.out.tfevents*")), "TensorBoard log"
    init, trained = load_components(tiny_model_dir), load_components(out)
    for name, prefix, moved in [
        ("unet", "conv_out", True),
        ("reference_encoder", "class_proj", True),
        ("reference_encoder", "class_mapper", True),
        ("reference_encoder", "uncond_vector", True),
        ("reference_encoder", "vision_model", False),  # frozen tower
        ("vae", "encoder", False),
    ]:
        assert changed(state(init[name]), state(trained[name]), prefix) == moved, (name, prefix)


def where_args(folder, boxes, base, out) -> list[str]:
    """The finetune options naming the photos, their boxes, the base model and the output folder."""
    return ["--photos", str(folder), "--boxes", str(boxes), "--base", str(base), "--out", str(out)]


def run_finetune(base, tmp_path, *extra, photos=("00.jpg", "01.jpg"), out_name="subject"):
    folder, boxes = (
        photo_folder(tmp_path, photos)
        if not (tmp_path / "photos").exists()
        else (tmp_path / "photos", tmp_path / "boxes.json")
    )
    out = tmp_path / out_name
    argv = [
        *where_args(folder, boxes, base, out),
        "--batch-size",
        "2",
        *FAST,
        *extra,
    ]
    return finetune.main(finetune.parse_args(argv)), out


@pytest.mark.parametrize(("lora", "detail"), [(False, 1), (True, 1), (False, 0)])
def test_finetune_saves_only_what_it_trained_and_loads_back(tiny_model_dir, tmp_path, scene_files, lora, detail):
    extra = ["--max-steps", "2", "--detail-layers", str(detail), "--detail-heads", "4"]
    extra += ["--lora-rank", "4"] if lora else []
    result, out = run_finetune(tiny_model_dir, tmp_path, *extra)
    assert result["step"] == 2
    index = json.loads((out / "subject_index.json").read_text())
    assert index["base"] == str(tiny_model_dir.resolve()) and index["unet"] == ("lora" if lora else "full")
    assert (out / "lora" if lora else out / "unet").is_dir() and not (out / ("unet" if lora else "lora")).exists()
    assert sorted(p.name for p in (out / "references").iterdir()) == ["00.png", "01.png"]
    assert not (out / "vae").exists()  # frozen parts are not saved

    pipe = SubjectInpaintPipeline.from_pretrained(tiny_model_dir)
    base_unet = state(pipe.unet)
    base_encoder = state(pipe.reference_encoder)
    subject = pipe.load_subject(out)
    assert (subject.unet is None) == lora and (subject.adapter is not None) == lora
    enc = state(subject.encoder)
    for k, v in base_encoder.items():  # the class path, tower and unconditional vector are the base's
        assert torch.equal(enc[k], v), k
    assert any(k.startswith("detail_mapper.") for k in enc) == bool(detail)
    assert (out / "reference_encoder" / "detail.safetensors").is_file() == bool(detail)
    if not lora:
        assert changed(base_unet, state(subject.unet), "conv_out")
    calls = []
    pipe.unet.register_forward_hook(lambda *a: calls.append("base"))
    if subject.unet is not None:
        subject.unet.register_forward_hook(lambda *a: calls.append("subject"))
    out_image = pipe(
        scene_files["scene"],
        scene_files["reference"],
        mask=scene_files["mask"],
        num_inference_steps=2,
        sampler="ddim",
        preset="original",
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert out_image.images[0].size == (48, 40)
    # per step: LoRA → one call of the one UNet; full → one call of each
    assert calls == (["base", "base"] if lora else ["subject", "base", "subject", "base"])
    pipe.unload_subject()
    assert all(torch.equal(v, state(pipe.unet)[k]) for k, v in base_unet.items())


def test_finetune_with_cut_references_saves_them_cut(tiny_model_dir, tmp_path):
    folder, boxes = photo_folder(tmp_path)
    masks = tmp_path / "masks"
    masks.mkdir()
    inside = {}
    for name, (x0, y0, x1, y1) in json.loads(boxes.read_text()).items():
        w, h = Image.open(folder / name).size
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[y0:y1, x0 : (x0 + x1) // 2] = 255  # the left half of the bear's box
        Image.fromarray(mask).save(masks / f"{Path(name).stem}.png")
        inside[name] = (x1 - x0) // 2
    out = tmp_path / "cut"
    argv = ["--photos", str(folder), "--masks", str(masks), "--base", str(tiny_model_dir), "--out", str(out)]
    finetune.main(finetune.parse_args([*argv, "--cut-reference", "--max-steps", "1", "--batch-size", "2", *FAST]))
    index = json.loads((out / "subject_index.json").read_text())
    assert index["train"]["max_steps"] == 1
    for name, half in inside.items():
        ref = np.asarray(Image.open(out / "references" / f"{Path(name).stem}.png"))
        margin = AugmentConfig.subject().reference_margin
        assert (ref[:, margin + half + 1 :] == 255).all()  # right of the mask: white, margin included
        assert (ref[:, :margin] == 255).all()  # left of the box: white
        assert (ref[margin + 5 : -margin - 5, margin + 2 : margin + half - 2] < 250).any()  # the bear itself


@pytest.mark.slow
def test_loss_falls_when_a_tiny_model_overfits_one_subject(tiny_model_dir, tmp_path):
    result, _ = run_finetune(
        tiny_model_dir,
        tmp_path,
        "--max-steps",
        "60",
        "--lr",
        "2e-3",
        "--uncond-prob",
        "0",
        "--batch-size",
        "1",
        "--detail-layers",
        "1",
        "--detail-heads",
        "4",
        "--save-every",
        "60",
        photos=("00.jpg",),
    )
    losses = np.array(result["losses"])
    first, last = losses[:15].mean(), losses[-15:].mean()
    assert last < 0.6 * first, (first, last)


@pytest.mark.slow
def test_data_loading_workers_see_the_same_examples(tiny_model_dir, tmp_path):
    # 3 steps over 2 photos at batch 1: two epochs, so each epoch's workers must see their set_epoch.
    common = ["--max-steps", "3", "--batch-size", "1", "--detail-layers", "1", "--detail-heads", "4"]
    inline, _ = run_finetune(tiny_model_dir, tmp_path, *common, out_name="inline")
    workers, _ = run_finetune(tiny_model_dir, tmp_path, *common, "--num-workers", "2", out_name="workers")
    assert workers["losses"] == inline["losses"] and len(inline["losses"]) == 3


@pytest.mark.slow
def test_killed_run_resumes_exactly(tiny_model_dir, tmp_path, monkeypatch):
    common = ["--max-steps", "4", "--save-every", "2", "--detail-layers", "1", "--detail-heads", "4", "--lr", "1e-3"]
    _, straight = run_finetune(tiny_model_dir, tmp_path, *common, out_name="straight")

    real_draw = loop._draw
    calls = {"n": 0}

    def dying_draw(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # step 4 of 4: after the checkpoint of step 2, before the end
            raise KeyboardInterrupt
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(loop, "_draw", dying_draw)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(tiny_model_dir, tmp_path, *common, out_name="resumed")
    resumed = tmp_path / "resumed"
    assert [p.name for p in loop.ckpt.list_checkpoints(resumed)] == ["step-00000002"]
    assert not (resumed / "subject_index.json").exists()
    monkeypatch.setattr(loop, "_draw", real_draw)
    result, _ = run_finetune(tiny_model_dir, tmp_path, *common, out_name="resumed")
    assert result["step"] == 4 and len(result["losses"]) == 2  # only the two missing steps ran
    for part in ("unet/diffusion_pytorch_model.safetensors", "reference_encoder/detail.safetensors"):
        a = load_file_tensors(straight / part)
        b = load_file_tensors(resumed / part)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (part, k)


def load_file_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_resuming_with_other_settings_is_refused(tiny_model_dir, tmp_path, capsys):
    run_finetune(tiny_model_dir, tmp_path, "--max-steps", "1", "--detail-layers", "1", "--detail-heads", "4")
    folder, boxes = tmp_path / "photos", tmp_path / "boxes.json"
    argv = [
        "finetune",
        *where_args(folder, boxes, tiny_model_dir, tmp_path / "subject"),
        "--max-steps",
        "2",
        "--lr",
        "5e-4",
        "--detail-layers",
        "1",
        "--detail-heads",
        "4",
        "--batch-size",
        "2",
        *FAST,
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (learning_rate)" in err and "\n" not in err


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("empty-folder", "no photos in"),
        ("no-boxes", "give --boxes FILE, --masks DIR, or --prompt TEXT"),
        ("prompt-offline", "HF_HUB_OFFLINE is set"),
        ("unreadable-photo", "not an image"),
        ("base-is-subject", "is a fine-tuned subject, not a base model"),
        ("base-has-detail", "already has a detail module"),
        ("base-missing", "no such model file or folder"),
        ("cut-without-masks", "--cut-reference needs --masks DIR"),
    ],
)
def test_finetune_bad_inputs(case, match, tiny_model_dir, reference_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, boxes = photo_folder(tmp_path)
    base = str(tiny_model_dir)
    where = ["--boxes", str(boxes)]
    if case == "empty-folder":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "no-boxes":
        where = []
    elif case == "prompt-offline":
        where = ["--prompt", "teddy bear"]
    elif case == "unreadable-photo":
        (folder / "02.jpg").write_text("not a photo")
        where = ["--boxes", str(boxes)]
    elif case == "base-is-subject":
        fake = tmp_path / "a-subject"
        fake.mkdir()
        (fake / "subject_index.json").write_text("{}")
        base = str(fake)
    elif case == "base-has-detail":
        base = str(reference_dir / "subject-tiny")
    elif case == "base-missing":
        base = str(tmp_path / "nope")
    elif case == "cut-without-masks":
        where += ["--cut-reference"]
    out = tmp_path / "out"
    argv = ["finetune", "--photos", str(folder), *where, "--base", base, "--out", str(out), "--max-steps", "1", *FAST]
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0], lines
    assert not out.exists()


def test_convert_from_stable_diffusion(reference_dir, tmp_path, capsys):
    """A (tiny) SD checkpoint: 4-channel UNet input, text encoder; becomes a 9-channel Paint-by-Example model
    whose extra input channels are zero, with the given vision tower."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    sd = torch.load(reference_dir / "pbe-tiny" / "model.ckpt", weights_only=True)["state_dict"]
    sd = {k: v for k, v in sd.items() if not k.startswith(("cond_stage_model.", "proj_out", "learnable_vector"))}
    sd["model.diffusion_model.input_blocks.0.0.weight"] = sd["model.diffusion_model.input_blocks.0.0.weight"][
        :, :4
    ].clone()
    sd["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = torch.zeros(10, 4)
    torch.save({"state_dict": sd}, tmp_path / "sd.ckpt")
    vision = json.loads((reference_dir / "pbe-tiny" / "clip_vision_config.json").read_text())
    torch.manual_seed(0)
    tower = CLIPVisionModel(CLIPVisionConfig(**vision))
    tower.save_pretrained(tmp_path / "tower")
    out = tmp_path / "init"
    argv = [
        "convert",
        str(tmp_path / "sd.ckpt"),
        "--from-sd",
        "--vision-model",
        str(tmp_path / "tower"),
        "--ldm-config",
        str(reference_dir / "pbe-tiny" / "ldm_config.yaml"),
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    c = load_components(out)
    conv = c["unet"].state_dict()["conv_in.weight"]
    assert conv.shape[1] == 9
    assert torch.equal(conv[:, :4], sd["model.diffusion_model.input_blocks.0.0.weight"])
    assert not conv[:, 4:].any()
    ours = {
        k.removeprefix("vision_model."): v
        for k, v in c["reference_encoder"].state_dict().items()
        if k.startswith("vision_model.")
    }
    theirs = tower.state_dict()
    assert all(
        torch.equal(ours[k.removeprefix("vision_model.")], v)
        for k, v in theirs.items()
        if k in ours or k.removeprefix("vision_model.") in ours
    )
    # a Paint-by-Example checkpoint is not an SD one
    assert (
        cli.main(["convert", str(reference_dir / "pbe-tiny" / "model.ckpt"), "--from-sd", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "already a Paint-by-Example checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tiny_model_dir, tmp_path):
    """The data-parallel path (gloo on the CPU): two processes share the batch and the run saves once."""
    folder, boxes = photo_folder(tmp_path, ("00.jpg", "01.jpg", "02.jpg", "03.jpg"))
    cmd = [
        *accelerate_launch(2),
        "finetune",
        *where_args(folder, boxes, tiny_model_dir, tmp_path / "ddp"),
        "--max-steps",
        "2",
        "--batch-size",
        "1",
        "--detail-layers",
        "1",
        "--detail-heads",
        "4",
        "--quiet",
    ]
    proc = run_launched(cmd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ddp" / "subject_index.json").is_file()
    assert [p.name for p in loop.ckpt.list_checkpoints(tmp_path / "ddp")] == ["step-00000002"]
    pipe = SubjectInpaintPipeline.from_pretrained(tiny_model_dir)
    assert pipe.load_subject(tmp_path / "ddp").encoder.has_detail


def test_overwrite_replaces_a_finished_run_only_when_the_new_one_finishes(tiny_model_dir, tmp_path, monkeypatch):
    _, out = run_finetune(tiny_model_dir, tmp_path, "--max-steps", "1", "--seed", "0")
    old = (out / "reference_encoder" / "detail.safetensors").read_bytes()
    seen = {}
    real_train = loop.train

    def spy(config, run, accelerator=None):
        seen["work"] = run.out  # where the new run writes while it trains
        seen["old_kept"] = (out / "reference_encoder" / "detail.safetensors").read_bytes() == old
        return real_train(config, run, accelerator)

    monkeypatch.setattr(loop, "train", spy)
    second, _ = run_finetune(tiny_model_dir, tmp_path, "--max-steps", "1", "--seed", "1", "--overwrite")
    assert seen["work"] != out and seen["work"].parent == out.parent and seen["old_kept"]
    assert second["out"] == out and (out / "reference_encoder" / "detail.safetensors").read_bytes() != old
    assert json.loads((out / "checkpoints" / "run.json").read_text())["config"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.json", "photos", "subject"]  # nothing beside


def test_run_specs_check_their_settings_before_anything_loads(tmp_path):
    from subject_inpainting.training.config import TrainConfig
    from subject_inpainting.training.finetune import FinetuneSpec
    from subject_inpainting.training.train import Annotations, TrainSpec

    subject = TrainConfig.for_mode("subject")
    with pytest.raises(ValueError, match="expected a TrainConfig of mode 'base'"):
        TrainSpec("model", Annotations(manifest="m.jsonl"), tmp_path / "out", subject).check()
    with pytest.raises(ValueError, match=r"--min-area 0\.5 must not exceed --max-area 0\.1"):
        Annotations(coco="c.json", images="images", min_area=0.5, max_area=0.1).check()
    with pytest.raises(ValueError, match="--images is needed"):
        Annotations(openimages="o.csv").check()
    with pytest.raises(ValueError, match="give one of manifest, openimages or coco, got none"):
        Annotations().check()
    with pytest.raises(ValueError, match="--cut-reference needs --masks"):
        FinetuneSpec("photos", "base", tmp_path / "out", cut_reference=True).check()
    with pytest.raises(ValueError, match="epochs 0: expected a whole number"):
        FinetuneSpec("photos", "base", tmp_path / "out", epochs=0).check()
    with pytest.raises(ValueError, match="expected a TrainConfig of mode 'subject'"):
        FinetuneSpec("photos", "base", tmp_path / "out", config=TrainConfig.for_mode("base")).check()
    assert not (tmp_path / "out").exists()
