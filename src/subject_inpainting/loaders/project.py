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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import __version__
from ..models.build import build_component, fill_component
from ..models.reference_encoder import to_canonical_keys
from ..utils.files import MODEL_INDEX, PROJECT_FORMAT, atomic_folder
from .checkpoint_io import CheckpointError, read_json, read_state_dict
from .layout import FORMAT_VERSION, WEIGHTS_NAMES, read_project_index, require_parts, weights_files

FORMAT_NAME = PROJECT_FORMAT
WEIGHTS_NAME = WEIGHTS_NAMES[0]
MODULE_COMPONENTS = ("unet", "vae", "reference_encoder")
CLASS_NAMES = {
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "reference_encoder": ["subject_inpainting", "ReferenceEncoder"],
    "scheduler": ["diffusers", "DDIMScheduler"],
}


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
        _write_json(tmp / MODEL_INDEX, index)
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


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read a component folder's weights, following a sharded index if there is one."""
    state: dict[str, torch.Tensor] = {}
    for path in weights_files(folder):
        state.update(read_state_dict(path))
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
    read_project_index(folder)
    require_parts(folder, "project")
    out: dict[str, Any] = {name: load_module(name, folder / name, f"{folder / name}") for name in MODULE_COMPONENTS}
    out["scheduler"] = read_json(folder / "scheduler" / "scheduler_config.json", "scheduler config")
    return out
