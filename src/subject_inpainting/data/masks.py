"""Training holes: the box mask and the original's irregular Bézier mask around a box.

Masks are bool arrays ``(H, W)``, True = the hole to paint (the project's edit-mask convention; the model
input is the keep mask, see ``imaging.keep_mask_tensor``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..imaging import box_to_mask
from ._random import uniform
from .boxes import check_box, check_size, contains


def box_mask(box: Sequence[float], size: Sequence[int]) -> np.ndarray:
    """The bool mask ``(H, W)`` of ``box = (x0, y0, x1, y1)`` (exclusive ends) in an image of ``size = (W, H)``.

    Raises:
        TypeError, ValueError: a bad box or size (see ``boxes.check_box``).
    """
    return box_to_mask(check_box(box, size), check_size(size))


def bezier_mask(
    box: Sequence[float],
    extended_box: Sequence[float],
    size: Sequence[int],
    *,
    generator: torch.Generator,
    jitter: float = 0.0,
    points_per_side: int = 18,
) -> np.ndarray:
    """An irregular hole around ``box``: four quadratic Bézier curves, one per side, filled.

    After the original (Paint-by-Example, Yang et al. 2022), which draws one quadratic curve per side of
    the box with its control point on the extended box and jitters the sampled points. Here:

    1. each corner of the shape lies at a random point between the box's corner and the extended box's
       corner (a share uniform in [0, 1) on each axis);
    2. each side's control point lies at a random position between the box's side and the extended
       box's side, and at a random position along the side;
    3. each curve is sampled at ``points_per_side`` points, each moved by up to ``jitter`` pixels on
       each axis (the original: 18 points, 5 pixels), and kept inside the extended box;
    4. the polygon through all points is filled (PIL ``ImageDraw``) and united with the box, so the hole
       always covers the box, and clipped to the extended box, so it never leaves it.

    The geometry uses pixel centres (a box covers centres ``x0 .. x1 - 1``), so the filled polygon
    rasterises inside the extended box.

    Args:
        box: ``(x0, y0, x1, y1)`` of the object.
        extended_box: a box inside the image that holds ``box`` (``boxes.extend_box``).
        size: ``(W, H)``.
        generator: the source of all draws; the same state gives the same mask.
        jitter: the largest move of a sampled point, in pixels of the image.
        points_per_side: how many points are sampled on each curve.

    Returns:
        bool ``(H, W)``, True = hole.

    Raises:
        TypeError, ValueError: bad boxes or size, ``extended_box`` not holding ``box``, a negative jitter,
            fewer than one point per side.
    """
    width, height = check_size(size)
    inner = check_box(box, size)
    outer = check_box(extended_box, size)
    if not contains(outer, inner):
        raise ValueError(f"extended box {outer} does not hold the box {inner}")
    if not jitter >= 0:
        raise ValueError(f"jitter {jitter!r}: must be ≥ 0 pixels")
    if isinstance(points_per_side, bool) or not isinstance(points_per_side, int) or points_per_side < 1:
        raise ValueError(f"points_per_side {points_per_side!r}: must be an integer ≥ 1")

    # Pixel-centre coordinates of the first and last covered column/row: (x0, y0, x1 - 1, y1 - 1).
    b = np.array(inner, dtype=np.float64) - (0, 0, 1, 1)
    e = np.array(outer, dtype=np.float64) - (0, 0, 1, 1)
    # Corners clockwise from the top left (y grows downwards), each as indices into the box arrays.
    corner_axes = ((0, 1), (2, 1), (2, 3), (0, 3))
    shares = np.array(uniform(generator, 8)).reshape(4, 2)
    corners = np.array(
        [
            [b[i] + s[0] * (e[i] - b[i]), b[j] + s[1] * (e[j] - b[j])]
            for (i, j), s in zip(corner_axes, shares, strict=True)
        ]
    )

    draws = np.array(uniform(generator, 8)).reshape(4, 2)
    t = np.arange(points_per_side, dtype=np.float64)[:, None] / points_per_side
    points = []
    for k, (along, across) in enumerate(draws):
        start, end = corners[k], corners[(k + 1) % 4]
        # Side k runs along x for the top and bottom sides (k even) and along y for the others; its
        # control point sits between the box's side and the extended box's side of the same index.
        side = (1, 2, 3, 0)[k]
        axis = 0 if k % 2 else 1
        control = start + along * (end - start)
        control[axis] = b[side] + across * (e[side] - b[side])
        points.append((1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end)
    points = np.concatenate(points)
    moves = (np.array(uniform(generator, points.size)).reshape(points.shape) * 2 - 1) * jitter
    points = np.clip(points + moves, e[:2], e[2:])

    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], fill=255)
    drawn = np.asarray(canvas) > 0
    hole = np.zeros((height, width), dtype=bool)
    ex0, ey0, ex1, ey1 = outer
    hole[ey0:ey1, ex0:ex1] = drawn[ey0:ey1, ex0:ex1]
    x0, y0, x1, y1 = inner
    hole[y0:y1, x0:x1] = True
    return hole
