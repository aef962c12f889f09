"""Reading weight files safely, with one-line errors that name the file and what is wrong.

torch is imported only to read the tensors: whether a file can be a weights file at all
(``check_weights_file``: not empty, a sound safetensors header, a zip archive or pickle) is told from its
first bytes, so the commands refuse a damaged model before they pay for importing torch.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class CheckpointError(ValueError):
    """A weight or config file that cannot be used: missing, truncated, foreign or mismatched."""


PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# The safetensors format: an 8-byte little-endian header length, that many bytes of JSON, then the data.
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_SAFETENSORS_ITEM_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive (torch >= 1.6)
_LFS_POINTER = b"version https://git-lfs"


def check_weights_file(path: str | Path, name: str | None = None) -> None:
    """Refuse a file that cannot be a weights file, from its first bytes and without torch.

    A ``.safetensors`` file needs a header that safetensors reads (its length, a JSON object of tensors
    whose data lies inside the file: a truncated file is found here); any other file must be torch.save's
    zip archive (whose end record must be there) or a pickle of protocol 2 or later. ``name`` names the
    file in the message (default: its path).

    Raises:
        CheckpointError: no such file, an empty file, or not a weights file (one line saying what it is).
    """
    path = Path(path)
    name = name or str(path)
    if not path.is_file():
        raise CheckpointError(f"{name}: no such file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            start = f.read(len(_LFS_POINTER))
            f.seek(8)
            problem = _safetensors_problem(f, start[:8], size) if path.suffix == ".safetensors" else None
        zipped = start.startswith(_ZIP_MAGIC)
        complete = not zipped or zipfile.is_zipfile(path)
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read ({_first_line(e)})") from None
    if size == 0:
        raise CheckpointError(f"{name}: the file is empty")
    if start.startswith(_LFS_POINTER):
        raise CheckpointError(f"{name}: a Git LFS pointer, not the weights (fetch them with `git lfs pull`)")
    if path.suffix == ".safetensors":
        if problem:
            raise CheckpointError(f"{name}: not a readable safetensors file ({problem})")
        return
    if not complete:
        raise CheckpointError(
            f"{name}: not a readable PyTorch checkpoint (truncated or corrupt?): a zip archive without its end "
            "record (an incomplete download?)"
        )
    pickled = len(start) > 1 and start[0] == 0x80 and 2 <= start[1] <= 5
    if not zipped and not pickled:
        raise CheckpointError(
            f"{name}: not a readable PyTorch checkpoint (neither torch.save's zip archive nor a pickle; it "
            f"begins {start[:16]!r})"
        )


def _safetensors_problem(f, head: bytes, size: int) -> str | None:
    """What keeps a safetensors file of ``size`` bytes from being read, or None: ``head`` is its first 8
    bytes, ``f`` the file open just after them."""
    if size == 0:
        return None  # said apart
    if len(head) < 8:
        return f"the file holds {size} bytes, fewer than the 8 of the header's length"
    length = int.from_bytes(head, "little")
    if length > SAFETENSORS_MAX_HEADER:
        return f"a header of {length:,} bytes; safetensors reads at most {SAFETENSORS_MAX_HEADER:,}"
    if length > size - 8:
        return f"a header of {length:,} bytes in a file of {size:,}: truncated?"
    try:
        header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"the header is not JSON: {_first_line(e)}"
    if not isinstance(header, dict):
        return f"the header is a JSON {type(header).__name__}, not an object"
    data = size - 8 - length
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (
            not isinstance(entry.get("dtype") if isinstance(entry, dict) else None, str)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in offsets)
            or not isinstance(shape, list)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape)
        ):
            return f"tensor {key!r}: expected a dtype, a shape and two data_offsets, found {entry!r:.80}"
        begin, end = offsets
        if not 0 <= begin <= end:
            return f"tensor {key!r}: data_offsets {offsets} are not in order"
        if end > data:
            return f"tensor {key!r} ends at byte {end:,} of the data, which holds {data:,} bytes: truncated?"
        item = _SAFETENSORS_ITEM_BYTES.get(entry.get("dtype"))
        if item is not None and end - begin != math.prod(shape) * item:
            return f"tensor {key!r}: {end - begin:,} bytes do not hold a {entry['dtype']} tensor of shape {shape}"
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from a ``.safetensors`` file or a PyTorch pickle.

    Pickles are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never
    arbitrary objects. A ``{"state_dict": {...}}`` wrapper (Lightning / the original code) is unwrapped.
    The file is checked first (``check_weights_file``).
    """
    import torch

    path = Path(path)
    check_weights_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    # torch warns while unpickling a plain (not zip) pickle of protocol > 2 ("Detected pickle protocol 4 ...");
    # its weights-only reader refuses such a file, and the warning would print two lines beside the
    # one-line error. Held back here: its gist goes into the error, and it is shown only if the file loads.
    with warnings.catch_warnings(record=True) as caught:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_can_mmap(path))
        except pickle.UnpicklingError as e:
            protocol = _pickle_protocol_warned(caught)
            if protocol is not None:
                raise CheckpointError(
                    f"{path}: refused to unpickle: a plain pickle of protocol {protocol}, which torch's safe "
                    f"(weights-only) reader cannot check ({_refusal_reason(e)}); save the weights with "
                    "torch.save's defaults or as .safetensors"
                ) from None
            raise CheckpointError(
                f"{path}: refused to unpickle: the file holds objects other than tensors ({_refusal_reason(e)})"
            ) from None
        except Exception as e:  # the unpickler raises anything (IndexError, KeyError ...) on a foreign file
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {_first_line(e)}"
            ) from None
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors (found {type(obj).__name__})")
    return obj


def _can_mmap(path: Path) -> bool:
    # mmap needs the zip format of torch >= 1.6; legacy pickles fall back to a plain read.
    return zipfile.is_zipfile(path)


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON object, or raise ``CheckpointError`` naming ``what`` it was meant to be."""
    return _read_mapping(path, what, "JSON", json.loads, (json.JSONDecodeError,))


def read_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping (``yaml.safe_load``: no object construction)."""
    import yaml

    return _read_mapping(path, what, "YAML", yaml.safe_load, (yaml.YAMLError,))


def _read_mapping(path, what: str, kind: str, parse, parse_errors: tuple) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file ({what})")
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, *parse_errors) as e:
        raise CheckpointError(f"{path}: not a readable {kind} {what} ({_first_line(e)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the {what} must be a {kind} mapping, found {type(data).__name__}")
    return data


def _first_line(e: BaseException) -> str:
    text = _ANSI.sub("", str(e)).strip() or type(e).__name__
    return text.splitlines()[0][:300]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _pickle_protocol_warned(caught: list[warnings.WarningMessage]) -> int | None:
    """The pickle protocol torch warned about while loading (``Detected pickle protocol N ...``), if it did."""
    for w in caught:
        found = re.search(r"Detected pickle protocol (\d+)", str(w.message))
        if found:
            return int(found.group(1))
    return None


def _refusal_reason(e: BaseException) -> str:
    """What a weights-only load refused, from torch's message.

    That message is a page of advice (load with ``weights_only=False``, allow-list the class: neither of which
    this project does with a file it has not vetted) around one line naming what was found, such as
    ``Unsupported global: GLOBAL __main__.Thing was not an allowed global by default``. That line, or the
    first one if torch words it otherwise.
    """
    for line in _ANSI.sub("", str(e)).splitlines():
        _, marker, rest = line.partition("WeightsUnpickler error:")
        reason = (rest if marker else line).strip()
        if reason.startswith(("Unsupported", "Trying to load")):
            return reason.split(". Please use", 1)[0].rstrip(".")[:300]
    return _first_line(e)
