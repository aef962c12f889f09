"""The training noise schedule (DDPM) and the original's discretisation of it for sampling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

SUPPORTED_BETA_SCHEDULES = ("scaled_linear", "linear")


def alphas_cumprod(schedule: Mapping[str, Any]) -> torch.Tensor:
    """ᾱ_t for t = 0 … T−1 from a diffusers-style scheduler config, float32 as the original stores it.

    ``scaled_linear`` is LDM's ``"linear"``: ``β = linspace(√β_start, √β_end, T)²``, computed in float64
    like the original before its cast to a float32 buffer.
    """
    kind = schedule.get("beta_schedule", "scaled_linear")
    n = int(schedule["num_train_timesteps"])
    start, end = float(schedule["beta_start"]), float(schedule["beta_end"])
    if kind == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    elif kind == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    else:
        raise ValueError(f"beta_schedule {kind!r} is not supported; expected one of {SUPPORTED_BETA_SCHEDULES}")
    return torch.cumprod(1.0 - betas, dim=0).float()


def original_timesteps(num_steps: int, num_train_timesteps: int) -> list[int]:
    """The original's "uniform" DDIM/PLMS discretisation, ascending: ``range(0, T, T // S) + 1``.

    As in the original, ``S`` that does not divide ``T`` yields ``len(range(0, T, T // S))`` steps
    (e.g. 31 for S = 30, T = 1000), not exactly ``S``. Where the original would index past the schedule
    and crash (``T // S`` dividing ``T − 1``, e.g. S = 3 gives timestep 1000), that step is dropped.
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be between 1 and {num_train_timesteps}, got {num_steps}")
    stride = num_train_timesteps // num_steps
    return [t + 1 for t in range(0, num_train_timesteps, stride) if t + 1 < num_train_timesteps]
