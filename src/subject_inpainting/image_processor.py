"""``InpaintImageProcessor``: the pictures a pipeline call takes and gives, in and out of the model's frame.

In: any scene, mask or box and reference the call accepts (paths, PIL images, numpy arrays; a reference also as
normalised pixels), read and checked (``prepare``), then the part of the scene the model works on at its square
resolution (``frame``). Out: a decoded picture put back at the scene's size and pasted into the scene inside
the mask with a feathered seam (``paste_back``), so that every pixel outside the mask is the scene's.

Glue around ``imaging``'s functions, which do the pixel work; no model here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import imaging

ImageInput = str | os.PathLike | Image.Image | np.ndarray
REQUEST_FIELDS = ("scene", "reference", "mask", "box", "reference_box")
_IMAGE_TYPES = "a path (str or os.PathLike), a PIL.Image or a numpy array"


@dataclass
class PreparedInputs:
    """Validated, decoded inputs of one scene (``InpaintImageProcessor.prepare``)."""

    scene: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8 of an RGBA scene
    mask: np.ndarray  # (H, W) bool, True = edit
    reference: torch.Tensor  # (1, 3, S, S) normalised


@dataclass
class FramedScene:
    """One scene of a call in the model's frame: its inputs, the box of it the model sees, and that box at
    the model's resolution (``rgb`` ``(res, res, 3)`` uint8, ``mask`` ``(res, res)`` bool)."""

    inputs: PreparedInputs
    box: tuple[int, int, int, int]
    rgb: np.ndarray
    mask: np.ndarray


class InpaintImageProcessor:
    """Reads a call's pictures and puts results back into their scenes.

    Args:
        resolution: the model's square resolution in pixels.
        reference_size: the side of the vision tower's input.
        reference_mean, reference_std: its normalisation (CLIP's).
    """

    def __init__(
        self, resolution: int, reference_size: int, reference_mean: Sequence[float], reference_std: Sequence[float]
    ):
        self.resolution = resolution
        self.reference_size = reference_size
        self.reference_mean, self.reference_std = reference_mean, reference_std

    # -- in ----------------------------------------------------------------------------------------
    @staticmethod
    def requests(scene, reference, mask, box, reference_box) -> list[tuple[Any, ...]]:
        """One ``(scene, reference, mask, box, reference_box)`` per scene: the call's values, or for a list of
        scenes the lists' entries (``mask``, ``box``, ``reference_box`` may be None for all).

        Raises:
            ValueError: an empty list of scenes, or lists of other lengths.
            TypeError: a scene that is itself a list.
        """
        if not isinstance(scene, list):
            return [(scene, reference, mask, box, reference_box)]
        if not scene:
            raise ValueError("scene is an empty list; give a scene or a list of scenes")
        for i, entry in enumerate(scene):
            if isinstance(entry, (list, tuple)):
                raise TypeError(f"scene[{i}] must be {_IMAGE_TYPES}; got {type(entry).__name__}")
        columns = {"reference": reference, "mask": mask, "box": box, "reference_box": reference_box}
        for name, value in columns.items():
            if value is None and name != "reference":
                columns[name] = [None] * len(scene)
            elif not isinstance(value, list) or len(value) != len(scene):
                got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
                raise ValueError(f"with a list of {len(scene)} scenes, {name} must be a list of as many; got {got}")
        return list(zip(scene, *columns.values(), strict=True))

    def prepare(
        self,
        scene: ImageInput,
        reference: ImageInput | torch.Tensor,
        mask: ImageInput | None = None,
        box: Sequence[float] | str | None = None,
        reference_box: Sequence[float] | str | None = None,
    ) -> PreparedInputs:
        """Read and check one scene's pictures: a scene in any mode, a mask (white = edit) or a box, and a
        reference (a picture, or its normalised pixels as a tensor). A scene that is already ``PreparedInputs``
        (of an earlier call) is returned as it is: it holds its region and reference, so the other arguments
        must be None.

        Raises:
            TypeError: an input of a type (or array dtype) the pipeline does not take.
            ValueError: a reference tensor of the wrong shape or holding NaN or infinite values.
            InputError: one line naming the input and what is wrong with it.
        """
        if isinstance(scene, PreparedInputs):
            if any(v is not None for v in (reference, mask, box, reference_box)):
                raise ValueError("a prepared scene holds its reference and region: give no reference, mask or box")
            return scene
        scene = as_image(scene, "scene")
        mask = None if mask is None else as_image(mask, "mask", is_mask=True)
        box = None if box is None else imaging.parse_box(box, "box")
        reference_box = None if reference_box is None else imaging.parse_box(reference_box, "reference_box")
        if isinstance(reference, torch.Tensor):
            if reference_box is not None:
                raise ValueError(
                    "reference_box crops a reference picture, but the reference is a tensor of normalised "
                    "pixels; crop the picture before making the tensor, or give the picture"
                )
            ref = self.check_reference_tensor(reference)
        else:
            ref = imaging.reference_tensor(
                imaging.open_image(as_image(reference, "reference", tensor_too=True), "reference"),
                self.reference_size,
                self.reference_mean,
                self.reference_std,
                reference_box,
            )
        rgb, alpha, edit = imaging.load_scene_and_mask(scene, mask, box)
        return PreparedInputs(rgb, alpha, edit, ref)

    def check_reference_tensor(self, reference: torch.Tensor) -> torch.Tensor:
        """A reference given as normalised pixels ``(3, S, S)`` or ``(1, 3, S, S)`` → ``(1, 3, S, S)``,
        checked before any model work, so that a NaN or a stray integer tensor is named here rather than
        painted as noise.

        Raises:
            TypeError: not a floating-point tensor.
            ValueError: the wrong shape, or NaN or infinite values.
        """
        expected = (1, 3, self.reference_size, self.reference_size)
        if not reference.is_floating_point():
            raise TypeError(
                "a reference tensor must be floating point (normalised pixels, e.g. torch.float32), "
                f"got {reference.dtype}"
            )
        ref = reference[None] if reference.ndim == 3 else reference
        if tuple(ref.shape) != expected:
            raise ValueError(
                f"a reference tensor must be normalised pixels of shape {expected}, got {tuple(reference.shape)}"
            )
        finite = torch.isfinite(ref)
        if not finite.all():
            bad = int((~finite).sum())
            raise ValueError(
                f"reference tensor holds NaN or infinite values ({bad} of {ref.numel()}); "
                "it must be finite normalised pixels"
            )
        return ref

    @staticmethod
    def work_box(mask: np.ndarray, region: str, context: float) -> tuple[int, int, int, int]:
        """The part of the scene the model sees: all of it (``"full"``, the original: stretched to the
        model's square) or a square around the mask whose side is ``context`` × the mask's longer side
        (``"crop"``: no distortion, more pixels on the subject). A mask that no square inside the image
        can hold falls back to the full scene."""
        h, w = mask.shape
        if region == "full":
            return 0, 0, w, h
        x0, y0, x1, y1 = imaging.mask_bbox(mask)
        need = max(x1 - x0, y1 - y0)
        side = min(max(round(need * context), 1), min(w, h))
        if side < need:
            return 0, 0, w, h
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = int(min(max(round(cx - side / 2), 0), w - side))
        top = int(min(max(round(cy - side / 2), 0), h - side))
        return left, top, left + side, top + side

    def frame(self, inputs: PreparedInputs, region: str, context: float) -> FramedScene:
        """The part of the scene the model works on (``work_box``), at the model's resolution."""
        box = self.work_box(inputs.mask, region, context)
        x0, y0, x1, y1 = box
        res = self.resolution
        rgb = imaging.resize_rgb(inputs.scene[y0:y1, x0:x1], (res, res))
        return FramedScene(inputs, box, rgb, imaging.resize_mask(inputs.mask[y0:y1, x0:x1], (res, res)))

    # -- out ---------------------------------------------------------------------------------------
    def paste_back(
        self, generated: np.ndarray, scene: FramedScene, paste_back: bool, feather: float | None
    ) -> Image.Image:
        """A decoded picture ``(res, res, 3)`` uint8 back at the scene's size and, with ``paste_back``, pasted
        into the scene inside the mask with a seam ``feather`` pixels wide (None: ``imaging.default_feather``);
        an RGBA scene keeps its alpha outside the mask and becomes opaque inside it."""
        inputs = scene.inputs
        x0, y0, x1, y1 = scene.box
        H, W = inputs.mask.shape
        radius = imaging.default_feather((W, H)) if feather is None else feather
        full = inputs.scene.copy()
        full[y0:y1, x0:x1] = imaging.resize_rgb(generated, (x1 - x0, y1 - y0))
        if paste_back:
            full = imaging.composite(inputs.scene, full, inputs.mask, radius)
        if inputs.alpha is None:
            return Image.fromarray(full, "RGB")
        alpha = inputs.alpha.copy()
        if paste_back:  # the painted subject is opaque: raise the alpha inside the mask with the same seam
            window, weight = imaging.feather_window(inputs.mask, radius)
            inside = inputs.mask[window]
            raised = np.round(alpha[window] * (1 - weight) + 255 * weight).astype(np.uint8)
            alpha[window][inside] = raised[inside]
        else:
            alpha[:] = 255
        return Image.fromarray(np.dstack([full, alpha]), "RGBA")


def as_image(value: Any, what: str, is_mask: bool = False, tensor_too: bool = False) -> str | os.PathLike | Image.Image:
    """An image input as ``imaging`` takes it: paths and PIL images unchanged, numpy arrays as PIL images.

    Scene and reference arrays are ``uint8`` ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey;
    mask arrays are ``bool`` or ``uint8`` ``(H, W)`` (True or >= 128 = edit, as a mask file's white).

    Raises:
        TypeError: another type, or an array of another dtype.
        InputError: an array of another shape, or an empty one.
    """
    if isinstance(value, (str, os.PathLike, Image.Image)):
        return value
    if not isinstance(value, np.ndarray):
        accepted = _IMAGE_TYPES + (", or a torch.Tensor of normalised pixels" if tensor_too else "")
        raise TypeError(f"{what} must be {accepted}; got {type(value).__name__}")
    if is_mask:
        if value.dtype not in (np.bool_, np.uint8):
            raise TypeError(f"a {what} array must be bool or uint8 (True or >= 128 = edit), got {value.dtype}")
        if value.ndim != 2:
            raise imaging.InputError(f"a {what} array must have shape (H, W), got {value.shape}")
        if value.dtype == np.bool_:
            value = value.astype(np.uint8) * 255
    else:
        if value.dtype != np.uint8:
            raise TypeError(f"a {what} array must be uint8 (0-255), got {value.dtype}")
        if not (value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (3, 4))):
            raise imaging.InputError(
                f"a {what} array must have shape (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, got {value.shape}"
            )
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise imaging.InputError(f"{what} array is empty (shape {value.shape})")
    return Image.fromarray(np.ascontiguousarray(value))
