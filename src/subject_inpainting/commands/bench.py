"""``subject-inpaint bench toy``: the offline benchmark of the method on the toy world."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..loaders.layout import check_model
from ..utils.files import check_output_folder, replacement_folder, replacing
from ..utils.parse import int_option
from . import options
from .options import CommandError

MAX_FINETUNE_STEPS = 1_000_000


def register(sub) -> None:
    bench_sub = options.group(sub, "bench", "offline benchmarks of the method", "benchmarks")
    t = bench_sub.add_parser(
        "toy",
        help="the toy world: base vs fine-tuned subjects, detail module, model weight, samplers",
        description="Fine-tune held-out toy subjects and paint held-out cases under each setting; report the "
        "identity score, the PSNR outside the hole and the Fréchet distance of evaluator features.",
    )
    t.add_argument(
        "--out",
        default="bench-toy",
        metavar="DIR",
        help="results folder (default bench-toy); a benchmark folder written before is continued",
    )
    t.add_argument("--model", metavar="PATH", help="base model (default: the embedded toy model)")
    t.add_argument("--evaluator", metavar="PATH", help="evaluator identity encoder (default: the embedded one)")
    t.add_argument("--quick", action="store_true", help="a few cases and steps (for CI)")
    t.add_argument(
        "--subjects",
        type=int_option(1, None),
        help="held-out subjects, at most the world's held-out identities less one (default 8)",
    )
    t.add_argument(
        "--cases",
        type=int_option(1, options.MAX_CASES),
        help=f"test cases per subject, 1..{options.MAX_CASES} (default 4)",
    )
    t.add_argument(
        "--finetune-steps",
        type=int_option(1, MAX_FINETUNE_STEPS),
        help=f"fine-tuning steps per subject, 1..{MAX_FINETUNE_STEPS:,} (default 150)",
    )
    t.add_argument(
        "--settings",
        metavar="REGEX",
        help="run only the settings whose name this regular expression finds, e.g. 'PLMS-50$|fast preset' "
        "(default: every setting; the names are the rows of results.md)",
    )
    options.add_seed(t, "seed of the cases and the sampling (default 0)")
    t.add_argument(
        "--overwrite", action="store_true", help="start over: replace a benchmark folder written before in --out"
    )
    options.add_quiet(t, "no progress bar")
    t.set_defaults(command_check=check_toy, command_run=run_toy)


def check_toy(args: argparse.Namespace) -> None:
    from ..toy.bench import ToyBenchConfig

    options.require_model(args.model)
    options.require_folder(args.evaluator, "--evaluator")
    args.model = args.model or options.default_model_or_error()
    if args.evaluator is None:
        from ..weights import default_evaluator

        evaluator = default_evaluator()
        if evaluator is None:
            raise CommandError(
                "no evaluator identity encoder: give --evaluator (toy train writes one to OUT/evaluator)"
            )
        args.evaluator = str(evaluator)
    inputs = [("--model", args.model), ("--evaluator", args.evaluator)]
    args.mode = check_output_folder(
        args.out, kinds=("benchmark",), inputs=inputs, overwrite=args.overwrite, resume=True
    )
    check_model(args.model)
    config = ToyBenchConfig.quick() if args.quick else ToyBenchConfig()
    for name, value in (
        ("subjects", args.subjects),
        ("cases_per_subject", args.cases),
        ("finetune_steps", args.finetune_steps),
    ):
        if value is not None:
            setattr(config, name, value)
    config.seed = args.seed
    config.only = args.settings
    config.check()
    args.config = config


def run_toy(args: argparse.Namespace) -> int:
    from ..toy.bench import markdown_table, reference_points_table, run_toy_bench, truth_outline_line

    config = args.config  # made and checked by ``check_toy``
    out = Path(args.out)
    work = out
    if args.mode == "replace":
        work = replacement_folder(out)
        shutil.rmtree(work, ignore_errors=True)  # a replacement that did not finish: start over
    with replacing(work, out):
        result = run_toy_bench(args.model, args.evaluator, work, config, progress=not args.quiet)
    print(markdown_table(result["results"]))
    print(truth_outline_line(result["truth_outline_read"], result["results"][0]["cases"]))
    print("\nWhat the identity score sees:\n" + reference_points_table(result["truth_with_one_part_changed"]))
    print(out / "results.json")
    return 0
