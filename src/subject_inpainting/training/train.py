"""Base training (``subject-inpaint train``): the Paint-by-Example objective on images with boxes.

Starts from a project-format model — typically an SD-v1.x checkpoint converted with
``subject-inpaint convert --from-sd`` (5 zero-initialised input channels) — and trains the UNet, the class
mapper, its LayerNorm, the projection and the unconditional vector, with the original's data pipeline
(``subject_inpainting.data``). Run it on several GPUs or nodes with ``accelerate launch``.

Usage from Python (or a test)::

    args = parse_args(["--model", "init", "--manifest", "data.jsonl", "--out", "run", "--max-steps", "2"])
    main(args)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils.parse import float_option, int_option, seed_option
from .common import MAX_STEPS, add_training_args, config_from_args, preview_function, staged_publish

MAX_CACHE = 10_000_000


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="subject-inpaint train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH_OR_ID",
        help="model to start from: a project folder (e.g. `convert --from-sd` output) or any model --model accepts",
    )
    data = p.add_argument_group("data (one of)")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--manifest", metavar="JSONL", help='JSON Lines: {"image": path, "boxes": [[x0,y0,x1,y1], ...]}'
    )
    source.add_argument("--openimages", metavar="CSV", help="Open Images box annotations (with --images)")
    source.add_argument("--coco", metavar="JSON", help="COCO instances annotations (with --images)")
    source.add_argument(
        "--toy-world",
        action="store_true",
        help="procedural toy-world scenes made on the fly, of the training split of the world --toy-world-seed",
    )
    data.add_argument(
        "--toy-world-seed",
        type=seed_option,
        metavar="N",
        help="with --toy-world: the world whose training identities are shown (default: the world --model was "
        "trained on, as its model_index.json records, else --seed); the published model records it, and "
        "`bench toy` and `demo` hold out that world's test identities",
    )
    data.add_argument(
        "--toy-tilt",
        type=float_option(0.0, 180.0),
        metavar="DEGREES",
        help="with --toy-world: the subjects' rotation range in the training renders, either way (default: the "
        "world's own; 0: upright, as the embedded toy model was trained); the references are still "
        "rotated by the augmentation",
    )
    data.add_argument("--images", metavar="DIR", help="image folder of --openimages / --coco")
    data.add_argument(
        "--min-area", type=float_option(0.0, 1.0), default=0.02, help="keep boxes covering at least this share (0.02)"
    )
    data.add_argument(
        "--max-area", type=float_option(0.0, 1.0), default=0.8, help="and at most this share of the image (0.8)"
    )
    data.add_argument(
        "--latent-cache",
        type=int_option(1, MAX_CACHE),
        metavar="N",
        help="encode the first N examples with the VAE once (OUT/latent-cache.safetensors) and train on that fixed "
        "pool in epochs: no VAE work per step, but each example's augmentation is fixed (default: off)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run folder: the trained model (project format), checkpoints/, previews/, logs/",
    )
    p.add_argument(
        "--max-steps", type=int_option(1, MAX_STEPS), default=None, help="optimiser steps in all (default 1000)"
    )
    add_training_args(p, "base")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """The options' combinations, checked before anything is loaded (the command line checks them first)."""
    if args.toy_world_seed is not None and not args.toy_world:
        raise ValueError(f"--toy-world-seed {args.toy_world_seed}: only with --toy-world")
    if args.toy_tilt is not None and not args.toy_world:
        raise ValueError(f"--toy-tilt {args.toy_tilt:g}: only with --toy-world")
    if (args.openimages or args.coco) and not args.images:
        raise ValueError("--images is needed with --openimages / --coco (the folder of the images)")
    if args.min_area > args.max_area:
        raise ValueError(f"--min-area {args.min_area:g} must not exceed --max-area {args.max_area:g}")


def load_records(args: argparse.Namespace):
    from ..data import datasets

    if args.manifest:
        return datasets.read_manifest(args.manifest)
    if args.openimages:
        return datasets.read_openimages(args.openimages, args.images, args.min_area, args.max_area)
    return datasets.read_coco(args.coco, args.images, args.min_area, args.max_area)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train; returns the loop's summary (``step``, ``losses``, ``out``)."""
    from ..convert import load_components, save_components
    from ..data.augment import AugmentConfig
    from ..data.datasets import InpaintingExamples
    from ..pipeline import SubjectInpaintPipeline
    from ..utils.files import replacing
    from .loop import Run, make_accelerator, prepare_output, train, work_folder

    check_args(args)
    out = Path(args.out)
    config = config_from_args(args, "base", max_steps=args.max_steps)
    records = None if args.toy_world else load_records(args)
    components = load_components(args.model)
    pipe = SubjectInpaintPipeline(**components)  # checks that the parts fit together
    enc = pipe.reference_encoder
    if enc.has_detail:
        raise ValueError(
            f"--model {args.model}: has a detail module (a subject model); base training trains Paint-by-Example models"
        )
    if args.toy_world:
        from ..data import toy

        world = toy_world(args, config.seed)
        identities = toy.split_identities(world, "train")
        length = config.max_steps * config.batch_size * config.grad_accum * 64  # room for 64 processes
        dataset = toy.ToyWorldExamples(
            identities,
            pipe.resolution,
            pipe.resolution,
            enc.image_size,
            enc.image_mean,
            enc.image_std,
            toy.toy_augment(),
            seed=config.seed,
            length=length,
            cut_reference=args.cut_reference,
            tilt=toy.TILT_RANGE if args.toy_tilt is None else args.toy_tilt,
        )
        fingerprint = {"model": str(args.model), "data": "toy-world", "identities": len(identities), "world": world}
        if dataset.tilt != toy.TILT_RANGE:  # the world's own range keeps the fingerprint of runs made before it
            fingerprint["tilt"] = dataset.tilt
    else:
        dataset = InpaintingExamples(
            records,
            pipe.resolution,
            enc.image_size,
            enc.image_mean,
            enc.image_std,
            AugmentConfig.base(),
            seed=config.seed,
            cut_reference=args.cut_reference,
        )
        fingerprint = {
            "model": str(args.model),
            "data": [str(r.image) for r in records[:1000]],
            "examples": len(records),
        }
    if args.cut_reference:
        fingerprint["cut_reference"] = True
    if args.latent_cache is not None:
        if not 1 <= args.latent_cache <= len(dataset):
            raise ValueError(
                f"--latent-cache {args.latent_cache}: expected 1 to {len(dataset)} (the number of examples)"
            )
        fingerprint["latent_cache"] = args.latent_cache
    accelerator = make_accelerator(config, work_folder(out, args.overwrite), args.device)
    work = prepare_output(out, config, fingerprint, args.overwrite, accelerator)
    with replacing(work, out, accelerator.is_main_process, accelerator.wait_for_everyone):
        examples = dataset
        if args.latent_cache is not None:
            dataset = cached_latents(
                work / "latent-cache.safetensors",
                dataset,
                components["vae"],
                args.latent_cache,
                accelerator,
                not args.quiet,
                config.num_workers,
            )

        extra = {"trained_from": str(args.model)}
        if args.toy_world:
            extra["toy_world_seed"] = fingerprint["world"]

        def publish(c: dict[str, Any], folder: Path) -> None:
            staged_publish(folder, "model_index.json", lambda tmp: save_components(c, tmp, extra=extra))

        preview = preview_function(examples, "base", config.preview_steps) if config.preview_every else None
        run = Run(components, dataset, work, publish, fingerprint, preview, progress=not args.quiet)
        result = train(config, run, accelerator)
    return {**result, "out": out}


def toy_world(args: argparse.Namespace, seed: int) -> int:
    """The toy world of a ``--toy-world`` run: ``--toy-world-seed``, else the world ``--model`` records
    (``toy_world_seed`` in its model_index.json), else ``seed``. Training a world-0 model on another world's
    split would show it that world's held-out identities, which its benchmark then scores as unseen."""
    from ..demo import world_seed

    return args.toy_world_seed if args.toy_world_seed is not None else world_seed(args.model, default=seed)


def cached_latents(path: Path, dataset, vae, count: int, accelerator, progress: bool, num_workers: int = 0):
    """The run's latent cache: read from ``path`` when an earlier (interrupted) run wrote it, else encoded
    by the main process (its examples made by ``num_workers`` processes) and written there."""
    from .latents import LatentCache

    if accelerator.is_main_process and not path.is_file():
        vae.to(accelerator.device)
        LatentCache.build(dataset, vae, count, progress=progress, num_workers=num_workers).save(path)
    accelerator.wait_for_everyone()
    cache = LatentCache.load(path)
    if len(cache) != count:
        raise ValueError(f"{path}: holds {len(cache)} examples, not --latent-cache {count}; delete it to rebuild")
    return cache


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
