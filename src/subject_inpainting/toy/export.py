"""The export of a finished ``toy train`` run into the package's embedded weights (``subject-inpaint toy
export``): what ``weights.default_model()`` and ``default_evaluator()`` then return."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..utils.files import atomic_folder
from .stages import finished


def export(run: Path, destination: Path, dtype: torch.dtype = torch.float16) -> dict[str, int]:
    """Copy a finished run's model and evaluator into ``destination`` (the package's embedded weights).

    The model's floating-point weights are stored in ``dtype`` (half precision keeps the package under its
    30 MB budget; the pipeline computes in float32 by default, converting as it loads); the evaluator, small,
    stays as trained. The destination's ``model`` and ``evaluator`` are replaced only once the new ones are
    complete. Returns the bytes written per part.
    """
    from safetensors.torch import load_file, save_file

    run, destination = Path(run), Path(destination)
    for name, marker in (("model", "model_index.json"), ("evaluator", "config.json")):
        if not (run / name / marker).is_file() or not finished(run / name):
            raise FileNotFoundError(f"{run / name}: not a finished toy-training stage (run `toy train` first)")
    sizes = {}
    for name in ("model", "evaluator"):
        with atomic_folder(destination / name, overwrite=True) as tmp:
            shutil.copytree(
                run / name,
                tmp,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(
                    "checkpoints", "previews", "logs", "train", ".*", "DONE", "latent-cache.safetensors"
                ),
            )
            if name == "model":
                index = json.loads((tmp / "model_index.json").read_text())
                init = json.loads((run / "init" / "model_index.json").read_text())
                index["trained_from"] = "subject-inpaint toy train"  # not the run's temporary path
                index["toy_world_seed"] = init.get("toy_world_seed", 0)
                index["toy_train"] = json.loads((run / name / "DONE").read_text())
                (tmp / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
                for path in tmp.rglob("*.safetensors"):
                    state = load_file(str(path))
                    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
                    save_file(state, str(path), metadata={"format": "pt"})
        sizes[name] = sum(p.stat().st_size for p in (destination / name).rglob("*") if p.is_file())
    return sizes
