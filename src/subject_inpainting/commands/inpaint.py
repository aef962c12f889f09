"""``subject-inpaint inpaint``: paint the subject of a reference photo into a region of a scene."""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from ..presets import DECODES, DEFAULT_PRESET, PRESETS, describe, preset_settings
from ..sampling.catalog import SAMPLERS
from ..utils.files import SUBJECT_INDEX, check_output_files, read_index
from ..utils.parse import ParseError, box_option, float_option, int_option, parse_int, seed_option
from . import options
from .options import CommandError, say

MAX_CONTEXT = 100.0


def _interval(text: str) -> tuple[int, int]:
    low, high = (parse_int(v.strip(), "--guidance-interval", 0, 1000) for v in text.split(","))
    if low > high:
        raise ParseError(f"--guidance-interval: LOW must not exceed HIGH, got {low},{high}")
    return low, high


def interval_option(text: str) -> tuple[int, int]:
    """An argparse type: ``LOW,HIGH`` timesteps."""
    if text.count(",") != 1:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two timesteps), got {text!r}")
    try:
        return _interval(text)
    except ParseError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None


MAX_FEATHER = 10_000.0


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


def add_painting_options(p: argparse.ArgumentParser, subject) -> list[argparse.Action]:
    """The options that say how to paint (shared with ``batch``): modified guidance (in the argument group
    ``subject``), sampling and speed, guidance, the region and the paste-back, then ``--max-pixels``. Returns
    the painting options' actions (all but ``--max-pixels``), which a batch job may override."""
    from ..imaging import MAX_PIXELS, PILLOW_HARD_LIMIT

    before = len(p._actions)  # an argument group adds its options to its parser's list

    subject.add_argument(
        "--model-weight",
        type=options.unit_option,
        default=0.8,
        help="weight w of the fine-tuned model against the pretrained one, 0..1 (default 0.8)",
    )
    subject.add_argument(
        "--guidance-threshold",
        type=int_option(0, 1000),
        default=1000,
        help="modified guidance below this timestep, plain pretrained guidance above, 0..1000 (default 1000 = always)",
    )
    speed = p.add_argument_group("sampling and speed (the preset's values unless given)")
    speed.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=DEFAULT_PRESET,
        help="; ".join(f"{name}: {describe(name)}" for name in PRESETS) + f" (default {DEFAULT_PRESET})",
    )
    speed.add_argument(
        "--steps",
        type=options.steps_option,
        help=f"sampling steps, 1..{options.MAX_SAMPLING_STEPS} (default: the preset's)",
    )
    speed.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help="plms and ddim are the original samplers; the others are diffusers solvers "
        "(dpmsolver++ needs 15-20 steps) (default: the preset's)",
    )
    speed.add_argument(
        "--deep-cache",
        type=int_option(1, options.MAX_SAMPLING_STEPS),
        metavar="N",
        help="reuse the UNet's deep features on N-1 calls out of N (DeepCache; 1 = off) (default: the preset's)",
    )
    speed.add_argument(
        "--deep-cache-branch",
        type=int_option(0, 8),
        metavar="B",
        help="how many layers of the UNet's first block the reusing calls still run (default: the preset's)",
    )
    speed.add_argument(
        "--guidance-interval",
        type=interval_option,
        metavar="LOW,HIGH",
        help="guide only at timesteps LOW..HIGH (0..1000), the conditional prediction alone elsewhere "
        "(0,1000 = every step) (default: the preset's)",
    )
    speed.add_argument(
        "--decode",
        choices=DECODES,
        help="full, or region: decode only the latents around the region when pasting back; faster, but the "
        "VAE's group norms then see only that window, so the region comes out a few levels off (default: the "
        "preset's)",
    )
    p.add_argument(
        "--guidance",
        type=options.guidance_option,
        default=5.0,
        help=f"classifier-free guidance scale, 0..{options.MAX_GUIDANCE:g}; 1 turns guidance off (default 5)",
    )
    p.add_argument("--eta", type=options.unit_option, default=0.0, help="DDIM noise, 0..1 (default 0)")
    p.add_argument(
        "--num-images",
        type=int_option(1, options.MAX_NUM_IMAGES),
        default=1,
        help=f"images to generate in one batch, 1..{options.MAX_NUM_IMAGES} (default 1)",
    )
    p.add_argument(
        "--region",
        choices=("full", "crop"),
        default="full",
        help="full: the whole scene goes to the model, stretched to its square (the original); "
        "crop: a square around the mask (better for large photos and small masks) (default full)",
    )
    p.add_argument(
        "--context",
        type=float_option(1.0, MAX_CONTEXT),
        default=2.0,
        help=f"with --region crop: crop side over the mask's longer side, 1..{MAX_CONTEXT:g} (default 2)",
    )
    p.add_argument(
        "--feather",
        type=float_option(0.0, MAX_FEATHER),
        help="seam width in pixels inside the mask (default about 1%% of the shorter side; 0 = hard)",
    )
    p.add_argument(
        "--no-paste-back",
        action="store_true",
        help="return the model's whole output instead of pasting it into the scene inside the mask",
    )
    p.add_argument(
        "--keep-known",
        action="store_true",
        help="hold the model's prediction outside the region to the scene at every step (not in the original; "
        "helps models that shift the scene's colours)",
    )
    painting = p._actions[before:]
    p.add_argument(
        "--max-pixels",
        type=int_option(1, PILLOW_HARD_LIMIT),
        default=MAX_PIXELS,
        help=f"largest scene, mask or reference read, in pixels (default {MAX_PIXELS:,}; at most "
        f"{PILLOW_HARD_LIMIT:,}, Pillow's own limit)",
    )
    return painting


def check_painting(args: argparse.Namespace, flag: str = "--") -> None:
    """The painting options' combinations (each option's bounds are its parser's)."""
    settings = preset_settings(args.preset, sampler=args.sampler, num_inference_steps=args.steps)
    if args.eta and settings["sampler"] != "ddim":
        raise CommandError(f"{flag}eta applies to {flag}sampler ddim only (got {flag}sampler {settings['sampler']})")


def painting_kwargs(args: argparse.Namespace) -> dict:
    """The pipeline's keyword arguments that the painting options (``add_painting_options``) set."""
    return {
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "sampler": args.sampler,
        "eta": args.eta,
        "num_images": args.num_images,
        "paste_back": not args.no_paste_back,
        "keep_known": args.keep_known,
        "feather": args.feather,
        "region": args.region,
        "context": args.context,
        "model_weight": args.model_weight,
        "guidance_threshold": args.guidance_threshold,
        "preset": args.preset,
        "deep_cache": args.deep_cache,
        "deep_cache_branch": args.deep_cache_branch,
        "guidance_interval": args.guidance_interval,
        "decode": args.decode,
    }


def model_and_reference(args: argparse.Namespace) -> tuple[str, str]:
    """The model (``--model``, else the base a subject folder names, else the embedded one) and the
    reference (``--reference``, else the subject folder's first reference crop)."""
    folder = options.subject_folder(args.subject)
    base = (read_index(folder / SUBJECT_INDEX) or {}).get("base") if folder else None
    model = args.model or base or options.default_model_or_error()
    reference = args.reference or subject_reference(folder)
    if reference is None:
        raise CommandError("--reference is required (a photo of the subject)")
    return str(model), reference


def subject_reference(folder: Path | None) -> str | None:
    """A subject folder's first reference crop (``references/*.png``), the default reference of its pictures."""
    crops = sorted((folder / "references").glob("*.png")) if folder else []
    return str(crops[0]) if crops else None


def check(args: argparse.Namespace) -> None:
    """Read every input and try every output before the model is loaded."""
    from .. import imaging

    check_painting(args)
    options.check_device_name(args.device)
    options.require_model(args.model)
    args.model, args.reference = model_and_reference(args)
    options.require_model(args.model, "--model" if args.subject is None else "the subject's base model")
    for flag, value in (("--ldm-config", args.ldm_config), ("--vision-config", args.vision_config)):
        options.require_file(value, flag)
    outputs = options.output_paths(args.out, args.num_images)
    for path in outputs:
        options.image_output(path)
    imaging.load_scene_and_mask(
        _opened(args.scene, "scene", args.max_pixels),
        None if args.mask is None else _opened(args.mask, "mask", args.max_pixels),
        args.box,
    )
    reference = _opened(args.reference, "reference", args.max_pixels)
    if args.reference_box is not None:
        imaging.box_to_mask(args.reference_box, reference.size, "--reference-box", "reference")
    inputs = [("--scene", args.scene), ("--mask", args.mask), ("--reference", args.reference)]
    check_output_files(outputs, inputs=inputs, overwrite=args.overwrite)
    args.outputs = outputs


def _opened(path: str, what: str, max_pixels: int):
    from ..imaging import open_image

    return open_image(path, what, max_pixels)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import imaging
    from ..pipeline import SubjectInpaintPipeline

    device = options.resolve_device(args.device)
    dtype = options.resolve_dtype(args.dtype, device)
    say(args, f"loading {args.model} on {device} ({str(dtype).removeprefix('torch.')})")
    pipe = SubjectInpaintPipeline.from_pretrained(
        args.model, device=device, dtype=dtype, ldm_config=args.ldm_config, vision_config=args.vision_config
    )
    if args.subject:
        say(args, f"subject {args.subject} (model weight {args.model_weight:g})")
        pipe.load_subject(args.subject)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    if args.seed is None:
        say(args, f"seed {seed}")
    result = pipe(
        scene=_opened(args.scene, "scene", args.max_pixels),
        reference=_opened(args.reference, "reference", args.max_pixels),
        mask=None if args.mask is None else _opened(args.mask, "mask", args.max_pixels),
        box=args.box,
        reference_box=args.reference_box,
        generator=torch.Generator().manual_seed(seed),
        progress=not args.quiet,
        **painting_kwargs(args),
    )
    for image, path in zip(result.images, args.outputs, strict=True):
        imaging.save_image_atomic(image, path)
        print(path)
    return 0
