"""Devices and precisions by name (``auto``, ``cpu``, ``cuda:1``; ``auto``, ``bfloat16`` ...), as every front end
takes them. Torch is imported by the functions, so that the command line can list ``DTYPES`` without it."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_device(name: str | torch.device, what: str = "device") -> torch.device:
    """``auto`` → CUDA if available, else Apple MPS, else the CPU; a named device must exist here.

    Raises:
        ValueError: not a device, or one this machine does not have (``what`` names the option).
    """
    import torch

    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"{what} {name!r}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        cpu = f"{what} cpu" if what.startswith("--") else "cpu"  # as the user would write it
        raise ValueError(f"{what} {name}: CUDA is not available on this machine (use {cpu})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{what} {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{what} {name}: MPS is not available on this machine")
    return device


def process_device(name: str | torch.device, what: str = "device") -> torch.device:
    """The device of this process: under ``accelerate launch`` with ``auto``, the process's own GPU."""
    if name == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        return PartialState().device
    return resolve_device(name, what)


def resolve_dtype(name: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto`` → float16 on CUDA; on a CPU bfloat16 where it computes bfloat16 natively (AVX512-BF16 or AMX,
    where it runs faster than float32), float32 elsewhere. An explicit bfloat16 on a CPU without it is kept,
    with a warning of its cost.

    Raises:
        ValueError: not one of ``DTYPES``.
    """
    import torch

    from .utils import native_bf16

    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and native_bf16() else torch.float32
    if name == "bfloat16" and device.type == "cpu" and not native_bf16():
        warnings.warn(
            "this CPU has no native bfloat16 (no AVX512-BF16 or AMX): PyTorch emulates it, far slower than "
            "float32; dtype auto chooses float32",
            stacklevel=2,
        )
    return getattr(torch, name)


# Below this many UNet parameters × latent positions (about 2 × 10¹⁰: a UNet call of some tens of GFLOP) the
# calls are too short for a second thread to pay when another process holds a core: OpenMP's threads then wait
# on each other at every operation; and its layers are too small for the int8 kernels to pay (``int8_for``). The
# released model is thousands of times above it; the toy model below.
SMALL_UNET = 2e10


def check_threads(threads: int | str | None) -> None:
    """``threads`` is ``"auto"``, None or a whole number >= 1 (``threads_for``'s choices).

    Raises:
        ValueError: anything else.
    """
    whole = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    if not (threads is None or threads == "auto" or whole):
        raise ValueError(f"threads must be 'auto', None or a whole number >= 1, got {threads!r}")


def unet_work(unet) -> float:
    """The UNet's parameters × latent positions: how much work one of its calls is, for the size thresholds."""
    return sum(p.numel() for p in unet.parameters()) * int(unet.config.sample_size) ** 2


def threads_for(unet, threads: int | str | None = "auto") -> int | None:
    """The intra-op thread count to paint with ``unet``: ``"auto"`` → 1 for a small UNet (``SMALL_UNET``) on
    the CPU, else None (PyTorch's own, every core); a number → that number; None → PyTorch's own.

    Raises:
        ValueError: not ``"auto"``, None or a whole number >= 1.
    """
    check_threads(threads)
    if threads != "auto":
        return threads
    if unet.device.type != "cpu":
        return None
    return 1 if unet_work(unet) < SMALL_UNET else None


def conv_layout(images: torch.Tensor) -> torch.Tensor:
    """``images`` ``(B, C, H, W)`` in the memory layout the VAE runs fastest in: channels-last on the CPU (in
    float32 and bfloat16 alike; benchmarks/README.md, "Memory layout"), unchanged elsewhere. Values are the
    same, only the strides differ; a convolution's output keeps its input's layout, so the whole VAE follows."""
    import torch

    if images.device.type != "cpu" or images.ndim != 4:
        return images
    return images.contiguous(memory_format=torch.channels_last)


INT8_CHOICES = ("auto", "on", "off")


def check_int8(int8: str) -> None:
    """``int8`` is one of ``INT8_CHOICES``.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(int8, str) or int8 not in INT8_CHOICES:
        raise ValueError(f"int8 must be one of {', '.join(INT8_CHOICES)}, got {int8!r}")


def int8_for(unet, int8: str = "auto") -> bool:
    """Whether to run ``unet``'s convolutions and linear layers in int8 (``SubjectInpaintPipeline.enable_int8``):
    ``"on"`` → yes, ``"off"`` → no, ``"auto"`` → ``int8_auto`` for the UNet's device, dtype and size.

    Raises:
        ValueError: not one of ``INT8_CHOICES``.
    """
    check_int8(int8)
    if int8 != "auto":
        return int8 == "on"
    return int8_auto(unet.device, unet.dtype, unet_work(unet))


def int8_auto(device: torch.device, dtype: torch.dtype, work: float) -> bool:
    """``int8="auto"``: int8 layers for a UNet of ``work`` (``unet_work``) in ``dtype`` on ``device`` when it runs
    on a CPU with 8-bit dot-product instructions (``utils.native_int8``) whose PyTorch has oneDNN's int8
    kernels, in float32 or bfloat16, and is at least ``SMALL_UNET``: a smaller one's layers are too small for
    the int8 kernels to pay (the embedded toy model paints slower in int8; benchmarks/README.md, "8-bit integer
    layers")."""
    import torch

    from .models.int8 import int8_unavailable
    from .utils import native_int8

    return (
        device.type == "cpu"
        and dtype in (torch.float32, torch.bfloat16)
        and work >= SMALL_UNET
        and native_int8()
        and int8_unavailable() is None
    )
