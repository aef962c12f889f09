"""Annotations: records (an image and where its objects are) and the readers that make them.

Readers turn annotation files into ``Record``s and fail early with one-line errors naming the file and the
line or entry: JSON Lines manifests (the project's own format, also written by the toy world), Open Images
box CSVs, COCO instance JSON, and a folder of subject photos with a boxes file or masks.

Nothing here imports torch (the images are read with Pillow): the commands read their annotation files with
these functions before torch is imported, so that a bad file is refused at once. ``labels`` name the
inputs in messages: by what they are (``FILE_LABELS``), or by the command line's options
(``OPTION_LABELS``).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from ..imaging import (
    IMAGE_SUFFIXES,
    InputError,
    fit_mask,
    mask_bbox,
    mask_to_bool,
    open_image,
)
from ..loaders.checkpoint_io import _first_line
from ..utils import write_text_atomic
from .boxes import Box, Size, as_box, check_box, check_size

MANIFEST_KEYS = ("image", "boxes", "mask", "width", "height", "meta")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
OPENIMAGES_COLUMNS = ("ImageID", "XMin", "XMax", "YMin", "YMax")
FILE_LABELS = {
    "manifest": "manifest",
    "openimages": "Open Images CSV",
    "coco": "COCO file",
    "images": "image folder",
    "photos": "photo folder",
    "boxes": "boxes file",
    "masks": "masks folder",
}
OPTION_LABELS = {key: f"--{key}" for key in FILE_LABELS}
BOXES_FILE_FORMAT = '{"photo.jpg": [x0, y0, x1, y1], ...}'
# EXIF orientations 5–8 turn the picture by 90°: the decoded image (``open_image``) has W and H swapped.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}


class NoSubjectLocation(InputError):
    """Subject photos came without boxes or masks: the caller may locate the subject automatically."""


# ---------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One training image and where its objects are.

    Attributes:
        image: the photo.
        boxes: one or more ``(x0, y0, x1, y1)`` in pixels of the decoded (EXIF-upright) photo, exclusive
            ends; an example uses one of them, drawn at random.
        mask: a subject mask (white = subject) the box was taken from, if any; it cuts the reference out
            (``InpaintingExamples(cut_reference=True)``).
        width, height: the photo's size when known (both or neither); boxes are then checked against it.
        meta: free-form JSON-able data carried along (identity of a toy-world subject, a label ...).
    """

    image: Path
    boxes: list[Box]
    mask: Path | None = None
    width: int | None = None
    height: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = _as_path(self.image, "image")
        self.mask = None if self.mask is None else _as_path(self.mask, "mask")
        if (self.width is None) != (self.height is None):
            raise ValueError(f"width {self.width!r} and height {self.height!r}: give both or neither")
        if isinstance(self.boxes, (str, bytes)) or not isinstance(self.boxes, Sequence):
            raise TypeError(f"boxes {self.boxes!r}: expected a list of [x0, y0, x1, y1]")
        if not self.boxes:
            raise ValueError("boxes: the list is empty (a record needs at least one box)")
        size = self.size
        self.boxes = [as_box(b) if size is None else check_box(b, size) for b in self.boxes]
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta {self.meta!r}: expected a JSON object")

    @property
    def size(self) -> Size | None:
        """``(W, H)`` when known."""
        return None if self.width is None else check_size((self.width, self.height))


def _as_path(value: object, what: str) -> Path:
    if isinstance(value, str) and value.strip():
        return Path(value)
    if isinstance(value, os.PathLike):
        return Path(value)
    raise TypeError(f"{what} {value!r}: expected a file path")


def image_size(path: str | os.PathLike, what: str = "image") -> Size:
    """``(W, H)`` of an image file as ``imaging.open_image`` will decode it, from its header only.

    Reads the header (and the EXIF orientation, which swaps W and H for quarter turns) without decoding
    the pixels, so checking boxes of a large dataset stays cheap.

    Raises:
        InputError: a missing file or one Pillow cannot identify.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decoding checks it again
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except UnidentifiedImageError:
        raise InputError(f"{what} {path}: not an image (or a format Pillow cannot read)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"{what} {path}: cannot be read ({_first_line(e)})") from None
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


# ---------------------------------------------------------------------------------------------------
# Manifests (JSON Lines)
# ---------------------------------------------------------------------------------------------------
def read_manifest(
    path: str | os.PathLike, *, check_images: bool = True, labels: Mapping[str, str] = FILE_LABELS
) -> list[Record]:
    """Read a JSON Lines manifest: one object a line, blank lines ignored.

    Each line: ``{"image": "a.jpg", "boxes": [[x0, y0, x1, y1], ...], "mask": "a.png", "width": W,
    "height": H, "meta": {...}}``; only ``image`` and ``boxes`` are required. Relative paths are relative
    to the manifest's folder. Unknown keys are errors, so a misspelt ``"mask"`` is not silently ignored.

    Args:
        path: the manifest file.
        check_images: check that each image (and mask) exists and each box lies inside its image; the
            size comes from ``width``/``height`` when given, else from the image header.
        labels: how messages name the manifest (``labels["manifest"]``).

    Raises:
        InputError: an unreadable file, bad JSON, a missing or unknown key, a bad box, a missing image,
            or no record at all; the message names the line.
    """
    path = Path(path)
    label = f"{labels['manifest']} {path}"
    text = _read_text(path, label)
    records = []
    # Split on newlines only: JSON strings may hold other Unicode line separators.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{label}, line {number}"
        try:
            records.append(_manifest_record(json.loads(line), path.parent, check_images))
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: {_first_line(e)}") from None
    if not records:
        raise InputError(f"{label}: no records (the file is empty; expected one JSON object a line)")
    return records


def _manifest_record(entry: object, folder: Path, check_images: bool) -> Record:
    if not isinstance(entry, dict):
        raise TypeError(f"expected a JSON object, found {type(entry).__name__}")
    unknown = sorted(set(entry) - set(MANIFEST_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(MANIFEST_KEYS)})")
    missing = [k for k in ("image", "boxes") if k not in entry]
    if missing:
        raise ValueError(f"missing key(s) {', '.join(map(repr, missing))} (each line needs 'image' and 'boxes')")
    image = folder / _as_path(entry["image"], "image")
    mask = None if entry.get("mask") is None else folder / _as_path(entry["mask"], "mask")
    width, height = entry.get("width"), entry.get("height")
    if check_images:
        if width is None and height is None:
            width, height = image_size(image)
        elif not image.is_file():
            raise InputError(f"image {image}: no such file")
        if mask is not None and not mask.is_file():
            raise InputError(f"mask {mask}: no such file")
    boxes = entry["boxes"]
    if not isinstance(boxes, list):
        raise TypeError(f"boxes {boxes!r}: expected a list of [x0, y0, x1, y1]")
    return Record(image, boxes, mask, width, height, meta=entry.get("meta", {}))


def write_manifest(records: Sequence[Record], path: str | os.PathLike) -> Path:
    """Write records as a JSON Lines manifest (``read_manifest``'s format), atomically.

    Paths inside the manifest's folder are written relative to it (so the folder can move); others are
    written absolute. The file appears complete or not at all: it is written to a temporary file in the
    same folder, flushed to disk, then renamed over ``path``.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    lines = []
    for n, record in enumerate(records):
        if not isinstance(record, Record):
            raise TypeError(f"records[{n}] is a {type(record).__name__}, not a Record")
        entry: dict[str, Any] = {
            "image": _manifest_path(record.image, folder),
            "boxes": [list(b) for b in record.boxes],
        }
        if record.mask is not None:
            entry["mask"] = _manifest_path(record.mask, folder)
        if record.width is not None:
            entry["width"], entry["height"] = record.width, record.height
        if record.meta:
            entry["meta"] = record.meta
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    write_text_atomic(path, "".join(lines))
    return path


def _manifest_path(path: Path, folder: Path) -> str:
    absolute = Path(os.path.abspath(path))
    return absolute.relative_to(folder).as_posix() if absolute.is_relative_to(folder) else str(absolute)


# ---------------------------------------------------------------------------------------------------
# Open Images and COCO
# ---------------------------------------------------------------------------------------------------
def _check_area_range(min_area: float, max_area: float) -> None:
    for name, v in (("min_area", min_area), ("max_area", max_area)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
            raise ValueError(f"{name} {v!r}: must be a share of the image area in [0, 1]")
    if min_area > max_area:
        raise ValueError(f"min_area {min_area} is larger than max_area {max_area}")


def _read_text(path: Path, label: str) -> str:
    if not path.is_file():
        raise InputError(f"{label}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{label}: cannot be read ({_first_line(e)})") from None


def _read_json(path: Path, label: str, expected: str) -> object:
    """The JSON value in ``path``; a message names the file as ``label`` and says what was ``expected``."""
    try:
        return json.loads(_read_text(path, label))
    except json.JSONDecodeError as e:
        raise InputError(
            f"{label}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); expected {expected}"
        ) from None


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _check_folder(folder: str | os.PathLike, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} {folder}: no such folder")
    return folder


def read_openimages(
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    min_area: float = 0.02,
    max_area: float = 0.8,
    *,
    skip_missing: bool = False,
    labels: Mapping[str, str] = FILE_LABELS,
) -> list[Record]:
    """Read an Open Images bounding-box CSV (``oidv6-train-annotations-bbox.csv`` and its kin).

    Keeps the boxes whose share of the image area lies in ``[min_area, max_area]`` (the original's filter,
    Paint-by-Example ``scripts/read_bbox.py``: 2% to 80%) and the images with at least one box left. The
    image is ``image_dir/<ImageID>.jpg``.

    The CSV gives coordinates normalised to [0, 1]; records hold pixels. The size of each kept image is
    read here from its header (``image_size``: no decoding, about a millisecond a file), which also
    finds missing images before training starts rather than hours into it. For the full dataset (1.7 M
    images) that is a one-off cost: write the result with ``write_manifest`` (it stores the sizes) and
    train from the manifest.

    Args:
        csv_path: the annotation CSV (columns ``ImageID, XMin, XMax, YMin, YMax`` are used).
        image_dir: the folder of the images.
        min_area, max_area: the kept range of box area / image area.
        skip_missing: leave out images that are not in ``image_dir`` (the original read only the images
            it had downloaded) instead of raising.
        labels: how messages name the CSV and the folder (``labels["openimages"]``, ``labels["images"]``).

    Raises:
        InputError: a missing file or column, a bad row (named by line), a missing or unreadable image.
    """
    _check_area_range(min_area, max_area)
    csv_path = Path(csv_path)
    label = f"{labels['openimages']} {csv_path}"
    image_dir = _check_folder(image_dir, labels["images"])
    if not csv_path.is_file():
        raise InputError(f"{label}: no such file")
    kept: dict[str, list[tuple[float, float, float, float]]] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in OPENIMAGES_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise InputError(
                    f"{label}: missing column(s) {', '.join(missing)} (expected {', '.join(OPENIMAGES_COLUMNS)})"
                )
            for row in reader:
                try:
                    image_id, box = _openimages_row(row)
                except (TypeError, ValueError) as e:
                    raise InputError(f"{label}, line {reader.line_num}: {e}") from None
                share = (box[2] - box[0]) * (box[3] - box[1])
                boxes = kept.setdefault(image_id, [])
                if min_area <= share <= max_area:
                    boxes.append(box)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{label}: cannot be read as a CSV ({_first_line(e)})") from None
    records = []
    for image_id, boxes in kept.items():
        image = image_dir / f"{image_id}.jpg"
        if not boxes or (skip_missing and not image.is_file()):
            continue
        width, height = image_size(image, "Open Images image")
        pixels = [_round_box((x0 * width, y0 * height, x1 * width, y1 * height)) for x0, y0, x1, y1 in boxes]
        pixels = [b for b in pixels if b is not None]
        if pixels:
            records.append(Record(image, pixels, width=width, height=height))
    return records


def _openimages_row(row: dict[str, str | None]) -> tuple[str, tuple[float, float, float, float]]:
    image_id = (row["ImageID"] or "").strip()
    if not image_id or Path(image_id).name != image_id or image_id in (".", ".."):
        raise ValueError(f"ImageID {image_id!r}: expected a file name stem")
    try:
        x0, x1, y0, y1 = (float(row[c]) for c in ("XMin", "XMax", "YMin", "YMax"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        values = [row.get(c) for c in ("XMin", "XMax", "YMin", "YMax")]
        raise ValueError(f"XMin, XMax, YMin, YMax {values}: expected four numbers") from None
    if not (0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1):
        raise ValueError(f"box XMin {x0}, XMax {x1}, YMin {y0}, YMax {y1}: need 0 ≤ min ≤ max ≤ 1")
    return image_id, (x0, y0, x1, y1)


def _round_box(box: tuple[float, float, float, float]) -> Box | None:
    """Pixel box from float corners already inside the image; ``None`` if rounding leaves it empty."""
    x0, y0, x1, y1 = (round(v) for v in box)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def read_coco(
    json_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    min_area: float = 0.02,
    max_area: float = 0.8,
    *,
    skip_missing: bool = False,
    labels: Mapping[str, str] = FILE_LABELS,
) -> list[Record]:
    """Read a COCO instances JSON (``instances_train2017.json`` and its kin).

    Uses ``images`` (``id``, ``file_name``, ``width``, ``height``) and ``annotations`` (``image_id``,
    ``bbox = [x, y, w, h]`` in pixels, ``iscrowd``). Crowd boxes are skipped (they cover a group, not an
    object); boxes are kept when their area share lies in ``[min_area, max_area]``, as for Open Images;
    images with no box left are skipped. COCO boxes are floats that may overshoot the border by a
    fraction of a pixel: they are rounded and clipped, and an overshoot of more than a pixel is an error.
    ``labels`` name the file and the folder in messages (``labels["coco"]``, ``labels["images"]``).

    Raises:
        InputError: an unreadable file, a bad entry (named by its index), a missing image.
    """
    _check_area_range(min_area, max_area)
    json_path = Path(json_path)
    label = f"{labels['coco']} {json_path}"
    image_dir = _check_folder(image_dir, labels["images"])
    expected = "a COCO instances object with lists 'images' and 'annotations'"
    data = _read_json(json_path, label, expected)
    images, annotations = (data.get("images"), data.get("annotations")) if isinstance(data, dict) else (None, None)
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise InputError(f"{label}: expected {expected}")
    entries: dict[Any, tuple[str, Size]] = {}
    for n, entry in enumerate(images):
        try:
            image_id, name, size = _coco_image(entry)
            if image_id in entries:
                raise ValueError(f"id {image_id!r} appears twice")
        except (TypeError, ValueError, KeyError) as e:
            raise InputError(f"{label}, images[{n}]: {_first_line(e)}") from None
        entries[image_id] = (name, size)
    boxes: dict[Any, list[Box]] = {}
    for n, entry in enumerate(annotations):
        try:
            image_id, box = _coco_box(entry, entries, min_area, max_area)
        except (TypeError, ValueError, KeyError) as e:
            raise InputError(f"{label}, annotations[{n}]: {_first_line(e)}") from None
        if box is not None:
            boxes.setdefault(image_id, []).append(box)
    records = []
    for image_id, (name, (width, height)) in entries.items():
        image = image_dir / name
        if image_id not in boxes or (skip_missing and not image.is_file()):
            continue
        if not image.is_file():
            raise InputError(f"COCO image {image}: no such file")
        records.append(Record(image, boxes[image_id], width=width, height=height))
    return records


def _coco_image(entry: object) -> tuple[Any, str, Size]:
    if not isinstance(entry, dict):
        raise TypeError(f"expected an object, found {type(entry).__name__}")
    missing = [k for k in ("id", "file_name", "width", "height") if k not in entry]
    if missing:
        raise KeyError(f"missing key(s) {', '.join(missing)}")
    name = entry["file_name"]
    parts = Path(name).parts if isinstance(name, str) else ()
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise ValueError(f"file_name {name!r}: expected a path inside the image folder")
    return entry["id"], name, check_size((entry["width"], entry["height"]))


def _coco_box(
    entry: object, images: dict[Any, tuple[str, Size]], min_area: float, max_area: float
) -> tuple[Any, Box | None]:
    if not isinstance(entry, dict):
        raise TypeError(f"expected an object, found {type(entry).__name__}")
    if entry.get("image_id") not in images:
        raise ValueError(f"image_id {entry.get('image_id')!r}: no such image in 'images'")
    image_id = entry["image_id"]
    if entry.get("iscrowd", 0):
        return image_id, None
    bbox = entry.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        raise TypeError(f"bbox {bbox!r}: expected four numbers [x, y, w, h]")
    x, y, w, h = bbox
    width, height = images[image_id][1]
    if w < 0 or h < 0 or x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
        raise ValueError(f"bbox {bbox}: outside the {width}×{height} image")
    if not min_area <= w * h / (width * height) <= max_area:
        return image_id, None
    return image_id, _round_box((max(0, x), max(0, y), min(width, x + w), min(height, y + h)))


# ---------------------------------------------------------------------------------------------------
# A folder of subject photos
# ---------------------------------------------------------------------------------------------------
def photo_files(folder: Path) -> list[Path]:
    """The photos in ``folder`` (``PHOTO_SUFFIXES``), sorted by name; hidden files (``._x.jpg`` ...) skipped."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".")
    )


def read_photo_folder(
    folder: str | os.PathLike,
    boxes_file: str | os.PathLike | None = None,
    masks_dir: str | os.PathLike | None = None,
    *,
    labels: Mapping[str, str] = FILE_LABELS,
) -> list[Record]:
    """Read the 3–5 photos of one subject (``.jpg``, ``.jpeg``, ``.png``, ``.webp``, sorted by name).

    Where the subject is comes from exactly one of:

    - ``boxes_file``: JSON ``{"00.jpg": [x0, y0, x1, y1], ...}`` (pixels of the upright photo; a list of
      such boxes is accepted too), one entry for every photo and none for anything else;
    - ``masks_dir``: one mask per photo with the same file stem (white = subject, any image type; the
      same aspect ratio as the photo); the box is the mask's bounding box and the record keeps the mask.

    Every photo is decoded once here, so an unreadable file is reported now. ``labels`` name the folder,
    the boxes file and the masks folder in messages (``labels["photos"]``, ``["boxes"]``, ``["masks"]``).

    Raises:
        NoSubjectLocation: neither a boxes file nor a masks folder (the caller may run a detector).
        ValueError: both were given.
        InputError: no folder or no photos in it, an unreadable photo or mask, a photo without a box or
            mask, a box outside its photo, an empty mask.
    """
    folder = _check_folder(folder, labels["photos"])
    photos = photo_files(folder)
    if not photos:
        raise InputError(f"{labels['photos']} {folder}: no photos in it (looked for {', '.join(PHOTO_SUFFIXES)})")
    if boxes_file is not None and masks_dir is not None:
        raise ValueError("give a boxes file or a masks folder for the subject photos, not both")
    if boxes_file is None and masks_dir is None:
        raise NoSubjectLocation(
            f"{labels['photos']} {folder}: no boxes file or masks folder says where the subject is in its "
            f"{len(photos)} photos"
        )
    sizes = {p: open_image(p, "subject photo").size for p in photos}
    if boxes_file is not None:
        return _records_from_boxes_file(Path(boxes_file), sizes, f"{labels['boxes']} {boxes_file}")
    masks_dir = _check_folder(masks_dir, labels["masks"])
    masks: dict[str, list[Path]] = {}
    for m in sorted(masks_dir.iterdir()):
        if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES:
            masks.setdefault(m.stem, []).append(m)
    records = []
    for photo, size in sizes.items():
        found = masks.get(photo.stem, [])
        if len(found) != 1:
            problem = "no mask" if not found else f"{len(found)} masks ({', '.join(m.name for m in found)})"
            raise InputError(
                f"{labels['masks']} {masks_dir}: {problem} for photo {photo.name} (same file stem expected)"
            )
        mask = read_mask(found[0], size)
        if not mask.any():
            raise InputError(f"mask {found[0]}: empty (no pixel is white); white marks the subject")
        records.append(Record(photo, [mask_bbox(mask)], mask=found[0], width=size[0], height=size[1]))
    return records


def _records_from_boxes_file(boxes_file: Path, sizes: dict[Path, Size], label: str) -> list[Record]:
    entries = _read_json(boxes_file, label, BOXES_FILE_FORMAT)
    if not isinstance(entries, dict):
        raise InputError(f"{label}: expected {BOXES_FILE_FORMAT}, found a JSON {_json_kind(entries)}")
    names = {p.name for p in sizes}
    unknown = sorted(set(entries) - names)
    if unknown:
        raise InputError(f"{label}: entry {unknown[0]!r} names no photo in the folder")
    records = []
    for photo, (width, height) in sizes.items():
        if photo.name not in entries:
            raise InputError(f"{label}: no box for photo {photo.name}")
        value = entries[photo.name]
        # One box [x0, y0, x1, y1] or a list of them.
        boxes = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
        try:
            records.append(Record(photo, boxes, width=width, height=height))
        except (TypeError, ValueError) as e:
            raise InputError(f"{label}, photo {photo.name}: {_first_line(e)}") from None
    return records


def read_mask(path: Path, size: Size) -> np.ndarray:
    """A subject mask file (white = subject) at its photo's ``size = (W, H)``: ``(H, W)`` bool."""
    return fit_mask(mask_to_bool(open_image(path, "mask")), size, what=f"mask {path}")
