"""``subject-inpaint demo``: the whole pipeline on the embedded toy model, in a grid picture.

Each row is a held-out case: scene | region | reference | result | truth, for subjects the model never
saw in training, with the evaluator's identity score of the result against the truth and the shape its
painted outline reads as.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import imaging
from ..presets import DEFAULT_PRESET
from ..session import PaintRequest, Session
from ..settings import PaintSettings
from . import world


def run_cases(
    session: Session,
    cases: list[world.InpaintCase],
    steps: int | None,
    sampler: str | None,
    seed: int,
    keep_known: bool = False,
    paste_back: bool = True,
    preset: str = "original",
) -> list[np.ndarray]:
    """Paint every case (case *k* with seed ``seed + k``; ``keep_known``, ``paste_back``, ``preset``: the
    options of those names; ``steps`` and ``sampler`` None: the preset's); returns the results ``(H, W, 3)``
    uint8."""
    settings = PaintSettings(
        preset=preset, num_inference_steps=steps, sampler=sampler, keep_known=keep_known, paste_back=paste_back
    )
    requests = [
        PaintRequest(case.scene, case.reference, case.mask, seed=seed + k, settings=settings)
        for k, case in enumerate(cases)
    ]
    return [np.asarray(session.paint_one(request)[0]) for request in requests]


def demo(
    model: str | Path,
    out: Path,
    cases: int,
    steps: int | None,
    sampler: str | None,
    seed: int,
    device=None,
    keep_known: bool = True,
    preset: str = DEFAULT_PRESET,
    threads: int | str | None = "auto",
) -> dict[str, Any]:
    """Paint ``cases`` held-out cases and write the grid to ``out``; returns ``{"out", "scores", "outlines"}``
    (``outlines``: per case, the shape the painted outline reads as — ``toy.outline`` — and the
    subject's). ``keep_known`` (on by default here: it steadies the colours around the subject a little) and
    ``preset`` are the pipeline's options; ``steps`` and ``sampler`` None are the preset's; ``threads`` is the
    ``Session``'s."""
    from ..weights import default_evaluator
    from .evaluator import IdentityEncoder, identity_scores
    from .outline import read_shape

    session = Session(model, device=device or "cpu", dtype="float32", threads=threads)
    resolution = session.pipeline.resolution
    ws = world.trained_world(model)
    identities = world.split_identities(ws, "heldout", cases)
    items = [world.make_case(ident, seed=seed * 1000 + k, size=resolution) for k, ident in enumerate(identities)]
    results = run_cases(session, items, steps, sampler, seed, keep_known, preset=preset)
    outlines = [(read_shape(r, c.scene, c.mask), c.identity.shape) for r, c in zip(results, items, strict=True)]
    scores = None
    evaluator_dir = default_evaluator()
    if evaluator_dir is not None:
        scores = identity_scores(IdentityEncoder.from_pretrained(evaluator_dir), items, results)
    rows = []
    for case, result in zip(items, results, strict=True):
        mask = Image.fromarray(case.mask.astype(np.uint8) * 255)
        rows.append(
            [
                Image.fromarray(case.scene),
                mask,
                Image.fromarray(case.reference),
                Image.fromarray(result),
                Image.fromarray(case.truth),
            ]
        )
    grid = imaging.image_grid(rows, cell=3 * resolution)
    imaging.save_image_atomic(grid, out)
    return {"out": out, "scores": scores, "outlines": outlines}
