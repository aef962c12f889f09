"""``subject-inpaint train`` and ``finetune``: base training and subject fine-tuning (the options live
beside the training code, ``training.train`` and ``training.finetune``; here they are checked)."""

from __future__ import annotations

import argparse
import sys

from ..training import finetune, train
from ..utils.files import check_output_folder, folder_kind
from . import options
from .options import CommandError


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="base training: the Paint-by-Example objective on images with boxes",
        description=train.__doc__.split("\n\n")[0],
    )
    train.build_parser(p).set_defaults(command_check=check_train, command_run=run_training(train.main))
    p = sub.add_parser(
        "finetune",
        help="subject fine-tuning from 3-5 photos of one subject",
        description=finetune.__doc__.split("\n\n")[0],
    )
    finetune.build_parser(p).set_defaults(command_check=check_finetune, command_run=run_training(finetune.main))


def check_train(args: argparse.Namespace) -> None:
    options.check_device_name(args.device)
    options.require_model(args.model)
    train.check_args(args)
    for flag in ("manifest", "openimages", "coco"):
        options.require_file(getattr(args, flag), f"--{flag}")
    options.require_folder(args.images, "--images")
    inputs = options.model_inputs(args, "model", "manifest", "openimages", "coco", "images")
    check_output_folder(args.out, inputs=inputs, kinds=("training",), overwrite=args.overwrite, resume=True)


def check_finetune(args: argparse.Namespace) -> None:
    options.check_device_name(args.device)
    options.require_model(args.base, "--base")
    if folder_kind(args.base) == "subject":
        raise CommandError(
            f"--base {args.base}: is a fine-tuned subject, not a base model; give the Paint-by-Example model it "
            "was fine-tuned from"
        )
    finetune.check_args(args)
    options.require_folder(args.photos, "--photos")
    options.require_file(args.boxes, "--boxes")
    options.require_folder(args.masks, "--masks")
    inputs = options.model_inputs(args, "base", "photos", "boxes", "masks")
    check_output_folder(args.out, inputs=inputs, kinds=("training",), overwrite=args.overwrite, resume=True)


def run_training(main_function):
    def run(args: argparse.Namespace) -> int:
        result = main_function(args)
        if result.get("seconds"):  # toy train: how long each stage took (a finished stage is skipped: ~0)
            times = ", ".join(f"{stage} {s / 60:.1f} min" for stage, s in result["seconds"].items())
            print(f"time: {times}; in all {sum(result['seconds'].values()) / 60:.1f} min", file=sys.stderr)
        print(result["out"])
        return 0

    return run
