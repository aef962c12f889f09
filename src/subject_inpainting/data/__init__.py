"""Training data: annotation readers (``annotations``), boxes and holes, reference augmentation, training
examples (``examples``) and the dataset of annotated images (``datasets``).

The pipeline follows Paint-by-Example (Yang et al. 2022): an object box is extended, a square crop of the
scene holds it, the hole is the extended box or an irregular Bézier shape, and the reference is cut around
the box and augmented. All randomness comes from explicit ``torch.Generator``s.
"""

import importlib
from typing import Any

# Where each name lives. The modules are imported on first use: the annotation readers and the box checks
# need no torch, and the commands call them to check their inputs before torch is imported.
_MODULES = {
    "annotations": (
        "NoSubjectLocation",
        "Record",
        "image_size",
        "read_coco",
        "read_manifest",
        "read_openimages",
        "read_photo_folder",
        "write_manifest",
    ),
    "augment": ("AugmentConfig", "augment_reference"),
    "boxes": ("Box", "Size", "as_box", "check_box", "check_size", "extend_box", "reference_box", "square_crop"),
    "datasets": ("InpaintingExamples",),
    "examples": ("make_example",),
    "masks": ("bezier_mask", "box_mask"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "AugmentConfig",
    "Box",
    "InpaintingExamples",
    "NoSubjectLocation",
    "Record",
    "Size",
    "as_box",
    "augment_reference",
    "bezier_mask",
    "box_mask",
    "check_box",
    "check_size",
    "extend_box",
    "image_size",
    "make_example",
    "read_coco",
    "read_manifest",
    "read_openimages",
    "read_photo_folder",
    "reference_box",
    "square_crop",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
