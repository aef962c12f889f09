"""Loading models in every supported format, and writing the project's own.

``load_components(spec)`` accepts:

- a project-format folder (``save_components``);
- a diffusers-format Paint-by-Example folder (``model_index.json`` naming ``PaintByExamplePipeline``);
- an original checkpoint file (``model.ckpt``), or a folder holding ``model.ckpt`` with, optionally, its
  ``ldm_config.yaml`` and ``clip_vision_config.json`` (the layout of the reference fixtures);
- a hub id (``owner/name``) of either folder format, downloaded when online (or found in the cache).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils import hub_offline, is_hub_id
from .checkpoint_io import CheckpointError
from .layout import ORIGINAL_FOLDER_FILES, model_kind

# The readers import torch, so they are imported when a model is loaded: the commands' checks use
# ``layout`` and ``CheckpointError`` before torch is imported.
__all__ = ["CheckpointError", "load_components", "save_components"]

# Parts a model folder on the hub may hold that we read (the safety checker is not among them).
HUB_PATTERNS = [
    "model_index.json",
    "unet/*",
    "vae/*",
    "reference_encoder/*",
    "image_encoder/*",
    "scheduler/*",
    "feature_extractor/*",
]


def load_components(
    spec: str | os.PathLike,
    ldm_config: str | Path | Mapping[str, Any] | None = None,
    vision_config: str | Path | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load ``{"unet", "vae", "reference_encoder", "scheduler"}`` from a path or hub id (see module doc).

    ``ldm_config``/``vision_config`` describe an original checkpoint that is not the released layout.

    Raises:
        CheckpointError: one line naming the file or id and what is wrong.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        model_kind(path)
        from .original import load_original

        return load_original(path, ldm_config, vision_config)
    if path.is_dir():
        return _load_folder(path, ldm_config, vision_config)
    if is_hub_id(str(spec)):
        return _load_folder(download_from_hub(str(spec)), ldm_config, vision_config)
    raise CheckpointError(f"{spec}: no such model file or folder (and not a hub id of the form owner/name)")


def _load_folder(path: Path, ldm_config, vision_config) -> dict[str, Any]:
    kind = model_kind(path)
    if kind == "project":
        from .project import load_project

        return load_project(path)
    if kind == "diffusers":
        from .diffusers_format import load_diffusers_pbe

        return load_diffusers_pbe(path)
    from .original import load_original

    yaml_path, vision_path = (path / n for n in ORIGINAL_FOLDER_FILES[1:])
    return load_original(
        path / ORIGINAL_FOLDER_FILES[0],
        ldm_config if ldm_config is not None else (yaml_path if yaml_path.is_file() else None),
        vision_config if vision_config is not None else (vision_path if vision_path.is_file() else None),
    )


def __getattr__(name: str) -> Any:
    if name == "save_components":
        from .project import save_components

        return save_components
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def download_from_hub(repo_id: str) -> Path:
    """Download the parts of hub model ``repo_id`` that the project reads; return the local folder.

    Offline (``HF_HUB_OFFLINE=1``) it uses the local cache only, and says so if the model is not there.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    offline = hub_offline()
    try:
        folder = snapshot_download(repo_id, allow_patterns=_hub_patterns(repo_id, offline), local_files_only=offline)
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        raise CheckpointError(
            f"{repo_id}: not a local path, and the hub cannot be reached "
            f"({'HF_HUB_OFFLINE is set' if offline else 'no connection'}) nor is the model in the local cache"
        ) from None
    except GatedRepoError:
        raise CheckpointError(f"{repo_id}: the hub model is gated; log in with `hf auth login` first") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id}: no such model on the hub (nor a local path)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{repo_id}: download from the hub failed: {str(e).splitlines()[0]}") from None
    return Path(folder)


def _hub_patterns(repo_id: str, offline: bool) -> list[str]:
    """Download safetensors only when the repository has them (never both formats)."""
    if offline:
        return HUB_PATTERNS
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(repo_id)
    except Exception:  # listing is an optimisation; snapshot_download reports the real error
        return HUB_PATTERNS
    has_safetensors = any(f.endswith(".safetensors") for f in files)
    if not has_safetensors:
        return HUB_PATTERNS
    return [p if not p.endswith("/*") else p[:-1] + "*.json" for p in HUB_PATTERNS] + [
        p[:-1] + "*.safetensors" for p in HUB_PATTERNS if p.endswith("/*")
    ]
