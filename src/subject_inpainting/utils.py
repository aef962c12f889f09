"""Small helpers shared by the package."""

from __future__ import annotations

import os


def current_umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
