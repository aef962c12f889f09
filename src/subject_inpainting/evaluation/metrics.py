"""Metrics as pure functions on arrays and feature tensors (k-diffusion's split: extractors are modules
elsewhere; these only compute)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB between images ``a`` and ``b`` (``(H, W, C)``), over the pixels
    where ``mask`` (``(H, W)`` bool) is True; ``inf`` when they are identical there."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = (a - b) if mask is None else (a - b)[mask]
    if diff.size == 0:
        raise ValueError("psnr over an empty mask")
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigendecomposition; negative round-off
    eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (Dowson & Landau, 1982;
    FID, Heusel et al. 2017): ``|mu1 − mu2|² + tr(S1 + S2 − 2 (S1^½ S2 S1^½)^½)``.

    The symmetric form of the cross term is used, which is exact for PSD matrices and avoids the complex
    round-off of ``sqrtm(S1 S2)``.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape}, {mu2.shape}; sigma {s1.shape}, {s2.shape}")
    root1 = _sqrtm_psd(s1)
    cross = _sqrtm_psd(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased) of features ``(N, D)``, N ≥ 2."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance_of_features(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def _as_array(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def paired_cosine(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Cosine similarity of row ``i`` of ``a`` with row ``i`` of ``b`` (both ``(N, D)``): ``(N,)``.

    Region CLIP score (Paint-by-Example's ``region_clip_score.py``) is 100 × the mean of this over the
    (result crop, reference) pairs."""
    a, b = _as_array(a), _as_array(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired features must both be (N, D): got {a.shape} and {b.shape}")
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def mean_pairwise_cosine(generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray) -> float:
    """Mean cosine similarity over every (generated, real) pair, ``(N, D)`` × ``(M, D)``: DreamBooth's CLIP-I
    and DINO scores (Ruiz et al. 2023, sec. 4.1)."""
    g, r = _as_array(generated), _as_array(real)
    if g.ndim != 2 or r.ndim != 2 or g.shape[1] != r.shape[1] or not len(g) or not len(r):
        raise ValueError(f"features must be (N, D) and (M, D) with N, M >= 1: got {g.shape} and {r.shape}")
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    r = r / np.linalg.norm(r, axis=1, keepdims=True)
    return float((g @ r.T).mean())


def paired_exact_test(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, float]:
    """Exact McNemar test of two methods scored right/wrong on the same cases (``a[i]``, ``b[i]``: case ``i``).

    Only the discordant cases count: ``only_a`` right with ``a`` alone, ``only_b`` with ``b`` alone. Under
    the null hypothesis (neither is better) each discordant case falls either way with probability ½, so the
    two-sided p-value is ``min(1, 2 · P(Binomial(only_a + only_b, ½) ≤ min(only_a, only_b)))``. Pairing is
    what makes a difference of a few points readable at all: the unpaired standard error of a rate near one
    half over ``n`` cases is ``0.5 / sqrt(n)``.

    Returns ``(only_a, only_b, p_value)``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired results must cover the same cases: got {len(a)} and {len(b)}")
    if not len(a):
        raise ValueError("paired results: no cases")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a, b, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a, b, strict=True))
    n = only_a + only_b
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return only_a, only_b, min(1.0, 2 * tail / 2**n)
