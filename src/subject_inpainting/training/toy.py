"""Training every component of the toy-world model on the CPU (``subject-inpaint toy train``).

Stages, each resumable (checkpoints inside a stage; a finished stage is skipped on a rerun):

1. ``vae``        — the KL autoencoder on toy scenes (L1 + MSE reconstruction, a light KL term); its scaling
                    factor is set to 1 / std of the latents afterwards, as SD's 0.18215 was;
2. ``tower``      — the reference encoder's vision tower, trained to name each part of the subject in a
                    render (shape, colours, pattern, marking), so renders of one identity map close
                    together;
3. ``evaluator``  — the evaluator identity encoder, on the evaluator identities only (never the others);
4. ``init``       — the starting model: the trained VAE and tower, a fresh UNet and class mapper;
5. ``base``       — Paint-by-Example base training on toy scenes with the project's training loop, on a
                    pool of examples encoded once (``train --latent-cache``), so that a step is the UNet's
                    work alone rather than rendering and VAE encoding too. The UNet predicts the velocity
                    ``v`` by default (``--base-prediction``), which keeps the scene's colours where a
                    small noise-predicting model shifts them across the whole picture.
                    The pool's scenes and references are drawn upright by default (``--base-tilt 0``):
                    the tilt is what a reference does not convey.

The result ``OUT/model`` is a project-format model and ``OUT/evaluator`` the scoring encoder.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..sampling.catalog import PREDICTION_TYPES
from ..utils.files import check_output_folder, mark_folder, replacement_folder, replacing
from ..utils.parse import float_option, int_option, seed_option
from .common import MAX_BATCH, MAX_STEPS
from .config import LR_DECAYS
from .train import MAX_CACHE

steps = int_option(1, MAX_STEPS)

STAGES = ("vae", "tower", "evaluator", "init", "base")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="subject-inpaint toy train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run folder (stages, checkpoints, the model); an unfinished run there is resumed",
    )
    p.add_argument("--seed", type=seed_option, default=0, help="world and training seed (default 0)")
    p.add_argument("--vae-steps", type=steps, default=1000, help="VAE training steps (default 1000)")
    p.add_argument("--tower-steps", type=steps, default=600, help="vision-tower training steps (default 600)")
    p.add_argument("--evaluator-steps", type=steps, default=500, help="evaluator training steps (default 500)")
    p.add_argument(
        "--base-steps",
        type=steps,
        default=3_500,
        help="base inpainting training steps (default 3500)",
    )
    p.add_argument("--base-batch", type=int_option(1, MAX_BATCH), default=32, help="base training batch (default 32)")
    p.add_argument(
        "--base-cache",
        type=int_option(0, MAX_CACHE),
        default=16_000,
        help="examples rendered and VAE-encoded once for base training (default 16000; 0 = new ones every step)",
    )
    p.add_argument(
        "--base-lr", type=float_option(1e-12, 1.0), default=5e-4, help="base training learning rate (default 5e-4)"
    )
    p.add_argument(
        "--base-snr-gamma",
        type=float_option(0.0, 1000.0),
        default=0.0,
        help="Min-SNR-γ weighting of the base loss (default 0: the plain v loss)",
    )
    p.add_argument(
        "--base-ema",
        type=float_option(0.0, 0.999999),
        default=0.999,
        help="EMA decay of the base weights (default 0.999)",
    )
    p.add_argument(
        "--base-tilt",
        type=float_option(0.0, 180.0),
        default=0.0,
        metavar="DEGREES",
        help="rotation range of the base training renders in degrees, either way, 0..180 (default 0: upright, as "
        "the embedded model was trained; the test scenes keep the world's own tilts)",
    )
    p.add_argument(
        "--base-prediction",
        choices=PREDICTION_TYPES,
        default="v_prediction",
        help="what the base UNet predicts: v_prediction (default; keeps the scene's colours) or epsilon (the "
        "original's)",
    )
    p.add_argument(
        "--base-lr-decay",
        choices=LR_DECAYS,
        default="cosine",
        help="learning-rate decay of base training (default cosine)",
    )
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run (default all)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: a new run is built beside OUT and replaces it when finished (only a folder this "
        "command wrote)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the requested stages in order; returns ``{"out", "seconds": {stage: s}}``.

    A rerun resumes (a finished stage is skipped, an unfinished one continues from its checkpoints). With
    ``--overwrite`` the new run is built beside ``OUT`` and swapped in when every stage has finished.
    """
    from .toy_stages import STAGE_FUNCTIONS

    out = Path(args.out)
    mode = check_output_folder(out, kinds=("toy-training",), overwrite=args.overwrite, resume=True)
    work = replacement_folder(out) if mode == "replace" else out
    if mode == "replace" and work.exists():
        shutil.rmtree(work)  # an earlier replacement that did not finish: start over
    work.mkdir(parents=True, exist_ok=True)
    mark_folder(work, "toy-training")
    seconds = {}
    with replacing(work, out):
        for stage in STAGES:
            if stage in args.stages:
                start = time.perf_counter()
                STAGE_FUNCTIONS[stage](work, args)
                seconds[stage] = round(time.perf_counter() - start, 1)
    return {"out": out, "seconds": seconds}


if __name__ == "__main__":
    import sys

    main(parse_args(sys.argv[1:]))
