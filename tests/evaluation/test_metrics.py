"""Metrics as pure functions: closed forms and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subject_inpainting.evaluation import metrics

RNG = np.random.default_rng(0)


def test_frechet_distance_of_one_dimensional_gaussians_is_the_closed_form():
    # W2² between N(m1, s1²) and N(m2, s2²) is (m1 − m2)² + (s1 − s2)².
    d = metrics.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert d == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2)


def test_frechet_distance_of_commuting_covariances_is_the_closed_form():
    a, b = RNG.uniform(0.1, 3, 6), RNG.uniform(0.1, 3, 6)
    mu1, mu2 = RNG.normal(size=6), RNG.normal(size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_agrees_with_pytorch_fid():
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    x, y = RNG.normal(size=(200, 16)), RNG.normal(size=(150, 16)) @ RNG.normal(size=(16, 16)) * 0.3 + 0.5
    ours = metrics.frechet_distance_of_features(x, y)
    theirs = fid_score.calculate_frechet_distance(*metrics.feature_statistics(x), *metrics.feature_statistics(y))
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_cosine_scores_match_a_hand_computation():
    a, b = RNG.normal(size=(4, 5)), RNG.normal(size=(3, 5))
    by_hand = [[float(u @ v / np.sqrt(u @ u) / np.sqrt(v @ v)) for v in b] for u in a]
    assert metrics.mean_pairwise_cosine(a, b) == pytest.approx(np.mean(by_hand))
    np.testing.assert_allclose(metrics.paired_cosine(a[:3], b), [by_hand[i][i] for i in range(3)])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        metrics.paired_cosine(a, b)
    with pytest.raises(ValueError, match="N, M >= 1"):
        metrics.mean_pairwise_cosine(a, np.zeros((0, 5)))


def test_psnr_of_a_known_error():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # one of 48 values off by the peak: mse = 255² / 48
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(48))
    assert metrics.psnr(a, b, mask=np.arange(16).reshape(4, 4) > 0) == float("inf")


def test_paired_exact_test_counts_only_the_discordant_cases():
    # 14 cases right only with a, 8 only with b, 30 right with both, 28 with neither: a binomial tail on 22.
    a = [True] * 14 + [False] * 8 + [True] * 30 + [False] * 28
    b = [False] * 14 + [True] * 8 + [True] * 30 + [False] * 28
    only_a, only_b, p = metrics.paired_exact_test(a, b)
    assert (only_a, only_b) == (14, 8)
    assert p == pytest.approx(2 * sum(math.comb(22, k) for k in range(9)) / 2**22)
    assert p == pytest.approx(0.286, abs=1e-3)
    assert metrics.paired_exact_test(b, a) == (8, 14, p)  # two-sided: symmetric


def test_paired_exact_test_extremes():
    assert metrics.paired_exact_test([True] * 10, [False] * 10) == (10, 0, pytest.approx(2 / 2**10))
    assert metrics.paired_exact_test([True, False], [True, False]) == (0, 0, 1.0)
    assert metrics.paired_exact_test([True], [False])[2] == 1.0  # one discordant case proves nothing


def test_paired_exact_test_rejects_unpaired_input():
    with pytest.raises(ValueError, match="same cases: got 2 and 3"):
        metrics.paired_exact_test([True, False], [True, False, True])
    with pytest.raises(ValueError, match="no cases"):
        metrics.paired_exact_test([], [])
