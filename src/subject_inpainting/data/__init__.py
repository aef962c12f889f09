"""Training data: annotation readers (``annotations``), boxes and holes, reference augmentation, training
examples (``examples``) and the dataset of annotated images (``datasets``).

The pipeline follows Paint-by-Example (Yang et al. 2022): an object box is extended, a square crop of the
scene holds it, the hole is the extended box or an irregular Bézier shape, and the reference is cut around
the box and augmented. All randomness comes from explicit ``torch.Generator``s.
"""

from .annotations import (
    NoSubjectLocation,
    Record,
    image_size,
    read_coco,
    read_manifest,
    read_openimages,
    read_photo_folder,
    write_manifest,
)
from .augment import AugmentConfig, augment_reference
from .boxes import Box, Size, as_box, check_box, check_size, extend_box, reference_box, square_crop
from .datasets import InpaintingExamples
from .examples import make_example
from .masks import bezier_mask, box_mask

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
