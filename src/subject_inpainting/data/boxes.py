"""Boxes for training examples: validation, the original's box extension, square crops, reference boxes.

A box is ``(x0, y0, x1, y1)`` in pixels with exclusive ends (it covers columns ``x0 .. x1 - 1``); an image
size is ``(W, H)``. The only randomness is an explicit ``torch.Generator`` argument.

The operations follow the Paint-by-Example data pipeline (Yang et al. 2022, ``ldm/data/open-images.py``
of the original code): the box is extended on each side by a random share of the free space, a square
crop of the scene holds the extended box, and the reference is cut around the un-extended box with a
small margin.

The checks (``check_size``, ``as_box``, ``check_box``) need no torch: the commands check annotation files
with them before torch is imported; the random operations import it when called.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]
Size = tuple[int, int]


def check_size(size: Sequence[int]) -> Size:
    """Validate an image size ``(W, H)`` of positive integers.

    Raises:
        TypeError: not a pair of integers.
        ValueError: a side smaller than one pixel.
    """
    try:
        width, height = size
    except (TypeError, ValueError):
        raise TypeError(f"image size {size!r}: expected a pair (W, H)") from None
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"image size {size!r}: W and H must be integers")
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}×{height}: both sides must be at least one pixel")
    return int(width), int(height)


def as_box(box: Sequence[float]) -> Box:
    """Four numbers ``(x0, y0, x1, y1)`` → a box of ints (rounded to the nearest pixel edge).

    Only what can be checked without the image: four finite numbers, not negative, not empty.

    Raises:
        TypeError: not a sequence of four numbers.
        ValueError: a non-finite or negative coordinate, or an empty box (``x1 <= x0`` or ``y1 <= y0``).
    """
    try:
        items = [] if isinstance(box, (str, bytes)) else [v.item() if hasattr(v, "item") else v for v in box]
    except TypeError:
        items = []
    if len(items) != 4 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in items):
        raise TypeError(f"box {box!r}: expected four numbers x0, y0, x1, y1")
    if not all(math.isfinite(v) for v in items):
        raise ValueError(f"box {items!r}: coordinates must be finite")
    values = [round(v) for v in items]
    x0, y0, x1, y1 = values
    if x0 < 0 or y0 < 0:
        raise ValueError(f"box ({x0}, {y0}, {x1}, {y1}): negative coordinates")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box ({x0}, {y0}, {x1}, {y1}): empty (need x0 < x1 and y0 < y1)")
    return x0, y0, x1, y1


def check_box(box: Sequence[float], size: Sequence[int]) -> Box:
    """Validate a box against an image of ``size = (W, H)``; see ``as_box`` for the rounding.

    Raises:
        TypeError, ValueError: as ``as_box``, or the box is not inside the image.
    """
    width, height = check_size(size)
    x0, y0, x1, y1 = as_box(box)
    if x1 > width or y1 > height:
        raise ValueError(
            f"box ({x0}, {y0}, {x1}, {y1}): outside the {width}×{height} image (need x1 ≤ {width} and y1 ≤ {height})"
        )
    return x0, y0, x1, y1


def contains(outer: Sequence[int], inner: Sequence[int]) -> bool:
    """Whether box ``outer`` holds box ``inner`` (edges may touch)."""
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def extend_box(box: Sequence[float], size: Sequence[int], max_share: float = 0.4, *, generator: torch.Generator) -> Box:
    """Extend each side of ``box`` outward by a random share of the free space between it and the border.

    As the original (Paint-by-Example, Yang et al. 2022): each of the four sides moves out by
    ``floor(u · free)`` pixels with ``u`` uniform in ``[0, max_share)``, ``free`` being the distance from
    that side to the image border. The result lies inside the image and holds ``box``.

    Args:
        box: ``(x0, y0, x1, y1)`` inside the image.
        size: ``(W, H)``.
        max_share: the largest share of the free space a side may take, in ``[0, 1]`` (original: 0.4).
        generator: the source of the four draws.

    Raises:
        TypeError, ValueError: a bad box, size or share.
    """
    from ._random import uniform

    x0, y0, x1, y1 = check_box(box, size)
    width, height = check_size(size)
    if isinstance(max_share, bool) or not isinstance(max_share, numbers.Real) or not 0 <= max_share <= 1:
        raise ValueError(f"max_share {max_share!r}: must be a number in [0, 1]")
    left, top, right, bottom = (
        int(u * max_share * free)
        for u, free in zip(uniform(generator, 4), (x0, y0, width - x1, height - y1), strict=True)
    )
    return x0 - left, y0 - top, x1 + right, y1 + bottom


def square_crop(
    box: Sequence[float], size: Sequence[int], *, generator: torch.Generator, min_share: float = 0.0
) -> Box:
    """A random square crop of the image that holds ``box`` (the extended box of a training example).

    The side is an integer uniform between the box's longer side and ``min(W, H)``; the position is
    uniform among those that hold the box and stay inside the image. The original (Paint-by-Example)
    instead took a square of side ``min(W, H)`` and shrank it by up to 60% of the smallest free margin;
    drawing the side directly covers a wider range of scales, from the box alone to the whole short side.
    ``min_share`` raises the smallest side to that share of ``min(W, H)``: 1 never zooms in (for pictures
    already at the training resolution, which a zoomed crop would blur when it is enlarged).

    Fallback: when the box's longer side exceeds ``min(W, H)`` no square inside the image can hold it.
    The crop is then the most nearly square one that does: the box's longer side by the image's whole
    shorter side (for a wide box in a landscape photo, ``box width × H``). It is *not* square, and
    resizing it to a square training image squashes it a little; the original squashed the whole image.

    Args:
        box: ``(x0, y0, x1, y1)`` inside the image.
        size: ``(W, H)``.
        generator: the source of the three draws (side, x, y).
        min_share: the smallest side as a share of ``min(W, H)``, in ``[0, 1]`` (default 0: the box's side).

    Returns:
        ``(x0, y0, x1, y1)`` of the crop.
    """
    from ._random import randint

    x0, y0, x1, y1 = check_box(box, size)
    width, height = check_size(size)
    if isinstance(min_share, bool) or not isinstance(min_share, numbers.Real) or not 0 <= min_share <= 1:
        raise ValueError(f"min_share {min_share!r}: must be a number in [0, 1]")
    longer = max(x1 - x0, y1 - y0)
    shorter_side = min(width, height)
    low = max(longer, math.ceil(min_share * shorter_side))
    side = randint(generator, min(low, max(longer, shorter_side)), max(longer, shorter_side))
    crop_w, crop_h = min(side, width), min(side, height)
    # Bounds on the crop's left/top edge: far enough right/down to reach the box's far side, not past its
    # near side, and inside the image. Both ranges are non-empty because the crop is at least as large as
    # the box on each axis and no larger than the image.
    cx = randint(generator, max(0, x1 - crop_w), min(x0, width - crop_w))
    cy = randint(generator, max(0, y1 - crop_h), min(y0, height - crop_h))
    return cx, cy, cx + crop_w, cy + crop_h


def reference_box(box: Sequence[float], size: Sequence[int], margin: int = 10) -> Box:
    """``box`` grown by ``margin`` pixels on each side, clipped to the image.

    The original (Paint-by-Example) cuts the reference around the un-extended box with a 10-pixel margin.

    Raises:
        TypeError, ValueError: a bad box or size, or a negative or non-integer margin.
    """
    x0, y0, x1, y1 = check_box(box, size)
    width, height = check_size(size)
    if isinstance(margin, bool) or not isinstance(margin, numbers.Integral) or margin < 0:
        raise ValueError(f"margin {margin!r}: must be a whole number of pixels ≥ 0")
    return max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin)
