"""The project's own model format: a folder of safetensors + JSON configs, one subfolder per component.

::

    model_index.json                 {"_format": "subject-inpainting", "_format_version": 1, ...}
    unet/config.json                 diffusers UNet2DConditionModel config
    unet/diffusion_pytorch_model.safetensors
    vae/config.json, vae/diffusion_pytorch_model.safetensors
    reference_encoder/config.json, reference_encoder/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json  the training noise schedule

The layout is diffusers' (a ``unet``/``vae`` subfolder loads with diffusers' own ``from_pretrained``).
Writing is atomic: everything goes to a temporary sibling folder that is renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import __version__
from ..models.build import build_component, fill_component
from ..models.reference_encoder import to_canonical_keys
from ..utils import current_umask
from .checkpoint_io import CheckpointError, read_json, read_state_dict

FORMAT_NAME = "subject-inpainting"
FORMAT_VERSION = 1
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
MODULE_COMPONENTS = ("unet", "vae", "reference_encoder")
CLASS_NAMES = {
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "reference_encoder": ["subject_inpainting", "ReferenceEncoder"],
    "scheduler": ["diffusers", "DDIMScheduler"],
}


def is_project_folder(path: Path) -> bool:
    index = path / "model_index.json"
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_format") == FORMAT_NAME
    except (OSError, ValueError):
        return False


def _json_default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n", encoding="utf-8")


def _module_config(module: torch.nn.Module) -> dict[str, Any]:
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    return {"_class_name": type(module).__name__, **config}


OVERWRITE_HINT = "pass overwrite=True / --overwrite to replace it"


def atomic_folder(destination: Path, overwrite: bool, hint: str = OVERWRITE_HINT):
    """Context manager yielding a temporary folder that replaces ``destination`` on success; ``hint`` ends
    the message when ``destination`` exists and may not be replaced."""
    return _AtomicFolder(destination, overwrite, hint)


class _AtomicFolder:
    def __init__(self, destination: Path, overwrite: bool, hint: str = OVERWRITE_HINT):
        self.destination = Path(destination)
        self.overwrite = overwrite
        self.hint = hint

    def __enter__(self) -> Path:
        dest = self.destination
        if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())) and not self.overwrite:
            raise FileExistsError(f"{dest}: already exists ({self.hint})")
        if dest.exists() and not dest.is_dir():
            raise FileExistsError(f"{dest}: exists and is not a folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        dest = self.destination
        backup = None
        if dest.exists():
            backup = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, backup)
        _apply_umask(self.tmp)
        os.replace(self.tmp, dest)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)


def _apply_umask(folder: Path) -> None:
    # mkdtemp/mkstemp create private (0700/0600) entries; a saved model gets the user's usual permissions.
    umask = current_umask()
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def publish_into(staged: Path, destination: Path, marker: str) -> Path:
    """Move a finished model from the folder ``staged`` into ``destination``, which may hold other things
    (a training run's checkpoints, previews and logs). ``marker`` — the file that makes a folder a model —
    is removed first and moved last, so an interruption leaves no half-updated model that looks whole."""
    staged, destination = Path(staged), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    (destination / marker).unlink(missing_ok=True)
    for entry in sorted(staged.iterdir()):
        if entry.name == marker:
            continue
        target = destination / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    os.replace(staged / marker, destination / marker)
    shutil.rmtree(staged, ignore_errors=True)
    return destination


def save_components(
    components: Mapping[str, Any], folder: str | Path, overwrite: bool = False, extra: Mapping | None = None
) -> Path:
    """Write ``{"unet", "vae", "reference_encoder", "scheduler"}`` as a project-format folder.

    Args:
        components: the modules and the scheduler config dict.
        folder: destination; must not exist (or be empty) unless ``overwrite``.
        extra: more entries for ``model_index.json`` (e.g. provenance).
    """
    folder = Path(folder)
    with atomic_folder(folder, overwrite) as tmp:
        index: dict[str, Any] = {
            "_format": FORMAT_NAME,
            "_format_version": FORMAT_VERSION,
            "_class_name": "SubjectInpaintPipeline",
            "_subject_inpainting_version": __version__,
            **CLASS_NAMES,
            **(extra or {}),
        }
        _write_json(tmp / "model_index.json", index)
        for name in MODULE_COMPONENTS:
            module = components[name]
            sub = tmp / name
            sub.mkdir()
            _write_json(sub / "config.json", _module_config(module))
            state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            if name == "reference_encoder":
                state = to_canonical_keys(state)
            save_file(state, str(sub / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / "scheduler").mkdir()
        _write_json(tmp / "scheduler" / "scheduler_config.json", dict(components["scheduler"]))
    return folder


def find_weights(folder: Path) -> Path:
    """The weights file of a component folder (safetensors preferred, then a pickle read safely)."""
    for name in (
        WEIGHTS_NAME,
        "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
        "model.fp16.safetensors",
        "diffusion_pytorch_model.bin",
        "pytorch_model.bin",
    ):
        if (folder / name).is_file():
            return folder / name
    shards = sorted(folder.glob("*.safetensors.index.json")) + sorted(folder.glob("*.bin.index.json"))
    if shards:
        return shards[0]
    raise CheckpointError(f"{folder}: no weights file (expected {WEIGHTS_NAME} or model.safetensors)")


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read a component folder's weights, following a sharded index if there is one."""
    path = find_weights(folder)
    if not path.name.endswith(".index.json"):
        return read_state_dict(path)
    index = read_json(path, "weights index")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index.get("weight_map", {}).values())):
        state.update(read_state_dict(folder / shard))
    return state


def load_module(name: str, folder: Path, what: str) -> torch.nn.Module:
    """Build component ``name`` from ``folder/config.json`` and fill it from ``folder``'s weights."""
    config = read_json(folder / "config.json", f"{name} config")
    try:
        module = build_component(name, config, empty=True)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: not a valid {name} config ({e})") from None
    state = read_weights(folder)
    if name == "reference_encoder":
        state = module.to_installed_keys(state)
    try:
        return fill_component(module, state, what)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def load_project(folder: str | Path) -> dict[str, Any]:
    """Load a project-format folder into ``{"unet", "vae", "reference_encoder", "scheduler"}``."""
    folder = Path(folder)
    index = read_json(folder / "model_index.json", "model index")
    version = index.get("_format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder}: written by a newer subject-inpainting (format {version}; this one reads up to "
            f"{FORMAT_VERSION}); upgrade the package"
        )
    missing = [n for n in (*MODULE_COMPONENTS, "scheduler") if not (folder / n).is_dir()]
    if missing:
        raise CheckpointError(f"{folder}: the model folder is missing its {', '.join(missing)} part(s)")
    out: dict[str, Any] = {name: load_module(name, folder / name, f"{folder / name}") for name in MODULE_COMPONENTS}
    out["scheduler"] = read_json(folder / "scheduler" / "scheduler_config.json", "scheduler config")
    return out
