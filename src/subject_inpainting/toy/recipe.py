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

The recipe is data: ``ToyRecipe`` holds every setting (the command line's options and the base training's
fixed ones), and ``train_toy(recipe)`` runs it (``toy.stages`` holds the stages).
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..sampling.catalog import PREDICTION_TYPES
from ..training.common import MAX_BATCH, MAX_STEPS
from ..training.config import LR_DECAYS
from ..training.train import MAX_CACHE
from ..utils.files import check_output_folder, mark_folder, replacement_folder, replacing
from ..utils.parse import float_option, int_option, seed_option

steps = int_option(1, MAX_STEPS)

STAGES = ("vae", "tower", "evaluator", "init", "base")


@dataclass
class ToyRecipe:
    """How the embedded toy model is trained: every stage's settings (``toy train``'s options are the first
    fields; the ``base_*`` ones after ``stages`` are base training's fixed settings).

    Attributes:
        out: the run folder; seed: the world and training seed.
        vae_steps, tower_steps, evaluator_steps: training steps of those stages.
        base_steps, base_batch, base_lr, base_snr_gamma, base_ema, base_lr_decay: base training's loop.
        base_cache: examples rendered and VAE-encoded once for base training (0: new ones every step).
        base_tilt: rotation range of the base training renders in degrees, either way (0: upright).
        base_prediction: what the base UNet predicts (``v_prediction`` or ``epsilon``).
        stages: the stages to run; overwrite: start over; quiet: no progress bars.
    """

    out: Path
    seed: int = 0
    vae_steps: int = 1000
    tower_steps: int = 600
    evaluator_steps: int = 500
    base_steps: int = 3_500
    base_batch: int = 32
    base_cache: int = 16_000
    base_lr: float = 5e-4
    base_snr_gamma: float = 0.0
    base_ema: float = 0.999
    base_tilt: float = 0.0
    base_prediction: str = "v_prediction"
    base_lr_decay: str = "cosine"
    stages: tuple[str, ...] = STAGES
    overwrite: bool = False
    quiet: bool = False
    base_warmup_steps: int = 100
    base_warmup_start: float = 0.01
    base_save_every: int = 250
    base_preview_every: int = 500
    base_preview_steps: int = 20

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown:
            raise ValueError(f"stages {unknown!r}: expected some of {', '.join(STAGES)}")
        if self.base_prediction not in PREDICTION_TYPES:
            raise ValueError(f"base_prediction {self.base_prediction!r}: expected one of {', '.join(PREDICTION_TYPES)}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ToyRecipe:
        """The recipe the command line's options describe (the fixed settings keep their values)."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, "stages": tuple(args.stages)})


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="subject-inpaint toy train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run folder (stages, checkpoints, the model); an unfinished run there is resumed",
    )
    p.add_argument("--seed", type=seed_option, default=ToyRecipe.seed, help="world and training seed (default 0)")
    p.add_argument("--vae-steps", type=steps, default=ToyRecipe.vae_steps, help="VAE training steps (default 1000)")
    p.add_argument(
        "--tower-steps", type=steps, default=ToyRecipe.tower_steps, help="vision-tower training steps (default 600)"
    )
    p.add_argument(
        "--evaluator-steps",
        type=steps,
        default=ToyRecipe.evaluator_steps,
        help="evaluator training steps (default 500)",
    )
    p.add_argument(
        "--base-steps",
        type=steps,
        default=ToyRecipe.base_steps,
        help="base inpainting training steps (default 3500)",
    )
    p.add_argument(
        "--base-batch",
        type=int_option(1, MAX_BATCH),
        default=ToyRecipe.base_batch,
        help="base training batch (default 32)",
    )
    p.add_argument(
        "--base-cache",
        type=int_option(0, MAX_CACHE),
        default=ToyRecipe.base_cache,
        help="examples rendered and VAE-encoded once for base training (default 16000; 0 = new ones every step)",
    )
    p.add_argument(
        "--base-lr",
        type=float_option(1e-12, 1.0),
        default=ToyRecipe.base_lr,
        help="base training learning rate (default 5e-4)",
    )
    p.add_argument(
        "--base-snr-gamma",
        type=float_option(0.0, 1000.0),
        default=ToyRecipe.base_snr_gamma,
        help="Min-SNR-γ weighting of the base loss (default 0: the plain v loss)",
    )
    p.add_argument(
        "--base-ema",
        type=float_option(0.0, 0.999999),
        default=ToyRecipe.base_ema,
        help="EMA decay of the base weights (default 0.999)",
    )
    p.add_argument(
        "--base-tilt",
        type=float_option(0.0, 180.0),
        default=ToyRecipe.base_tilt,
        metavar="DEGREES",
        help="rotation range of the base training renders in degrees, either way, 0..180 (default 0: upright, as "
        "the embedded model was trained; the test scenes keep the world's own tilts)",
    )
    p.add_argument(
        "--base-prediction",
        choices=PREDICTION_TYPES,
        default=ToyRecipe.base_prediction,
        help="what the base UNet predicts: v_prediction (default; keeps the scene's colours) or epsilon (the "
        "original's)",
    )
    p.add_argument(
        "--base-lr-decay",
        choices=LR_DECAYS,
        default=ToyRecipe.base_lr_decay,
        help="learning-rate decay of base training (default cosine)",
    )
    p.add_argument(
        "--stages", nargs="+", choices=STAGES, default=list(ToyRecipe.stages), help="stages to run (default all)"
    )
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
    """The command line's toy training: ``train_toy`` of the recipe the options describe."""
    return train_toy(ToyRecipe.from_args(args))


def train_toy(recipe: ToyRecipe) -> dict[str, Any]:
    """Run the recipe's stages in order; returns ``{"out", "seconds": {stage: s}}``.

    A rerun resumes (a finished stage is skipped, an unfinished one continues from its checkpoints). With
    ``--overwrite`` the new run is built beside ``OUT`` and swapped in when every stage has finished.
    """
    from .stages import STAGE_FUNCTIONS

    out = recipe.out
    mode = check_output_folder(out, kinds=("toy-training",), overwrite=recipe.overwrite, resume=True)
    work = replacement_folder(out) if mode == "replace" else out
    if mode == "replace" and work.exists():
        shutil.rmtree(work)  # an earlier replacement that did not finish: start over
    work.mkdir(parents=True, exist_ok=True)
    mark_folder(work, "toy-training")
    seconds = {}
    with replacing(work, out):
        for stage in STAGES:
            if stage in recipe.stages:
                start = time.perf_counter()
                STAGE_FUNCTIONS[stage](work, recipe)
                seconds[stage] = round(time.perf_counter() - start, 1)
    return {"out": out, "seconds": seconds}


if __name__ == "__main__":
    import sys

    main(parse_args(sys.argv[1:]))
