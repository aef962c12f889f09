"""``subject-inpaint demo``: paint held-out toy subjects with the embedded model and write a grid picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..loaders.layout import check_model
from ..utils import free_path
from ..utils.files import check_output_files
from ..utils.parse import int_option
from . import options

DEFAULT_OUT = "subject-inpaint-demo.png"
MAX_DEMO_CASES = 64


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="paint held-out toy subjects with the embedded model and write a grid picture",
        description="Run the whole pipeline on the embedded toy-world model (or --model) for a few held-out "
        "cases and write a grid: scene | region | reference | result | truth.",
    )
    p.add_argument("--out", metavar="FILE", help=f"grid picture to write (default {DEFAULT_OUT}, numbered if taken)")
    p.add_argument("--model", metavar="PATH_OR_ID", help="model (default: the embedded toy model)")
    p.add_argument(
        "--cases",
        type=int_option(1, MAX_DEMO_CASES),
        default=4,
        help=f"rows of the grid, 1..{MAX_DEMO_CASES} (default 4)",
    )
    for name in ("preset", "num_inference_steps", "sampler"):
        options.add_setting(p, name)
    options.add_seed(p, "seed of the cases and the noise (default 0)")
    options.add_device(p)
    p.add_argument(
        "--no-keep-known",
        action="store_true",
        help="let the model repaint the scene outside the region too (see inpaint --keep-known; on by default here)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(command_check=check, command_run=run)


def check(args: argparse.Namespace) -> None:
    options.check_device_name(args.device)
    options.require_model(args.model)
    args.model = args.model or options.default_model_or_error()
    if args.out is None:
        args.out = free_path(DEFAULT_OUT)
    options.image_output(args.out)
    check_output_files([args.out], inputs=[("--model", args.model)], overwrite=args.overwrite)
    check_model(args.model)


def run(args: argparse.Namespace) -> int:
    from ..toy.demo import demo

    result = demo(
        args.model,
        Path(args.out),
        args.cases,
        args.num_inference_steps,
        args.sampler,
        args.seed,
        options.resolve_device(args.device),
        keep_known=not args.no_keep_known,
        preset=args.preset,
    )
    if result["scores"] is not None:
        scores = ", ".join(f"{s:.2f}" for s in result["scores"])
        print(f"identity scores of the results against the truth (1 = same subject): {scores}", file=sys.stderr)
    reads = ", ".join(f"{read or 'nothing'} (subject: {shape})" for read, shape in result["outlines"])
    right = sum(read == shape for read, shape in result["outlines"])
    print(f"painted outlines read as: {reads}; {right} of {len(result['outlines'])} right", file=sys.stderr)
    print(args.out)
    return 0
