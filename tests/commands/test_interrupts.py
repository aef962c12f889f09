"""Ctrl-C at any moment: one line, exit code 130, no partial file, and a replaced folder stays whole.

The commands run in fresh processes, as a user runs them, and get SIGINT while they parse and check, import
torch, load the model, and work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

INTERRUPTED = "subject-inpaint: interrupted; nothing was written for the unfinished work"


class Running:
    """A command in its own process, its stderr collected as it comes."""

    def __init__(self, argv: list[str], cwd: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "subject_inpainting.cli", *argv],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
            # Ctrl-C's default action, also when pytest runs in the background (where the shell ignores SIGINT
            # and a child would inherit that)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.err = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read(1), ""):
            self.err += chunk

    def wait_for(self, text: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while text not in self.err:
            assert self.proc.poll() is None, f"ended before {text!r}: {self.err}"
            assert time.monotonic() < end, f"no {text!r} in {self.err!r}"
            time.sleep(0.02)

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=120)
        self.reader.join(timeout=10)
        return code, self.err


def assert_interrupted(code: int, err: str) -> None:
    assert code == 130, err
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == INTERRUPTED and sum(INTERRUPTED in line for line in lines) == 1, lines


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "scene.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "reference.png")
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize("moment", ["checking", "loading", "sampling"])
def test_inpaint_interrupted_at_any_moment_writes_nothing(inputs, tiny_model_dir, moment):
    argv = ["inpaint", "--scene", "scene.png", "--box", "5,5,30,30", "--reference", "reference.png"]
    argv += ["--model", str(tiny_model_dir), "--out", "out/result.png", "--steps", "1000", "--sampler", "ddim"]
    running = Running([*argv, "--seed", "0"], inputs)
    if moment == "checking":
        time.sleep(0.3)  # parsing, checking the inputs, importing torch
    elif moment == "loading":
        running.wait_for("loading ")
    else:
        running.wait_for("%|")  # the sampling progress bar
    assert_interrupted(*running.interrupt())
    assert list((inputs / "out").iterdir()) == []  # no result, no temporary file


def _finetune_argv(root: Path, model: Path, seed: int, steps: int) -> list[str]:
    return [
        "finetune",
        "--photos",
        str(root / "photos"),
        "--boxes",
        str(root / "boxes.json"),
        "--base",
        str(model),
        "--out",
        str(root / "subject"),
        "--max-steps",
        str(steps),
        "--batch-size",
        "2",
        "--warmup-steps",
        "0",
        "--seed",
        str(seed),
        "--device",
        "cpu",
    ]


def test_an_interrupted_replacement_leaves_the_old_run_whole(tmp_path, tiny_model_dir):
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    (tmp_path / "boxes.json").write_text(json.dumps({f"{i}.png": [5, 5, 35, 35] for i in range(2)}))
    from subject_inpainting import cli

    assert cli.main([*_finetune_argv(tmp_path, tiny_model_dir, 0, 1), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "subject").rglob("*") if p.is_file()}
    running = Running([*_finetune_argv(tmp_path, tiny_model_dir, 1, 100_000), "--overwrite"], tmp_path)
    running.wait_for("training (subject)")  # the new run is training, beside the old one
    assert_interrupted(*running.interrupt())
    after = {p: p.read_bytes() for p in (tmp_path / "subject").rglob("*") if p.is_file()}
    assert after == before  # the old subject, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.json", "photos", "subject"]  # nothing beside
