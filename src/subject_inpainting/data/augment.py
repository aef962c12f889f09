"""Augmentation settings of training examples and the augmentation of the reference image.

The original (Paint-by-Example, Yang et al. 2022) augments the reference crop with albumentations after
resizing it to the vision tower's input size: horizontal flip (p 0.5), rotation within ±20° (albumentations'
default p 0.5, mirrored borders), blur and elastic deformation. Here the same steps use PIL, NumPy and
torch only, and every draw comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from ._random import check_generator, uniform


@dataclass(frozen=True)
class AugmentConfig:
    """How training examples are randomised (``base()`` and ``subject()``: the original's two settings).

    Pixel sizes of the reference steps (blur radius, elastic displacement) are in pixels of the reference
    *after* it is resized to the vision tower's input (224 for CLIP ViT-L/14), as the original, which
    resizes first: they mean the same for a small and a large photo. Scale them with the tower's input
    size for other towers.

    Attributes:
        reference_margin: pixels added around the box when the reference is cut (original: 10).
        flip_p: probability of a horizontal flip of the reference (original: 0.5).
        rotation_p: probability of a rotation of the reference (original: albumentations ``Rotate``'s
            default, 0.5).
        rotation_degrees: the rotation angle is uniform in ±this (original: 20).
        blur_p: probability of a Gaussian blur of the reference (base 0, subject fine-tuning 0.3).
        blur_radius: ``(low, high)`` range of the PIL ``GaussianBlur`` radius (standard deviation, pixels).
        elastic_p: probability of an elastic deformation of the reference (base 0, subject 0.3).
        elastic_alpha: root-mean-square displacement of the elastic field along each axis, in pixels.
            4 px at 224 px (≈ 2% of the side) bends outlines visibly yet keeps logos and patterns
            readable, which is what the subject's identity rests on.
        elastic_sigma: smoothness of the elastic field (Gaussian standard deviation, pixels). 12 px at
            224 px makes bends about the size of an object part rather than a pixel-level ripple. (The
            original's albumentations ``ElasticTransform`` defaults, alpha 1 and sigma 50 plus a random
            affine part of up to 50 px, were at 224 px mostly an affine warp; this is a true elastic one.)
        box_extension: the largest share of the free space each side of the box is extended by (0.4).
        crop_min_share: the smallest square crop of the scene, as a share of its shorter side (0: the
            extended box alone, ``boxes.square_crop``; 1: never zoom in, for scenes rendered at the training
            resolution, which an enlarged crop would blur).
        bezier_p: probability of the irregular Bézier hole instead of the extended box (original: 0.5).
        bezier_jitter: the largest move of each point of the Bézier outline, in pixels of the source
            photo (original: 5).
    """

    reference_margin: int = 10
    flip_p: float = 0.5
    rotation_p: float = 0.5
    rotation_degrees: float = 20.0
    blur_p: float = 0.0
    blur_radius: tuple[float, float] = (0.1, 2.0)
    elastic_p: float = 0.0
    elastic_alpha: float = 4.0
    elastic_sigma: float = 12.0
    box_extension: float = 0.4
    crop_min_share: float = 0.0
    bezier_p: float = 0.5
    bezier_jitter: float = 5.0

    def __post_init__(self) -> None:
        for name in ("flip_p", "rotation_p", "blur_p", "elastic_p", "bezier_p", "box_extension", "crop_min_share"):
            _check_number(name, getattr(self, name), low=0.0, high=1.0)
        for name in ("rotation_degrees", "elastic_alpha", "bezier_jitter"):
            _check_number(name, getattr(self, name), low=0.0)
        _check_number("elastic_sigma", self.elastic_sigma, low=0.0)
        if self.elastic_sigma <= 0:
            raise ValueError(f"elastic_sigma {self.elastic_sigma!r}: must be > 0 pixels")
        margin = self.reference_margin
        if isinstance(margin, bool) or not isinstance(margin, numbers.Integral) or margin < 0:
            raise ValueError(f"reference_margin {margin!r}: must be a whole number of pixels ≥ 0")
        try:
            low, high = self.blur_radius
        except (TypeError, ValueError):
            raise TypeError(f"blur_radius {self.blur_radius!r}: expected a pair (low, high)") from None
        _check_number("blur_radius", low, low=0.0)
        _check_number("blur_radius", high, low=low)
        # A frozen dataclass: lists read from JSON/YAML become the documented tuple.
        object.__setattr__(self, "blur_radius", (float(low), float(high)))

    @classmethod
    def base(cls) -> AugmentConfig:
        """The Paint-by-Example training settings: flip, rotation ±20°, 40% box extension, Bézier p 0.5.

        No blur or elastic deformation of the reference. The released ``open-images.py`` also blurs and deforms
        the base training references (p 0.3 each); use ``subject()``'s reference settings to match that code.
        """
        return cls()

    @classmethod
    def subject(cls) -> AugmentConfig:
        """The subject fine-tuning settings: the base settings plus blur (p 0.3) and elastic (p 0.3)."""
        return dataclasses.replace(cls.base(), blur_p=0.3, elastic_p=0.3)


def _check_number(name: str, value: object, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        bounds = f"[{low}, {high}]" if math.isfinite(high) else f"≥ {low}"
        raise ValueError(f"{name} {value!r}: must be a number {bounds}")


def augment_reference(rgb: np.ndarray, config: AugmentConfig, generator: torch.Generator) -> np.ndarray:
    """Randomly flip, rotate, deform and blur a reference image, as the original's reference augmentation.

    Steps (each with its probability from ``config``):

    1. horizontal flip;
    2. rotation by an angle uniform in ±``rotation_degrees`` (positive = counter-clockwise) and the
       elastic deformation (a uniform random displacement field smoothed by a Gaussian of
       ``elastic_sigma`` pixels, scaled to ``elastic_alpha`` pixels RMS), applied together in one
       bicubic ``grid_sample`` so the image is resampled once. Pixels brought in from outside the frame
       are mirrored from the inside, as the original's albumentations default border (reflection), so
       no flat-coloured corners tell the model where the frame was;
    3. Gaussian blur with a radius uniform in ``blur_radius`` (the original used albumentations' box
       ``Blur`` with a 3–7 pixel kernel; the default radius range is torchvision's ``GaussianBlur`` one).

    The decisions are drawn first, in a fixed order, so changing one probability does not shift the
    other draws of the same generator state.

    Args:
        rgb: ``(h, w, 3)`` uint8, usually already resized to the vision tower's input.
        config: the probabilities and strengths.
        generator: the source of all draws; the same state gives the same output.

    Returns:
        ``(h, w, 3)`` uint8 (a new array; the input is not modified).
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise TypeError(f"reference must be a uint8 array (h, w, 3), got {type(rgb).__name__} {shape}")
    if not isinstance(config, AugmentConfig):
        raise TypeError(f"config must be an AugmentConfig, got {type(config).__name__}")
    check_generator(generator)
    flip_u, rotate_u, angle_u, blur_u, radius_u, elastic_u = uniform(generator, 6)

    out = rgb
    if flip_u < config.flip_p:
        out = out[:, ::-1]
    angle = (2 * angle_u - 1) * config.rotation_degrees if rotate_u < config.rotation_p else 0.0
    displacement = None
    if elastic_u < config.elastic_p and config.elastic_alpha > 0:
        displacement = _elastic_field(out.shape[:2], config.elastic_alpha, config.elastic_sigma, generator)
    if angle != 0.0 or displacement is not None:
        out = _warp(out, angle, displacement)
    if blur_u < config.blur_p:
        low, high = config.blur_radius
        radius = low + radius_u * (high - low)
        out = np.asarray(Image.fromarray(np.ascontiguousarray(out)).filter(ImageFilter.GaussianBlur(radius)))
    return np.array(out, dtype=np.uint8, copy=True)


def _elastic_field(shape: tuple[int, int], alpha: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A smooth random displacement field ``(2, h, w)`` (x then y, pixels) with RMS ``alpha`` per axis."""
    h, w = shape
    radius = max(1, math.ceil(3 * sigma))
    # Noise on a canvas larger by the kernel radius, filtered without padding: the field's statistics are
    # the same at the border as in the middle, even when the image is smaller than the kernel.
    noise = torch.rand(2, 1, h + 2 * radius, w + 2 * radius, generator=generator) * 2 - 1
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    field = F.conv2d(F.conv2d(noise, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))[:, 0]  # (2, h, w)
    # Normalising makes alpha the displacement in pixels whatever sigma is (smoothing shrinks the noise).
    rms = field.square().mean().sqrt().clamp_min(torch.finfo(field.dtype).tiny)
    return field * (alpha / rms)


def _warp(rgb: np.ndarray, angle: float, displacement: torch.Tensor | None) -> np.ndarray:
    """Rotate ``(h, w, 3)`` uint8 about its centre by ``angle`` degrees and displace it by ``(2, h, w)``."""
    h, w = rgb.shape[:2]
    # Output pixel centres relative to the image centre, in pixels (so rotation keeps the aspect ratio).
    ys = torch.arange(h, dtype=torch.float32) + 0.5 - h / 2
    xs = torch.arange(w, dtype=torch.float32) + 0.5 - w / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Each output pixel samples the input at the inverse rotation (y points down: this turns the content
    # counter-clockwise on screen for a positive angle).
    src_x = cos * xx - sin * yy
    src_y = sin * xx + cos * yy
    if displacement is not None:
        src_x = src_x + displacement[0]
        src_y = src_y + displacement[1]
    grid = torch.stack((2 * src_x / w, 2 * src_y / h), dim=-1)[None]  # (1, h, w, 2), align_corners=False
    image = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]  # a writable copy
    out = F.grid_sample(image, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
