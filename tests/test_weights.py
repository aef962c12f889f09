"""The embedded default model: it ships inside the package, loads, and paints the reference's subject.

The margin below comes from measured values (see the note in ``IDENTITY_MARGIN``); the test paints
held-out toy subjects (never seen in training) with their own reference and with an unrelated subject's
reference, and scores both against the truth with the evaluator (trained on other identities).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from subject_inpainting import weights
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.session import Session
from subject_inpainting.toy import dataset, world
from subject_inpainting.toy.demo import run_cases
from subject_inpainting.toy.evaluator import IdentityEncoder, identity_scores

CASES = 6
# Measured with the shipped weights (DPM-Solver++ 20 steps, 6 held-out cases, case seeds 100+k / 200+k /
# 300+k): own-reference mean 0.546 / 0.425 / 0.540, unrelated-reference mean 0.091 / 0.191 / 0.089, so gaps
# of 0.46 / 0.23 / 0.45, and the own reference scored higher in 6 / 5 / 6 of the 6 cases (the previous
# model, trained on tilted renders: gaps 0.48 / 0.27 / 0.60; the Min-SNR-5 one before it: 0.44 / 0.17 /
# 0.46). The test (seeds 100+k, gap 0.46 and 6 wins measured) asks for a gap of 0.15 and 5 wins: a model
# that ignores its reference (gap ~0) fails.
IDENTITY_MARGIN = 0.15


@pytest.fixture(scope="module")
def embedded():
    model, evaluator = weights.default_model(), weights.default_evaluator()
    assert model is not None and evaluator is not None, "the package must ship its default model"
    pipe = SubjectInpaintPipeline.from_pretrained(model)
    return Session(pipeline=pipe), IdentityEncoder.from_pretrained(evaluator).eval(), model


def test_the_shipped_weights_fit_the_budget():
    files = [p for p in weights.EMBEDDED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".ckpt", ".pkl"}]  # no pickles


@pytest.mark.slow
def test_the_painted_subject_is_the_references(embedded):
    session, evaluator, model = embedded
    size = session.pipeline.resolution
    ids = world.split_identities(world.trained_world(model), "heldout", CASES + 1)
    cases = [world.make_case(ident, seed=100 + k, size=size) for k, ident in enumerate(ids[:CASES])]
    # an unrelated subject: the reference of the NEXT case's identity (a different held-out subject)
    unrelated = [cases[(k + 1) % CASES].reference for k in range(CASES)]
    swapped = [dataclasses.replace(c, reference=r) for c, r in zip(cases, unrelated, strict=True)]
    own = np.array(identity_scores(evaluator, cases, run_cases(session, cases, 20, "dpmsolver++", 0)))
    other = np.array(identity_scores(evaluator, cases, run_cases(session, swapped, 20, "dpmsolver++", 0)))
    assert own.mean() - other.mean() >= IDENTITY_MARGIN, (own, other)
    assert (own > other).sum() >= CASES - 1, (own, other)


def background_error(cases, results) -> float:
    """Mean |result − truth| (0–255) over the region's pixels that show the scene in the truth."""
    errors = []
    for case, result in zip(cases, results, strict=True):
        scene = case.mask & np.all(case.truth == case.scene, axis=-1)
        errors.append(np.abs(result[scene].astype(float) - case.truth[scene]).mean())
    return float(np.mean(errors))


def raw_psnr_outside(cases, raws) -> float:
    """Mean PSNR (dB) of the model's whole output against the scene, outside the region."""
    values = []
    for case, raw in zip(cases, raws, strict=True):
        error = (raw[~case.mask].astype(float) - case.scene[~case.mask]) ** 2
        values.append(10 * np.log10(255**2 / error.mean()))
    return float(np.mean(values))


@pytest.mark.slow
def test_the_model_continues_the_scene_and_keep_known_does_not_hurt(embedded):
    # Measured (DPM-Solver++ 20, 6 cases, seeds 100+k / 200+k / 300+k). The shipped model: the region's
    # background against the truth 18.3 / 18.1 / 20.8 (0-255), its whole output against the scene outside the
    # region 27.0 / 27.9 / 26.5 dB; with keep_known 17.0 / 17.9 / 20.3 and own-reference identity 0.570 ->
    # 0.576, 0.445 -> 0.447, 0.634 -> 0.638. (The first v-prediction model: 21.5 / 18.0 / 21.2 and 27.1 /
    # 27.6 / 26.2 dB; the epsilon-prediction one before it repainted the whole picture in shifted colours:
    # 32.8 / 37.9 / 31.6 and 19.2 / 18.0 / 19.7 dB.)
    session, evaluator, model = embedded
    pipe = session.pipeline
    ids = world.split_identities(world.trained_world(model), "heldout", CASES)
    cases = [world.make_case(ident, seed=100 + k, size=pipe.resolution) for k, ident in enumerate(ids)]
    plain, held = (run_cases(session, cases, 20, "dpmsolver++", 0, keep_known=k) for k in (False, True))
    raws = run_cases(session, cases, 20, "dpmsolver++", 0, paste_back=False)
    assert background_error(cases, plain) < 26
    assert raw_psnr_outside(cases, raws) > 23
    assert background_error(cases, held) <= background_error(cases, plain)
    assert np.mean(identity_scores(evaluator, cases, held)) >= np.mean(identity_scores(evaluator, cases, plain)) - 0.005


# Measured on the tower the shipped model was trained with: a linear probe fitted on training subjects read
# the shape of held-out subjects right 97 % of the time and the pattern 90 % (a tower trained only to tell
# 400 identities apart: 30 % and 60 %; chance 12 % and 17 %).
PROBE_FLOOR = {"shape": 0.8, "pattern": 0.8}


@pytest.mark.slow
def test_the_vision_tower_reads_the_parts_of_new_subjects(embedded):
    session, _, model = embedded
    pipe = session.pipeline
    enc, ws = pipe.reference_encoder, world.trained_world(model)

    def features(split: str, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        data = dataset.ToyWorldExamples(
            world.split_identities(ws, split),
            64,
            64,
            enc.image_size,
            enc.image_mean,
            enc.image_std,
            dataset.toy_augment(),
            seed=7,
            cut_reference=True,  # as the model's references are
        )
        items = [data.reference_item(i) for i in range(n)]
        with torch.no_grad():
            x = enc.tower_states(torch.stack([it["reference"] for it in items]))[0].float()
        labels = [world.attribute_labels(data.identities[int(it["identity"])]) for it in items]
        for lab, it in zip(labels, items, strict=True):
            lab.update(zip(world.POSE_ATTRIBUTES, it["reference_pose"].tolist(), strict=True))
        return x, {k: torch.tensor([lab[k] for lab in labels]) for k in PROBE_FLOOR}

    x_train, y_train = features("train", 1024)
    x_test, y_test = features("heldout", 300)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    for part, floor in PROBE_FLOOR.items():
        probe = torch.nn.Linear(x_train.shape[1], {**world.ATTRIBUTES, **world.POSE_ATTRIBUTES}[part])
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
        for _ in range(300):
            loss = torch.nn.functional.cross_entropy(probe(x_train), y_train[part]) + 1e-3 * probe.weight.square().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy = (probe(x_test).argmax(1) == y_test[part]).float().mean().item()
        assert accuracy >= floor, (part, accuracy)
