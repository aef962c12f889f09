"""Compiled UNets: the opt-in backends of ``SubjectInpaintPipeline.compile``.

- ``inductor``: ``torch.compile`` of the UNet's ``forward`` (PyTorch's own compiler; on the CPU it needs a C++
  compiler). Module parameters are graph inputs, so loading a subject or a LoRA later needs no recompiling.
- ``openvino``: OpenVINO's CPU inference engine (``pip install 'subject-inpainting[openvino]'``). Each graph
  (the whole UNet; under DeepCache, the whole UNet that also returns the feature it keeps, and the shallow path
  around a kept feature: ``run_graph``) is traced once per input layout (batch size free) with
  ``openvino.convert_model`` and compiled for the CPU; a converted graph holds the weights it was traced with,
  so a change to any parameter (a fine-tuning step, a subject's weights copied in) converts it again. Calls a
  graph cannot express run the eager ``forward`` unchanged: an attention mask over the context (references of
  different lengths), a UNet carrying PEFT adapters (LoRA subjects switch them per row), hooks on its layers,
  extra keyword arguments, or a device other than the CPU. Token merging runs inside the graphs: its ratio and
  grids are constants of a graph, and the tiles of each merging layer are inputs, drawn before each call from
  the run's one ``TilePatterns`` in the order the eager layers draw them, so a graph merges as eager PyTorch
  does.
  OpenVINO computes in float32 for a float32 UNet (``INFERENCE_PRECISION_HINT`` ``f32``; its default on CPUs
  with native bfloat16 is bf16) and in bfloat16 for a bfloat16 one.

OpenVINO's ``torch.compile`` backend (``openvino.torch``) is not used: it fails while dynamo builds its shape
guards under recent PyTorch releases, where ``convert_model`` works.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .token_merging import TilePatterns, TokenMergingProcessor

COMPILE_BACKENDS = ("inductor", "openvino")
OPENVINO_PRECISION = {torch.float32: "f32", torch.bfloat16: "bf16"}


def compile_unet(unet: torch.nn.Module, backend: str = "inductor", cache_dir: str | os.PathLike | None = None) -> None:
    """Replace ``unet.forward`` (in place) by a compiled one; the first call of each input layout compiles.

    Args:
        unet: a diffusers ``UNet2DConditionModel``.
        backend: one of ``COMPILE_BACKENDS``.
        cache_dir: where inductor keeps compiled artefacts between runs (default
            ``~/.cache/subject-inpainting/inductor``); unused by openvino.

    Raises:
        ValueError: an unknown backend, one whose package is not installed, or openvino for a UNet not on the
            CPU or in a dtype it does not compute (float16).
    """
    if backend not in COMPILE_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(COMPILE_BACKENDS)}, got {backend!r}")
    if backend == "openvino":
        unet.forward = OpenVINOForward(unet)
        return
    folder = Path(cache_dir or Path.home() / ".cache" / "subject-inpainting" / "inductor").expanduser()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder))
    unet.forward = torch.compile(unet.forward, backend=backend, dynamic=False)


class Positional(torch.nn.Module):
    """The UNet's eager forward with positional tensors in and the predicted noise out, for tracing.

    Args:
        unet: the UNet whose parameters the graph holds (registered, so that the tracer sees them).
        forward: its eager forward (the class's, not a compiled replacement on the instance).
    """

    def __init__(self, unet: torch.nn.Module, forward: Callable[..., Any]):
        super().__init__()
        self.unet = unet
        self._forward = forward

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self._forward(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]


GraphBuilder = Callable[[torch.nn.Module, Callable[..., Any]], torch.nn.Module]
"""``(unet, its eager forward) → module`` of positional tensors, dimension 0 of each the batch."""


def timesteps_for(timestep: torch.Tensor | float | int, sample: torch.Tensor) -> torch.Tensor:
    """``timestep`` (scalar or ``(B,)``) as the ``(B,)`` tensor a graph takes: int64, or float32 if fractional."""
    timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
    return timestep.to(torch.int64) if not timestep.is_floating_point() else timestep.float()


class OpenVINOForward:
    """A UNet ``forward`` that runs whole-UNet calls in OpenVINO, falling back to the eager one where it must.

    Call it as ``UNet2DConditionModel.forward``: ``(sample (B, C, h, w), timestep (B,) or scalar,
    encoder_hidden_states (B, L, D), encoder_attention_mask=None, return_dict=True, **kwargs)``.
    ``converted`` and ``eager_calls`` count conversions and fallbacks; the first fallback of each kind warns
    (``UserWarning``) with its reason, so that a backend doing nothing is not silent. ``run_graph`` runs other
    graphs of the same UNet (DeepCache's).
    """

    def __init__(self, unet: torch.nn.Module):
        try:
            import openvino
        except ImportError:
            raise ValueError("the openvino backend needs: pip install 'subject-inpainting[openvino]'") from None
        if unet.device.type != "cpu":
            raise ValueError(f"the openvino backend runs on the CPU; the UNet is on {unet.device}")
        if unet.dtype not in OPENVINO_PRECISION:
            names = ", ".join(str(d).removeprefix("torch.") for d in OPENVINO_PRECISION)
            raise ValueError(f"the openvino backend computes in {names}; the UNet is in {unet.dtype}")
        self._ov = openvino
        self._core = openvino.Core()
        self.unet = unet
        self.eager = unet.forward
        self._models: dict[tuple, Any] = {}
        self._weights: tuple | None = None
        self.converted = 0
        self.eager_calls = 0
        self._warned: set[str] = set()

    def _weights_state(self) -> tuple:
        # Any in-place change of a parameter bumps its version; a replaced parameter has a new id.
        return tuple((id(p), p._version) for p in self.unet.parameters())

    def _eager_reason(self, sample, encoder_attention_mask, kwargs) -> str | None:
        """Why this call must run the eager forward, or None when the converted model can run it."""
        if encoder_attention_mask is not None:
            return "an attention mask over the context"
        extra = sorted(k for k, v in kwargs.items() if v is not None)
        if extra:
            return f"the argument(s) {', '.join(extra)}"
        if getattr(self.unet, "peft_config", None) is not None:
            return "PEFT adapters on the UNet (a LoRA subject)"
        hooked, merging = False, []  # one pass over the layers: this runs on every call
        for m in self.unet.modules():
            hooked = hooked or (m is not self.unet and bool(m._forward_hooks or m._forward_pre_hooks))
            if isinstance(getattr(m, "processor", None), TokenMergingProcessor):
                merging.append(m.processor)
        if len({id(p.patterns) for p in merging}) > 1:
            return "token merging from more than one tile sequence"
        if hooked:
            return "hooks on the UNet's layers"
        if sample.device.type != "cpu":
            return f"inputs on {sample.device}"
        if self.unet.dtype not in OPENVINO_PRECISION:
            return f"a UNet in {self.unet.dtype}"
        return None

    def graph_reason(
        self, sample: torch.Tensor, encoder_attention_mask: torch.Tensor | None = None, kwargs: dict | None = None
    ) -> str | None:
        """Why a call on ``sample`` must run eager (None: a graph can run it), warning once per reason; a
        caller that runs it eager counts it in ``eager_calls``."""
        reason = self._eager_reason(sample, encoder_attention_mask, kwargs or {})
        if reason is not None and reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"the openvino backend runs eager the UNet calls with {reason}", stacklevel=3)
        return reason

    def run_graph(self, name: str, build: GraphBuilder, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """The outputs of graph ``name`` on ``inputs``, converting ``build(unet, eager forward)`` on its first
        use with this layout (every dimension but the batch) and these weights.

        Floating inputs enter in float32 (OpenVINO computes in the UNet's precision, ``INFERENCE_PRECISION_HINT``);
        the outputs come back in the UNet's dtype.
        """
        weights = self._weights_state()
        if weights != self._weights:
            self._models.clear()
            self._weights = weights
        merging = _merging(self.unet)
        # The merging's ratio and grids are constants of a graph; its tiles are inputs.
        plan = (merging[0].config, tuple(sorted(merging[0].grids.items()))) if merging else None
        key = (name, self.unet.dtype, plan, *((tuple(t.shape[1:]), t.dtype) for t in inputs))
        if key not in self._models:
            self._models[key] = self._convert(build, inputs, bool(merging))
        compiled, tiles = self._models[key]
        if tiles:  # drawn in the order the eager layers draw them, from the same sequence
            stride = merging[0].config.stride
            inputs = (*inputs, *(merging[0].patterns(rows, cols, stride) for rows, cols in tiles))
        arrays = [(t.detach().float() if t.is_floating_point() else t).contiguous().numpy() for t in inputs]
        out = compiled(arrays)
        return [torch.from_numpy(out[i].copy()).to(self.unet.dtype) for i in range(len(compiled.outputs))]

    def _convert(self, build: GraphBuilder, inputs: tuple[torch.Tensor, ...], merging: bool) -> tuple[Any, list]:
        """The compiled graph, and the shapes ``(rows, cols)`` of the tile patterns it takes after ``inputs``."""
        ov = self._ov
        dtype = self.unet.dtype
        # The tracer runs the module on float32 example inputs, so a bfloat16 UNet is traced from a float32
        # copy; OpenVINO then computes in the precision the hint names.
        module = self.unet if dtype == torch.float32 else _float_copy(self.unet)
        traced = build(module, self.eager if module is self.unet else module.forward).eval()
        example = tuple(t.float() if t.is_floating_point() else t for t in inputs)
        shapes = [ov.PartialShape([-1, *t.shape[1:]]) for t in inputs]
        tiles: list[tuple[int, int]] = []
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about Python branches on shapes
            if merging:
                patterns = _merging(module)[0].patterns
                patterns.record = tiles  # one eager run learns which layers merge, in their order
                try:
                    traced(*example)
                finally:
                    patterns.record = None
                traced = _Fed(traced, patterns, len(tiles))
                example += tuple(torch.zeros(shape, dtype=torch.int64) for shape in tiles)
                shapes += [ov.PartialShape(list(shape)) for shape in tiles]
            model = ov.convert_model(traced, example_input=example, input=shapes)
        self.converted += 1
        options = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[dtype]}
        return self._core.compile_model(model, "CPU", options), tiles

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ):
        if self.graph_reason(sample, encoder_attention_mask, kwargs) is not None:
            self.eager_calls += 1
            return self.eager(
                sample,
                timestep,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                return_dict=return_dict,
                **kwargs,
            )
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        inputs = (sample, timesteps_for(timestep, sample), encoder_hidden_states)
        (prediction,) = self.run_graph("unet", Positional, inputs)
        return UNet2DConditionOutput(sample=prediction) if return_dict else (prediction,)


def _merging(module: torch.nn.Module) -> list[TokenMergingProcessor]:
    """The token-merging processors installed on ``module``'s attention layers."""
    return [m.processor for m in module.modules() if isinstance(getattr(m, "processor", None), TokenMergingProcessor)]


class _Fed(torch.nn.Module):
    """``inner`` whose last ``count`` positional inputs are the tile patterns its merging layers take, in order."""

    def __init__(self, inner: torch.nn.Module, patterns: TilePatterns, count: int):
        super().__init__()
        self.inner, self.patterns, self.count = inner, patterns, count

    def forward(self, *args: torch.Tensor):
        self.patterns.fed = list(args[len(args) - self.count :])
        try:
            return self.inner(*args[: len(args) - self.count])
        finally:
            self.patterns.fed = None


def _float_copy(unet: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of ``unet`` with its class's own ``forward`` (not the replacement set on the instance)."""
    import copy

    own = unet.__dict__.pop("forward", None)
    try:
        return copy.deepcopy(unet).float()
    finally:
        if own is not None:
            unet.forward = own
