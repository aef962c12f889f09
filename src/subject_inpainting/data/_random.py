"""Random draws from an explicit ``torch.Generator`` (never the global RNG), as plain Python numbers.

Every draw of the data pipeline goes through here, so one seeded generator reproduces an example exactly.
"""

from __future__ import annotations

import torch


def check_generator(generator: torch.Generator) -> torch.Generator:
    """Return ``generator`` if it is a ``torch.Generator``.

    Raises:
        TypeError: anything else (``None`` included: the global RNG is never used).
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def uniform(generator: torch.Generator, n: int) -> list[float]:
    """``n`` independent draws, uniform in [0, 1) (float64, so products with pixel counts stay exact)."""
    return torch.rand(n, generator=check_generator(generator), dtype=torch.float64).tolist()


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """One integer uniform in ``[low, high]`` (both ends included)."""
    assert low <= high, (low, high)
    return int(torch.randint(low, high + 1, (1,), generator=check_generator(generator)).item())
