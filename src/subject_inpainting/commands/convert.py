"""``subject-inpaint convert``: read a model in any supported format, write it in the project's format."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..loaders.checkpoint_io import check_weights_file
from ..loaders.layout import check_model
from ..utils.files import check_output_folder
from . import options


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a model (original model.ckpt, diffusers folder, hub id) to the project's format",
        description="Read a model in any supported format and write it as a project-format folder "
        "(safetensors + JSON configs), checking that every weight of the source is used.",
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="original model.ckpt (or a folder holding it), diffusers Paint-by-Example folder, or hub id",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write (must be new or empty; --overwrite replaces a folder this project wrote)",
    )
    options.add_original_config(p)
    sd = p.add_argument_group("initialising from Stable Diffusion (base training)")
    sd.add_argument(
        "--from-sd",
        action="store_true",
        help="SOURCE is an SD-v1.x checkpoint: widen its UNet to 9 input channels (5 zero-initialised), keep its "
        "VAE, add a CLIP vision tower and a fresh class mapper, projection and unconditional vector",
    )
    sd.add_argument(
        "--vision-model",
        metavar="PATH_OR_ID",
        default="openai/clip-vit-large-patch14",
        help="with --from-sd: the CLIP vision tower (default openai/clip-vit-large-patch14, from the hub)",
    )
    options.add_seed(sd, "with --from-sd: seed of the new parts (default 0)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="store the weights in this precision (default: as the source)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output folder, if this project wrote it (the new one is swapped in when complete)",
    )
    options.add_quiet(p, "no messages, only the output path")
    p.set_defaults(command_check=check, command_run=run)


def check(args: argparse.Namespace) -> None:
    """Everything ``run`` can find wrong in SOURCE without loading it is refused here, before "reading"."""
    options.require_model(args.source, "SOURCE")
    if args.from_sd:
        options.require_file(args.source, "SOURCE")
        options.require_model(args.vision_model, "--vision-model")
    for flag, value in (("--ldm-config", args.ldm_config), ("--vision-config", args.vision_config)):
        options.require_file(value, flag)
    inputs = [
        ("SOURCE", args.source),
        ("--ldm-config", args.ldm_config),
        ("--vision-config", args.vision_config),
        ("--vision-model", args.vision_model if args.from_sd else None),
    ]
    check_output_folder(args.out, kinds=("model",), inputs=inputs, overwrite=args.overwrite)
    if args.from_sd:
        check_weights_file(args.source, f"SOURCE {args.source}")
    else:
        check_model(args.source, "SOURCE")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..loaders import load_components, save_components

    options.say(args, f"reading {args.source}")
    if args.from_sd:
        from ..loaders.sd import load_from_sd

        components = load_from_sd(args.source, args.vision_model, args.ldm_config, args.vision_config, args.seed)
    else:
        components = load_components(args.source, ldm_config=args.ldm_config, vision_config=args.vision_config)
    if args.dtype:
        for name in ("unet", "vae", "reference_encoder"):
            components[name].to(getattr(torch, args.dtype))
    out = Path(args.out)
    save_components(components, out, overwrite=args.overwrite, extra={"converted_from": str(args.source)})
    print(out)
    return 0
