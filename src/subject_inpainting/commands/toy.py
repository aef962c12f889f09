"""``subject-inpaint toy world | train | export``: the toy world's datasets, its model, and shipping it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..toy import recipe
from ..utils.files import check_output_folder
from ..utils.parse import int_option
from . import options
from .train import run_training

# Bounds of a written world (the README's reliability section lists them): the disk's free space is
# checked against the pictures' size as well, before anything is written.
MAX_TRAIN_IMAGES = 1_000_000
MAX_PHOTOS = 100
MAX_RENDER_SIZE = 1024


def register(sub) -> None:
    toy_sub = options.group(sub, "toy", "the toy world: train the embedded model, write datasets", "toy commands")
    p = toy_sub.add_parser(
        "train",
        help="train every component of the toy model on the CPU",
        description=recipe.__doc__.split("\n\n")[0],
    )
    recipe.build_parser(p).set_defaults(command_check=check_train, command_run=run_training(recipe.main))

    w = toy_sub.add_parser(
        "world",
        help="write toy-world datasets: base-training images with boxes, subject photos, held-out test cases",
        description="Write the toy world in the project's data formats: a JSON Lines manifest of training "
        "renders with boxes, 3–5 photos per held-out subject with a boxes file (for finetune), and held-out "
        "test cases (scene, mask, reference, truth). Deterministic by seed.",
    )
    w.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="a new (or empty) folder to write; --overwrite replaces a toy world written before",
    )
    options.add_seed(w, "world seed (default 0, the embedded model's world)")
    w.add_argument(
        "--train-images",
        type=int_option(0, MAX_TRAIN_IMAGES),
        default=1000,
        help=f"base-training renders, 0..{MAX_TRAIN_IMAGES:,} (default 1000)",
    )
    w.add_argument(
        "--subjects",
        type=int_option(0, None),
        default=8,
        help="held-out subjects with photos and cases, 0 to the world's held-out identities (100) (default 8)",
    )
    w.add_argument(
        "--photos", type=int_option(1, MAX_PHOTOS), default=4, help=f"photos per subject, 1..{MAX_PHOTOS} (default 4)"
    )
    w.add_argument(
        "--cases",
        type=int_option(0, options.MAX_CASES),
        default=4,
        help=f"test cases per subject, 0..{options.MAX_CASES} (default 4)",
    )
    w.add_argument(
        "--size",
        type=int_option(32, MAX_RENDER_SIZE),
        default=64,
        help=f"side of every render in pixels, 32..{MAX_RENDER_SIZE} (default 64)",
    )
    w.add_argument("--overwrite", action="store_true", help="replace a toy world written before in --out")
    options.add_quiet(w, "no progress bar")
    w.set_defaults(command_check=check_world, command_run=run_world)

    e = toy_sub.add_parser(
        "export",
        help="copy a finished toy-training run's model and evaluator into the package (the embedded default)",
        description="Copy RUN/model (weights in half precision) and RUN/evaluator into the package's embedded "
        "weights folder, replacing what is there only once the copy is complete.",
    )
    e.add_argument("run", metavar="RUN", help="the --out folder of a finished `toy train`")
    e.add_argument(
        "--to",
        metavar="DIR",
        help="destination (default: the installed package's weights/toy); its model/ and evaluator/ are replaced "
        "only if this project wrote them",
    )
    e.set_defaults(command_check=check_export, command_run=run_export)


def check_train(args: argparse.Namespace) -> None:
    check_output_folder(args.out, kinds=("toy-training",), overwrite=args.overwrite, resume=True)


def check_world(args: argparse.Namespace) -> None:
    from ..toy.write import check_dataset

    check_output_folder(args.out, kinds=("toy-world",), overwrite=args.overwrite)
    check_dataset(args.out, args.train_images, args.subjects, args.photos, args.cases, args.size, options=True)


def run_world(args: argparse.Namespace) -> int:
    from ..toy.write import write_dataset

    result = write_dataset(
        args.out,
        args.seed,
        args.train_images,
        args.subjects,
        args.photos,
        args.cases,
        args.size,
        not args.quiet,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {result['train_images']} training images, {result['subjects']} subjects and "
        f"{result['cases']} test cases to {result['out']}"
    )
    return 0


def _destination(args: argparse.Namespace) -> Path:
    from ..weights import EMBEDDED

    return Path(args.to) if args.to else EMBEDDED


def check_export(args: argparse.Namespace) -> None:
    options.require_folder(args.run, "RUN")
    destination = _destination(args)
    for name, kind in (("model", "model"), ("evaluator", "evaluator")):
        check_output_folder(destination / name, kinds=(kind,), flag="--to", inputs=[("RUN", args.run)], overwrite=True)


def run_export(args: argparse.Namespace) -> int:
    from ..toy.export import export

    destination = _destination(args)
    sizes = export(Path(args.run), destination)
    total = sum(sizes.values()) / 2**20
    print(f"exported the model and evaluator to {destination} ({total:.1f} MB)")
    return 0
