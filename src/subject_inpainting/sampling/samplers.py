"""Samplers as pure functions with one signature (k-diffusion style).

Each takes a ``denoiser(x, t) -> eps`` (guidance already applied), the initial noise and the schedule,
and returns the final latent. ``callback`` receives ``{"i", "t", "x", "pred_x0"}`` after every step; a
tensor it returns replaces ``x`` (a caller may edit the latent between steps; None keeps it).

- ``sample_ddim`` / ``sample_plms``: the original LDM samplers (``ldm/models/diffusion/{ddim,plms}.py``),
  step for step, so that the recorded outputs of the original code are reproduced.
- ``sample_diffusers``: any ``diffusers`` scheduler (DPM-Solver++, UniPC, Euler ...) on the same
  training schedule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from numbers import Integral
from typing import Any

import torch

from .catalog import DIFFUSERS_SOLVERS, ORIGINAL_SAMPLER_NAMES, SAMPLERS
from .schedule import alphas_cumprod, original_timesteps

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict[str, Any]], torch.Tensor | None]


def _after_step(callback: Callback | None, info: dict[str, Any]) -> torch.Tensor:
    """The latent after ``callback`` saw the step: what it returned, or ``info["x"]``."""
    replaced = callback(info) if callback is not None else None
    return info["x"] if replaced is None else replaced


def _ddim_tables(schedule: Mapping[str, Any], num_steps: int, eta: float):
    """ᾱ at the sampling timesteps, ᾱ at the previous ones (ᾱ_0 before the first), and σ (DDIM eq. 16)."""
    a = alphas_cumprod(schedule)
    steps = original_timesteps(num_steps, int(schedule["num_train_timesteps"]))
    alphas = a[steps]
    alphas_prev = torch.cat([a[:1], a[steps[:-1]]])
    sigmas = eta * ((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev)).sqrt()
    return steps, alphas, alphas_prev, sigmas


def _ddim_update(x, eps, a_t, a_prev, sigma, noise):
    """One DDIM update (Song et al. 2021, eq. 12): returns ``(x_prev, pred_x0)``."""
    pred_x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    dir_xt = (1 - a_prev - sigma**2).sqrt() * eps
    x_prev = a_prev.sqrt() * pred_x0 + dir_xt
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev, pred_x0


def _full_t(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    schedule: Mapping[str, Any],
    num_steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al., 2021) exactly as the original ``DDIMSampler``.

    Args:
        denoiser: ``(x (B, C, h, w), t (B,) int64) -> eps (B, C, h, w)``.
        x: initial noise ``x_T``, ``(B, C, h, w)``.
        schedule: the training noise schedule (diffusers scheduler config).
        num_steps: sampling steps ``S`` (timesteps ``range(0, T, T // S) + 1``).
        eta: 0 is deterministic DDIM; 1 is DDPM-like ancestral sampling.
        generator: draws the noise when ``eta > 0``.
    """
    steps, alphas, alphas_prev, sigmas = _ddim_tables(schedule, num_steps, eta)
    n = len(steps)
    for i, t in enumerate(reversed(steps)):
        index = n - 1 - i
        eps = denoiser(x, _full_t(t, x))
        noise = None
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        a_t, a_prev, sigma = (v[index].to(x.device) for v in (alphas, alphas_prev, sigmas))
        x, pred_x0 = _ddim_update(x, eps, a_t, a_prev, sigma, noise)
        x = _after_step(callback, {"i": i, "t": t, "x": x, "pred_x0": pred_x0})
    return x


@torch.no_grad()
def sample_plms(
    denoiser: Denoiser,
    x: torch.Tensor,
    schedule: Mapping[str, Any],
    num_steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """PLMS (pseudo linear multi-step, Liu et al., 2022) exactly as the original ``PLMSSampler``.

    The first step is a pseudo improved Euler step (two denoiser calls: at ``t`` and, from its result,
    at the next timestep); then Adams–Bashforth of order 2, 3 and 4 on the stored ``eps``.
    """
    if eta != 0:
        raise ValueError(f"PLMS is deterministic: eta must be 0, got {eta}")
    steps, alphas, alphas_prev, sigmas = _ddim_tables(schedule, num_steps, 0.0)
    descending = list(reversed(steps))
    n = len(steps)
    old_eps: list[torch.Tensor] = []
    for i, t in enumerate(descending):
        index = n - 1 - i
        t_next = descending[min(i + 1, n - 1)]
        a_t, a_prev, sigma = (v[index].to(x.device) for v in (alphas, alphas_prev, sigmas))
        eps = denoiser(x, _full_t(t, x))
        if not old_eps:
            x_prev, _ = _ddim_update(x, eps, a_t, a_prev, sigma, None)
            eps_next = denoiser(x_prev, _full_t(t_next, x))
            eps_prime = (eps + eps_next) / 2
        elif len(old_eps) == 1:
            eps_prime = (3 * eps - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            eps_prime = (23 * eps - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            eps_prime = (55 * eps - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x, pred_x0 = _ddim_update(x, eps_prime, a_t, a_prev, sigma, None)
        old_eps.append(eps)
        if len(old_eps) > 3:
            old_eps.pop(0)
        x = _after_step(callback, {"i": i, "t": t, "x": x, "pred_x0": pred_x0})
    return x


def make_diffusers_scheduler(name: str, schedule: Mapping[str, Any]):
    """A ``diffusers`` scheduler ``name`` (a key of ``DIFFUSERS_SOLVERS``) on the training schedule."""
    import diffusers

    cls_name, overrides = DIFFUSERS_SOLVERS[name]
    config = {k: v for k, v in schedule.items() if not k.startswith("_")}
    config.pop("set_alpha_to_one", None)
    config.pop("clip_sample", None)
    config["prediction_type"] = "epsilon"  # the denoisers return noise whatever the UNet predicts
    return getattr(diffusers, cls_name).from_config({**config, **overrides})


def check_num_steps(sampler: str, num_steps: int, schedule: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``num_steps`` is a whole number from 1 to the schedule's length ``T``:
    every sampler takes each of those counts, and none can take more (there are only ``T`` timesteps)."""
    total = int(schedule["num_train_timesteps"])
    if isinstance(num_steps, bool) or not isinstance(num_steps, Integral) or not 1 <= num_steps <= total:
        raise ValueError(
            f"the {sampler} sampler takes 1 to {total} steps (the training schedule's length), got {num_steps!r}"
        )


# The timestep spacings a diffusers solver tries, in order: the schedule's own, then the same without its
# offset, then diffusers' "trailing" spacing (see ``diffusers_scheduler``).
_SPACING_FALLBACKS: tuple[dict[str, Any], ...] = (
    {},
    {"steps_offset": 0},
    {"timestep_spacing": "trailing", "steps_offset": 0},
)


def _fits_the_table(timesteps: torch.Tensor, num_steps: int, num_train_timesteps: int) -> bool:
    """Whether ``timesteps`` are ``num_steps`` strictly decreasing entries of the training table
    ``0 … T − 1``: each then has its own ᾱ (and noise level), so no step has length zero and every
    timestep the denoiser sees can index the schedule."""
    if len(timesteps) != num_steps:
        return False
    in_table = bool(((timesteps >= 0) & (timesteps <= num_train_timesteps - 1)).all())
    return in_table and bool((timesteps[1:] < timesteps[:-1]).all())


def diffusers_scheduler(name: str, schedule: Mapping[str, Any], num_steps: int, device=None):
    """The ``diffusers`` scheduler ``name`` set to ``num_steps`` steps, every timestep inside the table.

    The timesteps are those of the schedule's own spacing (the original's: "leading", one above the grid,
    ``steps_offset = 1``) whenever they are ``num_steps`` distinct timesteps of ``0 … T − 1``. Near ``T`` they
    are not. The multistep solvers (DPM-Solver++, UniPC) lay a grid of ``S + 1`` points with step
    ``T // (S + 1)``: at ``S = T − 1`` the offset lifts the first timestep to ``T``, past the table (its noise
    level is clamped to ``T − 1``'s, so a step has length zero and DPM-Solver++'s second-order update
    divides by it), and at ``S = T`` the step is 0, every timestep equals the offset, and the solver's step
    counter runs past its schedule. Euler's grid of ``S`` points reaches ``T`` at ``S = T``. For those counts
    the same spacing without the offset is used, and where even that grid cannot fit (the multistep
    solvers at ``S = T``), diffusers' "trailing" spacing, which for ``S = T`` is every timestep
    ``T − 1 … 0``.

    Raises:
        ValueError: ``num_steps`` is not between 1 and ``T`` (no spacing has that many distinct timesteps),
            before anything is sampled.
    """
    check_num_steps(name, num_steps, schedule)
    total = int(schedule["num_train_timesteps"])
    for overrides in _SPACING_FALLBACKS:
        scheduler = make_diffusers_scheduler(name, {**schedule, **overrides})
        scheduler.set_timesteps(num_steps, device=device)
        if _fits_the_table(scheduler.timesteps, num_steps, total):
            return scheduler
    raise ValueError(f"the {name} sampler finds no {num_steps} distinct timesteps in a schedule of {total}")


@torch.no_grad()
def sample_diffusers(
    denoiser: Denoiser,
    x: torch.Tensor,
    schedule: Mapping[str, Any],
    num_steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    solver: str = "dpmsolver++",
) -> torch.Tensor:
    """Sample with a ``diffusers`` solver (``solver`` in ``DIFFUSERS_SOLVERS``); ``eta`` is unused.

    ``num_steps`` (1 to the schedule's length) steps, one denoiser call each, at the timesteps that
    ``diffusers_scheduler`` chooses.
    """
    scheduler = diffusers_scheduler(solver, schedule, num_steps, device=x.device)
    # Only the stochastic solvers take a generator.
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    x = x * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        eps = denoiser(scheduler.scale_model_input(x, t), t.expand(x.shape[0]))
        out = scheduler.step(eps, t, x, **extra)
        x = out.prev_sample
        x = _after_step(callback, {"i": i, "t": int(t), "x": x, "pred_x0": getattr(out, "pred_original_sample", None)})
    return x


ORIGINAL_SAMPLERS = {"plms": sample_plms, "ddim": sample_ddim}
assert tuple(ORIGINAL_SAMPLERS) == ORIGINAL_SAMPLER_NAMES


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")


def num_denoiser_steps(sampler: str, num_steps: int, schedule: Mapping[str, Any]) -> int:
    """How many steps (callbacks) ``sampler`` makes for ``num_steps``: the original's rounding for PLMS and
    DDIM, ``num_steps`` for the diffusers solvers (read from the scheduler ``sample_diffusers`` runs).

    Raises ``ValueError`` for an unknown sampler or a count outside 1 to the schedule's length.
    """
    _check_sampler(sampler)
    check_num_steps(sampler, num_steps, schedule)
    if sampler in ORIGINAL_SAMPLERS:
        return len(original_timesteps(num_steps, int(schedule["num_train_timesteps"])))
    return len(diffusers_scheduler(sampler, schedule, num_steps).timesteps)


def num_denoiser_calls(sampler: str, num_steps: int, schedule: Mapping[str, Any]) -> int:
    """How many times ``sampler`` calls the denoiser for ``num_steps``: one call a step, and for PLMS one
    more (its first step, a pseudo improved Euler step, evaluates at two timesteps)."""
    return num_denoiser_steps(sampler, num_steps, schedule) + (sampler == "plms")


def sample(
    sampler: str,
    denoiser: Denoiser,
    x: torch.Tensor,
    schedule: Mapping[str, Any],
    num_steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Run sampler ``sampler`` (one of ``SAMPLERS``) for ``num_steps`` (1 to the schedule's length; checked
    before the first denoiser call)."""
    _check_sampler(sampler)
    check_num_steps(sampler, num_steps, schedule)
    if sampler in ORIGINAL_SAMPLERS:
        return ORIGINAL_SAMPLERS[sampler](denoiser, x, schedule, num_steps, eta, generator, callback)
    return sample_diffusers(denoiser, x, schedule, num_steps, eta, generator, callback, solver=sampler)
