"""Image and mask input/output: reading any photo safely, masks and boxes, resizing, paste-back.

Conventions: images are ``uint8`` arrays ``(H, W, 3)``; masks are ``bool`` arrays ``(H, W)`` with
True = the region to edit (files on disk: white = edit, thresholded at mid-grey). Inside the model the
original's *keep* mask is used (1 = keep, 0 = hole), see ``keep_mask_tensor``.

torch is imported inside the tensor functions only: commands read and check every image before they pay
the seconds that importing torch costs.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .utils.files import InputPathError, atomic_file, check_input
from .utils.parse import ParseError
from .utils.parse import parse_box as _parse_box

if TYPE_CHECKING:
    import torch

# The largest image read, in pixels: Pillow's own warning threshold (a decompression bomb beyond it). An
# option can lower it or raise it up to Pillow's hard limit, twice as large, above which Pillow refuses.
MAX_PIXELS = 89_478_485
PILLOW_HARD_LIMIT = 2 * MAX_PIXELS
IMAGE_SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


class InputError(ValueError):
    """A user input that cannot be used (missing file, not an image, empty mask ...): one line."""


class ImageTooLarge(InputError):
    """An image over the pixel limit; ``size`` is ``(width, height)``, or None when Pillow refused the file
    before saying (beyond its own hard limit)."""

    def __init__(self, message: str, size: tuple[int, int] | None, limit: int):
        super().__init__(message)
        self.size, self.limit = size, limit


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------
def open_image(source: str | os.PathLike | Image.Image, what: str, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image, honouring its EXIF orientation.

    Args:
        source: a path or an already open ``PIL.Image``.
        what: what the image is for, used in error messages (``"scene"``, ``"mask"`` ...).
        max_pixels: the largest image accepted (at most ``PILLOW_HARD_LIMIT``). The size of a file is read
            from its header, before anything is decoded. None: ``MAX_PIXELS`` for a file, no limit for an
            image already in memory (whoever opened it chose its limit).

    Raises:
        InputError: missing or unreadable file, not a regular file, not an image, truncated, or too large.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
        path = Path(source)
        try:
            check_input(path, what)
        except InputPathError as e:
            raise InputError(str(e)) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is ours, below
                image = Image.open(path)
                if image.width * image.height > max_pixels:
                    w, h = image.size
                    raise ImageTooLarge(
                        f"{what} {path}: too large ({w}×{h} = {w * h:,} pixels; the limit is {max_pixels:,})",
                        (w, h),
                        max_pixels,
                    )
                image.load()  # decode now: a truncated file fails here, not later
        except ImageTooLarge:
            raise
        except PermissionError:
            raise InputError(f"{what} {path}: cannot be read (permission denied)") from None
        except UnidentifiedImageError:
            raise InputError(f"{what} {path}: not an image (or a format Pillow cannot read)") from None
        except Image.DecompressionBombError:
            message = f"{what} {path}: too large (more than {PILLOW_HARD_LIMIT:,} pixels; the limit is {max_pixels:,})"
            raise ImageTooLarge(message, None, max_pixels) from None
        except (OSError, ValueError, SyntaxError) as e:
            raise InputError(f"{what} {path}: the image is damaged or truncated ({e})") from None
    if max_pixels is not None and image.width * image.height > max_pixels:
        message = f"{what}: too large ({image.width}×{image.height} pixels; the limit is {max_pixels:,})"
        raise ImageTooLarge(message, image.size, max_pixels)
    if image.width < 1 or image.height < 1:
        raise InputError(f"{what}: empty image ({image.width}×{image.height})")
    return ImageOps.exif_transpose(image)


def _to_8bit_gray(image: Image.Image) -> np.ndarray:
    """A single-channel image of any depth as ``uint8`` (16-bit and 32-bit values scaled to 0–255)."""
    a = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and a.max(initial=0) > 255):
        return np.clip(np.round(a.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    if image.mode == "F":
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.round(a.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def to_rgb(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any mode (RGB, RGBA, L, LA, P, CMYK, 1, 16-bit I;16/I, F) → ``(rgb (H, W, 3) uint8, alpha or None)``."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_8bit_gray(image)
        return np.repeat(gray[..., None], 3, axis=2), None
    if has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    return np.asarray(image.convert("RGB")).copy(), None


def mask_to_bool(image: Image.Image) -> np.ndarray:
    """A mask image of any mode → bool ``(H, W)``: True where it is white (≥ 128 of 255) = edit."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_8bit_gray(image)
    elif image.mode == "1":
        gray = np.asarray(image, dtype=np.uint8) * 255
    else:
        gray = np.asarray(image.convert("L"))
    return gray >= 128


def fit_mask(mask: np.ndarray, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """Resize a bool mask ``(h, w)`` to ``size = (W, H)`` if it has the same aspect ratio.

    Raises:
        InputError: the aspect ratios differ by more than 1% (or one pixel of rounding).
    """
    h, w = mask.shape
    W, H = size
    if (w, h) == (W, H):
        return mask
    # Same shape up to rounding: compare the cross-products with one pixel of slack on each side.
    if abs(w * H - h * W) > max(W, H, w, h) and abs(w / h - W / H) > 0.01 * (W / H):
        raise InputError(
            f"{what} is {w}×{h} (aspect {w / h:.3f}) but the scene is {W}×{H} (aspect {W / H:.3f}): "
            "they must have the same aspect ratio"
        )
    return resize_mask(mask, (W, H))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to ``size = (W, H)``: a pixel is in the mask if at least half of it was; if
    that leaves nothing (a sliver thinner than half a pixel), any coverage counts."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    cover = np.asarray(Image.fromarray(mask.astype(np.float32)).resize(size, Image.Resampling.BOX), dtype=np.float32)
    out = cover >= 0.5
    return out if out.any() or not mask.any() else cover > 0


def load_scene_and_mask(
    scene: str | os.PathLike | Image.Image,
    mask: str | os.PathLike | Image.Image | None = None,
    box: Sequence[float] | str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Read a scene and its region to edit, given as a mask image (white = edit) or a box.

    Returns:
        ``(rgb (H, W, 3) uint8, alpha (H, W) uint8 or None, edit mask (H, W) bool)``.

    Raises:
        InputError: unreadable files, both or neither of mask and box, an empty mask, a mask of another
            aspect ratio, a box outside the scene.
    """
    if (mask is None) == (box is None):
        raise InputError("give exactly one of a mask or a box for the region to edit")
    rgb, alpha = to_rgb(open_image(scene, "scene"))
    size = (rgb.shape[1], rgb.shape[0])
    if mask is not None:
        edit = fit_mask(mask_to_bool(open_image(mask, "mask")), size)
        if not edit.any():
            raise InputError("mask is empty: no pixel is white (>= 128); white marks the region to edit")
    else:
        edit = box_to_mask(box, size)
    return rgb, alpha, edit


def parse_box(value: str | Sequence[float], what: str = "box") -> tuple[int, int, int, int]:
    """``"x0,y0,x1,y1"`` or four numbers (pixels; x1, y1 exclusive) → ints (``utils.parse.parse_box``).

    Raises:
        InputError: not four finite numbers.
    """
    try:
        return _parse_box(value, what)
    except ParseError as e:
        raise InputError(str(e)) from None


def box_to_mask(
    box: Sequence[float] | str, size: tuple[int, int], what: str = "box", image: str = "scene"
) -> np.ndarray:
    """A box ``(x0, y0, x1, y1)`` inside an image of ``size = (W, H)`` → bool mask.

    Args:
        what: the box's name in messages (``"box"``, ``"reference box"``); ``image``: the image's.

    Raises:
        InputError: the box is not four finite numbers, is empty, or is not inside the image.
    """
    x0, y0, x1, y1 = parse_box(box, what)
    W, H = size
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{what} {x0},{y0},{x1},{y1}: empty (need x0 < x1 and y0 < y1)")
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        raise InputError(
            f"{what} {x0},{y0},{x1},{y1}: outside the {W}×{H} {image} (need 0 ≤ x0 < x1 ≤ {W}, 0 ≤ y0 < y1 ≤ {H})"
        )
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(x0, y0, x1, y1)`` (exclusive ends) of the True pixels of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def cut_out(rgb: np.ndarray, mask: np.ndarray, fill: int = 255) -> np.ndarray:
    """The subject of ``rgb`` ``(H, W, 3)`` uint8 on a plain background: pixels outside ``mask`` ``(H, W)``
    bool become ``fill`` (white by default, as the segmented references of AnyDoor, Chen et al. 2023)."""
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask is {mask.shape[1]}×{mask.shape[0]} but the picture is {rgb.shape[1]}×{rgb.shape[0]}")
    return np.where(mask[..., None], rgb, np.uint8(fill))


# ---------------------------------------------------------------------------------------------------
# Model-side tensors
# ---------------------------------------------------------------------------------------------------
def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``size = (W, H)`` (Lanczos when shrinking, bicubic when growing)."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    shrink = size[0] < rgb.shape[1] or size[1] < rgb.shape[0]
    method = Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(rgb).resize(size, method))


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → ``(1, 3, H, W)`` in [-1, 1] (the original's ``ToTensor`` + ``Normalize(0.5, 0.5)``)."""
    import torch

    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def tensor_to_rgb(images: torch.Tensor) -> list[np.ndarray]:
    """``(B, 3, H, W)`` in [0, 1] → list of ``(H, W, 3)`` uint8."""
    import torch

    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)


def keep_mask_tensor(mask: np.ndarray) -> torch.Tensor:
    """Edit mask ``(H, W)`` bool → the original's keep mask ``(1, 1, H, W)``: 1 = keep, 0 = hole."""
    import torch

    return torch.from_numpy(~mask)[None, None].float()


def reference_tensor(
    image: Image.Image,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    box: Sequence[float] | None = None,
) -> torch.Tensor:
    """A reference photo → ``(1, 3, size, size)`` normalised tower input.

    The optional ``box`` crops it first. Transparent pixels are laid on white. The photo is resized to
    ``size × size`` with bicubic interpolation, as the original (``resize((224, 224))``), then normalised.
    """
    import torch

    rgb, alpha = to_rgb(image)
    if alpha is not None:
        a = alpha[..., None].astype(np.float32) / 255.0
        rgb = np.round(rgb * a + 255.0 * (1 - a)).astype(np.uint8)
    if box is not None:
        crop = box_to_mask(box, (rgb.shape[1], rgb.shape[0]), "reference box", "reference")  # validates
        x0, y0, x1, y1 = mask_bbox(crop)
        rgb = rgb[y0:y1, x0:x1]
    resized = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0
    mean_t = torch.tensor(list(mean), dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(list(std), dtype=torch.float32)[:, None, None]
    return ((x - mean_t) / std_t)[None]


# ---------------------------------------------------------------------------------------------------
# Paste-back
# ---------------------------------------------------------------------------------------------------
def default_feather(size: tuple[int, int]) -> float:
    """Seam width in pixels: about 1% of the shorter side, at least 1."""
    return max(1.0, round(min(size) / 100))


def feather_alpha(mask: np.ndarray, radius: float) -> np.ndarray:
    """Blend weight ``(H, W)`` float32 in [0, 1] for the generated image, from ``mask`` ``(H, W)`` bool.

    0 outside the mask; inside it, with ``n = ceil(radius)`` and ``d`` the pixel's depth (its chessboard
    distance to the nearest pixel of the image outside the mask; the image's border is not "outside"), the
    weight is ``min(d, n + 1) / (n + 1)``: a linear ramp over the ``n`` outermost pixels, 1 deeper in (and
    everywhere when the whole image is mask). That is the weight of ``n`` successive 3×3 erosions of the mask,
    each adding ``1 / (n + 1)`` where the mask survives, computed with one distance transform, so the cost does
    not depend on ``radius``. ``radius = 0`` gives the hard mask; a radius wider than the mask is deep leaves
    the weight below 1 everywhere (``inf``: 0).
    """
    window, weight = feather_window(mask, radius)
    alpha = np.zeros(mask.shape, np.float32)
    alpha[window] = weight
    return alpha


def feather_window(mask: np.ndarray, radius: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """``feather_alpha`` where it can be non-zero: the slices ``(rows, columns)`` of the mask's bounding box
    and the weight there. A small region of a large scene costs the region's size, not the scene's (the depth
    inside the box is its depth in the whole image: the nearest pixel outside the mask is at most one pixel
    past the box)."""
    if math.isnan(radius):
        raise ValueError("feather radius is NaN")
    if not mask.any():
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), np.float32)
    x0, y0, x1, y1 = mask_bbox(mask)
    height, width = mask.shape
    rows, columns = slice(max(y0 - 1, 0), min(y1 + 1, height)), slice(max(x0 - 1, 0), min(x1 + 1, width))
    inside = mask[rows, columns]
    if radius <= 0 or inside.all():  # a mask that fills the image, or no seam
        return (rows, columns), inside.astype(np.float32)
    ramp = float(math.ceil(radius)) + 1.0 if math.isfinite(radius) else math.inf
    return (rows, columns), (np.minimum(_chessboard_depth(inside), ramp) / ramp).astype(np.float32)


def _chessboard_depth(mask: np.ndarray) -> np.ndarray:
    """Chessboard (L∞) distance ``(H, W)`` int32 from each pixel of ``mask`` ``(H, W)`` bool to the nearest
    pixel of the image outside the mask: 0 outside, ``H + W`` everywhere if there is no pixel outside.

    Two raster passes of the 3×3 chamfer with unit weights, which is exact for this metric: the forward pass
    takes the minimum over the three neighbours above and the one on the left (plus 1), the backward pass the
    same from below and the right. Each row is done at once: its chain along the row,
    ``d[j] = min(c[j], d[j - 1] + 1)``, is ``j + (running minimum of c[k] - k)``. The loop runs over the
    shorter side.
    """
    if mask.shape[0] > mask.shape[1]:
        return _chessboard_depth(mask.T).T
    height, width = mask.shape
    depth = np.where(mask, np.int32(height + width), np.int32(0))
    column = np.arange(width, dtype=np.int32)
    near = np.empty(width, np.int32)
    for view in (depth, depth[::-1, ::-1]):  # the backward pass is the forward one on the flipped image
        for i in range(height):
            row = view[i]
            if i:
                above = view[i - 1]
                near[:] = above
                np.minimum(near[1:], above[:-1], out=near[1:])
                np.minimum(near[:-1], above[1:], out=near[:-1])
                near += 1
                np.minimum(row, near, out=row)
            row -= column
            np.minimum.accumulate(row, out=row)
            row += column
    return depth


def composite(scene: np.ndarray, generated: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """Paste ``generated`` into ``scene`` (both ``(H, W, 3)`` uint8) inside ``mask`` with a feathered seam.

    Every pixel outside the mask is the scene's, exactly.
    """
    window, alpha = feather_window(mask, radius)
    out = scene.copy()
    alpha = alpha[..., None]
    blended = scene[window].astype(np.float32) * (1 - alpha) + generated[window].astype(np.float32) * alpha
    inside = mask[window]
    out[window][inside] = np.round(blended[inside]).astype(np.uint8)
    return out


def reference_to_image(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> Image.Image:
    """A normalised reference ``(3, S, S)`` back to a picture (for previews and grids)."""
    import torch

    x = pixels.detach().float().cpu() * torch.tensor(list(std))[:, None, None] + torch.tensor(list(mean))[:, None, None]
    return Image.fromarray(tensor_to_rgb(x[None])[0])


def image_grid(rows: Sequence[Sequence[Image.Image]], cell: int, gap: int = 4) -> Image.Image:
    """Lay out ``rows`` of pictures, each resized to ``cell × cell``, on a white sheet."""
    n_cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (n_cols * cell + (n_cols + 1) * gap, len(rows) * cell + (len(rows) + 1) * gap), "white")
    for i, row in enumerate(rows):
        for j, picture in enumerate(row):
            tile = picture.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS)
            sheet.paste(tile, (gap + j * (cell + gap), gap + i * (cell + gap)))
    return sheet


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
def image_format(path: str | os.PathLike) -> str:
    """The Pillow format for an output path, from its suffix.

    Raises:
        InputError: an unknown suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(
            f"output {path}: unknown image type {suffix or '(none)'!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    return IMAGE_SUFFIXES[suffix]


def save_image_atomic(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` to ``path`` through a temporary file in the same folder and a rename.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    fmt = image_format(path)
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        image.save(f, format=fmt, **options)
        f.flush()
        os.fsync(f.fileno())
    return path
