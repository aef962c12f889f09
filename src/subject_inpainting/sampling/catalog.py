"""The names of the samplers and prediction types, without torch: the command line lists and checks them
before anything heavy is imported (``samplers`` and ``schedule`` implement them)."""

from __future__ import annotations

from typing import Any

# The original LDM samplers, reproduced step for step (``samplers.sample_plms`` / ``sample_ddim``).
ORIGINAL_SAMPLER_NAMES = ("plms", "ddim")

# Solvers from diffusers: name → (scheduler class name, config overrides).
DIFFUSERS_SOLVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmsolver++-sde": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
}

SAMPLERS = (*ORIGINAL_SAMPLER_NAMES, *DIFFUSERS_SOLVERS)
# The samplers that draw fresh noise at every step (``ddim`` too when its eta > 0).
STOCHASTIC_SAMPLERS = ("dpmsolver++-sde", "euler-a")


def is_stochastic(sampler: str, eta: float = 0.0) -> bool:
    """Whether ``sampler`` (with ``eta``) draws noise at every step, from the call's first generator: a picture
    of a batch of scenes then depends on the batch, not only on its scene and seed."""
    return sampler in STOCHASTIC_SAMPLERS or (sampler == "ddim" and eta > 0)


# What a UNet predicts, as its scheduler config names it.
PREDICTION_TYPES = ("epsilon", "v_prediction")
