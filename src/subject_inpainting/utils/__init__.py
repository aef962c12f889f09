"""Small helpers shared by the package; nothing here imports torch.

``files``: atomic files and folders, the project's folder marker, and the guard every command calls
before it writes. ``parse``: the number and box parsers behind every option and every API check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .files import atomic_file, atomic_folder, current_umask, write_text_atomic

__all__ = [
    "atomic_file",
    "atomic_folder",
    "available_memory",
    "cpu_flags",
    "current_umask",
    "free_path",
    "hub_offline",
    "human_bytes",
    "is_hub_id",
    "native_bf16",
    "native_int8",
    "write_text_atomic",
]

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def free_path(path: str | os.PathLike) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix`` … in the same folder, whichever does not exist yet."""
    first = path = Path(path)
    k = 2
    while path.exists():
        path = first.with_name(f"{first.stem}-{k}{first.suffix}")
        k += 1
    return path


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the Hugging Face hub (then only the local cache is read)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def is_hub_id(spec: str) -> bool:
    """Whether ``spec`` has the form of a Hugging Face hub id (``owner/name``) rather than a path."""
    return bool(HUB_ID.match(str(spec))) and not str(spec).startswith((".", "/", "~"))


def available_memory() -> int | None:
    """Bytes of memory this machine can still give without swapping (Linux ``MemAvailable``, else the free
    physical pages), or None where neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """``n`` bytes for a message: ``"812 kB"``, ``"16.4 MB"``, ``"7.1 GB"``."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (``avx512_bf16``, ``amx_int8`` ...); empty where there is
    no such file (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, from ``/proc/cpuinfo``). On a
    CPU without it, PyTorch emulates bfloat16, far slower than float32."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def native_int8() -> bool:
    """Whether this CPU has 8-bit integer dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8 on x86,
    from ``/proc/cpuinfo``), which oneDNN's int8 convolutions and matmuls use."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
