"""What a model path holds, told from its files without torch.

``load_components`` dispatches on ``model_kind`` and the loaders look for the same parts and weights files
named here; ``check_model`` runs the same checks, and ``check_weights_file`` on every weights file, before
a command imports torch: a model that cannot be loaded is refused in a fraction of a second rather than
after the seconds that importing torch takes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..utils.files import MODEL_INDEX, PROJECT_FORMAT, SUBJECT_INDEX
from .checkpoint_io import PICKLE_SUFFIXES, CheckpointError, check_weights_file, read_json

ORIGINAL_SUFFIXES = (*PICKLE_SUFFIXES, ".safetensors")
ORIGINAL_FOLDER_FILES = ("model.ckpt", "ldm_config.yaml", "clip_vision_config.json")
FORMAT_VERSION = 1  # of the project's model folders: the newest this package reads
PIPELINE_CLASS = "PaintByExamplePipeline"  # a diffusers Paint-by-Example folder's model_index.json names it
# The parts of each folder format (a folder each); all but the scheduler hold weights.
PARTS = {
    "project": ("unet", "vae", "reference_encoder", "scheduler"),
    "diffusers": ("unet", "vae", "image_encoder", "scheduler"),
}
WEIGHTS_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def _index_entry(path: Path, key: str) -> object:
    try:
        return json.loads((path / MODEL_INDEX).read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def is_project_folder(path: Path) -> bool:
    """Whether ``path`` is a model folder in the project's format (its model_index.json says so)."""
    return _index_entry(Path(path), "_format") == PROJECT_FORMAT


def is_diffusers_pbe_folder(path: Path) -> bool:
    """Whether ``path`` is a diffusers Paint-by-Example folder (its model_index.json names the pipeline)."""
    return _index_entry(Path(path), "_class_name") == PIPELINE_CLASS


def is_subject_folder(path: Path) -> bool:
    """Whether ``path`` is a fine-tuned subject folder (``subject-inpaint finetune`` writes its index)."""
    return (Path(path) / SUBJECT_INDEX).is_file()


def subject_reference_crops(folder: str | os.PathLike) -> list[Path]:
    """The reference crops a ``subject-inpaint finetune`` folder keeps (``references/*.png``), in order."""
    return sorted((Path(folder) / "references").glob("*.png"))


def refuse_subject(path: str | os.PathLike, name: str) -> None:
    """Refuse a fine-tuned subject folder where a base model is expected; ``name`` names it."""
    if Path(path).is_dir() and is_subject_folder(Path(path)):
        raise CheckpointError(
            f"{name}: is a fine-tuned subject, not a base model; give the Paint-by-Example model it was fine-tuned from"
        )


def model_kind(path: Path, name: str | None = None) -> str:
    """What the local model ``path`` is: ``"original"`` (a checkpoint file, or a folder holding
    ``model.ckpt``), ``"project"`` or ``"diffusers"`` (a folder of that format). ``name`` names it in
    messages (default: the path).

    Raises:
        CheckpointError: a file of another type, or a folder that holds no model (a fine-tuned subject
            is named as such).
    """
    path = Path(path)
    name = name or str(path)
    if path.is_file():
        if path.suffix not in ORIGINAL_SUFFIXES:
            raise CheckpointError(
                f"{name}: not a model file (expected an original checkpoint: {', '.join(ORIGINAL_SUFFIXES)})"
            )
        return "original"
    if is_project_folder(path):
        return "project"
    if is_diffusers_pbe_folder(path):
        return "diffusers"
    if (path / ORIGINAL_FOLDER_FILES[0]).is_file():
        return "original"
    if (path / MODEL_INDEX).is_file():
        raise CheckpointError(
            f"{name}: model_index.json names neither a subject-inpainting model nor a {PIPELINE_CLASS}"
        )
    refuse_subject(path, name)
    raise CheckpointError(
        f"{name}: not a model folder (no model_index.json, no model.ckpt); give a project-format folder, "
        "a diffusers Paint-by-Example folder or an original checkpoint"
    )


def read_project_index(folder: Path, name: str | None = None) -> dict:
    """A project-format folder's model_index.json, refused when a newer version of the package wrote it;
    ``name`` names the folder in messages (default: its path)."""
    index = read_json(folder / MODEL_INDEX, "model index")
    version = index.get("_format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name or folder}: written by a newer subject-inpainting (format {version}; this one reads up to "
            f"{FORMAT_VERSION}); upgrade the package"
        )
    return index


def require_parts(folder: Path, kind: str, name: str | None = None) -> None:
    """The part folders of a ``kind`` model folder are all there; ``name`` names the folder in messages."""
    missing = [n for n in PARTS[kind] if not (folder / n).is_dir()]
    if missing:
        raise CheckpointError(f"{name or folder}: the model folder is missing its {', '.join(missing)} part(s)")


def find_weights(folder: Path) -> Path:
    """The weights file of a component folder (safetensors preferred, then a pickle read safely), or the
    index of its shards."""
    for name in WEIGHTS_NAMES:
        if (folder / name).is_file():
            return folder / name
    shards = sorted(folder.glob("*.safetensors.index.json")) + sorted(folder.glob("*.bin.index.json"))
    if shards:
        return shards[0]
    raise CheckpointError(f"{folder}: no weights file (expected {WEIGHTS_NAMES[0]} or model.safetensors)")


def weights_files(folder: Path) -> list[Path]:
    """The weights files of a component folder: the one ``find_weights`` finds, or the shards its index
    names."""
    path = find_weights(folder)
    if not path.name.endswith(".index.json"):
        return [path]
    weight_map = read_json(path, "weights index").get("weight_map", {})
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{path}: the weights index's weight_map must be a mapping of names to files")
    return [folder / shard for shard in sorted(set(weight_map.values()))]


def check_model(spec: str | os.PathLike, flag: str = "--model") -> None:
    """Refuse a local model that cannot be loaded, without torch: a file of another type, a folder that
    holds no model or lacks a part, an empty, truncated or foreign weights file (``check_weights_file``),
    a part's unreadable config. A hub id (no such path) is checked when it is fetched.

    Raises:
        CheckpointError: one line naming ``flag``, ``spec`` and what is wrong.
    """
    path = Path(spec).expanduser()
    if not path.exists():
        return
    name = f"{flag} {spec}"
    kind = model_kind(path, name)
    if path.is_file():
        check_weights_file(path, name)
        return
    if kind != "original":
        if kind == "project":
            read_project_index(path, name)
        require_parts(path, kind, name)
    try:  # the files inside: the message names the model, then the file
        if kind == "original":
            check_weights_file(path / ORIGINAL_FOLDER_FILES[0])
            return
        for part in PARTS[kind][:-1]:
            read_json(path / part / "config.json", f"{part} config")
            for weights in weights_files(path / part):
                check_weights_file(weights)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from None
