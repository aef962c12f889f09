"""Training settings: the learning-rate schedule and the checks."""

from __future__ import annotations

import itertools
import math

import pytest

from subject_inpainting.training.config import TrainConfig


def test_warm_up_then_flat_by_default_as_the_original():
    c = TrainConfig.for_mode("base", learning_rate=1e-3, warmup_steps=10, warmup_start=0.1, max_steps=100)
    assert c.lr_at(0) == pytest.approx(1e-4)
    assert c.lr_at(5) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert c.lr_at(10) == c.lr_at(99) == 1e-3


def test_cosine_decay_after_the_warm_up():
    c = TrainConfig.for_mode(
        "base", learning_rate=1e-3, warmup_steps=10, warmup_start=0.1, max_steps=110, lr_decay="cosine"
    )
    assert c.lr_at(5) == pytest.approx(1e-3 * 0.55)  # the warm-up is unchanged
    assert c.lr_at(10) == pytest.approx(1e-3)
    assert c.lr_at(60) == pytest.approx(0.5e-3)
    assert c.lr_at(35) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert c.lr_at(110) == pytest.approx(0.0, abs=1e-12) and c.lr_at(500) == pytest.approx(0.0, abs=1e-12)
    rates = [c.lr_at(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_unknown_decay_is_named():
    with pytest.raises(ValueError, match=r"lr_decay must be one of .* got 'linear'"):
        TrainConfig.for_mode("base", lr_decay="linear")
