"""Gaussian mixtures for QS: log-likelihoods by hand (scipy), safe files, and the pickle converter's consent."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from subject_inpainting.evaluation import gmm

RNG = np.random.default_rng(0)


def random_mixture(kind: str, k: int = 3, d: int = 4) -> tuple[gmm.GaussianMixture, list[np.ndarray]]:
    """A mixture of each covariance type and its covariances, one per component."""
    weights = RNG.dirichlet(np.ones(k))
    means = RNG.normal(size=(k, d))

    def spd() -> np.ndarray:
        a = RNG.normal(size=(d, d))
        return a @ a.T + d * np.eye(d) * 0.5

    if kind == "full":
        cov = np.stack([spd() for _ in range(k)])
        full = list(cov)
    elif kind == "tied":
        cov = spd()
        full = [cov] * k
    elif kind == "diag":
        cov = RNG.uniform(0.5, 2.0, size=(k, d))
        full = [np.diag(c) for c in cov]
    else:
        cov = RNG.uniform(0.5, 2.0, size=k)
        full = [np.eye(d) * c for c in cov]
    return gmm.GaussianMixture.from_covariances(weights, means, cov, kind), full


@pytest.mark.parametrize("kind", gmm.COVARIANCE_TYPES)
def test_log_likelihood_equals_the_hand_computed_mixture_density(kind):
    mixture, covariances = random_mixture(kind)
    x = RNG.normal(size=(7, 4)) * 2
    by_hand = np.log(
        sum(
            w * multivariate_normal(m, c).pdf(x)
            for w, m, c in zip(mixture.weights, mixture.means, covariances, strict=True)
        )
    )
    np.testing.assert_allclose(mixture.score_samples(x), by_hand, rtol=1e-9, atol=1e-9)


def test_quality_score_clips_and_scales_like_the_original():
    assert gmm.quality_score([-50.0, 150.0, 450.0]) == pytest.approx((0 + 0.5 + 1) / 3 * 100)
    with pytest.raises(ValueError, match="no images"):
        gmm.quality_score([])


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_mixture_files_round_trip(suffix, tmp_path):
    mixture, _ = random_mixture("full")
    path = gmm.save_mixture(mixture, tmp_path / f"m{suffix}")
    again = gmm.load_mixture(path)
    x = RNG.normal(size=(5, 4))
    np.testing.assert_allclose(again.score_samples(x), mixture.score_samples(x), rtol=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == [f"m{suffix}"]


class FittedMixture:
    """What the unpickler needs of a scikit-learn GaussianMixture (its fitted attributes)."""

    def __init__(self, mixture: gmm.GaussianMixture):
        self.weights_, self.means_ = mixture.weights, mixture.means
        self.precisions_cholesky_, self.covariance_type = mixture.precisions_cholesky, mixture.covariance_type


def test_a_pickled_mixture_is_refused_without_the_trust_flag(tmp_path, capsys):
    from subject_inpainting import cli

    mixture, _ = random_mixture("diag")
    source = tmp_path / "gmm.pkl"
    source.write_bytes(pickle.dumps(FittedMixture(mixture)))
    with pytest.raises(gmm.UntrustedFileError, match="refusing to unpickle"):
        gmm.convert_pickled_mixture(source, tmp_path / "m.npz")
    with pytest.raises(gmm.UntrustedFileError, match="convert a pickle first"):
        gmm.load_mixture(source)
    assert cli.main(["eval", "convert-gmm", str(source), str(tmp_path / "m.npz")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()

    assert cli.main(["eval", "convert-gmm", str(source), str(tmp_path / "m.npz"), "--trust-pickle"]) == 0
    x = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(gmm.load_mixture(tmp_path / "m.npz").score_samples(x), mixture.score_samples(x))


def test_an_npz_with_objects_inside_is_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, weights=np.array([object()], dtype=object), means=np.zeros((1, 2)))
    with pytest.raises(gmm.UntrustedFileError, match="pickled objects"):
        gmm.load_mixture(path)


def test_mismatched_arrays_are_named():
    with pytest.raises(ValueError, match="do not fit together"):
        gmm.GaussianMixture(np.ones(2) / 2, np.zeros((3, 4)), np.ones((3, 4)), "diag")
    mixture, _ = random_mixture("full")
    with pytest.raises(ValueError, match=r"expects \(N, 4\)"):
        mixture.score_samples(np.zeros((2, 5)))
