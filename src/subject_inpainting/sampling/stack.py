"""The denoiser a pipeline call samples with, assembled in one place from its settings.

From the inside out: the UNet (reusing its deep features with DeepCache when the settings ask), classifier-free
guidance over it (``InpaintDenoiser``) or, with a fine-tuned subject, modified guidance over the subject's
and the pretrained model (``ModifiedGuidanceDenoiser``); a velocity model read as predicting the noise
(``VelocityDenoiser``); and with ``keep_known`` the prediction held to the scene outside the region
(``KnownRegionDenoiser``).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from .deepcache import DeepCacheUNet
from .guidance import InpaintDenoiser, KnownRegionDenoiser, ModifiedGuidanceDenoiser, VelocityDenoiser
from .schedule import alphas_cumprod, prediction_type

if TYPE_CHECKING:
    from ..settings import PaintSettings


def deep_cached(unet: torch.nn.Module, interval: int, branch: int):
    """``unet``, or a ``DeepCacheUNet`` around it (a fresh cache) when ``interval`` > 1. A UNet that DeepCache
    cannot wrap (``DeepCacheUNet.unsupported``) runs every call in full, with a warning that says why; the
    same whether a preset or the caller asked for the cache."""
    if interval == 1:
        return unet
    reason = DeepCacheUNet.unsupported(unet)
    if reason:
        warnings.warn(f"{reason}: every UNet call runs in full (deep_cache {interval} ignored)", stacklevel=3)
        return unet
    return DeepCacheUNet(unet, interval, branch)


def build_denoiser(
    settings: PaintSettings,
    unet: torch.nn.Module,
    schedule: dict[str, Any],
    z_masked: torch.Tensor,
    keep_latent: torch.Tensor,
    contexts: tuple[torch.Tensor, ...],
    subject: Any = None,
    known_scene: torch.Tensor | None = None,
):
    """The denoiser ``denoiser(x, t) -> eps`` of one call.

    Args:
        settings: the call's settings, resolved (``PaintSettings.resolved``): guidance scale and interval,
            model weight and threshold, DeepCache's interval and branch.
        unet: the pretrained UNet.
        schedule: the training noise schedule (its prediction type and ``alphas_cumprod``).
        z_masked: ``(B, C, h, w)`` the masked scene's latent; ``keep_latent``: ``(B, 1, h, w)`` the keep-mask.
        contexts: ``(cond, uncond)`` for the pretrained model alone, or with ``subject``
            ``(subject, class, uncond)`` (``SubjectInpaintPipeline.encode_subject_reference``).
        subject: a loaded subject (``loaders.subject.Subject``: its fine-tuned ``unet``, or None for a LoRA
            ``adapter`` of ``unet``), for modified guidance; None for plain guidance.
        known_scene: ``(B, C, h, w)`` the whole scene's latent, to hold the prediction to outside the region
            (``keep_known``); None otherwise.
    """
    s = settings
    base = deep_cached(unet, s.deep_cache, s.deep_cache_branch)
    if subject is None:
        cond, uncond = contexts
        denoiser = InpaintDenoiser(base, cond, uncond, s.guidance_scale, z_masked, keep_latent, s.guidance_interval)
    else:
        subject_ctx, class_ctx, uncond = contexts
        fine_tuned = deep_cached(subject.unet, s.deep_cache, s.deep_cache_branch) if subject.unet is not None else base
        denoiser = ModifiedGuidanceDenoiser(
            base,
            fine_tuned,
            subject_ctx,
            class_ctx,
            uncond,
            s.guidance_scale,
            s.model_weight,
            s.guidance_threshold,
            z_masked,
            keep_latent,
            subject_adapter=subject.adapter,
            interval=s.guidance_interval,
        )
    alphas = alphas_cumprod(schedule)
    if prediction_type(schedule) == "v_prediction":
        denoiser = VelocityDenoiser(denoiser, alphas)
    if known_scene is not None:
        known = (keep_latent >= 1).float()  # latent cells wholly outside the region
        denoiser = KnownRegionDenoiser(denoiser, alphas, known_scene, known)
    return denoiser
