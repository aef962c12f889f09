"""The ``subject-inpaint`` command line.

Every bad input ends with one line on stderr and exit code 2, before any output is written.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

EXIT_BAD_INPUT = 2
DTYPES = ("auto", "float32", "float16", "bfloat16")


class CLIError(ValueError):
    """A bad command-line input (the message is printed as is, exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------------------------
# Shared option helpers
# ---------------------------------------------------------------------------------------------------
def resolve_device(name: str):
    """``auto`` → CUDA if available, else Apple MPS, else CPU; an explicit device must exist."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CLIError(f"--device {name!r}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CLIError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CLIError(f"--device {name}: MPS is not available on this machine")
    return device


def resolve_dtype(name: str, device):
    """``auto`` → float16 on CUDA, float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--model",
        required=required,
        metavar="PATH_OR_ID",
        help="model to use: a project-format folder, a diffusers Paint-by-Example folder, an original "
        "model.ckpt (or a folder holding it), or a hub id such as Fantasy-Studio/Paint-by-Example "
        "(default: the base a --subject names, else the embedded toy model)",
    )
    _add_original_config_args(p)


def _add_original_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ldm-config",
        metavar="YAML",
        help="LDM model config of an original checkpoint that is not the released SD-v1 layout",
    )
    p.add_argument(
        "--vision-config",
        metavar="JSON",
        help="CLIPVisionConfig of an original checkpoint whose vision tower is not ViT-L/14",
    )


def _int_at_least(low: int):
    """An argparse type: a whole number ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected a number >= {low}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_count = _int_at_least(0)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed between 0 and 2**63 - 1, got {value}")
    return value


def output_paths(out: str, n: int) -> list[Path]:
    """``--out result.png`` → that path, or ``result-0.png … result-{n-1}.png`` for several images."""
    path = Path(out)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(n)]


def check_outputs(paths: Sequence[Path], inputs: Sequence[str | None], overwrite: bool) -> None:
    """Refuse outputs that would overwrite an input (always) or an existing file (without --overwrite)."""
    from .imaging import image_format

    input_paths = {Path(p).resolve() for p in inputs if p}
    for path in paths:
        image_format(path)
        if path.resolve() in input_paths:
            raise CLIError(f"--out {path}: is one of the inputs; refusing to overwrite it")
        if path.is_dir():
            raise CLIError(f"--out {path}: is a folder; give an image file name such as result.png")
        if path.exists() and not overwrite:
            raise CLIError(f"--out {path}: already exists (add --overwrite to replace it)")
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise CLIError(f"--out {path}: cannot write into {parent}")


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
# inpaint
# ---------------------------------------------------------------------------------------------------
def add_inpaint_parser(sub) -> None:
    from .sampling.samplers import SAMPLERS

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
    region.add_argument("--box", metavar="X0,Y0,X1,Y1", help="region to edit as a box in scene pixels")
    p.add_argument(
        "--reference",
        metavar="IMAGE",
        help="photo of the subject to paint in (with --subject: default its first reference crop)",
    )
    p.add_argument("--reference-box", metavar="X0,Y0,X1,Y1", help="crop the reference to this box first")
    _add_model_args(p, required=False)
    subject = p.add_argument_group("fine-tuned subject (modified guidance)")
    subject.add_argument(
        "--subject",
        metavar="DIR",
        help="a subject folder from `subject-inpaint finetune` (or an original subject checkpoint); "
        "--model defaults to the base it names",
    )
    subject.add_argument(
        "--model-weight",
        type=float,
        default=0.8,
        help="weight w of the fine-tuned model against the pretrained one, 0..1 (default 0.8)",
    )
    subject.add_argument(
        "--guidance-threshold",
        type=int,
        default=1000,
        help="modified guidance below this timestep, plain pretrained guidance above (default 1000 = always)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output image (.png keeps the scene's pixels exact; several images get -0, -1 ... suffixes)",
    )
    p.add_argument("--steps", type=_positive_int, default=50, help="sampling steps (default 50)")
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="plms",
        help="plms and ddim are the original samplers; the others are diffusers solvers "
        "(dpmsolver++ needs about 20 steps) (default plms)",
    )
    p.add_argument(
        "--guidance",
        type=_non_negative_float,
        default=5.0,
        help="classifier-free guidance scale; 1 turns guidance off (default 5)",
    )
    p.add_argument("--eta", type=_non_negative_float, default=0.0, help="DDIM noise, 0..1 (default 0)")
    p.add_argument("--seed", type=_seed, help="random seed (default: a fresh one, printed so it can be reused)")
    p.add_argument("--num-images", type=_positive_int, default=1, help="images to generate (default 1)")
    p.add_argument(
        "--region",
        choices=("full", "crop"),
        default="full",
        help="full: the whole scene goes to the model, stretched to its square (the original); "
        "crop: a square around the mask (better for large photos and small masks) (default full)",
    )
    p.add_argument(
        "--context",
        type=float,
        default=2.0,
        help="with --region crop: crop side over the mask's longer side (default 2)",
    )
    p.add_argument(
        "--feather",
        type=_non_negative_float,
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
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weights' precision; auto = float16 on CUDA, float32 elsewhere",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages, only the output paths")
    p.set_defaults(handler=run_inpaint)


def resolve_model_and_reference(args: argparse.Namespace) -> tuple[str, str]:
    """The model (``--model``, else the base a subject folder names) and the reference (``--reference``,
    else the subject folder's first reference crop)."""
    from .convert.subject import is_subject_folder, read_subject_index, subject_reference_crops

    subject = Path(args.subject) if args.subject else None
    if subject is not None and not subject.exists():
        raise CLIError(f"--subject {subject}: no such folder or file")
    folder = subject if subject is not None and subject.is_dir() and is_subject_folder(subject) else None
    model = args.model or (read_subject_index(folder).get("base") if folder else None) or default_model_or_error()
    reference = args.reference
    if reference is None:
        crops = subject_reference_crops(folder) if folder else []
        if not crops:
            raise CLIError("--reference is required (a photo of the subject)")
        reference = str(crops[0])
    return str(model), reference


def run_inpaint(args: argparse.Namespace) -> int:
    import torch

    from . import imaging
    from .pipeline import SubjectInpaintPipeline

    if not args.context >= 1:
        raise CLIError(f"--context must be >= 1, got {args.context}")
    if args.eta and args.sampler != "ddim":
        raise CLIError(f"--eta applies to --sampler ddim only (got --sampler {args.sampler})")
    if args.eta > 1:
        raise CLIError(f"--eta must be between 0 and 1, got {args.eta}")
    if not 0 <= args.model_weight <= 1:
        raise CLIError(f"--model-weight must be between 0 and 1, got {args.model_weight}")
    if not 0 <= args.guidance_threshold <= 1000:
        raise CLIError(f"--guidance-threshold must be between 0 and 1000, got {args.guidance_threshold}")
    model, reference = resolve_model_and_reference(args)
    # Fail before work: read every input and check every output before loading the model.
    imaging.load_scene_and_mask(args.scene, args.mask, args.box)
    imaging.open_image(reference, "reference")
    if args.reference_box:
        imaging.parse_box(args.reference_box)
    outputs = output_paths(args.out, args.num_images)
    check_outputs(outputs, [args.scene, args.mask, reference], args.overwrite)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)

    _say(args, f"loading {model} on {device} ({str(dtype).removeprefix('torch.')})")
    pipe = SubjectInpaintPipeline.from_pretrained(
        model, device=device, dtype=dtype, ldm_config=args.ldm_config, vision_config=args.vision_config
    )
    if args.subject:
        _say(args, f"subject {args.subject} (model weight {args.model_weight:g})")
        pipe.load_subject(args.subject)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    if args.seed is None:
        _say(args, f"seed {seed}")
    result = pipe(
        scene=args.scene,
        reference=reference,
        mask=args.mask,
        box=args.box,
        reference_box=args.reference_box,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        sampler=args.sampler,
        eta=args.eta,
        num_images=args.num_images,
        generator=torch.Generator().manual_seed(seed),
        paste_back=not args.no_paste_back,
        keep_known=args.keep_known,
        feather=args.feather,
        region=args.region,
        context=args.context,
        model_weight=args.model_weight,
        guidance_threshold=args.guidance_threshold,
        progress=not args.quiet,
    )
    for image, path in zip(result.images, outputs, strict=True):
        imaging.save_image_atomic(image, path)
        print(path)
    return 0


# ---------------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------------
def add_convert_parser(sub) -> None:
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
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist unless --overwrite)")
    _add_original_config_args(p)
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
    sd.add_argument("--seed", type=int, default=0, help="with --from-sd: seed of the new parts (default 0)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="store the weights in this precision (default: as the source)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no messages, only the output path")
    p.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    import torch

    from .convert import load_components, save_components

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(f"--out {out}: already exists and is not empty (add --overwrite to replace it)")
    if Path(args.source).resolve() == out.resolve():
        raise CLIError(f"--out {out}: is the source; write the converted model elsewhere")
    _say(args, f"reading {args.source}")
    if args.from_sd:
        from .convert.sd import load_from_sd

        components = load_from_sd(args.source, args.vision_model, args.ldm_config, args.vision_config, args.seed)
    else:
        components = load_components(args.source, ldm_config=args.ldm_config, vision_config=args.vision_config)
    if args.dtype:
        for name in ("unet", "vae", "reference_encoder"):
            components[name].to(getattr(torch, args.dtype))
    save_components(components, out, overwrite=args.overwrite, extra={"converted_from": str(args.source)})
    print(out)
    return 0


# ---------------------------------------------------------------------------------------------------
# train, finetune
# ---------------------------------------------------------------------------------------------------
def add_training_parsers(sub) -> None:
    from .training import finetune, train

    train.build_parser(
        sub.add_parser(
            "train",
            help="base training: the Paint-by-Example objective on images with boxes",
            description=train.__doc__.split("\n\n")[0],
        )
    ).set_defaults(handler=_run_training(train.main))
    finetune.build_parser(
        sub.add_parser(
            "finetune",
            help="subject fine-tuning from 3-5 photos of one subject",
            description=finetune.__doc__.split("\n\n")[0],
        )
    ).set_defaults(handler=_run_training(finetune.main))


def _run_training(main_function):
    def run(args: argparse.Namespace) -> int:
        result = main_function(args)
        if result.get("seconds"):  # toy train: how long each stage took (a finished stage is skipped: ~0)
            times = ", ".join(f"{stage} {s / 60:.1f} min" for stage, s in result["seconds"].items())
            print(f"time: {times}; in all {sum(result['seconds'].values()) / 60:.1f} min", file=sys.stderr)
        print(result["out"])
        return 0

    return run


# ---------------------------------------------------------------------------------------------------
# demo, toy
# ---------------------------------------------------------------------------------------------------
def add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="paint held-out toy subjects with the embedded model and write a grid picture",
        description="Run the whole pipeline on the embedded toy-world model (or --model) for a few held-out "
        "cases and write a grid: scene | region | reference | result | truth.",
    )
    p.add_argument(
        "--out", metavar="FILE", help="grid picture to write (default subject-inpaint-demo.png, numbered if taken)"
    )
    p.add_argument("--model", metavar="PATH_OR_ID", help="model (default: the embedded toy model)")
    p.add_argument("--cases", type=_positive_int, default=4, help="rows of the grid (default 4)")
    p.add_argument("--steps", type=_positive_int, default=20, help="sampling steps (default 20)")
    p.add_argument("--sampler", default="dpmsolver++", help="sampler (default dpmsolver++)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the cases and the noise (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--no-keep-known",
        action="store_true",
        help="let the model repaint the scene outside the region too (see inpaint --keep-known; on by default here)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .demo import demo
    from .sampling.samplers import SAMPLERS
    from .utils import free_path

    if args.sampler not in SAMPLERS:
        raise CLIError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {args.sampler!r}")
    model = args.model or default_model_or_error()
    if args.out:
        out = Path(args.out)
        check_outputs([out], [], args.overwrite)
    else:
        out = free_path("subject-inpaint-demo.png")
    result = demo(
        model,
        out,
        args.cases,
        args.steps,
        args.sampler,
        args.seed,
        resolve_device(args.device),
        keep_known=not args.no_keep_known,
    )
    if result["scores"] is not None:
        scores = ", ".join(f"{s:.2f}" for s in result["scores"])
        print(f"identity scores of the results against the truth (1 = same subject): {scores}", file=sys.stderr)
    reads = ", ".join(f"{read or 'nothing'} (subject: {shape})" for read, shape in result["outlines"])
    right = sum(read == shape for read, shape in result["outlines"])
    print(f"painted outlines read as: {reads}; {right} of {len(result['outlines'])} right", file=sys.stderr)
    print(out)
    return 0


def default_model_or_error() -> str:
    from .weights import default_model

    model = default_model()
    if model is None:
        raise CLIError("this installation has no embedded model; name one with --model")
    return str(model)


def _command_group(sub, name: str, help: str, title: str):
    """A command with commands of its own (``toy train``, ``eval cocoee`` ...): returns their subparsers."""
    p = sub.add_parser(name, help=help)
    return p.add_subparsers(title=title, metavar="NAME", required=True, parser_class=OneLineParser, help="which one")


def add_toy_parsers(sub) -> None:
    from .training import toy as toy_training

    toy_sub = _command_group(sub, "toy", "the toy world: train the embedded model, write datasets", "toy commands")
    toy_training.build_parser(
        toy_sub.add_parser(
            "train",
            help="train every component of the toy model on the CPU",
            description=toy_training.__doc__.split("\n\n")[0],
        )
    ).set_defaults(handler=_run_training(toy_training.main))
    w = toy_sub.add_parser(
        "world",
        help="write toy-world datasets: base-training images with boxes, subject photos, held-out test cases",
        description="Write the toy world in the project's data formats: a JSON Lines manifest of training "
        "renders with boxes, 3–5 photos per held-out subject with a boxes file (for finetune), and held-out "
        "test cases (scene, mask, reference, truth). Deterministic by seed.",
    )
    w.add_argument("--out", required=True, metavar="DIR", help="a new folder to write (must not exist)")
    w.add_argument("--seed", type=_seed, default=0, help="world seed (default 0, the embedded model's world)")
    w.add_argument("--train-images", type=_count, default=1000, help="base-training renders (default 1000)")
    w.add_argument("--subjects", type=_count, default=8, help="held-out subjects with photos and cases (default 8)")
    w.add_argument("--photos", type=_positive_int, default=4, help="photos per subject (default 4)")
    w.add_argument("--cases", type=_count, default=4, help="test cases per subject (default 4)")
    w.add_argument("--size", type=_positive_int, default=64, help="side of every render in pixels (default 64)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(handler=run_toy_world)
    e = toy_sub.add_parser(
        "export",
        help="copy a finished toy-training run's model and evaluator into the package (the embedded default)",
        description="Copy RUN/model (weights in half precision) and RUN/evaluator into the package's embedded "
        "weights folder, replacing what is there only once the copy is complete.",
    )
    e.add_argument("run", metavar="RUN", help="the --out folder of a finished `toy train`")
    e.add_argument("--to", metavar="DIR", help="destination (default: the installed package's weights/toy)")
    e.set_defaults(handler=run_toy_export)


def run_toy_export(args: argparse.Namespace) -> int:
    from .training.toy import export
    from .weights import EMBEDDED

    destination = Path(args.to) if args.to else EMBEDDED
    sizes = export(Path(args.run), destination)
    total = sum(sizes.values()) / 2**20
    print(f"exported the model and evaluator to {destination} ({total:.1f} MB)")
    return 0


def run_toy_world(args: argparse.Namespace) -> int:
    from .data.toy import write_dataset

    if args.size < 32:
        raise CLIError(f"--size {args.size}: renders need at least 32 pixels")
    result = write_dataset(
        args.out, args.seed, args.train_images, args.subjects, args.photos, args.cases, args.size, not args.quiet
    )
    print(
        f"wrote {result['train_images']} training images, {result['subjects']} subjects and "
        f"{result['cases']} test cases to {result['out']}"
    )
    return 0


def add_bench_parser(sub) -> None:
    bench_sub = _command_group(sub, "bench", "offline benchmarks of the method", "benchmarks")
    t = bench_sub.add_parser(
        "toy",
        help="the toy world: base vs fine-tuned subjects, detail module, model weight, samplers",
        description="Fine-tune held-out toy subjects and paint held-out cases under each setting; report the "
        "identity score, the PSNR outside the hole and the Fréchet distance of evaluator features.",
    )
    t.add_argument("--out", default="bench-toy", metavar="DIR", help="results folder (default bench-toy)")
    t.add_argument("--model", metavar="PATH", help="base model (default: the embedded toy model)")
    t.add_argument("--evaluator", metavar="PATH", help="evaluator identity encoder (default: the embedded one)")
    t.add_argument("--quick", action="store_true", help="a few cases and steps (for CI)")
    t.add_argument("--subjects", type=_positive_int, help="held-out subjects (default 8)")
    t.add_argument("--cases", type=_positive_int, help="test cases per subject (default 4)")
    t.add_argument("--finetune-steps", type=_positive_int, help="fine-tuning steps per subject (default 150)")
    t.add_argument("--seed", type=_seed, default=0, help="seed of the cases and the sampling (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=run_bench_toy)


def run_bench_toy(args: argparse.Namespace) -> int:
    from .evaluation.toy_bench import ToyBenchConfig, run_toy_bench
    from .weights import default_evaluator

    config = ToyBenchConfig.quick() if args.quick else ToyBenchConfig()
    for name, value in (
        ("subjects", args.subjects),
        ("cases_per_subject", args.cases),
        ("finetune_steps", args.finetune_steps),
    ):
        if value is not None:
            setattr(config, name, value)
    config.seed = args.seed
    model = args.model or default_model_or_error()
    evaluator = args.evaluator or default_evaluator()
    if evaluator is None:
        raise CLIError("no evaluator identity encoder: give --evaluator (toy train writes one to OUT/evaluator)")
    result = run_toy_bench(model, evaluator, Path(args.out), config, progress=not args.quiet)
    from .evaluation.toy_bench import markdown_table, reference_points_table, truth_outline_line

    print(markdown_table(result["results"]))
    print(truth_outline_line(result["truth_outline_read"], result["results"][0]["cases"]))
    print("\nWhat the identity score sees:\n" + reference_points_table(result["truth_with_one_part_changed"]))
    print(Path(args.out) / "results.json")
    return 0


# ---------------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------------
def _add_generation_args(p: argparse.ArgumentParser, out_help: str, sampler: str = "plms", steps: int = 50) -> None:
    """What every evaluation runner takes: where to write, how to paint, and the CLIP model it scores with."""
    from .sampling.samplers import SAMPLERS

    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument(
        "--clip-model", default=None, metavar="PATH_OR_ID", help="CLIP (default openai/clip-vit-base-patch32)"
    )
    p.add_argument("--model", metavar="PATH_OR_ID", help="model to evaluate (default: the embedded toy model)")
    p.add_argument("--sampler", choices=SAMPLERS, default=sampler, help=f"sampler (default {sampler}, the original's)")
    p.add_argument("--steps", type=_positive_int, default=steps, help=f"sampling steps (default {steps})")
    p.add_argument("--guidance-scale", type=_non_negative_float, default=5.0, help="guidance scale (default 5)")
    p.add_argument("--seed", type=_seed, default=0, help="case k is painted with seed + k (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_eval_parsers(sub) -> None:
    eval_sub = _command_group(
        sub, "eval", "the papers' benchmarks: COCOEE (FID, QS, CLIP score) and a subject protocol", "evaluations"
    )
    c = eval_sub.add_parser(
        "cocoee",
        help="paint COCOEE's 3,500 cases and score them (FID, QS, region CLIP score)",
        description="Paint every COCOEE case (resumable: finished pictures are skipped; spread over GPUs with "
        "`accelerate launch`), then score: FID against the prepared COCO test2017 set, QS with a Gaussian "
        "mixture, region CLIP score. Writes OUT/results/, OUT/report.json and OUT/report.html.",
    )
    c.add_argument("--data", required=True, metavar="DIR", help="the COCOEE folder as published (test_bench)")
    _add_generation_args(c, "results and reports (resumed if it exists)")
    c.add_argument("--paste-back", action="store_true", help="paste into the scene (the original does not)")
    c.add_argument("--limit", type=_positive_int, help="only the first N cases (default all)")
    c.add_argument("--score-only", action="store_true", help="do not paint; score the pictures in OUT/results")
    c.add_argument(
        "--fid-reference",
        metavar="DIR_OR_NPZ",
        help="FID reference: images (`eval prepare`) or pytorch-fid statistics (.npz); FID skipped if absent",
    )
    c.add_argument(
        "--gmm", metavar="FILE", help="QS mixture (.npz/.safetensors, see convert-gmm); QS skipped if absent"
    )
    c.add_argument("--inception-weights", metavar="FILE", help="FID Inception weights file (default: torch hub cache)")
    c.set_defaults(handler=run_eval_cocoee)

    r = eval_sub.add_parser(
        "prepare",
        help="build COCOEE's FID reference set from COCO test2017 (512 shorter side, 512 centre crop)",
        description="Resize each COCO test2017 image's shorter side to 512 (bilinear) and centre-crop 512 × 512, "
        "as the original's create_square_gt_for_fid.py; resumable.",
    )
    r.add_argument("--coco-images", required=True, metavar="DIR", help="COCO test2017 image folder")
    r.add_argument("--out", required=True, metavar="DIR", help="folder of the prepared PNGs")
    r.add_argument("--size", type=_positive_int, default=512, help="side (default 512)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(handler=run_eval_prepare)

    j = eval_sub.add_parser(
        "subjects",
        help="subjects × scenes, with and without fine-tuning; CLIP-I and DINO against held-out photos",
        description="Fine-tune each subject on its first photos, paint every subject into every scene with "
        "the pretrained model and with the fine-tuned subject, and score CLIP-I, DINO (ViT-S/16 class token) "
        "and DINOv2 (mean-pooled) against the held-out photos. Resumable; `accelerate launch` spreads it.",
    )
    j.add_argument("--subjects", required=True, metavar="DIR", help="SUBJECTS/<name>/*.jpg (+ boxes.json)")
    j.add_argument("--scenes", required=True, metavar="DIR", help="X.png + X_mask.png pairs, or a COCOEE folder")
    _add_generation_args(j, "results, fine-tuned subjects, reports (resumed if it exists)")
    j.add_argument("--train-photos", type=_positive_int, default=3, help="photos per subject to fine-tune on (3)")
    j.add_argument("--no-finetune", action="store_true", help="only the pretrained model")
    j.add_argument("--finetune-steps", type=_positive_int, help="fine-tuning steps (default: the original's epochs)")
    j.add_argument("--model-weight", type=_non_negative_float, default=0.8, help="modified guidance w (0.8)")
    j.add_argument("--scene-limit", type=_positive_int, help="only the first N scenes")
    j.add_argument("--dino-model", default=None, metavar="PATH_OR_ID", help="DINO (default facebook/dino-vits16)")
    j.add_argument("--dinov2-model", default=None, metavar="PATH_OR_ID", help="DINOv2 (default facebook/dinov2-base)")
    j.add_argument("--no-dinov2", action="store_true", help="skip the DINOv2 score")
    j.set_defaults(handler=run_eval_subjects)

    g = eval_sub.add_parser(
        "convert-gmm",
        help="turn a pickled scikit-learn Gaussian mixture (the original's QS file) into a safe .npz/.safetensors",
        description="Unpickling runs code chosen by the file's author: this reads SRC only with --trust-pickle.",
    )
    g.add_argument("source", metavar="SRC", help="the pickled GaussianMixture")
    g.add_argument("destination", metavar="DST", help="output .npz or .safetensors")
    g.add_argument("--trust-pickle", action="store_true", help="I trust SRC's author: unpickle it")
    g.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    g.set_defaults(handler=run_eval_convert_gmm)


def _generation(args: argparse.Namespace, model: str):
    from .evaluation.report import Generation

    return Generation(model, args.sampler, args.steps, args.guidance_scale, args.seed)


def _eval_device(name: str) -> str:
    """The device of this process: under ``accelerate launch`` with ``auto``, the process's own GPU."""
    if name == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        return str(PartialState().device)
    return str(resolve_device(name))


def run_eval_cocoee(args: argparse.Namespace) -> int:
    from .evaluation import features
    from .evaluation.cocoee import CocoeeSettings, run_cocoee
    from .evaluation.report import print_summary

    model = args.model or default_model_or_error()
    device = _eval_device(args.device)
    pipe = None
    if not args.score_only:
        from .pipeline import SubjectInpaintPipeline

        pipe = SubjectInpaintPipeline.from_pretrained(model, device=device)
    settings = CocoeeSettings(args.data, _generation(args, model), args.paste_back, args.limit)
    report = run_cocoee(
        settings,
        args.out,
        pipe,
        args.fid_reference,
        args.gmm,
        args.clip_model or features.DEFAULT_CLIP,
        args.inception_weights,
        device,
        not args.quiet,
    )
    print_summary(report, args.out)
    return 0


def run_eval_prepare(args: argparse.Namespace) -> int:
    from .evaluation.cocoee import prepare_fid_reference

    n = prepare_fid_reference(args.coco_images, args.out, args.size, not args.quiet)
    print(f"{n} reference images in {args.out}")
    return 0


def run_eval_subjects(args: argparse.Namespace) -> int:
    from .evaluation import features
    from .evaluation.report import print_summary
    from .evaluation.subjects import SubjectsSettings, run_subjects

    model = args.model or default_model_or_error()
    settings = SubjectsSettings(
        args.subjects,
        args.scenes,
        _generation(args, model),
        args.train_photos,
        not args.no_finetune,
        args.finetune_steps,
        args.model_weight,
        args.scene_limit,
    )
    report = run_subjects(
        settings,
        args.out,
        args.clip_model or features.DEFAULT_CLIP,
        args.dino_model or features.DEFAULT_DINO,
        None if args.no_dinov2 else (args.dinov2_model or features.DEFAULT_DINOV2),
        _eval_device(args.device),
        not args.quiet,
    )
    print_summary(report, args.out)
    return 0


def run_eval_convert_gmm(args: argparse.Namespace) -> int:
    from .evaluation.gmm import convert_pickled_mixture

    destination = Path(args.destination)
    if destination.resolve() == Path(args.source).resolve():
        raise CLIError(f"{destination}: is SRC; write the converted mixture elsewhere")
    if destination.exists() and not args.overwrite:
        raise CLIError(f"{destination}: already exists (add --overwrite to replace it)")
    mixture = convert_pickled_mixture(args.source, args.destination, trust=args.trust_pickle)
    print(f"wrote a {len(mixture.weights)}-component mixture of {mixture.dim}-d features to {args.destination}")
    return 0


# ---------------------------------------------------------------------------------------------------
# ui
# ---------------------------------------------------------------------------------------------------
def add_ui_parser(sub) -> None:
    from .ui import DEFAULT_MAX_PIXELS

    p = sub.add_parser(
        "ui",
        help="a local web page: paint a region, drop in a reference, press Generate",
        description="Serve a web page (Gradio; pip install 'subject-inpainting[ui]') for painting a subject "
        "into a scene. It listens on this computer only unless --host says otherwise.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer)")
    p.add_argument("--port", type=_int_at_least(1), help="port (default: the first free one from 7860)")
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
        type=_int_at_least(1),
        default=DEFAULT_MAX_PIXELS,
        help=f"largest scene accepted, in pixels (default {DEFAULT_MAX_PIXELS:,})",
    )
    p.add_argument("--out-dir", metavar="DIR", help="where results are kept for download (default: a temporary folder)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="weights' precision (default auto)")
    p.set_defaults(handler=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    from .convert.subject import is_subject_folder, read_subject_index

    try:
        from .ui import UISettings, launch
    except ImportError as e:
        raise CLIError(f"the web page needs Gradio: pip install 'subject-inpainting[ui]' ({e})") from None
    for subject in args.subject:
        if not (Path(subject).is_dir() and is_subject_folder(Path(subject))):
            raise CLIError(f"--subject {subject}: not a subject folder (from `subject-inpaint finetune`)")
    base = read_subject_index(Path(args.subject[0])).get("base") if args.subject else None
    model = args.model or base or default_model_or_error()
    device = resolve_device(args.device)
    settings = UISettings(
        model=str(model),
        subjects=args.subject,
        device=device,
        dtype=resolve_dtype(args.dtype, device),
        max_pixels=args.max_pixels,
        out_dir=Path(args.out_dir) if args.out_dir else None,
    )
    print(f"serving {model} (Ctrl+C stops)", file=sys.stderr)
    launch(settings, args.host, args.port)
    return 0


# ---------------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="subject-inpaint",
        description="Subject inpainting: paint a subject, given by photos, into a region of a scene.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=OneLineParser, help="what to do"
    )
    add_inpaint_parser(sub)
    add_demo_parser(sub)
    add_convert_parser(sub)
    add_training_parsers(sub)
    add_toy_parsers(sub)
    add_bench_parser(sub)
    add_eval_parsers(sub)
    add_ui_parser(sub)
    return parser


def _quiet_libraries() -> None:
    # The libraries' advisory warnings (deprecations, dtype notes) are not the user's business here.
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 unexpected failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    from .convert.checkpoint_io import CheckpointError
    from .imaging import InputError
    from .training.loop import TrainingError

    try:
        return args.handler(args)
    except (CLIError, InputError, CheckpointError, TrainingError, FileExistsError) as e:
        print(f"subject-inpaint: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("subject-inpaint: interrupted; nothing was written for the unfinished work", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:
        if os.environ.get("SI_DEBUG"):
            raise
        print(f"subject-inpaint: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # a failure of ours or of the hardware (out of memory): still one line
        if os.environ.get("SI_DEBUG"):
            raise
        print(
            f"subject-inpaint: failed: {type(e).__name__}: {_one_line(e)} (SI_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
