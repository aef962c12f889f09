"""The command line: it works end to end, and every bad input gives one line, exit code 2, no output."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from subject_inpainting import cli


@pytest.fixture
def inpaint_args(scene_files, tiny_model_dir, tmp_path):
    def make(*extra, out=None):
        out = out or tmp_path / "out" / "result.png"
        return [
            "inpaint",
            "--scene",
            str(scene_files["scene"]),
            "--reference",
            str(scene_files["reference"]),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--steps",
            "2",
            "--seed",
            "0",
            "--dtype",  # pictures are compared to a level: float32 whatever the CPU (auto may take bfloat16)
            "float32",
            "--quiet",
            *extra,
        ]

    return make


def with_mask(args, scene_files):
    return [*args, "--mask", str(scene_files["mask"])]


def test_inpaint_writes_the_result(inpaint_args, scene_files, tmp_path, capsys):
    assert cli.main(with_mask(inpaint_args(), scene_files)) == 0
    out = tmp_path / "out" / "result.png"
    assert capsys.readouterr().out.strip() == str(out)
    result = np.asarray(Image.open(out))
    scene = np.asarray(Image.open(scene_files["scene"]))
    assert result.shape == scene.shape
    mask = scene_files["mask_array"]
    assert np.array_equal(result[~mask], scene[~mask])


def test_seed_and_several_images(inpaint_args, scene_files, tmp_path, capsys):
    assert cli.main(with_mask(inpaint_args("--num-images", "2"), scene_files)) == 0
    paths = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in paths] == ["result-0.png", "result-1.png"]
    first = np.asarray(Image.open(paths[0]))
    assert cli.main(with_mask(inpaint_args("--overwrite", out=tmp_path / "again.png"), scene_files)) == 0
    capsys.readouterr()
    again = np.asarray(Image.open(tmp_path / "again.png"))
    # A batch of two may round differently from a batch of one (on one thread: by 1 level in 0.05 % of the
    # values), while another noise changes the whole painted region, as the second image shows.
    assert np.abs(first.astype(int) - again.astype(int)).max() <= 1
    assert np.abs(first.astype(int) - np.asarray(Image.open(paths[1])).astype(int)).max() > 16


def test_original_checkpoint_folder_and_conversion(reference_dir, scene_files, tmp_path, capsys):
    converted = tmp_path / "converted"
    assert cli.main(["convert", str(reference_dir / "pbe-tiny"), "--out", str(converted), "--quiet"]) == 0
    assert (converted / "model_index.json").is_file()
    for model in (reference_dir / "pbe-tiny", converted):
        out = tmp_path / f"from-{model.name}.png"
        args = [
            "inpaint",
            "--scene",
            str(scene_files["scene"]),
            "--mask",
            str(scene_files["mask"]),
            "--reference",
            str(scene_files["reference"]),
            "--model",
            str(model),
            "--out",
            str(out),
            "--steps",
            "2",
            "--seed",
            "3",
            "--quiet",
        ]
        assert cli.main(args) == 0
    capsys.readouterr()
    a = np.asarray(Image.open(tmp_path / "from-pbe-tiny.png"))
    b = np.asarray(Image.open(tmp_path / "from-converted.png"))
    assert np.array_equal(a, b)  # the converted folder computes exactly what the checkpoint does


def expect_bad_input(argv, capsys, tmp_path, match):
    before = set(tmp_path.rglob("*"))
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert match in lines[0], lines[0]
    assert set(tmp_path.rglob("*")) == before, "something was written"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"--scene": "missing.png"}, "no such file"),
        ({"--scene": "notes.png"}, "not an image"),
        ({"--reference": "missing.jpg"}, "reference"),
        ({"--mask": "black.png"}, "mask is empty"),
        ({"--mask": "wide.png"}, "same aspect ratio"),
        ({"--mask": None, "--box": "0,0,100,10"}, "outside the 48×40 scene"),
        ({"--mask": None, "--box": "1,2,3"}, "four numbers"),
        ({"--model": "broken-model"}, "missing its vae part"),
        ({"--model": "no/such-model-anywhere"}, "HF_HUB_OFFLINE"),
        ({"--model": "./no-such-folder"}, "no such model file or folder"),
        ({"--out": "result.xyz"}, "unknown image type"),
        ({"--out": "existing.png"}, "already exists"),
        ({"--out": "SCENE"}, "is the input --scene"),
        ({"--device": "cuda"}, "CUDA is not available"),
        ({"--device": "toaster"}, "not a device"),
        ({"--eta": "0.5"}, "--eta applies to --sampler ddim only"),
        ({"--context": "0.5"}, "--context: must be a finite number between 1 and 100"),
        ({"--mask": None, "--box": "0,0,1e400,10"}, "'1e400' is not a finite number"),
        ({"--mask": None, "--box": "nan,0,10,10"}, "'nan' is not a finite number"),
        ({"--guidance": "1e300"}, "--guidance/--guidance-scale: must be a finite number between 0 and 100"),
        ({"--num-images": "1000000"}, "--num-images: must be a whole number between 1 and 16"),
        ({"--reference-box": "0,0,5000,5"}, "outside the 30×30 reference"),
        ({"--scene": "fifo.png"}, "is not a regular file"),
        ({"--scene": "huge.png", "--max-pixels": "100"}, "the limit is 100"),
        ({"--out": "/sys/out.png"}, "cannot write into /sys"),
    ],
)
def test_bad_inputs(change, match, scene_files, tiny_model_dir, tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "notes.png").write_text("hello")
    Image.new("L", (48, 40)).save(tmp_path / "black.png")
    Image.new("L", (96, 40), 255).save(tmp_path / "wide.png")
    (tmp_path / "existing.png").write_bytes(b"keep me")
    os.mkfifo(tmp_path / "fifo.png")
    Image.new("RGB", (400, 400)).save(tmp_path / "huge.png")
    shutil.copytree(tiny_model_dir, tmp_path / "broken-model")
    shutil.rmtree(tmp_path / "broken-model" / "vae")
    opts = {
        "--scene": str(scene_files["scene"]),
        "--mask": str(scene_files["mask"]),
        "--reference": str(scene_files["reference"]),
        "--model": str(tiny_model_dir),
        "--out": "out.png",
    }
    opts.update(change)
    if opts["--out"] == "SCENE":
        opts["--out"] = str(scene_files["scene"])
    argv = ["inpaint", "--steps", "2", "--quiet"]
    for k, v in opts.items():
        if v is not None:
            argv += [k, v]
    expect_bad_input(argv, capsys, tmp_path, match)
    assert (tmp_path / "existing.png").read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["inpaint", "--scene", "s.png"], "the following arguments are required"),
        (["inpaint", "--steps", "0"], "must be a whole number between 1 and 1,000"),
        (["inpaint", "--guidance", "-2"], "must be a finite number between 0 and 100"),
        (["inpaint", "--sampler", "heun"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        (["toy", "world", "--out", "w", "--cases", "-1"], "expected a whole number between 0 and 1,000"),
        (["toy", "world", "--out", "w", "--size", "100000"], "expected a whole number between 32 and 1,024"),
        (["finetune", "--photos", "p", "--base", "b", "--out", "o", "--max-steps", "0"], "between 1 and"),
        (["ui", "--port", "0"], "expected a whole number between 1 and 65,535"),
    ],
)
def test_usage_errors_are_one_line(argv, match, capsys, tmp_path):
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0]


def test_convert_refuses_to_overwrite(reference_dir, tmp_path, capsys):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("mine")
    assert cli.main(["convert", str(reference_dir / "pbe-tiny"), "--out", str(dest)]) == 2
    assert "was not written by subject-inpainting" in capsys.readouterr().err
    assert (dest / "mine.txt").read_text() == "mine"


def test_toy_world_writes_a_new_folder_only(tmp_path, capsys):
    out = tmp_path / "world"
    argv = ["toy", "world", "--out", str(out), "--train-images", "2", "--subjects", "1", "--cases", "1", "--quiet"]
    assert cli.main(argv) == 0
    assert str(out) in capsys.readouterr().out
    assert len((out / "train" / "manifest.jsonl").read_text().splitlines()) == 2
    assert len(list((out / "subjects").glob("*/photos/*.png"))) == 4
    assert cli.main(argv) == 2
    assert "already holds a toy world (add --overwrite" in capsys.readouterr().err
    assert cli.main([*argv[:3], str(tmp_path / "small"), "--size", "16"]) == 2
    assert "between 32 and 1,024" in capsys.readouterr().err


def test_ui_refuses_a_folder_that_is_not_a_subject(tmp_path, capsys):
    assert cli.main(["ui", "--subject", str(tmp_path)]) == 2
    assert f"--subject {tmp_path}: not a subject folder" in capsys.readouterr().err


def test_every_option_has_help_and_every_help_prints():
    def check(parser, name):
        text = parser.format_help()  # argparse %-formats every help text here
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            if action.option_strings:
                assert action.option_strings[-1] in text, f"{name}: {action.option_strings} missing from --help"
            if action.__class__.__name__ == "_SubParsersAction":
                for sub_name, sub in action.choices.items():
                    check(sub, f"{name} {sub_name}")

    check(cli.build_parser(), "subject-inpaint")


def test_inpaint_help_shows_a_percent_sign(capsys):
    assert cli.main(["inpaint", "--help"]) == 0
    assert "about 1% of the scene's shorter side" in " ".join(capsys.readouterr().out.split())


def test_installed_command(scene_files, tiny_model_dir, tmp_path):
    """The console script itself (a fresh process, as a user runs it)."""
    out = tmp_path / "cmd.png"
    exe = os.path.join(os.path.dirname(sys.executable), "subject-inpaint")
    proc = subprocess.run(
        [
            exe,
            "inpaint",
            "--scene",
            str(scene_files["scene"]),
            "--box",
            "5,5,20,20",
            "--reference",
            str(scene_files["reference"]),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--steps",
            "2",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "Traceback" not in proc.stderr
    assert Image.open(out).size == (48, 40)


def test_the_preset_and_levers_reach_the_pipeline(inpaint_args, scene_files, monkeypatch):
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    seen = []
    call = SubjectInpaintPipeline.__call__

    def spy(self, *args, **kwargs):
        keys = ("preset", "sampler", "num_inference_steps", "deep_cache", "guidance_interval", "decode")
        seen.append({k: getattr(kwargs["settings"], k) for k in keys})
        return call(self, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "__call__", spy)
    base = [a for a in with_mask(inpaint_args("--overwrite"), scene_files) if a not in ("--steps", "2")]
    assert cli.main([*base, "--preset", "original", "--steps", "3"]) == 0
    assert cli.main([*base, "--deep-cache", "2", "--guidance-interval", "100,800", "--decode", "region"]) == 0
    assert seen[0] == {
        "preset": "original",
        "sampler": None,
        "num_inference_steps": 3,
        "deep_cache": None,
        "guidance_interval": None,
        "decode": None,
    }
    assert seen[1]["preset"] == "fast" and seen[1]["deep_cache"] == 2
    assert seen[1]["guidance_interval"] == (100, 800) and seen[1]["decode"] == "region"
    assert cli.main([*base, "--guidance-interval", "800,100"]) == 2
    assert cli.main([*base, "--preset", "original", "--eta", "0.5"]) == 2  # PLMS has no eta


def test_int8_layers_are_asked_for_by_a_flag(inpaint_args, scene_files, tmp_path, capsys):
    from subject_inpainting.models.int8 import int8_unavailable

    if int8_unavailable() is None:
        assert cli.main(with_mask(inpaint_args("--int8", "on"), scene_files)) == 0
        painted = np.asarray(Image.open(tmp_path / "out" / "result.png")).astype(int)
        assert cli.main(with_mask(inpaint_args("--int8", "off", "--overwrite"), scene_files)) == 0
        plain = np.asarray(Image.open(tmp_path / "out" / "result.png")).astype(int)
        mask = scene_files["mask_array"]
        assert np.array_equal(painted[~mask], plain[~mask]) and 0 < np.abs(painted - plain)[mask].mean() < 6
    capsys.readouterr()
    assert cli.main(with_mask(inpaint_args("--int8", "yes", "--overwrite"), scene_files)) == 2
    assert "argument --int8: invalid choice: 'yes'" in capsys.readouterr().err


def test_a_warning_is_one_line_and_an_absent_device_names_the_flag(inpaint_args, scene_files, capsys, monkeypatch):
    from subject_inpainting import utils

    monkeypatch.setattr(utils, "native_bf16", lambda: False)
    argv = [a for a in with_mask(inpaint_args("--overwrite"), scene_files) if a != "float32"]
    dtype = argv.index("--dtype")
    argv[dtype + 1 : dtype + 1] = ["bfloat16"]
    assert cli.main(argv) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("subject-inpaint: warning: this CPU has no native bfloat16")
    if not torch.cuda.is_available():
        assert cli.main([*with_mask(inpaint_args("--overwrite"), scene_files), "--device", "cuda"]) == 2
        message = capsys.readouterr().err.strip()
        assert message.endswith("--device cuda: CUDA is not available on this machine (use --device cpu)")
