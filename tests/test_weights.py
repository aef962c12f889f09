"""The embedded default model: it ships inside the package, loads, and paints the reference's subject.

The margin below comes from measured values (see the note in ``IDENTITY_MARGIN``); the test paints
held-out toy subjects (never seen in training) with their own reference and with an unrelated subject's
reference, and scores both against the truth with the evaluator (trained on other identities).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from subject_inpainting import weights
from subject_inpainting.data import toy
from subject_inpainting.demo import identity_scores, run_cases, world_seed
from subject_inpainting.evaluation.identity import IdentityEncoder
from subject_inpainting.pipeline import SubjectInpaintPipeline

CASES = 6
# Measured with the shipped weights (DPM-Solver++ 20 steps, 6 held-out cases, case seeds 100+k / 200+k /
# 300+k): own-reference mean 0.337 / 0.256 / 0.225, unrelated-reference mean 0.009 / 0.062 / -0.042, so gaps
# of 0.33 / 0.19 / 0.27, and the own reference scored higher in 6 / 6 / 5 of the 6 cases. The test (seeds
# 100+k) asks for half the smallest gap: a model that ignores its reference (gap ~0) fails.
IDENTITY_MARGIN = 0.1


@pytest.fixture(scope="module")
def embedded():
    model, evaluator = weights.default_model(), weights.default_evaluator()
    assert model is not None and evaluator is not None, "the package must ship its default model"
    return SubjectInpaintPipeline.from_pretrained(model), IdentityEncoder.from_pretrained(evaluator).eval(), model


def test_the_shipped_weights_fit_the_budget():
    files = [p for p in weights.EMBEDDED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".ckpt", ".pkl"}]  # no pickles


def test_the_painted_subject_is_the_references(embedded):
    pipe, evaluator, model = embedded
    ids = toy.split_identities(world_seed(model), "heldout", CASES + 1)
    cases = [toy.make_case(ident, seed=100 + k, size=pipe.resolution) for k, ident in enumerate(ids[:CASES])]
    # an unrelated subject: the reference of the NEXT case's identity (a different held-out subject)
    unrelated = [cases[(k + 1) % CASES].reference for k in range(CASES)]
    swapped = [dataclasses.replace(c, reference=r) for c, r in zip(cases, unrelated, strict=True)]
    own = np.array(identity_scores(evaluator, cases, run_cases(pipe, cases, 20, "dpmsolver++", 0)))
    other = np.array(identity_scores(evaluator, cases, run_cases(pipe, swapped, 20, "dpmsolver++", 0)))
    assert own.mean() - other.mean() >= IDENTITY_MARGIN, (own, other)
    assert (own > other).sum() >= CASES - 1, (own, other)
