"""8-bit integer weights and activations (W8A8) for the UNet's convolutions and linear layers on the CPU.

Weights are rounded to int8 with one symmetric scale per output channel; activations to uint8 with one scale
and zero point per tensor, taken from each call's own minimum and maximum (dynamic quantization: no calibration
set, no state between calls). The products run in oneDNN's int8 kernels (``torch.ops.onednn.qconv2d_pointwise``
and ``qlinear_pointwise``, which PyTorch's own x86 quantization lowers to); they use the CPU's 8-bit dot-product
instructions (AVX512-VNNI, AVX-VNNI, AMX-INT8), which compute twice as many products per cycle as bfloat16.
The result comes back in the input's dtype (float32 or bfloat16), so the layers around stay as they are.

A layer is quantized by giving the module itself a ``forward`` of its own (``Int8Forward``): the module, its
parameters, its state dict and the adapters PEFT wraps around it stay untouched, and the float ``forward`` runs
whenever the int8 one cannot (another device or dtype, gradients, a non-finite input). The packed int8 weights
follow the float ones: a parameter changed in place or replaced packs them again at the next call.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import torch

INT8_OPS = ("qconv_prepack", "qconv2d_pointwise", "qlinear_prepack", "qlinear_pointwise")
UINT8_LEVELS = 255  # the activations' code range, 0..255
INT8_LEVEL = 127  # the weights' largest code, symmetric: -127..127


@dataclass(frozen=True)
class Int8Config:
    """Which layers run in int8.

    Args:
        min_channels: a layer with fewer input or output channels (or features) stays in floating point: the
            UNet's first and last convolutions (latent channels), whose rounding error is the least diluted, and
            layers too small for the int8 kernels to pay.
        convolutions: quantize ``nn.Conv2d`` layers (2-D, zero padding, one group).
        linears: quantize ``nn.Linear`` layers (attention projections, feed-forwards, time embedding).
    """

    min_channels: int = 32
    convolutions: bool = True
    linears: bool = True

    def __post_init__(self):
        if isinstance(self.min_channels, bool) or not isinstance(self.min_channels, int) or self.min_channels < 1:
            raise ValueError(f"min_channels must be a whole number >= 1, got {self.min_channels!r}")


def int8_unavailable() -> str | None:
    """Why int8 layers cannot run in this PyTorch, or None when they can."""
    if not torch.backends.mkldnn.is_available():
        return "this PyTorch is built without oneDNN (mkldnn), whose int8 kernels the int8 layers run"
    missing = [name for name in INT8_OPS if not hasattr(torch.ops.onednn, name)]
    if missing:
        return f"this PyTorch ({torch.__version__}) lacks oneDNN's int8 operators {', '.join(missing)}"
    return None


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` ``(O, ...)`` → ``(int8 codes (O, ...), float32 scales (O,))``, symmetric per output channel:
    ``weight ≈ codes * scales``. An all-zero channel gets scale 1 (its codes are 0)."""
    # One float32 copy, changed in place: a model's weights pass through here once, at its first int8 call.
    w = weight.detach().to(torch.float32, copy=True)
    amax = torch.linalg.vector_norm(w, ord=math.inf, dim=tuple(range(1, w.ndim)))
    scales = torch.where(amax > 0, amax / INT8_LEVEL, torch.ones_like(amax))
    codes = w.div_(scales.view(-1, *[1] * (w.ndim - 1))).round_().clamp_(-INT8_LEVEL, INT8_LEVEL)
    return codes.to(torch.int8), scales


def activation_range(x: torch.Tensor) -> tuple[float, int] | None:
    """The uint8 ``(scale, zero_point)`` of ``x`` for one tensor-wide affine code ``x ≈ scale * (q - zero_point)``:
    its range, widened to hold 0 (so that zero padding is exact), over 255 levels. None when ``x`` holds a NaN
    or an infinity, which no scale represents."""
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / UINT8_LEVELS or 1.0
    return scale, round(-lo / scale)


def quantize_activation(
    x: torch.Tensor, scale: float, zero_point: int, memory_format: torch.memory_format = torch.preserve_format
) -> torch.Tensor:
    """``x`` → its uint8 codes ``clamp(round(x / scale) + zero_point, 0, 255)``, computed in float32, in
    ``memory_format``."""
    y = torch.empty_like(x, dtype=torch.float32, memory_format=memory_format)
    y.copy_(x).mul_(1.0 / scale).round_().add_(zero_point).clamp_(0, UINT8_LEVELS)
    return y.to(torch.uint8)


def eligible(module: torch.nn.Module, config: Int8Config) -> bool:
    """Whether ``module`` is a layer ``config`` quantizes (exactly ``nn.Conv2d`` or ``nn.Linear``: a subclass
    may compute something else in its ``forward``)."""
    if type(module) is torch.nn.Conv2d:
        return (
            config.convolutions
            and module.groups == 1
            and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)
            and min(module.in_channels, module.out_channels) >= config.min_channels
        )
    if type(module) is torch.nn.Linear:
        return config.linears and min(module.in_features, module.out_features) >= config.min_channels
    return False


class Int8Forward:
    """The ``forward`` of one quantized ``nn.Conv2d`` or ``nn.Linear`` (``module.forward`` is set to it).

    Call it as the module: ``(x)`` with ``x`` ``(B, C, H, W)`` for a convolution, ``(..., in_features)`` for a
    linear layer; the output has ``x``'s dtype. ``calls`` and ``float_calls`` count the int8 and the float calls.
    """

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.calls = 0
        self.float_calls = 0
        self._packed: tuple | None = None
        self._state: tuple | None = None

    def __deepcopy__(self, memo: dict) -> Int8Forward:
        # The packed weights are oneDNN's opaque tensors, which do not copy; the copy packs its own.
        return Int8Forward(copy.deepcopy(self.module, memo))

    def _weights_state(self) -> tuple:
        # An in-place change of a parameter bumps its version; a replaced one has another id; new ``.data`` (as
        # ``Module.to`` sets) another storage.
        return tuple((id(p), p.data_ptr(), p._version) for p in (self.module.weight, self.module.bias) if p is not None)

    def pack(self) -> tuple:
        """The packed weights, packed now if the parameters changed since (or never packed): a model's first int8
        call packs every layer, which takes seconds for a full-size UNet."""
        m = self.module
        state = self._weights_state()
        if self._packed is not None and self._state == state:
            return self._packed
        codes, scales = quantize_weight(m.weight)
        zero_points = torch.zeros(len(scales), dtype=torch.int64)
        bias = None if m.bias is None else m.bias.detach().float()
        if isinstance(m, torch.nn.Conv2d):
            geometry = (list(m.stride), list(m.padding), list(m.dilation), m.groups)
            codes = codes.contiguous(memory_format=torch.channels_last)
            packed = torch.ops.onednn.qconv_prepack(codes, scales, 1.0, 0, *geometry, None)
        else:
            geometry = ()
            packed = torch.ops.onednn.qlinear_prepack(codes, None)
        self._packed, self._state = (packed, scales, zero_points, bias, geometry), state
        return self._packed

    def _runs_float(self, x: torch.Tensor) -> bool:
        m = self.module
        return (
            x.device.type != "cpu"
            or m.weight.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.bfloat16)
            or (torch.is_grad_enabled() and (x.requires_grad or m.weight.requires_grad))
            or x.numel() == 0
            or (isinstance(m, torch.nn.Conv2d) and x.ndim != 4)  # an unbatched image (C, H, W)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        code = None if self._runs_float(x) else activation_range(x)
        if code is None:
            self.float_calls += 1
            return type(m).forward(m, x)
        self.calls += 1
        scale, zero_point = code
        packed, w_scales, w_zero_points, bias, geometry = self.pack()
        if isinstance(m, torch.nn.Conv2d):
            q = quantize_activation(x, scale, zero_point, torch.channels_last)
            return torch.ops.onednn.qconv2d_pointwise(
                q, scale, zero_point, packed, w_scales, w_zero_points, bias, *geometry, 1.0, 0, x.dtype, "none", [], ""
            )
        q = quantize_activation(x.reshape(-1, x.shape[-1]), scale, zero_point)
        y = torch.ops.onednn.qlinear_pointwise(
            q, scale, zero_point, packed, w_scales, w_zero_points, bias, 1.0, 0, x.dtype, "none", [], ""
        )
        return y.reshape(*x.shape[:-1], m.out_features)


def quantize_int8(model: torch.nn.Module, config: Int8Config | None = None) -> int:
    """Run ``model``'s eligible layers (``eligible``) in int8 from now on; returns how many. Layers quantized
    already stay as they are.

    Raises:
        ValueError: this PyTorch cannot run int8 layers (``int8_unavailable``), or ``model`` is not on the CPU.
    """
    reason = int8_unavailable()
    if reason is not None:
        raise ValueError(f"int8 layers cannot run: {reason}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 layers run on the CPU; the model is on {device}")
    from ..utils import native_int8

    if not native_int8():
        warnings.warn(
            "this CPU has no 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX-INT8): int8 layers may "
            "run slower than float ones here",
            stacklevel=2,
        )
    config = config or Int8Config()
    count = 0
    for module in model.modules():
        if eligible(module, config) and not isinstance(module.__dict__.get("forward"), Int8Forward):
            module.forward = Int8Forward(module)
            count += 1
    return count


def dequantize_int8(model: torch.nn.Module) -> int:
    """Give ``model``'s int8 layers back their float ``forward``; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), Int8Forward):
            del module.forward
            count += 1
    return count


def int8_layers(model: torch.nn.Module) -> list[Int8Forward]:
    """The ``Int8Forward`` of each of ``model``'s int8 layers."""
    return [f for m in model.modules() if isinstance(f := m.__dict__.get("forward"), Int8Forward)]
