"""Read the outline of a subject painted into a toy-world scene: which of the toy shapes is it?

The identity score (an evaluator's cosine) measures colours and pattern far better than outline (a subject
of another shape still scores high against the truth), so ``bench toy`` also reads the painted outline.
No learnt model is involved: the painted subject's silhouette is the set of region pixels that differ
clearly from the input scene (the scene under the hole is known in the toy world), and it is matched by
intersection-over-union against every toy shape (``world.shape_mask``) over the poses the world draws
(rotation, size, position). The shape that fits best is the reading.

``benchmarks/toy/outline_diagnosis.py`` measures the reader, on truths (the subject rendered into the scene)
and on paintings, at several thresholds and template opacities; benchmarks/README.md has its results.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from . import world

# The world draws rotations within ±25°; a painted subject may stray a little past them.
ANGLES = tuple(range(-30, 31, 5))
# A shape drawn in a side × side square has a box of 0.8-1.25 × side, depending on the shape and rotation.
SIDE_RANGE = (0.78, 1.3)
# A template pixel counts from this opacity (0-255) on: the rotated dark rim's soft fringe differs clearly
# from the scene, so a silhouette holds it, and a template that holds it too fits the truths better.
TEMPLATE_ALPHA = 64


def painted_silhouette(image: np.ndarray, scene: np.ndarray, region: np.ndarray, threshold: int = 48) -> np.ndarray:
    """The pixels of ``region`` where ``image`` differs clearly from ``scene``.

    Args:
        image, scene: ``(H, W, 3)`` uint8, the painted picture and the input scene (without the subject).
        region: ``(H, W)`` bool, the hole that was painted.
        threshold: the largest channel difference (0-255) below which a pixel counts as scene. A model's
            repainted background differs from the scene a little, a subject by far more: much lower, the
            background joins the silhouette and a painting reads as a square (the whole region); much
            higher, the darker parts of the subject drop out.

    Returns:
        ``(H, W)`` bool, cleaned of isolated pixels (3 × 3 median).
    """
    if image.shape != scene.shape or image.shape[:2] != region.shape:
        raise ValueError(
            f"image {image.shape}, scene {scene.shape} and region {region.shape}: expected (H, W, 3), (H, W, 3), (H, W)"
        )
    if not 0 <= threshold < 255:
        raise ValueError(f"threshold must be a channel difference in 0-254, got {threshold!r}")
    differs = np.abs(image.astype(np.int16) - scene.astype(np.int16)).max(axis=-1) > threshold
    cleaned = Image.fromarray((differs & region).astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(3))
    return np.asarray(cleaned) > 127


@lru_cache(maxsize=16384)
def _template(shape: str, side: int, angle: int, alpha: int) -> tuple[np.ndarray, float, float, int]:
    """A posed shape ``(side, side)`` bool with its dark rim, as ``world.render_subject`` draws it (pixels of
    opacity >= ``alpha``), the centre of its box (y, x) and its pixel count."""
    drawn = world.shape_mask(shape, side).filter(ImageFilter.MaxFilter(3))
    mask = np.asarray(drawn.rotate(angle, resample=Image.Resampling.BICUBIC)) >= alpha
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask, side / 2, side / 2, 0
    return mask, (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2, int(mask.sum())


def shape_fits(
    silhouette: np.ndarray, shapes: tuple[str, ...] = world.SHAPES, template_alpha: int = TEMPLATE_ALPHA
) -> dict[str, float]:
    """The best intersection-over-union of each shape with ``silhouette`` ``(H, W)`` bool, over rotations
    (``ANGLES``), sides (``SIDE_RANGE`` × the silhouette's extent) and positions (the box centres aligned,
    ±1 pixel). All toy shapes are mirror-symmetric, so flips need no search. An empty silhouette fits
    nothing (0 for every shape). ``template_alpha``: the opacity from which a template pixel counts."""
    if not 1 <= template_alpha <= 255:
        raise ValueError(f"template_alpha must be an opacity in 1-255, got {template_alpha!r}")
    ys, xs = np.nonzero(silhouette)
    if len(xs) == 0:
        return dict.fromkeys(shapes, 0.0)
    height, width = silhouette.shape
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    total = int(silhouette.sum())
    sides = range(max(3, int(extent * SIDE_RANGE[0])), int(np.ceil(extent * SIDE_RANGE[1])) + 1)
    fits = {}
    for shape in shapes:
        best = 0.0
        for side in sides:
            for angle in ANGLES:
                mask, ty, tx, count = _template(shape, side, angle, template_alpha)
                if count == 0:
                    continue
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        oy, ox = round(cy - ty) + dy, round(cx - tx) + dx
                        y0, x0, y1, x1 = max(0, oy), max(0, ox), min(height, oy + side), min(width, ox + side)
                        if y1 <= y0 or x1 <= x0:
                            continue
                        inter = int((silhouette[y0:y1, x0:x1] & mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]).sum())
                        best = max(best, inter / (total + count - inter))
        fits[shape] = best
    return fits


def read_shape(
    image: np.ndarray,
    scene: np.ndarray,
    region: np.ndarray,
    min_pixels: int = 8,
    threshold: int = 48,
    template_alpha: int = TEMPLATE_ALPHA,
) -> str | None:
    """The toy shape whose outline fits the subject painted into ``region`` best (``painted_silhouette`` with
    ``threshold``, ``shape_fits`` with ``template_alpha``); None when fewer than ``min_pixels`` pixels were
    painted (no subject)."""
    silhouette = painted_silhouette(image, scene, region, threshold)
    if int(silhouette.sum()) < min_pixels:
        return None
    fits = shape_fits(silhouette, template_alpha=template_alpha)
    return max(fits, key=fits.get)
