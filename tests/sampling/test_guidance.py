"""Classifier-free guidance: one batched UNet call equals the two separate calls."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_components
from subject_inpainting.sampling.guidance import InpaintDenoiser, KnownRegionDenoiser, VelocityDenoiser, cfg_combine


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
    # A batch of 4 and two of 2 round differently (about 2e-6 per output here); the guided combination
    # multiplies that by the scale, so the tolerance is scaled too (1.1e-5 seen with torch 2.14.1).
    assert torch.allclose(out, _separate(unet, x, t, cond, uncond, z, keep, 5.0), atol=5e-6 * 5.0)


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


def _lora_unet():
    from subject_inpainting.models.lora import add_lora, lora_config

    unet = tiny_components()["unet"]
    add_lora(unet, lora_config(rank=4))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero; give the adapter an effect
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return unet


def _modified_by_hand(subject_eps, class_eps, uncond_eps, s, w):
    return s * (w * subject_eps + (1 - w) * class_eps) + (1 - s) * uncond_eps


def test_modified_guidance_with_a_lora_subject_is_one_call():
    from subject_inpainting.sampling.guidance import ModifiedGuidanceDenoiser

    unet = _lora_unet()
    x, t, cond2, uncond, z, keep = _inputs(tokens=2)
    cls = cond2[:, :1]
    d = ModifiedGuidanceDenoiser(unet, unet, cond2, cls, uncond, 5.0, 0.8, 1000, z, keep, subject_adapter="subject")
    with torch.no_grad():
        out = d(x, t)
        x_in = torch.cat([x, z, keep], 1)
        e_s = unet(x_in, t, encoder_hidden_states=cond2).sample  # adapter active
        unet.disable_adapters()
        e_c = unet(x_in, t, encoder_hidden_states=cls).sample
        e_u = unet(x_in, t, encoder_hidden_states=uncond).sample
        e_s_without_adapter = unet(x_in, t, encoder_hidden_states=cond2).sample
        unet.enable_adapters()
    assert d.calls == 1
    assert torch.allclose(out, _modified_by_hand(e_s, e_c, e_u, 5.0, 0.8), atol=1e-4)
    assert not torch.allclose(e_s, e_s_without_adapter, atol=1e-3)  # the adapter really takes part


def test_modified_guidance_threshold_and_weights():
    from subject_inpainting.sampling.guidance import ModifiedGuidanceDenoiser

    pretrained = tiny_components(seed=0)["unet"]
    subject = tiny_components(seed=1)["unet"]
    x, t, cond2, uncond, z, keep = _inputs(tokens=2)
    cls = cond2[:, :1]
    x_in = torch.cat([x, z, keep], 1)
    with torch.no_grad():
        e_s = subject(x_in, t, encoder_hidden_states=cond2).sample
        e_c = pretrained(x_in, t, encoder_hidden_states=cls).sample
        e_u = pretrained(x_in, t, encoder_hidden_states=uncond).sample
        for w, calls in ((0.0, 1), (0.5, 2), (1.0, 2)):
            d = ModifiedGuidanceDenoiser(pretrained, subject, cond2, cls, uncond, 4.0, w, 1000, z, keep)
            assert torch.allclose(d(x, t), _modified_by_hand(e_s, e_c, e_u, 4.0, w), atol=1e-4)
            assert d.calls == calls
        # at or above the threshold: plain guidance with the pretrained model, whatever w
        d = ModifiedGuidanceDenoiser(pretrained, subject, cond2, cls, uncond, 4.0, 0.8, 500, z, keep)
        assert torch.allclose(d(x, t), cfg_combine(e_u, e_c, 4.0), atol=1e-4)


def test_known_region_denoiser_holds_x0_outside_the_region_to_the_scene():
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    keep = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    eps = torch.randn(2, 4, 8, 8, generator=g)

    def denoiser(x_, t_):
        denoiser.calls += 1
        return eps

    denoiser.calls = 0
    alphas = torch.linspace(0.99, 0.01, 1000)
    wrapped = KnownRegionDenoiser(denoiser, alphas, z, keep)
    t = torch.tensor([10, 700])
    out = wrapped(x, t)
    a = alphas[t].view(-1, 1, 1, 1)
    x0_model, x0_out = ((x - (1 - a).sqrt() * e) / a.sqrt() for e in (eps, out))
    inside, outside = keep.expand_as(x) == 0, keep.expand_as(x) == 1
    assert torch.allclose(x0_out[outside], z[outside], atol=1e-4)  # the scene's latent outside
    assert torch.allclose(x0_out[inside], x0_model[inside], atol=1e-4)  # the model's own inside
    assert torch.allclose(out[inside], eps[inside], atol=1e-5) and wrapped.calls == 1


def test_velocity_denoiser_turns_the_true_velocity_into_the_true_noise():
    g = torch.Generator().manual_seed(2)
    z0, noise = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    alphas, t = torch.linspace(0.999, 0.005, 1000), torch.tensor([3, 990])
    a = alphas[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
    v = a.sqrt() * noise - (1 - a).sqrt() * z0
    assert torch.allclose(VelocityDenoiser(lambda x, t_: v, alphas)(x_t, t), noise, atol=1e-5)


def test_guiding_velocities_then_converting_equals_guiding_noises():
    # the conversion is affine in the prediction with the same x for every branch, and guidance weights sum
    # to one, so one conversion after the guidance is exact
    unet = tiny_components(seed=0)["unet"]
    alphas = torch.linspace(0.999, 0.005, 1000)

    class NoiseFromVelocity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.dtype = unet, unet.dtype

        def forward(self, x_in, t, **kwargs):
            a = alphas[t].view(-1, 1, 1, 1)
            v = self.inner(x_in, t, **kwargs).sample
            return SimpleNamespace(sample=a.sqrt() * v + (1 - a).sqrt() * x_in[:, : v.shape[1]])

    x, t, cond, uncond, z, keep = _inputs()
    with torch.no_grad():
        converted_after = VelocityDenoiser(InpaintDenoiser(unet, cond, uncond, 5.0, z, keep), alphas)(x, t)
        converted_first = InpaintDenoiser(NoiseFromVelocity(), cond, uncond, 5.0, z, keep)(x, t)
    assert torch.allclose(converted_after, converted_first, atol=1e-5)


class _Recorder(torch.nn.Module):
    """A UNet stand-in that records the batch of every call and returns a function of its inputs."""

    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x, t, encoder_hidden_states, encoder_attention_mask=None):
        self.batches.append(x.shape[0])
        return SimpleNamespace(sample=x[:, :4] * encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None])


def test_outside_the_guidance_interval_only_the_conditional_row_runs():
    from subject_inpainting.sampling.guidance import check_interval

    unet = tiny_components()["unet"]
    x, t, cond, uncond, z, keep = _inputs()
    d = InpaintDenoiser(unet, cond, uncond, 5.0, z, keep, interval=(100, 400))
    plain = InpaintDenoiser(unet, cond, uncond, 1.0, z, keep)
    with torch.no_grad():
        outside, conditional = d(x, t), plain(x, t)  # t = 500: outside
        inside = d(x, t - 200)
    assert torch.equal(outside, conditional)
    assert torch.allclose(inside, _separate(unet, x, t - 200, cond, uncond, z, keep, 5.0), atol=5e-6 * 5.0)
    for bad in [(400, 100), (-1, 5), (0, 1001), (0.5, 10), "0,10", (1, 2, 3)]:
        with pytest.raises(ValueError, match="guidance_interval"):
            check_interval(bad)


@pytest.mark.parametrize("lora", [False, True])
def test_modified_guidance_outside_its_interval_drops_the_unconditional_row(lora, monkeypatch):
    import contextlib

    import subject_inpainting.sampling.guidance as guidance

    adapters = []  # a LoRA subject's rows name their adapters; the recorder has no LoRA layers to hook
    monkeypatch.setattr(
        guidance, "per_row_adapters", lambda unet, names: adapters.append(list(names)) or contextlib.nullcontext()
    )
    pretrained = _Recorder()
    subject = pretrained if lora else _Recorder()
    g = torch.Generator().manual_seed(1)
    x, z, keep = (torch.randn(1, c, 8, 8, generator=g) for c in (4, 4, 1))
    s_ctx, c_ctx, u_ctx = (torch.randn(1, n, 8, generator=g) for n in (2, 1, 1))
    kwargs = {"subject_adapter": "subject"} if lora else {}
    common = (pretrained, subject, s_ctx, c_ctx, u_ctx)
    guided = guidance.ModifiedGuidanceDenoiser(*common, 5.0, 0.8, 1000, z, keep, interval=(0, 400), **kwargs)
    unguided = guidance.ModifiedGuidanceDenoiser(*common, 1.0, 0.8, 1000, z, keep, **kwargs)
    t = torch.tensor([600])
    outside = guided(x, t)
    rows = sum(pretrained.batches) + (0 if lora else sum(subject.batches))
    assert rows == 2  # the subject and class rows, no unconditional one
    assert torch.allclose(outside, unguided(x, t))
    if lora:
        assert adapters[0] == ["subject", "__base__"]
    pretrained.batches.clear()
    if not lora:
        subject.batches.clear()
    inside = guided(x, torch.tensor([300]))
    assert sum(pretrained.batches) + (0 if lora else sum(subject.batches)) == 3
    assert not torch.allclose(inside, unguided(x, torch.tensor([300])))
