"""``subject-inpaint ui``: a local web page for painting a subject into a scene."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..loaders.layout import check_model
from ..utils.files import SUBJECT_INDEX, check_output_folder, mark_folder, read_index
from ..utils.parse import int_option
from . import options
from .options import CommandError


def register(sub) -> None:
    from ..imaging import PILLOW_HARD_LIMIT
    from ..ui import DEFAULT_MAX_PIXELS

    p = sub.add_parser(
        "ui",
        help="a local web page: paint a region, drop in a reference, press Generate",
        description="Serve a web page (Gradio; pip install 'subject-inpainting[ui]') for painting a subject "
        "into a scene. It listens on this computer only unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer)")
    p.add_argument("--port", type=int_option(1, 65535), help="port, 1..65535 (default: the first free one from 7860)")
    p.add_argument(
        "--model",
        metavar="PATH_OR_ID",
        help="model (default: the base the first --subject names, else the embedded toy model)",
    )
    p.add_argument(
        "--subject",
        action="append",
        default=[],
        metavar="DIR",
        help="a fine-tuned subject folder to offer in the page (repeat for several)",
    )
    p.add_argument(
        "--max-pixels",
        type=int_option(1, PILLOW_HARD_LIMIT),
        default=DEFAULT_MAX_PIXELS,
        help=f"largest scene accepted, in pixels (default {DEFAULT_MAX_PIXELS:,}; at most {PILLOW_HARD_LIMIT:,})",
    )
    p.add_argument(
        "--out-dir",
        metavar="DIR",
        help="where results are kept for download (default: a temporary folder); a new or empty folder, or one "
        "this page wrote before",
    )
    options.add_device(p)
    options.add_dtype(p)
    p.set_defaults(command_check=check, command_run=run)


def check(args: argparse.Namespace) -> None:
    options.check_device_name(args.device)
    options.require_model(args.model)
    for subject in args.subject:
        if options.subject_folder(subject) is None:  # the page offers folders only
            raise CommandError(f"--subject {subject}: not a subject folder (from `subject-inpaint finetune`)")
    base = (read_index(Path(args.subject[0]) / SUBJECT_INDEX) or {}).get("base") if args.subject else None
    args.model = args.model or base or options.default_model_or_error()
    if args.out_dir is not None:
        inputs = [("--model", args.model), *(("--subject", s) for s in args.subject)]
        check_output_folder(args.out_dir, kinds=("page-results",), inputs=inputs, resume=True)
    check_model(args.model)


def run(args: argparse.Namespace) -> int:
    try:
        from ..ui import UISettings, launch
    except ImportError as e:
        raise CommandError(f"the web page needs Gradio: pip install 'subject-inpainting[ui]' ({e})") from None
    out_dir = None
    if args.out_dir is not None:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        mark_folder(out_dir, "page-results")
    settings = UISettings(
        model=str(args.model),
        subjects=args.subject,
        device=options.resolve_device(args.device),
        dtype=args.dtype,
        int8=args.int8,
        max_pixels=args.max_pixels,
        out_dir=out_dir,
    )
    print(f"serving {args.model} (Ctrl+C stops)", file=sys.stderr)
    launch(settings, args.host, args.port)
    return 0
