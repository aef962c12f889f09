"""Every command refuses bad input the same way: exit code 2, one line on stderr, nothing written, every
input byte-identical afterwards, and all of it before torch is imported (so in a fraction of a second).

Each case runs the command line in a fresh process, as a user would, in a folder holding a user's files
(photos, a manifest, a project model beside a sibling file, a toy world ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Runs the command line and says on stdout whether torch was imported along the way.
PROBE = (
    "import sys; from subject_inpainting.cli import main; code = main(sys.argv[1:]); "
    "print('torch' in sys.modules); sys.exit(code)"
)

SCENE = ["--scene", "scene.png", "--mask", "mask.png", "--reference", "reference.jpg"]
PHOTOS = ["--photos", "P/photos", "--boxes", "P/boxes.json", "--base", "model"]
CASES = [
    # inpaint
    (["inpaint", *SCENE, "--out", "out.png", "--scene", "missing.png"], "scene missing.png: no such file"),
    (["inpaint", *SCENE, "--out", "out.png", "--scene", "notes.png"], "not an image"),
    (["inpaint", *SCENE, "--out", "out.png", "--scene", "pipe.png"], "is not a regular file"),
    (["inpaint", *SCENE[:2], *SCENE[4:], "--box", "0,0,1e400,10", "--out", "out.png"], "'1e400' is not a finite"),
    (["inpaint", *SCENE[:2], *SCENE[4:], "--box", "nan,0,10,10", "--out", "out.png"], "'nan' is not a finite"),
    (["inpaint", *SCENE[:2], *SCENE[4:], "--box", "0,0,100,10", "--out", "out.png"], "outside the 48×40 scene"),
    (["inpaint", *SCENE, "--reference-box", "0,0,99,9", "--out", "out.png"], "outside the 30×30 reference"),
    (["inpaint", *SCENE, "--out", "scene.png", "--overwrite"], "is the input --scene"),
    (["inpaint", *SCENE, "--out", "taken.png"], "already exists (add --overwrite"),
    (["inpaint", *SCENE, "--out", "/sys/out.png"], "cannot write into /sys"),
    (["inpaint", *SCENE, "--out", "out.xyz"], "unknown image type"),
    (["inpaint", *SCENE, "--out", "out.png", "--num-images", "1000000"], "between 1 and 16"),
    (["inpaint", *SCENE, "--out", "out.png", "--guidance", "1e300"], "between 0 and 100"),
    (["inpaint", *SCENE, "--out", "out.png", "--steps", "0"], "between 1 and 1,000"),
    (["inpaint", *SCENE, "--out", "out.png", "--max-pixels", "100"], "the limit is 100"),
    (["inpaint", *SCENE, "--out", "out.png", "--eta", "0.5"], "--eta applies to --sampler ddim only"),
    (["inpaint", *SCENE, "--out", "out.png", "--model", "./nope"], "no such model file or folder"),
    (["inpaint", *SCENE, "--out", "out.png", "--device", "toaster"], "not a device"),
    # batch
    (["batch", "missing.jsonl", "--out-dir", "new"], "JOBS missing.jsonl: no such file"),
    (["batch", "missing.jsonl", "--out-dir", "new", "--batch-size", "65"], "between 1 and 64"),
    # demo
    (["demo", "--out", "taken.png"], "already exists"),
    (["demo", "--cases", "0"], "between 1 and 64"),
    # convert
    (["convert", "models/parent/src", "--out", "models/parent", "--overwrite"], "holds the input SOURCE"),
    (["convert", "model", "--out", "P", "--overwrite"], "was not written by subject-inpainting"),
    (["convert", "model", "--out", "world", "--overwrite"], "holds a toy world, not a model"),
    (["convert", "./nope", "--out", "new"], "no such model file or folder"),
    # train
    (["train", "--model", "model", "--manifest", "missing.jsonl", "--out", "new"], "no such file"),
    (["train", "--model", "model", "--manifest", "P/m.jsonl", "--out", "P", "--overwrite"], "holds the input"),
    (["train", "--model", "model", "--openimages", "P/m.jsonl", "--out", "new"], "--images is needed"),
    (["train", "--model", "model", "--manifest", "P/m.jsonl", "--out", "new", "--toy-tilt", "0"], "only with"),
    (["train", "--model", "model", "--toy-world", "--out", "new", "--max-steps", "0"], "between 1 and"),
    (["train", "--model", "model", "--toy-world", "--out", "new", "--lr", "nan"], "finite"),
    # finetune: first, an output folder that holds the input photos (replacing it would delete them)
    (["finetune", *PHOTOS, "--out", "P", "--overwrite"], "holds the input --photos"),
    (["finetune", *PHOTOS, "--out", "P/photos/run"], "lies inside the input --photos"),
    (["finetune", *PHOTOS, "--out", "new", "--photos", "missing"], "no such folder"),
    (["finetune", *PHOTOS, "--out", "new", "--max-steps", "0"], "between 1 and"),
    (["finetune", *PHOTOS, "--out", "new", "--batch-size", "0"], "between 1 and"),
    (["finetune", *PHOTOS, "--out", "new", "--base", "subject"], "is a fine-tuned subject"),
    (["finetune", *PHOTOS, "--out", "new", "--cut-reference"], "--cut-reference needs --masks"),
    (["finetune", *PHOTOS, "--out", "world", "--overwrite"], "holds a toy world, not a training run"),
    # toy
    (["toy", "world", "--out", "P", "--overwrite"], "was not written by subject-inpainting"),
    (["toy", "world", "--out", "world"], "already holds a toy world (add --overwrite"),
    (["toy", "world", "--out", "new", "--size", "100000"], "between 32 and 1,024"),
    (["toy", "world", "--out", "new", "--train-images", "10000000"], "between 0 and 1,000,000"),
    (["toy", "train", "--out", "P"], "was not written by subject-inpainting"),
    (["toy", "train", "--out", "new", "--base-steps", "0"], "between 1 and"),
    (["toy", "export", "missing", "--to", "new"], "RUN missing: no such folder"),
    (["toy", "export", "world", "--to", "dest"], "not written by subject-inpainting"),
    (["toy", "export", "world", "--to", "world"], "lies inside the input RUN"),
    # bench
    (["bench", "toy", "--out", "P"], "was not written by subject-inpainting"),
    (["bench", "toy", "--out", "new", "--finetune-steps", "0"], "between 1 and"),
    (["bench", "toy", "--out", "new", "--evaluator", "missing"], "no such folder"),
    # eval
    (["eval", "cocoee", "--data", "missing", "--out", "new"], "--data missing: no such folder"),
    (["eval", "cocoee", "--data", "P", "--out", "P/photos"], "lies inside the input --data"),
    (["eval", "cocoee", "--data", "P", "--out", "new", "--limit", "0"], "between 1 and"),
    (["eval", "prepare", "--coco-images", "P/photos", "--out", "P/photos"], "is the input --coco-images"),
    (["eval", "subjects", "--subjects", "missing", "--scenes", "P", "--out", "new"], "no such folder"),
    (["eval", "convert-gmm", "missing.pkl", "new.npz"], "SRC missing.pkl: no such file"),
    (["eval", "convert-gmm", "notes.png", "taken.npz"], "already exists"),
    (["eval", "convert-gmm", "notes.png", "new.txt"], "expected a .npz or .safetensors"),
    # ui
    (["ui", "--subject", "P"], "not a subject folder"),
    (["ui", "--out-dir", "P"], "was not written by subject-inpainting"),
    (["ui", "--port", "0"], "between 1 and 65,535"),
]


def user_files(root: Path, model_dir: Path) -> None:
    """A folder as a user has it: pictures, photos with boxes, a manifest, models, a toy world."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "scene.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = 255
    Image.fromarray(mask).save(root / "mask.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(root / "reference.jpg")
    (root / "notes.png").write_text("hello")
    (root / "taken.png").write_bytes(b"keep me")
    (root / "taken.npz").write_bytes(b"keep me too")
    os.mkfifo(root / "pipe.png")
    (root / "P" / "photos").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "P" / "photos" / "00.jpg")
    (root / "P" / "boxes.json").write_text(json.dumps({"00.jpg": [5, 5, 30, 30]}))
    (root / "P" / "m.jsonl").write_text(json.dumps({"image": "photos/00.jpg", "boxes": [[5, 5, 30, 30]]}) + "\n")
    os.symlink(model_dir, root / "model")
    (root / "models" / "parent" / "src").mkdir(parents=True)
    (root / "models" / "parent" / "src" / "model_index.json").write_text(json.dumps({"_format": "subject-inpainting"}))
    (root / "models" / "parent" / "sibling.txt").write_text("a sibling")
    (root / "subject").mkdir()
    (root / "subject" / "subject_index.json").write_text(json.dumps({"_format": "subject-inpainting-subject"}))
    (root / "world").mkdir()
    (root / "world" / ".subject-inpainting.json").write_text(json.dumps({"kind": "toy-world"}))
    (root / "dest" / "model").mkdir(parents=True)
    (root / "dest" / "model" / "mine.txt").write_text("mine")


def snapshot(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = ("link", os.readlink(path))
        elif path.is_fifo():
            out[key] = "fifo"
        elif path.is_file():
            out[key] = path.read_bytes()
        else:
            out[key] = "folder"
    return out


@pytest.mark.parametrize(("argv", "match"), CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_refused_before_any_work(argv, match, tiny_model_dir, tmp_path):
    if "/sys" in " ".join(argv) and not Path("/sys").is_dir():
        pytest.skip("needs /sys")
    user_files(tmp_path, tiny_model_dir)
    before = snapshot(tmp_path)
    model_before = snapshot(tiny_model_dir)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, lines
    assert match in lines[0], lines[0]
    assert proc.stdout.strip() == "False", "torch was imported before the input was refused"
    assert snapshot(tmp_path) == before, "something was written, deleted or changed"
    assert snapshot(tiny_model_dir) == model_before
