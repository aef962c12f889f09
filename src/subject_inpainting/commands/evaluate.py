"""``subject-inpaint eval cocoee | prepare | subjects | convert-gmm``: the papers' benchmarks."""

from __future__ import annotations

import argparse
import os

from ..loaders.layout import check_model
from ..utils.files import check_output_files, check_output_folder
from ..utils.parse import int_option
from . import options
from .options import CommandError

MAX_LIMIT = 10_000_000
MAX_RESOLUTION = 8192


def _add_generation(p: argparse.ArgumentParser, out_help: str, sampler: str = "plms", steps: int = 50) -> None:
    """What every evaluation runner takes: where to write, how to paint, and the CLIP model it scores with."""
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument(
        "--clip-model", default=None, metavar="PATH_OR_ID", help="CLIP (default openai/clip-vit-base-patch32)"
    )
    p.add_argument("--model", metavar="PATH_OR_ID", help="model to evaluate (default: the embedded toy model)")
    options.add_setting(p, "sampler", default=sampler)
    options.add_setting(p, "num_inference_steps", default=steps)
    options.add_setting(p, "guidance_scale")
    options.add_seed(p, "case k is painted with seed + k (default 0)")
    options.add_device(p)
    options.add_quiet(p, "no progress bars")


def register(sub) -> None:
    eval_sub = options.group(
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
    _add_generation(c, "results and reports (an evaluation folder written before is resumed)")
    c.add_argument("--paste-back", action="store_true", help="paste into the scene (the original does not)")
    c.add_argument("--limit", type=int_option(1, MAX_LIMIT), help="only the first N cases (default all)")
    c.add_argument(
        "--score-only",
        action="store_true",
        help="do not paint; score the pictures in OUT/results (which any method may have painted)",
    )
    c.add_argument(
        "--fid-reference",
        metavar="DIR_OR_NPZ",
        help="FID reference: images (`eval prepare`) or pytorch-fid statistics (.npz); FID skipped if absent",
    )
    c.add_argument(
        "--gmm", metavar="FILE", help="QS mixture (.npz/.safetensors, see convert-gmm); QS skipped if absent"
    )
    c.add_argument("--inception-weights", metavar="FILE", help="FID Inception weights file (default: torch hub cache)")
    c.set_defaults(command_check=check_cocoee, command_run=run_cocoee)

    r = eval_sub.add_parser(
        "prepare",
        help="build COCOEE's FID reference set from COCO test2017 (512 shorter side, 512 centre crop)",
        description="Resize each COCO test2017 image's shorter side to 512 (bilinear) and centre-crop 512 × 512, "
        "as the original's create_square_gt_for_fid.py; resumable.",
    )
    r.add_argument("--coco-images", required=True, metavar="DIR", help="COCO test2017 image folder")
    r.add_argument(
        "--out", required=True, metavar="DIR", help="folder of the prepared PNGs (one written before is resumed)"
    )
    r.add_argument(
        "--size", type=int_option(1, MAX_RESOLUTION), default=512, help=f"side, 1..{MAX_RESOLUTION} (default 512)"
    )
    options.add_quiet(r, "no progress bar")
    r.set_defaults(command_check=check_prepare, command_run=run_prepare)

    j = eval_sub.add_parser(
        "subjects",
        help="subjects × scenes, with and without fine-tuning; CLIP-I and DINO against held-out photos",
        description="Fine-tune each subject on its first photos, paint every subject into every scene with "
        "the pretrained model and with the fine-tuned subject, and score CLIP-I, DINO (ViT-S/16 class token) "
        "and DINOv2 (mean-pooled) against the held-out photos. Resumable; `accelerate launch` spreads it.",
    )
    j.add_argument("--subjects", required=True, metavar="DIR", help="SUBJECTS/<name>/*.jpg (+ boxes.json)")
    j.add_argument("--scenes", required=True, metavar="DIR", help="X.png + X_mask.png pairs, or a COCOEE folder")
    _add_generation(j, "results, fine-tuned subjects, reports (an evaluation folder written before is resumed)")
    j.add_argument(
        "--train-photos",
        type=int_option(1, 1000),
        default=3,
        help="photos per subject to fine-tune on, 1..1000 (default 3)",
    )
    j.add_argument("--no-finetune", action="store_true", help="only the pretrained model")
    j.add_argument(
        "--finetune-steps",
        type=int_option(1, 100_000_000),
        help="fine-tuning steps (default: the original's epochs)",
    )
    j.add_argument(
        "--model-weight", type=options.unit_option, default=0.8, help="modified guidance w, 0..1 (default 0.8)"
    )
    j.add_argument("--scene-limit", type=int_option(1, MAX_LIMIT), help="only the first N scenes")
    j.add_argument("--dino-model", default=None, metavar="PATH_OR_ID", help="DINO (default facebook/dino-vits16)")
    j.add_argument("--dinov2-model", default=None, metavar="PATH_OR_ID", help="DINOv2 (default facebook/dinov2-base)")
    j.add_argument("--no-dinov2", action="store_true", help="skip the DINOv2 score")
    j.set_defaults(command_check=check_subjects, command_run=run_subjects)

    g = eval_sub.add_parser(
        "convert-gmm",
        help="turn a pickled scikit-learn Gaussian mixture (the original's QS file) into a safe .npz/.safetensors",
        description="Unpickling runs code chosen by the file's author: this reads SRC only with --trust-pickle.",
    )
    g.add_argument("source", metavar="SRC", help="the pickled GaussianMixture")
    g.add_argument("destination", metavar="DST", help="output .npz or .safetensors")
    g.add_argument("--trust-pickle", action="store_true", help="I trust SRC's author: unpickle it")
    g.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    g.set_defaults(command_check=check_convert_gmm, command_run=run_convert_gmm)


def _generation(args: argparse.Namespace, model: str):
    from ..evaluation.report import Generation

    return Generation(model, args.sampler, args.num_inference_steps, args.guidance_scale, args.seed)


def _check_models(args: argparse.Namespace, *names: str) -> None:
    options.check_device_name(args.device)
    for name in ("model", "clip_model", *names):
        options.require_model(getattr(args, name), f"--{name.replace('_', '-')}")
    args.model = args.model or options.default_model_or_error()
    check_model(args.model)


def check_cocoee(args: argparse.Namespace) -> None:
    _check_models(args)
    options.require_folder(args.data, "--data")
    options.require_file(args.gmm, "--gmm")
    options.require_file(args.inception_weights, "--inception-weights")
    if args.fid_reference is not None and not os.path.exists(args.fid_reference):
        raise CommandError(f"--fid-reference {args.fid_reference}: no such folder or file")
    if args.score_only:
        options.require_folder(args.out, "--out")  # with --score-only it holds the pictures to score
        return
    inputs = options.model_inputs(args, "data", "model", "fid_reference", "gmm", "inception_weights")
    check_output_folder(args.out, kinds=("evaluation",), inputs=inputs, resume=True)


def run_cocoee(args: argparse.Namespace) -> int:
    from ..evaluation import features
    from ..evaluation.cocoee import CocoeeSettings, run_cocoee
    from ..evaluation.report import print_summary
    from ..session import Session

    device = str(options.process_device(args.device))
    session = None if args.score_only else Session(args.model, device=device, dtype="float32", int8="off")
    settings = CocoeeSettings(args.data, _generation(args, args.model), args.paste_back, args.limit)
    report = run_cocoee(
        settings,
        args.out,
        session,
        args.fid_reference,
        args.gmm,
        args.clip_model or features.DEFAULT_CLIP,
        args.inception_weights,
        device,
        not args.quiet,
    )
    print_summary(report, args.out)
    return 0


def check_prepare(args: argparse.Namespace) -> None:
    options.require_folder(args.coco_images, "--coco-images")
    check_output_folder(args.out, kinds=("fid-reference",), inputs=[("--coco-images", args.coco_images)], resume=True)


def run_prepare(args: argparse.Namespace) -> int:
    from ..evaluation.cocoee import prepare_fid_reference

    n = prepare_fid_reference(args.coco_images, args.out, args.size, not args.quiet)
    print(f"{n} reference images in {args.out}")
    return 0


def check_subjects(args: argparse.Namespace) -> None:
    _check_models(args, "dino_model", "dinov2_model")
    options.require_folder(args.subjects, "--subjects")
    options.require_folder(args.scenes, "--scenes")
    inputs = options.model_inputs(args, "subjects", "scenes", "model")
    check_output_folder(args.out, kinds=("evaluation",), inputs=inputs, resume=True)


def run_subjects(args: argparse.Namespace) -> int:
    from ..evaluation import features
    from ..evaluation.report import print_summary
    from ..evaluation.subjects import SubjectsSettings, run_subjects

    settings = SubjectsSettings(
        args.subjects,
        args.scenes,
        _generation(args, args.model),
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
        str(options.process_device(args.device)),
        not args.quiet,
    )
    print_summary(report, args.out)
    return 0


def check_convert_gmm(args: argparse.Namespace) -> None:
    options.require_file(args.source, "SRC")
    if not args.destination.lower().endswith((".npz", ".safetensors")):
        raise CommandError(f"DST {args.destination}: expected a .npz or .safetensors file name")
    check_output_files([args.destination], flag="DST", inputs=[("SRC", args.source)], overwrite=args.overwrite)


def run_convert_gmm(args: argparse.Namespace) -> int:
    from ..evaluation.gmm import convert_pickled_mixture

    mixture = convert_pickled_mixture(args.source, args.destination, trust=args.trust_pickle)
    print(f"wrote a {len(mixture.weights)}-component mixture of {mixture.dim}-d features to {args.destination}")
    return 0
