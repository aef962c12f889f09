"""Gaussian mixtures for the quality score (QS) of Paint-by-Example's evaluation, read without pickle.

QS follows GMM-GIQA (Gu et al., "GIQA: Generated Image Quality Assessment", ECCV 2020): a Gaussian
mixture fitted to features of real images scores each generated image by its log-likelihood. The
original's ``eval_tool/gmm/gmm_score_coco.py`` maps each log-likelihood ``s`` to ``clip(s / 300, 0, 1)``
and reports the mean × 100.

Its published mixture is a pickled scikit-learn ``GaussianMixture``, and unpickling runs whatever code the
file names. Here a mixture is plain arrays in ``.npz`` (read with ``allow_pickle=False``) or ``.safetensors``;
``convert_pickled_mixture`` turns a pickle into that once, and only when the caller says it trusts the file.
The arrays are scikit-learn's: ``weights`` ``(K,)``, ``means`` ``(K, D)``, ``precisions_cholesky`` (``full``
``(K, D, D)``, ``tied`` ``(D, D)``, ``diag`` ``(K, D)``, ``spherical`` ``(K,)``) and ``covariance_type``.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import atomic_file

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
QS_RANGE = (0.0, 300.0)  # the original's min_number / max_number


class UntrustedFileError(ValueError):
    """A pickle was offered without the caller's word that it is trusted."""


@dataclass(frozen=True)
class GaussianMixture:
    """A fitted Gaussian mixture (scikit-learn's parameterisation; see the module docstring)."""

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str = "full"

    def __post_init__(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type {self.covariance_type!r}: expected one of {', '.join(COVARIANCE_TYPES)}")
        k, d = np.shape(self.means) if np.ndim(self.means) == 2 else (-1, -1)
        expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[self.covariance_type]
        if k < 1 or np.shape(self.weights) != (k,) or np.shape(self.precisions_cholesky) != expected:
            raise ValueError(
                f"mixture arrays do not fit together: weights {np.shape(self.weights)}, means {np.shape(self.means)}, "
                f"precisions_cholesky {np.shape(self.precisions_cholesky)} (expected {expected} for "
                f"covariance_type {self.covariance_type!r})"
            )

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @classmethod
    def from_covariances(
        cls, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str = "full"
    ) -> GaussianMixture:
        """From covariances (as ``GaussianMixture.covariances_``) rather than precision factors."""
        cov = np.asarray(covariances, dtype=np.float64)
        if covariance_type in ("diag", "spherical"):
            chol = 1.0 / np.sqrt(cov)
        else:
            stack = cov[None] if covariance_type == "tied" else cov
            chol = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in stack])
            chol = chol[0] if covariance_type == "tied" else chol
        return cls(np.asarray(weights, np.float64), np.asarray(means, np.float64), chol, covariance_type)

    def score_samples(self, features: np.ndarray) -> np.ndarray:
        """Log-likelihood of each row of ``features`` ``(N, D)`` under the mixture: ``(N,)``, as
        ``sklearn.mixture.GaussianMixture.score_samples`` computes it."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features of shape {x.shape}: the mixture expects (N, {self.dim})")
        means, chol, kind = (
            np.asarray(self.means, np.float64),
            np.asarray(self.precisions_cholesky, np.float64),
            self.covariance_type,
        )
        if kind == "full":
            y = np.einsum("nd,kde->kne", x, chol) - np.einsum("kd,kde->ke", means, chol)[:, None]
            mahalanobis = (y**2).sum(-1).T  # (N, K)
            log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(-1)
        elif kind == "tied":
            y = (x @ chol)[None] - (means @ chol)[:, None]
            mahalanobis = (y**2).sum(-1).T
            log_det = np.full(len(means), np.log(np.diag(chol)).sum())
        elif kind == "diag":
            mahalanobis = (((x[:, None, :] - means[None]) * chol[None]) ** 2).sum(-1)
            log_det = np.log(chol).sum(-1)
        else:
            mahalanobis = ((x[:, None, :] - means[None]) ** 2).sum(-1) * chol[None] ** 2
            log_det = self.dim * np.log(chol)
        log_prob = -0.5 * (self.dim * math.log(2 * math.pi) + mahalanobis) + log_det[None]
        weighted = log_prob + np.log(np.asarray(self.weights, np.float64))[None]
        top = weighted.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(weighted - top).sum(axis=1, keepdims=True)))[:, 0]


def quality_score(log_likelihoods: np.ndarray, low: float = QS_RANGE[0], high: float = QS_RANGE[1]) -> float:
    """QS: the mean of ``clip((s − low) / (high − low), 0, 1)`` × 100 (the original's normalisation).

    The original scores images in batches of 50 and silently skips the last ``N mod 50``; COCOEE's 3,500
    is a multiple of 50, so scoring every image, as here, gives its number."""
    s = np.asarray(log_likelihoods, dtype=np.float64)
    if s.size == 0:
        raise ValueError("quality_score of no images")
    return float(np.clip((s - low) / (high - low), 0.0, 1.0).mean() * 100.0)


def save_mixture(mixture: GaussianMixture, path: str | os.PathLike) -> Path:
    """Write ``mixture`` to ``path`` (``.npz`` or ``.safetensors``) atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".safetensors"):
        raise ValueError(f"{path}: a mixture is written as .npz or .safetensors")
    arrays = {
        k: np.ascontiguousarray(getattr(mixture, k), dtype=np.float64)
        for k in ("weights", "means", "precisions_cholesky")
    }
    with atomic_file(path) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, covariance_type=np.array(mixture.covariance_type), **arrays)
        else:
            from safetensors.numpy import save_file

            save_file(arrays, str(tmp), metadata={"covariance_type": mixture.covariance_type})
    return path


def load_mixture(path: str | os.PathLike) -> GaussianMixture:
    """Read a mixture written by ``save_mixture`` (no pickle is ever read: a pickle is refused here and
    belongs to ``convert_pickled_mixture``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mixture file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except ValueError as e:  # an object array inside needs pickle
            raise UntrustedFileError(f"{path}: holds pickled objects; not read") from e
        kind = str(arrays.pop("covariance_type", "full"))
    elif suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        with safe_open(str(path), "np") as f:
            kind = (f.metadata() or {}).get("covariance_type", "full")
    else:
        raise UntrustedFileError(
            f"{path}: a mixture is read from .npz or .safetensors; convert a pickle first with "
            "`subject-inpaint eval convert-gmm SRC DST --trust-pickle`"
        )
    missing = [k for k in ("weights", "means", "precisions_cholesky") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not a mixture file (lacks {', '.join(missing)})")
    return GaussianMixture(arrays["weights"], arrays["means"], arrays["precisions_cholesky"], kind)


def convert_pickled_mixture(
    source: str | os.PathLike, destination: str | os.PathLike, trust: bool = False
) -> GaussianMixture:
    """Read a pickled scikit-learn ``GaussianMixture`` (e.g. the original's published mixture) and write its
    arrays to ``destination`` (``.npz`` / ``.safetensors``).

    Unpickling runs code chosen by whoever wrote the file, so nothing is read unless ``trust`` is True.
    """
    source = Path(source)
    if not trust:
        raise UntrustedFileError(
            f"{source}: refusing to unpickle it: a pickle can run any code. Pass --trust-pickle only for a file "
            "from a source you trust (e.g. the authors' release)"
        )
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    with open(source, "rb") as f:
        model = pickle.load(f)
    try:
        mixture = GaussianMixture(
            np.asarray(model.weights_),
            np.asarray(model.means_),
            np.asarray(model.precisions_cholesky_),
            str(model.covariance_type),
        )
    except AttributeError as e:
        raise ValueError(f"{source}: not a fitted Gaussian mixture ({type(model).__name__})") from e
    save_mixture(mixture, destination)
    return mixture
