"""Classifier-free guidance: one batched UNet call equals the two separate calls."""

from __future__ import annotations

import torch

from conftest import tiny_components
from subject_inpainting.sampling.guidance import InpaintDenoiser, cfg_combine


def _inputs(tokens=1, batch=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 16, 16, generator=g)
    cond = torch.randn(batch, tokens, 32, generator=g)
    uncond = torch.randn(batch, 1, 32, generator=g)
    z = torch.randn(batch, 4, 16, 16, generator=g)
    keep = (torch.rand(batch, 1, 16, 16, generator=g) > 0.5).float()
    t = torch.tensor([500] * batch)
    return x, t, cond, uncond, z, keep


def _separate(unet, x, t, cond, uncond, z, keep, scale):
    x_in = torch.cat([x, z, keep], 1)
    with torch.no_grad():
        e_c = unet(x_in, t, encoder_hidden_states=cond).sample
        e_u = unet(x_in, t, encoder_hidden_states=uncond).sample
    return cfg_combine(e_u, e_c, scale)


def test_batched_guidance_equals_two_calls():
    unet = tiny_components()["unet"]
    x, t, cond, uncond, z, keep = _inputs()
    d = InpaintDenoiser(unet, cond, uncond, 5.0, z, keep)
    with torch.no_grad():
        out = d(x, t)
    assert d.calls == 1
    assert torch.allclose(out, _separate(unet, x, t, cond, uncond, z, keep, 5.0), atol=1e-5)


def test_contexts_of_different_lengths_are_padded_exactly():
    """[class, detail] context against the one-token learned vector: masked padding changes nothing."""
    unet = tiny_components()["unet"]
    x, t, cond, uncond, z, keep = _inputs(tokens=2)
    d = InpaintDenoiser(unet, cond, uncond, 3.0, z, keep)
    with torch.no_grad():
        out = d(x, t)
    assert d.calls == 1
    assert torch.allclose(out, _separate(unet, x, t, cond, uncond, z, keep, 3.0), atol=1e-5)


def test_scale_one_is_a_single_conditional_call():
    unet = tiny_components()["unet"]
    x, t, cond, uncond, z, keep = _inputs()
    d = InpaintDenoiser(unet, cond, uncond, 1.0, z, keep)
    with torch.no_grad():
        out = d(x, t)
        expected = unet(torch.cat([x, z, keep], 1), t, encoder_hidden_states=cond).sample
    assert d.calls == 1
    assert torch.allclose(out, expected, atol=1e-6)
