"""Paint-by-Example training examples from a scene and an object box, as the original makes them
(Yang et al. 2022, ``ldm/data/open-images.py``): a square crop of the scene holding an extended box, a hole
(the extended box, or an irregular Bézier shape), and an augmented reference cut around the box."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..imaging import (
    cut_out,
    keep_mask_tensor,
    reference_tensor,
    resize_mask,
    resize_rgb,
    rgb_to_tensor,
)
from ._random import check_generator, uniform
from .augment import AugmentConfig, augment_reference
from .boxes import Box, check_box, extend_box, reference_box, square_crop
from .masks import bezier_mask, box_mask


def check_example_sizes(
    resolution: int, reference_size: int, image_mean: Sequence[float], image_std: Sequence[float]
) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
    for name, v in (("resolution", resolution), ("reference_size", reference_size)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} {v!r}: must be a whole number of pixels ≥ 1")
    stats = []
    for name, v in (("image_mean", image_mean), ("image_std", image_std)):
        try:
            values = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            values = ()
        if len(values) != 3 or not all(math.isfinite(x) for x in values):
            raise ValueError(f"{name} {v!r}: expected three finite numbers (R, G, B)")
        stats.append(values)
    if min(stats[1]) <= 0:
        raise ValueError(f"image_std {image_std!r}: must be positive")
    return int(resolution), int(reference_size), stats[0], stats[1]


def make_example(
    rgb: np.ndarray,
    box: Sequence[float],
    *,
    resolution: int,
    reference_size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    augment: AugmentConfig,
    generator: torch.Generator,
    reference_from: tuple[np.ndarray, Sequence[float]] | None = None,
    reference_mask: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """One Paint-by-Example training example from a scene and an object box in it.

    As the original (Paint-by-Example, Yang et al. 2022), in this order of random draws:

    1. the box is extended on each side by up to ``augment.box_extension`` of the free space;
    2. the hole is the extended box, or with probability ``augment.bezier_p`` the irregular Bézier shape
       between the box and the extended box;
    3. a square crop of the scene holding the extended box (``boxes.square_crop``, with its non-square
       fallback for very wide boxes) is resized to ``resolution`` (Lanczos, bicubic when enlarging); the
       hole is cropped and resized the same way, a pixel being hole when at least half of it was
       (``imaging.resize_mask``, the rule used for users' masks at inference);
    4. the reference is cut around the un-extended box with ``augment.reference_margin`` pixels, resized
       to ``reference_size`` (bicubic), augmented (``augment_reference``) and normalised.

    Args:
        rgb: the scene ``(H, W, 3)`` uint8.
        box: ``(x0, y0, x1, y1)`` of the object in it.
        resolution: side R of the training image.
        reference_size: side S of the vision tower's input.
        image_mean, image_std: the vision tower's normalisation (three numbers each).
        augment: the randomisation settings.
        generator: the source of every draw.
        reference_from: ``(rgb, box)`` of ANOTHER photo of the same object to cut the reference from (step
            4), instead of the scene itself — as a user's reference is at inference; None = the original's
            self-supervised choice.
        reference_mask: ``(H', W')`` bool, the subject's pixels in the picture the reference is cut from
            (``reference_from``'s, else the scene's): the reference then shows the subject on white
            (``imaging.cut_out``) — for models whose references have their background removed (the toy
            model). None = the crop as it is (the original).

    Returns:
        ``pixel_values`` ``(3, R, R)`` float in [-1, 1]; ``keep_mask`` ``(1, R, R)`` float, 1 = keep,
        0 = hole; ``reference`` ``(3, S, S)`` float, normalised; ``box``, ``extended_box`` and ``crop``
        ``(4,)`` int64 ``(x0, y0, x1, y1)`` in pixels of the scene (for tests and debugging).
    """
    resolution, reference_size, mean, std = check_example_sizes(resolution, reference_size, image_mean, image_std)
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise TypeError(f"scene must be a uint8 array (H, W, 3), got {type(rgb).__name__} {getattr(rgb, 'shape', '')}")
    if not isinstance(augment, AugmentConfig):
        raise TypeError(f"augment must be an AugmentConfig, got {type(augment).__name__}")
    check_generator(generator)
    size = (rgb.shape[1], rgb.shape[0])
    box = check_box(box, size)

    extended = extend_box(box, size, augment.box_extension, generator=generator)
    use_bezier = uniform(generator, 1)[0] < augment.bezier_p
    crop = square_crop(extended, size, generator=generator, min_share=augment.crop_min_share)
    # The hole lies inside the extended box, which the crop holds: draw it in the crop's own frame.
    cx0, cy0, cx1, cy1 = crop
    crop_size = (cx1 - cx0, cy1 - cy0)
    local_box = _shift(box, cx0, cy0)
    local_extended = _shift(extended, cx0, cy0)
    if use_bezier:
        hole = bezier_mask(local_box, local_extended, crop_size, generator=generator, jitter=augment.bezier_jitter)
    else:
        hole = box_mask(local_extended, crop_size)
    scene = resize_rgb(rgb[cy0:cy1, cx0:cx1], (resolution, resolution))
    hole = resize_mask(hole, (resolution, resolution))

    ref_rgb, ref_box = (rgb, box) if reference_from is None else reference_from
    return {
        "pixel_values": rgb_to_tensor(scene)[0],
        "keep_mask": keep_mask_tensor(hole)[0],
        "reference": make_reference(ref_rgb, ref_box, reference_size, mean, std, augment, generator, reference_mask),
        "box": torch.tensor(box, dtype=torch.int64),
        "extended_box": torch.tensor(extended, dtype=torch.int64),
        "crop": torch.tensor(crop, dtype=torch.int64),
    }


def make_reference(
    rgb: np.ndarray,
    box: Sequence[float],
    reference_size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    augment: AugmentConfig,
    generator: torch.Generator,
    mask: np.ndarray | None = None,
) -> torch.Tensor:
    """Step 4 of ``make_example``: the reference cut around ``box`` of ``rgb`` with ``augment.reference_margin``
    pixels (on white where ``mask`` is False, when given), resized to ``reference_size`` (bicubic), augmented
    (``augment_reference``) and normalised: ``(3, S, S)`` float."""
    if mask is not None:
        rgb = cut_out(rgb, mask)
    size = (rgb.shape[1], rgb.shape[0])
    x0, y0, x1, y1 = reference_box(check_box(box, size), size, augment.reference_margin)
    square = (reference_size, reference_size)
    reference = np.asarray(Image.fromarray(rgb[y0:y1, x0:x1]).resize(square, Image.Resampling.BICUBIC))
    reference = augment_reference(reference, augment, generator)
    # Already S×S: reference_tensor only normalises (the same arithmetic as at inference).
    return reference_tensor(Image.fromarray(reference), reference_size, image_mean, image_std)[0]


def _shift(box: Box, dx: int, dy: int) -> Box:
    return box[0] - dx, box[1] - dy, box[2] - dx, box[3] - dy
