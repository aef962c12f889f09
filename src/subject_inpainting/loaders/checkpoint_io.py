"""Reading weight files safely, with one-line errors that name the file and what is wrong."""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A weight or config file that cannot be used: missing, truncated, foreign or mismatched."""


PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from a ``.safetensors`` file or a PyTorch pickle.

    Pickles are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never
    arbitrary objects. A ``{"state_dict": {...}}`` wrapper (Lightning / the original code) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
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
