"""Small helpers shared by the package."""

from __future__ import annotations

import os
from pathlib import Path


def free_path(path: str | os.PathLike) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix`` … in the same folder, whichever does not exist yet."""
    first = path = Path(path)
    k = 2
    while path.exists():
        path = first.with_name(f"{first.stem}-{k}{first.suffix}")
        k += 1
    return path


def current_umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
