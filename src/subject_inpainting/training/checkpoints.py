"""Resumable training checkpoints, written atomically and read without unpickling objects.

``OUT/checkpoints/step-00000123/``: ``trainable.safetensors`` (the trained weights by name),
``optimizer.pt`` (the optimiser's state: tensors and numbers only, read with ``weights_only=True``),
``ema.safetensors`` (with EMA) and ``state.json`` (step). ``OUT/checkpoints/run.json`` records the settings
that must not change on resumption.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..utils.files import RUN_INDEX, atomic_folder, write_text_atomic

STEP_PREFIX = "step-"


def checkpoint_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (those with ``state.json``), oldest first."""
    root = checkpoint_dir(out)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def save_checkpoint(
    out: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    ema_state: dict[str, torch.Tensor] | None,
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically and keep only the ``keep`` newest."""
    path = checkpoint_dir(out) / f"{STEP_PREFIX}{step:08d}"
    with atomic_folder(path, overwrite=True, guard=False) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if ema_state is not None:
            save_file({k: v.contiguous().cpu() for k, v in ema_state.items()}, str(tmp / "ema.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step}) + "\n")
    for old in list_checkpoints(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint: ``{"step", "trainable", "optimizer", "ema"}`` (tensors and plain data only)."""
    state = json.loads((path / "state.json").read_text())
    ema = path / "ema.safetensors"
    return {
        "step": int(state["step"]),
        "trainable": load_file(str(path / "trainable.safetensors")),
        "optimizer": torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
        "ema": load_file(str(ema)) if ema.is_file() else None,
    }


def read_run(out: Path) -> dict[str, Any] | None:
    path = Path(out) / RUN_INDEX
    return json.loads(path.read_text()) if path.is_file() else None


def write_run(out: Path, run: dict[str, Any]) -> None:
    write_text_atomic(Path(out) / RUN_INDEX, json.dumps(run, indent=2, sort_keys=True) + "\n")
