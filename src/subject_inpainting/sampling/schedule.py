"""The training noise schedule (DDPM) and the original's discretisation of it for sampling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .catalog import PREDICTION_TYPES

SUPPORTED_BETA_SCHEDULES = ("scaled_linear", "linear")


def prediction_type(schedule: Mapping[str, Any]) -> str:
    """What the UNet predicts: ``"epsilon"`` (the noise; SD-v1 and Paint-by-Example) or ``"v_prediction"``
    (``v = √ᾱ_t · ε − √(1 − ᾱ_t) · z_0``, Salimans & Ho 2022; SD-2 and the toy model), from the scheduler
    config's ``prediction_type`` (absent = epsilon)."""
    kind = schedule.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type {kind!r} is not supported; expected one of {PREDICTION_TYPES}")
    return kind


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
