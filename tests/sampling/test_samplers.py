"""Samplers: the original discretisation, and exactness on an oracle denoiser."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TINY_SCHEDULE
from subject_inpainting.sampling.catalog import DIFFUSERS_SOLVERS
from subject_inpainting.sampling.samplers import (
    SAMPLERS,
    diffusers_scheduler,
    num_denoiser_calls,
    num_denoiser_steps,
    sample,
)
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


def counting_oracle(x0: torch.Tensor):
    """``oracle(x0)`` that reads ᾱ at ``t`` without clamping, as the pipeline's wrappers (known region,
    v-prediction) do, so a timestep outside the schedule fails; it counts its calls and keeps the timesteps."""
    a = alphas_cumprod(TINY_SCHEDULE).double()

    def denoiser(x, t):
        denoiser.timesteps.append(float(t[0]))
        at = a[t.long()].view(-1, 1, 1, 1).to(x.dtype)
        return (x - at.sqrt() * x0) / (1 - at).sqrt()

    denoiser.timesteps = []
    return denoiser


def check_sampling_run(sampler: str, num_steps: int) -> None:
    """A run of ``sampler`` for ``num_steps`` on an oracle: finite latents, strictly decreasing timesteps
    inside the schedule, as many steps and denoiser calls as predicted, and (diffusers solvers) the data
    reached."""
    g = torch.Generator().manual_seed(num_steps)
    x0 = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64)
    x_T = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64)
    denoiser, seen = counting_oracle(x0), []
    out = sample(sampler, denoiser, x_T, TINY_SCHEDULE, num_steps, generator=g, callback=seen.append)
    assert out.isfinite().all()
    assert len(seen) == num_denoiser_steps(sampler, num_steps, TINY_SCHEDULE)
    assert len(denoiser.timesteps) == num_denoiser_calls(sampler, num_steps, TINY_SCHEDULE)
    steps = [s["t"] for s in seen]
    assert steps == sorted(set(steps), reverse=True)  # no step of length zero
    if sampler in DIFFUSERS_SOLVERS:
        assert len(seen) == num_steps
        # the exact noise takes every solver to the data, in one step as in a thousand
        assert ((out - x0).norm() / x0.norm()).item() < 0.05


@pytest.mark.parametrize("num_steps", [1, 2, 3, 999, 1000])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_takes_every_step_count_of_the_schedule(sampler, num_steps):
    check_sampling_run(sampler, num_steps)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(SAMPLERS), st.integers(1, 1000))
def test_every_sampler_takes_any_step_count_of_the_schedule(sampler, num_steps):
    check_sampling_run(sampler, num_steps)


def test_diffusers_timesteps_near_the_schedule_length():
    """Where the original's spacing (leading, offset 1) leaves the table the grid drops its offset; the
    multistep solvers at T steps take every timestep. Counts that fit keep the original's spacing."""

    def timesteps(name, n):
        return [int(t) for t in diffusers_scheduler(name, TINY_SCHEDULE, n).timesteps]

    for name in ("dpmsolver++", "dpmsolver++-sde", "unipc"):
        assert timesteps(name, 15)[:2] == [931, 869]  # 1000 // 16 = 62: 15·62 + 1, 14·62 + 1
        assert timesteps(name, 998) == list(range(999, 1, -1))
        assert timesteps(name, 999) == list(range(999, 0, -1))
        assert timesteps(name, 1000) == list(range(999, -1, -1))
    for name in ("euler", "euler-a"):
        assert timesteps(name, 15)[:2] == [925, 859]  # 1000 // 15 = 66: 14·66 + 1, 13·66 + 1
        assert timesteps(name, 999) == list(range(999, 0, -1))
        assert timesteps(name, 1000) == list(range(999, -1, -1))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list(DIFFUSERS_SOLVERS)), st.integers(1, 1000))
def test_diffusers_timesteps_fit_the_schedule_for_any_count(name, num_steps):
    ts = diffusers_scheduler(name, TINY_SCHEDULE, num_steps).timesteps
    assert len(ts) == num_steps == num_denoiser_steps(name, num_steps, TINY_SCHEDULE)
    assert ts.min() >= 0 and ts.max() <= 999
    assert (ts[1:] < ts[:-1]).all()


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("num_steps", [0, 1001])
def test_step_counts_past_the_schedule_are_refused_before_sampling(sampler, num_steps):
    denoiser, x = counting_oracle(torch.zeros(1, 4, 4, 4)), torch.zeros(1, 4, 4, 4)
    message = f"the {re.escape(sampler)} sampler takes 1 to 1000 steps .*, got {num_steps}$"
    with pytest.raises(ValueError, match=message):
        sample(sampler, denoiser, x, TINY_SCHEDULE, num_steps)
    with pytest.raises(ValueError, match=message):
        num_denoiser_steps(sampler, num_steps, TINY_SCHEDULE)
    assert denoiser.timesteps == []
