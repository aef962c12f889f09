"""Samplers: the original discretisation, and exactness on an oracle denoiser."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_SCHEDULE
from subject_inpainting.sampling.samplers import SAMPLERS, num_denoiser_steps, sample
from subject_inpainting.sampling.schedule import alphas_cumprod, original_timesteps, prediction_type


def test_original_timesteps():
    assert original_timesteps(10, 1000) == [1 + 100 * i for i in range(10)]
    assert original_timesteps(50, 1000)[-1] == 981
    # the original's rounding: 30 steps of stride 33 give 31 timesteps
    assert len(original_timesteps(30, 1000)) == 31
    assert num_denoiser_steps("plms", 30, TINY_SCHEDULE) == 31
    assert num_denoiser_steps("dpmsolver++", 30, TINY_SCHEDULE) == 30
    # where the original indexes past the schedule (timestep 1000) and crashes, that step is dropped
    assert original_timesteps(3, 1000) == [1, 334, 667]
    assert original_timesteps(1000, 1000) == list(range(1, 1000))
    with pytest.raises(ValueError, match="between 1 and 1000"):
        original_timesteps(0, 1000)


def test_alphas_cumprod_is_ldm_linear_schedule():
    a = alphas_cumprod(TINY_SCHEDULE)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert a.dtype == torch.float32
    assert torch.allclose(a.double(), torch.cumprod(1 - betas, 0), rtol=1e-6)
    with pytest.raises(ValueError, match="not supported"):
        alphas_cumprod({**TINY_SCHEDULE, "beta_schedule": "squaredcos_cap_v2"})


def test_prediction_type_is_read_and_checked():
    assert prediction_type(TINY_SCHEDULE) == TINY_SCHEDULE.get("prediction_type", "epsilon") == "epsilon"
    assert prediction_type({"prediction_type": "v_prediction"}) == "v_prediction"
    with pytest.raises(ValueError, match="'sample' is not supported"):
        prediction_type({"prediction_type": "sample"})


def oracle(x0: torch.Tensor):
    """The exact noise predictor for data concentrated at ``x0``."""
    a = alphas_cumprod(TINY_SCHEDULE).double()

    def denoiser(x, t):
        at = a[t.long().clamp(0, 999)].view(-1, 1, 1, 1).to(x.dtype)
        return (x - at.sqrt() * x0) / (1 - at).sqrt()

    return denoiser


@pytest.mark.parametrize("sampler", ["plms", "ddim"])
def test_original_samplers_are_exact_on_an_oracle(sampler):
    """With the exact eps, DDIM and PLMS land on ᾱ_0's point of the same trajectory."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    x_T = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64)
    a = alphas_cumprod(TINY_SCHEDULE).double()
    t_first = original_timesteps(20, 1000)[-1]
    eps = (x_T - a[t_first].sqrt() * x0) / (1 - a[t_first]).sqrt()
    expected = a[0].sqrt() * x0 + (1 - a[0]).sqrt() * eps
    seen = []
    out = sample(sampler, oracle(x0), x_T, TINY_SCHEDULE, 20, callback=seen.append)
    assert torch.allclose(out, expected, atol=1e-6)
    assert [s["i"] for s in seen] == list(range(20))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s not in ("plms", "ddim")])
def test_diffusers_solvers_reach_the_data(sampler, prediction):
    # denoisers return the noise whatever the UNet predicts: a v-prediction model's solver must read eps
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 8, 8, generator=g)
    x_T = torch.randn(1, 4, 8, 8, generator=g)
    schedule = {**TINY_SCHEDULE, "prediction_type": prediction}
    out = sample(sampler, oracle(x0), x_T, schedule, 20, generator=g)
    assert ((out - x0).norm() / x0.norm()).item() < 0.05


def test_ddim_eta_uses_the_generator():
    x0 = torch.zeros(1, 4, 8, 8)
    x_T = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    run = lambda seed: sample(  # noqa: E731
        "ddim", oracle(x0), x_T, TINY_SCHEDULE, 5, eta=1.0, generator=torch.Generator().manual_seed(seed)
    )
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_bad_sampler_options():
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(ValueError, match="eta must be 0"):
        sample("plms", oracle(x), x, TINY_SCHEDULE, 5, eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler 'heun'"):
        sample("heun", oracle(x), x, TINY_SCHEDULE, 5)
