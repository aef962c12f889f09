"""``subject-inpaint inpaint``: paint the subject of a reference photo into a region of a scene."""

from __future__ import annotations

import argparse
import secrets

from ..loaders.layout import check_model
from ..utils.files import SUBJECT_INDEX, check_output_files, read_index
from ..utils.parse import box_option, int_option, seed_option
from . import options
from .options import CommandError, say


def register(sub) -> None:
    p = sub.add_parser(
        "inpaint",
        help="paint the reference's subject into a region of a scene",
        description="Paint the subject of a reference photo into the region of a scene marked by a mask "
        "(white = edit) or a box. The result has the scene's size; outside the region every pixel is "
        "the scene's.",
    )
    p.add_argument("--scene", required=True, metavar="IMAGE", help="the scene photo (any size and mode)")
    region = p.add_mutually_exclusive_group(required=True)
    region.add_argument(
        "--mask",
        metavar="IMAGE",
        help="mask image, white (>= 50%% grey) = region to edit; same aspect ratio as the scene",
    )
    region.add_argument("--box", type=box_option, metavar="X0,Y0,X1,Y1", help="region to edit as a box in scene pixels")
    p.add_argument(
        "--reference",
        metavar="IMAGE",
        help="photo of the subject to paint in (with --subject: default its first reference crop)",
    )
    p.add_argument(
        "--reference-box", type=box_option, metavar="X0,Y0,X1,Y1", help="crop the reference to this box first"
    )
    options.add_model(p)
    options.add_original_config(p)
    subject = p.add_argument_group("fine-tuned subject (modified guidance)")
    subject.add_argument(
        "--subject",
        metavar="DIR",
        help="a subject folder from `subject-inpaint finetune` (or an original subject checkpoint); "
        "--model defaults to the base it names",
    )
    add_painting_options(p, subject)
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output image (.png keeps the scene's pixels exact; several images get -0, -1 ... suffixes)",
    )
    p.add_argument("--seed", type=seed_option, help="random seed (default: a fresh one, printed so it can be reused)")
    options.add_device(p)
    options.add_dtype(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    options.add_quiet(p, "no progress bar or messages, only the output paths")
    p.set_defaults(command_check=check, command_run=run)


def add_painting_options(p: argparse.ArgumentParser, subject) -> list[str]:
    """The flags of every painting option (``PaintSettings``; shared with ``batch``): modified guidance in the
    argument group ``subject``, the preset's levers in a group of their own, then ``--max-pixels``. Returns the
    options' names (``args.<name>``; a batch job may set each)."""
    from ..imaging import MAX_PIXELS, PILLOW_HARD_LIMIT

    speed = p.add_argument_group("sampling and speed (the preset's values unless given)")
    names = options.add_settings(p, {"subject": subject, "speed": speed})
    p.add_argument(
        "--max-pixels",
        type=int_option(1, PILLOW_HARD_LIMIT),
        default=MAX_PIXELS,
        help=f"largest scene, mask or reference read, in pixels (default {MAX_PIXELS:,}; at most "
        f"{PILLOW_HARD_LIMIT:,}, Pillow's own limit)",
    )
    return names


def model_and_reference(args: argparse.Namespace) -> tuple[str, str]:
    """The model (``--model``, else the base a subject folder names, else the embedded one) and the
    reference (``--reference``, else the subject folder's first reference crop)."""
    from ..session import SubjectError, subject_reference

    folder = options.subject_folder(args.subject)
    base = (read_index(folder / SUBJECT_INDEX) or {}).get("base") if folder else None
    model = args.model or base or options.default_model_or_error()
    reference = args.reference
    if reference is None:
        try:
            reference = subject_reference(folder)
        except SubjectError:
            raise CommandError("--reference is required (a photo of the subject)") from None
    return str(model), reference


def check(args: argparse.Namespace) -> None:
    """Read every input and try every output before the model is loaded."""
    from .. import imaging

    args.settings = options.settings_from_args(args)
    options.check_device_name(args.device)
    options.require_model(args.model)
    model_flag = "--model" if args.model is not None or args.subject is None else "the subject's base model"
    args.model, args.reference = model_and_reference(args)
    options.require_model(args.model, model_flag)
    for flag, value in (("--ldm-config", args.ldm_config), ("--vision-config", args.vision_config)):
        options.require_file(value, flag)
    outputs = options.output_paths(args.out, args.num_images)
    for path in outputs:
        options.image_output(path)
    # read once: checked now, painted in ``run``
    images = {name: _opened(getattr(args, name), name, args.max_pixels) for name in ("scene", "mask", "reference")}
    imaging.load_scene_and_mask(images["scene"], images["mask"], args.box)
    if args.reference_box is not None:
        imaging.box_to_mask(args.reference_box, images["reference"].size, "--reference-box", "reference")
    args.images = images
    inputs = [("--scene", args.scene), ("--mask", args.mask), ("--reference", args.reference)]
    check_output_files(outputs, inputs=inputs, overwrite=args.overwrite)
    check_model(args.model, model_flag)
    args.outputs = outputs


def _opened(path: str | None, what: str, max_pixels: int):
    from ..imaging import open_image

    return None if path is None else open_image(path, what, max_pixels)


def run(args: argparse.Namespace) -> int:
    from .. import imaging
    from ..session import PaintRequest

    session = options.session(args)
    say(args, f"loading {args.model}")
    pipe = session.pipeline
    say(args, f"on {pipe.device} ({str(pipe.dtype).removeprefix('torch.')})")
    if args.subject:
        say(args, f"subject {args.subject} (model weight {args.model_weight:g})")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    if args.seed is None:
        say(args, f"seed {seed}")
    request = PaintRequest(
        args.images["scene"],
        args.images["reference"],
        mask=args.images["mask"],
        box=args.box,
        reference_box=args.reference_box,
        subject=args.subject,
        seed=seed,
        settings=args.settings,
    )
    for image, path in zip(session.paint_one(request, progress=not args.quiet), args.outputs, strict=True):
        imaging.save_image_atomic(image, path)
        print(path)
    return 0
