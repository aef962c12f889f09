"""Shared fixtures: tiny components built from the size registry under a fixed seed, fixture paths, images.

Nothing here reads ``../shared``: the recorded reference outputs are copied under
``tests/fixtures/reference`` (``SI_REFERENCE_DIR`` points the reference tests at another folder of the
same layout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from subject_inpainting.models.build import random_components
from subject_inpainting.models.configs import MODEL_SIZES
from subject_inpainting.pipeline import SubjectInpaintPipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Set in the child process that runs one ``fresh_process`` test.
IN_FRESH_PROCESS = "SI_TEST_IN_FRESH_PROCESS"

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_DIR = Path(os.environ.get("SI_REFERENCE_DIR") or FIXTURES / "reference")
# Boxes of the DreamBooth bear photos (fixtures/dreambooth/bear_plushie), the last one deliberately tiny.
BEAR_BOXES = {
    "00.jpg": [150, 120, 600, 700],
    "01.jpg": [100, 100, 700, 700],
    "02.jpg": [0, 0, 768, 768],
    "03.jpg": [1, 2, 3, 4],
}

# The tiny size of the registry: the same code paths as the full-size model, built in milliseconds.
TINY = MODEL_SIZES["tiny"]
TINY_UNET, TINY_VAE, TINY_VISION, TINY_SCHEDULE = TINY.unet, TINY.vae, TINY.vision, TINY.schedule


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def import_benchmark(name: str):
    """A script of ``benchmarks/`` as a module (the folder is not a package: its scripts import each other by
    name, so it is on ``sys.path`` while the script loads)."""
    import importlib

    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def tiny_components(seed: int = 0, detail_layers: int = 0, detail_grid: int = 1) -> dict:
    """Tiny UNet (9 input channels), VAE and reference encoder with random weights drawn under ``seed``."""
    return random_components(TINY, seed, detail_layers=detail_layers, detail_grid=detail_grid)


@pytest.fixture
def scenes_per_call(monkeypatch) -> list[int]:
    """The pipeline calls made while the test runs, as the number of scenes in each."""
    calls = []
    real = SubjectInpaintPipeline.__call__

    def spy(self, scene, *args, **kwargs):
        calls.append(len(scene) if isinstance(scene, list) else 1)
        return real(self, scene, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "__call__", spy)
    return calls


@pytest.fixture
def tiny_pipeline() -> SubjectInpaintPipeline:
    return SubjectInpaintPipeline(**tiny_components())


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny components saved once as a project-format folder."""
    from subject_inpainting.loaders import save_components

    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_components(tiny_components(), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lora_subject(tmp_path_factory, tiny_model_dir) -> Path:
    """A LoRA subject (rank 4) of the tiny model: 2 fine-tuning steps on one DreamBooth bear photo."""
    import json
    import shutil

    from subject_inpainting.training import finetune

    root = tmp_path_factory.mktemp("subject")
    (root / "photos").mkdir()
    shutil.copy(FIXTURES / "dreambooth" / "bear_plushie" / "00.jpg", root / "photos" / "00.jpg")
    boxes = json.loads((FIXTURES / "dreambooth" / "bear_plushie_boxes.json").read_text())
    (root / "boxes.json").write_text(json.dumps({"00.jpg": boxes["00.jpg"]}))
    argv = ["--photos", str(root / "photos"), "--boxes", str(root / "boxes.json"), "--base", str(tiny_model_dir)]
    argv += ["--out", str(root / "subject"), "--max-steps", "2", "--lr", "1e-2", "--device", "cpu", "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SI_NO_TENSORBOARD", "1")
        finetune.main(finetune.parse_args([*argv, "--warmup-steps", "0", "--lora-rank", "4"]))
    return root / "subject"


def make_scene(size=(48, 40), seed: int = 0) -> np.ndarray:
    """A smooth random RGB scene ``(H, W, 3)`` uint8 (gradients plus noise, so resizing is not trivial)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def save_scene(path: Path, size=(48, 40), seed: int = 0) -> Path:
    """``make_scene`` written to ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_scene(size, seed)).save(path)
    return path


@pytest.fixture
def scene_files(tmp_path):
    """A scene PNG (48×40), a mask PNG (white rectangle) and a reference JPEG in ``tmp_path``."""
    scene = tmp_path / "scene.png"
    Image.fromarray(make_scene()).save(scene)
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[10:30, 12:36] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    ref = tmp_path / "reference.jpg"
    Image.fromarray(make_scene((30, 30), seed=1)).save(ref)
    return {"scene": scene, "mask": mask_path, "reference": ref, "mask_array": mask >= 128}


@pytest.fixture(scope="session")
def tiny_extractor_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny CLIP, DINO (ViT) and DINOv2 image encoders saved as hub-style folders (fixed seed)."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        Dinov2Config,
        Dinov2Model,
        ViTConfig,
        ViTModel,
    )

    root = tmp_path_factory.mktemp("extractors")
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    models = {
        "clip": CLIPVisionModelWithProjection(
            CLIPVisionConfig(**small, image_size=32, patch_size=8, projection_dim=16)
        ),
        "dino": ViTModel(ViTConfig(**small, image_size=224, patch_size=32), add_pooling_layer=False),
        "dinov2": Dinov2Model(Dinov2Config(**small, image_size=224, patch_size=32)),
    }
    folders = {}
    for k, (name, model) in enumerate(models.items()):
        torch.manual_seed(k)
        model.apply(model._init_weights)
        model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


@pytest.fixture(scope="session")
def fid_weights_file(tmp_path_factory) -> Path:
    """pytorch-fid's FID Inception network with random weights (fixed seed), saved as a plain state dict."""
    import torch

    fid_inception = pytest.importorskip("pytorch_fid.inception")
    from unittest import mock

    import torchvision

    torch.manual_seed(0)
    with (
        mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, *a, **k: None),
    ):
        net = fid_inception.fid_inception_v3()
    path = tmp_path_factory.mktemp("inception") / "fid_inception.pth"
    torch.save(net.state_dict(), path)
    return path


def tiny_eval_args(model_dir: Path, extractors: dict[str, Path]) -> list[str]:
    """The options of an ``eval`` run on the tiny models: 2 DDIM steps on the CPU, tiny extractors."""
    args = ["--model", str(model_dir), "--sampler", "ddim", "--steps", "2", "--device", "cpu", "--quiet"]
    for name, folder in extractors.items():
        args += [f"--{name}-model", str(folder)]
    return args


def accelerate_launch(processes: int) -> list[str]:
    """``accelerate launch`` of the command line on ``processes`` CPU processes (a free local port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    return [
        launcher,
        "launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        "--main_process_port",
        str(port),
        "-m",
        "subject_inpainting.cli",
    ]


def run_launched(cmd: list[str]):
    """Run a launched command (one thread per process, no TensorBoard); returns the finished process."""
    env = {**os.environ, "SI_NO_TENSORBOARD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Runs a test marked ``fresh_process`` in a new interpreter and reports its outcome here.

    A library such as OpenVINO loads native runtimes (its own thread pool) that stay in the process for good;
    with OpenVINO's loaded, a later test of the same session that starts a subprocess can die of SIGSEGV.
    Running those tests in a child keeps the test session's process free of them.
    """
    if item.get_closest_marker("fresh_process") is None or os.environ.get(IN_FRESH_PROCESS):
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        report_file = Path(tmp) / "report.xml"
        argv = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-p", "no:cacheprovider", "-o", "addopts="]
        proc = subprocess.run(
            [*argv, "--strict-markers", f"--junitxml={report_file}"],
            cwd=item.config.rootpath,
            env={**os.environ, IN_FRESH_PROCESS: "1"},
            capture_output=True,
            text=True,
        )
        case = ET.parse(report_file).find(".//testcase") if report_file.exists() else None
    stop = time.time()
    outcome, longrepr = "passed", None
    skipped = case.find("skipped") if case is not None else None
    if skipped is not None:
        outcome, longrepr = "skipped", (str(item.path), item.location[1], skipped.get("message", "skipped"))
    elif proc.returncode != 0 or case is None:
        outcome = "failed"
        longrepr = f"in a fresh process (exit code {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    for when in ("setup", "call", "teardown"):
        report = pytest.TestReport(
            item.nodeid,
            item.location,
            keywords=dict.fromkeys(item.keywords, 1),
            outcome=outcome if when == "call" else "passed",
            longrepr=longrepr if when == "call" else None,
            when=when,
            duration=stop - start if when == "call" else 0.0,
            start=start,
            stop=stop,
        )
        item.ihook.pytest_runtest_logreport(report=report)
    # what the items before it set up (their module's fixtures, say) and the next item does not need goes now,
    # as pytest's own protocol would do in this item's teardown
    item.session._setupstate.teardown_exact(nextitem)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
