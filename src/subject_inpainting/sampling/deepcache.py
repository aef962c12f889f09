"""Reuse of the UNet's deep features between neighbouring sampling steps (DeepCache, Ma et al., CVPR 2024).

Neighbouring steps of a sampler give the UNet almost the same input, and its deep, low-resolution features
change little from one to the next. ``DeepCacheUNet`` runs the UNet whole on a *full* call and keeps the
input of the last up block's layer ``L - 1 - branch`` (``L`` layers); on the calls in between only the
shallow path runs: ``conv_in`` and the first ``branch`` layers of the first down block (whose outputs are
the skip connections the kept layers need), then the last ``branch + 1`` layers of the last up block from
the kept feature, and ``conv_out``. Every ``interval``-th call is full (DeepCache's uniform schedule);
``interval = 1`` is the UNet itself.

The cache follows the calls of ONE UNet: wrap each UNet of a sampling run once (a full and a pretrained
model of modified guidance get a wrapper each; a LoRA subject shares the pretrained UNet and so its wrapper,
whose batch rows carry their own adapters). A call whose rows differ from the kept ones (another batch or
context shape, as when guidance turns off outside its interval) is full. Under the OpenVINO backend
(``pipe.compile("openvino")``) the whole call that keeps the feature and the shallow path each run as a graph of
their own (``OpenVINOForward.run_graph``), where the backend can run the call at all. Written on diffusers'
``UNet2DConditionModel`` blocks, as its ``forward`` runs them, for the inputs this project passes: a sample,
a timestep, a cross-attention context and its padding mask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# Names of DeepCache's graphs under a compiled backend (``OpenVINOForward.run_graph``), before ", branch B".
WHOLE_GRAPH, SHALLOW_GRAPH = "deep-cache whole", "deep-cache shallow"


class DeepCacheUNet:
    """A ``UNet2DConditionModel`` that reuses its deep features on ``interval - 1`` calls out of ``interval``.

    Args:
        unet: the UNet (everything not defined here — ``dtype``, ``config``, ``modules`` — is the UNet's).
        interval: one full call every ``interval`` calls (1 = every call full: no reuse).
        branch: how many layers of the first down block the shallow path runs, ``0 ..
            len(down_blocks[0].resnets)``: 0 is the shallowest (fastest) path, larger keeps more of the UNet
            fresh on the cached calls.
    """

    def __init__(self, unet: torch.nn.Module, interval: int, branch: int = 0):
        reason = self.unsupported(unet)
        if reason:
            raise ValueError(reason)
        first, last = unet.down_blocks[0], unet.up_blocks[-1]
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"deep-cache interval must be a whole number >= 1, got {interval!r}")
        if isinstance(branch, bool) or not isinstance(branch, int) or not 0 <= branch <= len(first.resnets):
            raise ValueError(f"deep-cache branch must be 0 to {len(first.resnets)} for this UNet, got {branch!r}")
        if len(last.resnets) < branch + 1:
            raise ValueError(f"this UNet's last up block cannot take a deep-cache branch of {branch}")
        self.unet, self.interval, self.branch = unet, interval, branch
        self.skip_channels = int(unet.config.block_out_channels[0])
        self.reset()

    @staticmethod
    def unsupported(unet: torch.nn.Module) -> str | None:
        """Why ``unet`` cannot be wrapped (None if it can): it must be a ``UNet2DConditionModel`` shaped as
        SD-v1's, whose blocks ``DeepCacheUNet`` runs itself."""
        blocks = [getattr(unet, "down_blocks", None), getattr(unet, "up_blocks", None)]
        if not all(isinstance(b, torch.nn.ModuleList) and len(b) for b in blocks):
            return f"deep-cache needs a diffusers UNet2DConditionModel, got {type(unet).__name__}"
        first, last = unet.down_blocks[0], unet.up_blocks[-1]
        if not hasattr(first, "resnets") or not hasattr(last, "resnets") or last.upsamplers is not None:
            return "deep-cache needs a UNet whose first down block and last up block keep the resolution"
        if unet.class_embedding is not None or unet.config.addition_embed_type is not None:
            return "deep-cache supports UNets without class or added embeddings (SD-v1's)"
        if getattr(last, "s1", None) or getattr(first, "s1", None):
            return "deep-cache does not support FreeU"
        return None

    def __getattr__(self, name: str) -> Any:
        if name == "unet":  # not yet set
            raise AttributeError(name)
        return getattr(self.unet, name)

    def reset(self) -> None:
        """Forget the kept feature (a new sampling run)."""
        self.kept: torch.Tensor | None = None
        self.key: tuple | None = None
        self.since_full = 0
        self.full_calls = self.cached_calls = 0

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ):
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        key = (tuple(sample.shape), tuple(encoder_hidden_states.shape), encoder_attention_mask is None)
        if self.interval == 1 or self.kept is None or key != self.key or self.since_full + 1 >= self.interval:
            out = self._full(sample, timestep, encoder_hidden_states, encoder_attention_mask)
            self.key, self.since_full = key, 0
            self.full_calls += 1
            return out
        self.since_full += 1
        self.cached_calls += 1
        return UNet2DConditionOutput(
            sample=self._shallow(sample, timestep, encoder_hidden_states, encoder_attention_mask)
        )

    def _backend(self):
        """The UNet's OpenVINO backend (``compile("openvino")``), or None."""
        from ..models.compiled import OpenVINOForward

        compiled = self.unet.__dict__.get("forward")
        return compiled if isinstance(compiled, OpenVINOForward) else None

    def _full(self, sample, timestep, context, mask):
        """The whole UNet, keeping the input of the last up block's layer ``L - 1 - branch``."""
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        compiled = self._backend()
        if compiled is not None and compiled.graph_reason(sample, mask) is None:
            from ..models.compiled import timesteps_for

            branch, skip = self.branch, self.skip_channels
            noise, self.kept = compiled.run_graph(
                f"{WHOLE_GRAPH}, branch {branch}",
                lambda unet, forward: _Keeping(unet, forward, branch, skip),
                (sample, timesteps_for(timestep, sample), context),
            )
            return UNet2DConditionOutput(sample=noise)
        # A compiled UNet's forward runs this call eager itself (and counts it).
        with keeping(self.unet, self.branch, self.skip_channels) as kept:
            out = self.unet(sample, timestep, encoder_hidden_states=context, encoder_attention_mask=mask)
        self.kept = kept[0]
        return out

    def _shallow(self, sample, timestep, context, mask) -> torch.Tensor:
        """``shallow_path`` around the kept feature: a graph of its own under the OpenVINO backend."""
        compiled = self._backend()
        if compiled is not None and compiled.graph_reason(sample, mask) is None:
            from ..models.compiled import timesteps_for

            branch = self.branch
            (noise,) = compiled.run_graph(
                f"{SHALLOW_GRAPH}, branch {branch}",
                lambda unet, forward: _Shallow(unet, branch),
                (sample, timesteps_for(timestep, sample), context, self.kept),
            )
            return noise
        if compiled is not None:
            compiled.eager_calls += 1
        return shallow_path(self.unet, self.branch, sample, timestep, context, mask, self.kept)


@contextmanager
def keeping(unet: torch.nn.Module, branch: int, skip_channels: int) -> Iterator[list[torch.Tensor]]:
    """Within the block, a whole ``unet`` call appends to the yielded list the deep feature DeepCache keeps:
    the input of the last up block's layer ``L - 1 - branch`` without its ``skip_channels`` skip connection."""
    last = unet.up_blocks[-1]
    layer = last.resnets[len(last.resnets) - 1 - branch]
    kept: list[torch.Tensor] = []

    def keep(module, args):
        joined = args[0]  # [deep feature, skip connection] along channels
        kept.append(joined[:, : joined.shape[1] - skip_channels].detach())

    handle = layer.register_forward_pre_hook(keep)
    try:
        yield kept
    finally:
        handle.remove()


def shallow_path(unet, branch: int, sample, timestep, context, mask, kept: torch.Tensor) -> torch.Tensor:
    """DeepCache's shallow path around the ``kept`` feature, as ``UNet2DConditionModel.forward`` runs those
    layers: ``sample`` ``(B, C, h, w)``, ``timestep`` ``(B,)`` or scalar, ``context`` ``(B, L, D)``, ``mask``
    ``(B, L)`` or None, ``kept`` ``(B, C_deep, h, w)`` → the predicted noise ``(B, C_out, h, w)``."""
    bias = None if mask is None else ((1 - mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    context = unet.process_encoder_hidden_states(encoder_hidden_states=context, added_cond_kwargs=None)
    hidden = unet.conv_in(sample)
    skips = [hidden]
    first = unet.down_blocks[0]
    for i in range(branch):
        hidden = _layer(first, i, hidden, emb, context, bias)
        skips.append(hidden)
    hidden = kept.to(sample.dtype)
    last = unet.up_blocks[-1]
    for j in range(len(last.resnets) - 1 - branch, len(last.resnets)):
        hidden = _layer(last, j, torch.cat([hidden, skips.pop()], dim=1), emb, context, bias)
    if unet.conv_norm_out is not None:
        hidden = unet.conv_act(unet.conv_norm_out(hidden))
    return unet.conv_out(hidden)


class _Keeping(torch.nn.Module):
    """The whole UNet returning (predicted noise, kept feature), for tracing (``OpenVINOForward.run_graph``)."""

    def __init__(self, unet: torch.nn.Module, forward, branch: int, skip_channels: int):
        super().__init__()
        self.unet, self._forward, self.branch, self.skip_channels = unet, forward, branch, skip_channels

    def forward(self, sample, timestep, context):
        with keeping(self.unet, self.branch, self.skip_channels) as kept:
            noise = self._forward(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]
        return noise, kept[0]


class _Shallow(torch.nn.Module):
    """``shallow_path`` with positional tensors, for tracing (``OpenVINOForward.run_graph``)."""

    def __init__(self, unet: torch.nn.Module, branch: int):
        super().__init__()
        self.unet, self.branch = unet, branch

    def forward(self, sample, timestep, context, kept):
        return shallow_path(self.unet, self.branch, sample, timestep, context, None, kept)


def _layer(block, i: int, hidden, emb, context, bias) -> torch.Tensor:
    """Layer ``i`` of a down or up block: its resnet, then its cross-attention transformer if it has one."""
    hidden = block.resnets[i](hidden, emb)
    attentions = getattr(block, "attentions", None)
    if attentions:
        hidden = attentions[i](
            hidden,
            encoder_hidden_states=context,
            cross_attention_kwargs=None,
            attention_mask=None,
            encoder_attention_mask=bias,
            return_dict=False,
        )[0]
    return hidden
