"""DeepCache: the shallow path around the kept feature is the UNet itself when nothing changed, and the
schedule of full calls is the one asked for."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_UNET, tiny_components
from subject_inpainting.sampling.deepcache import DeepCacheUNet


def _inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 9, 16, 16, generator=g)
    context = torch.randn(batch, 2, TINY_UNET["cross_attention_dim"], generator=g)
    mask = torch.ones(batch, 2)
    mask[0, 1] = 0  # a padded row, as stacked guidance contexts have
    return x, torch.full((batch,), 500), context, mask


@pytest.mark.parametrize("branch", [0, 1])
def test_a_reusing_call_on_unchanged_inputs_is_the_full_unet(branch):
    unet = tiny_components()["unet"]
    x, t, context, mask = _inputs()
    with torch.no_grad():
        full = unet(x, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
        cached = DeepCacheUNet(unet, 3, branch)
        first, second = (cached(x, t, context, mask).sample for _ in range(2))
    assert (cached.full_calls, cached.cached_calls) == (1, 1)
    assert torch.equal(first, full)
    assert torch.allclose(second, full, atol=1e-6)  # the shallow path, around the kept deep feature


def test_the_schedule_and_a_change_of_rows_force_full_calls():
    unet = tiny_components()["unet"]
    cached = DeepCacheUNet(unet, 3)
    seen = []
    with torch.no_grad():
        for k in range(7):
            x, t, context, mask = _inputs(seed=k)
            before = cached.full_calls
            cached(x, t - 10 * k, context, mask)
            seen.append(cached.full_calls > before)
        assert seen == [True, False, False, True, False, False, True]
        x, t, context, _ = _inputs(batch=1)
        cached(x, t, context[:, :1])  # other rows (guidance switched off): full, whatever the schedule says
    assert cached.full_calls == 4
    cached.reset()
    assert cached.kept is None and cached.full_calls == 0


def test_reuse_is_an_approximation_that_grows_with_the_change():
    unet = tiny_components()["unet"]
    x, t, context, mask = _inputs()
    cached = DeepCacheUNet(unet, 2)
    with torch.no_grad():
        cached(x, t, context, mask)
        near = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
        approx = cached(near, t, context, mask).sample
        exact = unet(near, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
    error = (approx - exact).abs().max().item()
    assert 0 < error < 0.05 * exact.abs().max().item()


@pytest.mark.parametrize(("interval", "branch"), [(0, 0), (1.5, 0), (2, -1), (2, 9)])
def test_bad_settings_are_named(interval, branch):
    with pytest.raises(ValueError, match="deep-cache"):
        DeepCacheUNet(tiny_components()["unet"], interval, branch)


def test_per_row_lora_adapters_reach_the_shallow_path():
    """A LoRA subject's rows carry their adapter through the reusing calls as through the full ones."""
    from subject_inpainting.models.lora import ADAPTER_NAME, add_lora, lora_config
    from subject_inpainting.sampling.guidance import per_row_adapters

    unet = tiny_components()["unet"]
    add_lora(unet, lora_config(4))
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))  # peft starts B at zero
    x, t, context, mask = _inputs()
    rows = [ADAPTER_NAME, "__base__"]
    with torch.no_grad(), per_row_adapters(unet, rows):
        full = unet(x, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
        cached = DeepCacheUNet(unet, 2)
        cached(x, t, context, mask)
        reused = cached(x, t, context, mask).sample
    with torch.no_grad(), per_row_adapters(unet, ["__base__", "__base__"]):
        plain = unet(x, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
    assert cached.cached_calls == 1 and torch.allclose(reused, full, atol=1e-6)
    assert not torch.allclose(full[0], plain[0], atol=1e-3) and torch.allclose(full[1], plain[1], atol=1e-6)


def test_a_unet_it_cannot_wrap_is_named_and_runs_in_full(scene_files):
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    components = tiny_components()

    class Wrapped(torch.nn.Module):  # a UNet behind a module of the user's: no diffusers blocks to run
        def __init__(self, unet):
            super().__init__()
            self.inner, self.config, self.dtype, self.device = unet, unet.config, unet.dtype, unet.device

        def forward(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    assert "UNet2DConditionModel, got Wrapped" in DeepCacheUNet.unsupported(Wrapped(components["unet"]))
    assert DeepCacheUNet.unsupported(components["unet"]) is None
    pipe = SubjectInpaintPipeline(**{**components, "unet": Wrapped(components["unet"])})
    call = dict(mask=scene_files["mask"], num_inference_steps=4, progress=False)
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    for asked in ({"preset": "fast"}, {"deep_cache": 2}):  # one rule, whoever asked for the cache
        calls.clear()
        with pytest.warns(UserWarning, match="deep-cache needs a diffusers UNet2DConditionModel.*runs in full"):
            pipe(scene_files["scene"], scene_files["reference"], **asked, **call)
        assert len(calls) == 4  # every call in full
