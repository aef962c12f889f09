"""Classifier-free guidance (Ho & Salimans, 2022) around a 9-channel inpainting UNet."""

from __future__ import annotations

import torch


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """``e = e_uncond + s · (e_cond − e_uncond)``."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


class InpaintDenoiser:
    """``denoiser(x, t) -> eps`` for an inpainting UNet with classifier-free guidance.

    The UNet sees ``[x, z_masked, keep_mask]`` along channels (4 + 4 + 1 for SD-v1). With ``scale != 1``
    the conditional and unconditional predictions come from ONE batched UNet call.

    Args:
        unet: a ``UNet2DConditionModel``.
        context: conditional cross-attention context ``(B, T, C)``.
        uncond_context: unconditional context ``(B, 1, C)`` (the learned vector), or None when ``scale == 1``.
        scale: guidance scale ``s``.
        z_masked: latent of the masked scene ``(B, 4, h, w)``.
        keep_mask: keep-mask at latent size ``(B, 1, h, w)``, 1 = keep.
    """

    def __init__(self, unet, context, uncond_context, scale, z_masked, keep_mask):
        self.unet = unet
        self.scale = float(scale)
        self.conditioning = torch.cat([z_masked, keep_mask], dim=1)
        if self.scale == 1.0:
            self.context, self.mask = context, None
        else:
            self.context, self.mask = _pad_contexts(uncond_context, context)
        self.calls = 0

    def unet_eps(self, x_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask=None) -> torch.Tensor:
        dtype = self.unet.dtype
        self.calls += 1
        out = self.unet(x_in.to(dtype), t, encoder_hidden_states=context.to(dtype), encoder_attention_mask=mask).sample
        return out.to(x_in.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_in = torch.cat([x, self.conditioning.to(x.dtype)], dim=1)
        if self.scale == 1.0:
            return self.unet_eps(x_in, t, self.context)
        out = self.unet_eps(torch.cat([x_in, x_in]), torch.cat([t, t]), self.context, self.mask)
        eps_uncond, eps_cond = out.chunk(2)
        return cfg_combine(eps_uncond, eps_cond, self.scale)


def _pad_contexts(uncond: torch.Tensor, cond: torch.Tensor):
    """Stack ``[uncond; cond]`` for one UNet call, padding the shorter context with masked tokens.

    Returns ``(context (2B, T, C), mask (2B, T) or None)``. Masked (zero-weight) key tokens leave the
    attention output unchanged, so padding is exact.
    """
    tu, tc = uncond.shape[1], cond.shape[1]
    if tu == tc:
        return torch.cat([uncond, cond]), None
    t = max(tu, tc)

    def pad(c):
        extra = c.new_zeros(c.shape[0], t - c.shape[1], c.shape[2])
        m = torch.cat([c.new_ones(c.shape[0], c.shape[1]), c.new_zeros(c.shape[0], t - c.shape[1])], 1)
        return torch.cat([c, extra], 1), m

    (cu, mu), (cc, mc) = pad(uncond), pad(cond)
    return torch.cat([cu, cc]), torch.cat([mu, mc])
