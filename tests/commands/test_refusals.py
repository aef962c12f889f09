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
    (["train", "--model", "model", "--toy-world", "--out", "subject_run", "--overwrite"], "holds a subject fine-tu"),
    (["train", "--model", "model", "--toy-world", "--out", "subject_run"], "holds a subject fine-tuning run (from"),
    # finetune: first, an output folder that holds the input photos (replacing it would delete them)
    (["finetune", *PHOTOS, "--out", "P", "--overwrite"], "holds the input --photos"),
    (["finetune", *PHOTOS, "--out", "P/photos/run"], "lies inside the input --photos"),
    (["finetune", *PHOTOS, "--out", "new", "--photos", "missing"], "no such folder"),
    (["finetune", *PHOTOS, "--out", "new", "--max-steps", "0"], "between 1 and"),
    (["finetune", *PHOTOS, "--out", "new", "--batch-size", "0"], "between 1 and"),
    (["finetune", *PHOTOS, "--out", "new", "--base", "subject"], "is a fine-tuned subject"),
    (["finetune", *PHOTOS, "--out", "new", "--cut-reference"], "--cut-reference needs --masks"),
    (["finetune", *PHOTOS, "--out", "world", "--overwrite"], "holds a toy world, not a subject fine-tuning run"),
    (["finetune", *PHOTOS, "--out", "base_run", "--overwrite"], "holds a base-training run (from `train`), not"),
    (["finetune", *PHOTOS, "--out", "base_run"], "holds a base-training run (from `train`), not"),
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
    # steps each sampler accepts (section: samplers)
    # content checks made without torch (section: torch-free checks)
    (["finetune", *PHOTOS, "--out", "new", "--photos", "T/empty"], "--photos T/empty: no photos in it"),
    (["finetune", *PHOTOS, "--out", "new", "--photos", "T/texts"], "--photos T/texts: no photos in it"),
    (["finetune", *PHOTOS, "--out", "new", "--boxes", "T/broken.json"], "--boxes T/broken.json: not valid JSON"),
    (["finetune", *PHOTOS, "--out", "new", "--boxes", "T/list.json"], 'expected {"photo.jpg": [x0, y0, x1, y1]'),
    (["finetune", *PHOTOS, "--out", "new", "--boxes", "T/extra.json"], "entry '01.jpg' names no photo"),
    (["finetune", *PHOTOS, "--out", "new", "--boxes", "T/nobox.json"], "T/nobox.json: no box for photo 00.jpg"),
    (["finetune", *PHOTOS, "--out", "new", "--boxes", "T/outside.json"], "box (5, 5, 99, 30): outside the 40×40"),
    (["finetune", *PHOTOS[:2], *PHOTOS[4:], "--masks", "T/masks", "--out", "new"], "T/masks: no mask for photo 00.jpg"),
    (["finetune", *PHOTOS[:2], *PHOTOS[4:], "--out", "new"], "give --boxes FILE, --masks DIR, or --prompt TEXT"),
    (["finetune", *PHOTOS, "--out", "new", "--base", "T/empty.ckpt"], "--base T/empty.ckpt: the file is empty"),
    (["train", "--model", "model", "--manifest", "T/empty.jsonl", "--out", "new"], "T/empty.jsonl: no records"),
    (["train", "--model", "model", "--manifest", "T/broken.jsonl", "--out", "new"], "line 1: not valid JSON"),
    (["train", "--model", "model", "--manifest", "T/noboxes.jsonl", "--out", "new"], "line 1: missing key(s) 'boxes'"),
    (["train", "--model", "model", "--manifest", "T/noimage.jsonl", "--out", "new"], "T/gone.jpg: no such file"),
    (["train", "--model", "model", "--manifest", "T/outside.jsonl", "--out", "new"], "outside the 40×40 image"),
    (["train", "--model", "model", "--manifest", "P/m.jsonl", "--out", "new", "--latent-cache", "2"], "expected 1 to"),
    (["train", "--model", "model", "--openimages", "T/boxes.csv", "--images", "P", "--out", "new"], "missing column"),
    (["train", "--model", "model", "--coco", "T/coco.json", "--images", "P", "--out", "new"], "lists 'images' and"),
    (["train", "--model", "model", "--coco", "T/broken.json", "--images", "P", "--out", "new"], "not valid JSON"),
    (["train", "--model", "T/broken.safetensors", "--toy-world", "--out", "new"], "header is not JSON"),
    (["train", "--model", "T/weights.txt", "--toy-world", "--out", "new"], "T/weights.txt: not a model file"),
    (["train", "--model", "T/parts", "--toy-world", "--out", "new"], "T/parts: the model folder is missing its vae"),
    (["train", "--model", "T/cut", "--toy-world", "--out", "new"], "unet/diffusion_pytorch_model.safetensors: not a"),
    (["toy", "world", "--out", "new", "--subjects", "101"], "--subjects 101: the toy world has 100 held-out"),
    (["bench", "toy", "--out", "new", "--settings", "(PLMS"], "--settings '(PLMS' is not a regular expression"),
    (["bench", "toy", "--out", "new", "--settings", "no such row"], "--settings 'no such row' finds no setting"),
    (["bench", "toy", "--out", "new", "--subjects", "100"], "--subjects 100: the toy world has 100 held-out"),
    (["bench", "toy", "--out", "new", "--model", "T/model.ckpt"], "neither torch.save's zip archive nor a pickle"),
    (["convert", "T/model.ckpt", "--out", "new"], "SOURCE T/model.ckpt: not a readable PyTorch checkpoint"),
    (["convert", "T/model.ckpt", "--from-sd", "--out", "new"], "SOURCE T/model.ckpt: not a readable PyTorch"),
    (["convert", "T/zip.ckpt", "--out", "new"], "truncated or corrupt"),
    (["convert", "T/lfs.ckpt", "--out", "new"], "SOURCE T/lfs.ckpt: a Git LFS pointer, not the weights"),
    (["convert", "T/huge.safetensors", "--out", "new"], "a header of 1,000,000,000,000 bytes"),
    (["convert", "T/short.safetensors", "--out", "new"], "ends at byte 400 of the data, which holds 4 bytes"),
    (["convert", "T/texts", "--out", "new"], "SOURCE T/texts: not a model folder"),
    (["demo", "--model", "T/empty.ckpt"], "--model T/empty.ckpt: the file is empty"),
    (["inpaint", *SCENE, "--out", "out.png", "--model", "T/broken.safetensors"], "header is not JSON"),
    (["inpaint", *SCENE, "--out", "out.png", "--model", "T/parts"], "the model folder is missing its vae"),
    (["batch", "jobs/one.jsonl", "--out-dir", "new", "--model", "T/cut"], "unet/diffusion_pytorch_model.safet"),
    (["ui", "--model", "T/weights.txt"], "T/weights.txt: not a model file"),
    # output names and batch files (section: outputs)
    (["inpaint", *SCENE, "--out", "x" * 246 + ".png"], "the file name is 250 bytes long; this disk takes at most 241"),
    (["inpaint", *SCENE, "--out", "x" * 296 + ".png"], "the file name is 300 bytes long"),
    (["inpaint", *SCENE, "--out", "y" * 300 + "/out.png"], "the folder name yyyy"),
    (["demo", "--out", "d" * 250 + ".png"], "the file name is 254 bytes long"),
    (["batch", "jobs/twice.jsonl", "--out-dir", "new"], "jobs 1 (id 'a') and 2 (id 'a-0') would both write a-0.png"),
    (["batch", "jobs/case.jsonl", "--out-dir", "new"], "would write A.png and a.png (one file where case is ignored)"),
    (["batch", "jobs/long.jsonl", "--out-dir", "new"], "job 2: "),
    (["batch", "jobs/twice.jsonl", "--out-dir", "o" * 250], "the file name is 250 bytes long"),
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
    for name, mode, index in (
        ("base_run", "base", "model_index.json"),
        ("subject_run", "subject", "subject_index.json"),
    ):
        (root / name / "checkpoints").mkdir(parents=True)
        (root / name / "checkpoints" / "run.json").write_text(json.dumps({"config": {"mode": mode}}))
        (root / name / index).write_text(json.dumps({"_format": "subject-inpainting"}))
    # output names and batch files
    (root / "jobs").mkdir()
    job = {"scene": "../scene.png", "mask": "../mask.png", "reference": "../reference.jpg"}
    for name, rows in {
        "twice": [{**job, "id": "a", "num_images": 2}, {**job, "id": "a-0"}],
        "case": [{**job, "id": "A"}, {**job, "id": "a"}],
        "long": [job, {**job, "id": "é" * 200}],
        "one": [job],
    }.items():
        (root / "jobs" / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "world").mkdir()
    (root / "world" / ".subject-inpainting.json").write_text(json.dumps({"kind": "toy-world"}))
    (root / "dest" / "model").mkdir(parents=True)
    (root / "dest" / "model" / "mine.txt").write_text("mine")
    # torch-free checks
    odd = root / "T"
    for folder in ("empty", "texts", "masks", "parts/unet", "cut/unet", "cut/vae", "cut/reference_encoder"):
        (odd / folder).mkdir(parents=True)
    (odd / "cut" / "scheduler").mkdir()
    short = json.dumps({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}).encode()
    for name, data in {
        "texts/notes.txt": "no photos here",
        "broken.json": '{"00.jpg": [5, 5, 30',
        "list.json": json.dumps([[5, 5, 30, 30]]),
        "extra.json": json.dumps({"00.jpg": [5, 5, 30, 30], "01.jpg": [1, 1, 9, 9]}),
        "nobox.json": "{}",
        "outside.json": json.dumps({"00.jpg": [5, 5, 99, 30]}),
        "empty.jsonl": "\n",
        "broken.jsonl": '{"image": "../P/photos/00.jpg", "boxes": [[1, 1, 5, 5]]\n',
        "noboxes.jsonl": json.dumps({"image": "../P/photos/00.jpg"}) + "\n",
        "noimage.jsonl": json.dumps({"image": "gone.jpg", "boxes": [[1, 1, 5, 5]]}) + "\n",
        "outside.jsonl": json.dumps({"image": "../P/photos/00.jpg", "boxes": [[1, 1, 50, 5]]}) + "\n",
        "boxes.csv": "ImageID,Label\nabc,dog\n",
        "coco.json": json.dumps({"images": {}, "annotations": []}),
        "empty.ckpt": b"",
        "model.ckpt": "this is not a checkpoint\n",
        "zip.ckpt": b"PK\x03\x04" + bytes(60),
        "lfs.ckpt": "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n",
        "weights.txt": "hello",
        "broken.safetensors": b"\x0a" + bytes(7) + b"{not json}",
        "huge.safetensors": (10**12).to_bytes(8, "little") + b"{}",
        "short.safetensors": len(short).to_bytes(8, "little") + short + bytes(4),
        "parts/model_index.json": json.dumps({"_format": "subject-inpainting"}),
        "cut/model_index.json": json.dumps({"_format": "subject-inpainting"}),
        "cut/unet/config.json": "{}",
        "cut/unet/diffusion_pytorch_model.safetensors": len(short).to_bytes(8, "little") + short,
    }.items():
        (odd / name).write_bytes(data if isinstance(data, bytes) else data.encode())


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
