"""The training objective: noise or velocity prediction on the inpainting UNet (Paint-by-Example, LDM ``p_losses``)."""

from __future__ import annotations

import torch

from ..sampling.schedule import PREDICTION_TYPES


def add_noise(z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward diffusion ``q(z_t | z_0)``: ``√ᾱ_t · z_0 + √(1 − ᾱ_t) · ε`` (Ho et al., 2020, eq. 4).

    Args:
        z0: clean latents ``(B, C, h, w)``.
        noise: ``ε`` of the same shape.
        t: timesteps ``(B,)`` int64.
        alphas_cumprod: ``ᾱ`` ``(T,)``.
    """
    a = alphas_cumprod.to(z0.device)[t].view(-1, *([1] * (z0.ndim - 1)))
    return a.sqrt() * z0 + (1 - a).sqrt() * noise


def inpainting_loss(
    unet,
    x_start: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    context: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    hole_only: bool = False,
    context_mask: torch.Tensor | None = None,
    snr_gamma: float = 0.0,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """Mean squared error between the UNet's prediction and its target: the noise (``"epsilon"``, the
    original) or the velocity ``v = √ᾱ_t · ε − √(1 − ᾱ_t) · z_0`` (``"v_prediction"``, Salimans & Ho 2022).

    Args:
        unet: the 9-channel inpainting UNet.
        x_start: ``(B, 2C + 1, h, w)`` = ``[z_0, z_masked_scene, keep_mask]`` (the original's layout).
        t: ``(B,)`` timesteps; noise: ``(B, C, h, w)``.
        context: cross-attention context ``(B, T, D)``; ``context_mask`` ``(B, T)`` marks padding (0).
        alphas_cumprod: the training schedule's ``ᾱ``.
        hole_only: subject fine-tuning counts only the hole: the squared error is multiplied by
            ``1 − keep_mask`` before the mean over ALL elements (as the subject-inpainting code does).
        snr_gamma: 0 = the original's plain mean; γ > 0 weights each example by ``min(SNR_t, γ) / SNR_t``
            (Min-SNR weighting, Hang et al. 2023), which converges several times faster from scratch; for
            v-prediction the weight is ``min(SNR_t, γ) / (SNR_t + 1)`` (the same weight on the error of z_0).
        prediction_type: ``"epsilon"`` or ``"v_prediction"`` (the model's scheduler config says which).

    Returns:
        The scalar loss.
    """
    c = noise.shape[1]
    z0 = x_start[:, :c]
    z_noisy = add_noise(z0, noise, t, alphas_cumprod)
    model_in = torch.cat([z_noisy, x_start[:, c:]], dim=1)
    out = unet(model_in, t, encoder_hidden_states=context, encoder_attention_mask=context_mask).sample
    a = alphas_cumprod.to(out.device)[t].float().view(-1, 1, 1, 1)
    if prediction_type == "epsilon":
        target = noise.float()
    elif prediction_type == "v_prediction":
        target = a.sqrt() * noise.float() - (1 - a).sqrt() * z0.float()
    else:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    err = (out.float() - target) ** 2
    if hole_only:
        err = err * (1 - x_start[:, -1:].float())
    if snr_gamma > 0:
        snr = a / (1 - a)
        err = err * torch.clamp(snr, max=snr_gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)
    return err.mean()
