"""``subject-inpaint train`` and ``finetune``: base training and subject fine-tuning (the options live
beside the training code, ``training.train`` and ``training.finetune``; here they are checked). The toy
world's options of ``train`` (``--toy-world`` ...) live here: the command builds the toy world's data
(``toy.dataset.ToyWorldData``) and hands it to base training, which takes any data source."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from ..loaders.layout import check_model, refuse_subject
from ..training import finetune, train
from ..utils.files import check_output_folder
from ..utils.parse import float_option, seed_option
from . import options


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="base training: the Paint-by-Example objective on images with boxes",
        description=train.__doc__.split("\n\n")[0],
    )
    train.build_parser(p, add_toy_world).set_defaults(
        command_check=check_train, command_run=run_training(base_training)
    )
    p = sub.add_parser(
        "finetune",
        help="subject fine-tuning from 3-5 photos of one subject",
        description=finetune.__doc__.split("\n\n")[0],
    )
    finetune.build_parser(p).set_defaults(command_check=check_finetune, command_run=run_training(finetune.main))


def add_toy_world(data: argparse._ArgumentGroup, source: argparse._MutuallyExclusiveGroup) -> None:
    """The toy world as a data source of ``train`` (``build_parser``'s ``more_sources``)."""
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


def parse_train_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``train``'s options, the toy world's included."""
    return train.build_parser(more_sources=add_toy_world).parse_args(argv)


def base_training(args: argparse.Namespace) -> dict[str, Any]:
    """``train``: the run the options describe, on the toy world with ``--toy-world``."""
    check_toy_world(args)
    spec = train.spec_from_args(args)
    if args.toy_world:
        from ..toy.dataset import ToyWorldData

        data = ToyWorldData.for_model(args.model, args.toy_world_seed, args.toy_tilt, default=spec.config.seed)
        spec = dataclasses.replace(spec, data=data)
    return train.train(spec)


def check_toy_world(args: argparse.Namespace) -> None:
    if args.toy_world_seed is not None and not args.toy_world:
        raise ValueError(f"--toy-world-seed {args.toy_world_seed}: only with --toy-world")
    if args.toy_tilt is not None and not args.toy_world:
        raise ValueError(f"--toy-tilt {args.toy_tilt:g}: only with --toy-world")


def check_train(args: argparse.Namespace) -> None:
    options.check_device_name(args.device)
    options.require_model(args.model)
    check_toy_world(args)
    train.check_args(args)
    for flag in ("manifest", "openimages", "coco"):
        options.require_file(getattr(args, flag), f"--{flag}")
    options.require_folder(args.images, "--images")
    inputs = options.model_inputs(args, "model", "manifest", "openimages", "coco", "images")
    check_output_folder(args.out, inputs=inputs, kinds=("base-training",), overwrite=args.overwrite, resume=True)
    check_model(args.model)
    if not args.toy_world:  # the annotations are read now, and trained on (``train.spec_from_args``)
        args.annotations = train.annotations_from_args(args)
        args.annotations.check()
        train.check_latent_cache(args.latent_cache, len(args.annotations.records))


def check_finetune(args: argparse.Namespace) -> None:
    options.check_device_name(args.device)
    options.require_model(args.base, "--base")
    refuse_subject(args.base, f"--base {args.base}")
    finetune.check_args(args)
    options.require_folder(args.photos, "--photos")
    options.require_file(args.boxes, "--boxes")
    options.require_folder(args.masks, "--masks")
    inputs = options.model_inputs(args, "base", "photos", "boxes", "masks")
    check_output_folder(args.out, inputs=inputs, kinds=("subject-training",), overwrite=args.overwrite, resume=True)
    check_model(args.base, "--base")
    # the photos and boxes (or masks) are read now, and trained on (``finetune.spec_from_args``)
    args.records = finetune.read_records(finetune.spec_from_args(args))


def run_training(main_function):
    def run(args: argparse.Namespace) -> int:
        result = main_function(args)
        if result.get("seconds"):  # toy train: how long each stage took (a finished stage is skipped: ~0)
            times = ", ".join(f"{stage} {s / 60:.1f} min" for stage, s in result["seconds"].items())
            print(f"time: {times}; in all {sum(result['seconds'].values()) / 60:.1f} min", file=sys.stderr)
        print(result["out"])
        return 0

    return run
