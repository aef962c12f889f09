"""Pictures per minute: ``subject-inpaint batch`` against a loop of single ``subject-inpaint inpaint`` calls.

Both paint the same jobs (a synthetic scene and reference, one box per job, each its own seed) with the same
settings, each as a user runs it: the loop starts one ``inpaint`` process per picture, as a shell loop does,
so it loads the model for every picture; ``batch`` is one process that loads it once, and paints one job at a
time or, with ``--batch-size N``, N jobs in one UNet batch (one row per ``--batch-sizes`` entry). The runs
alternate, ``--repeats`` rounds, and the pictures are compared with the loop's (the same job and seed must
give the same picture; a batched UNet may round differently, so the largest difference is reported).

By default on the embedded toy model (64² pictures); ``--full`` writes the released architecture with random
weights to a temporary folder first and paints 512² pictures with it.

    python benchmarks/bench_batch.py                                   # embedded model, 8 jobs
    python benchmarks/bench_batch.py --full --jobs 3 --batch-sizes 1,3 # full size, random weights
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# First: importing it sets the environment before torch loads.
from bench_common import format_machine, machine_info, model_sizes, synthetic_rgb

# isort: split
import numpy as np
import torch
from PIL import Image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=8, help="pictures per run (default 8)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of both runs, alternating (default 1)")
    p.add_argument("--full", action="store_true", help="the released architecture with random weights, 512²")
    p.add_argument("--steps", type=int, help="sampling steps (default: the fast preset's)")
    p.add_argument(
        "--batch-sizes",
        default="1,8",
        help="one batch row per --batch-size, comma-separated (default 1,8)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    p.add_argument("--out", help="write the records, the settings and the machine as JSON here")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.repeats < 1:
        p.error(f"--jobs and --repeats must be at least 1, got {args.jobs} and {args.repeats}")
    try:
        args.batch_sizes = [int(v) for v in args.batch_sizes.split(",")]
    except ValueError:
        p.error(f"--batch-sizes: expected whole numbers separated by commas, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error(f"--batch-sizes must be at least 1 each, got {args.batch_sizes}")
    return args


def row_name(batch_size: int) -> str:
    return "batch" if batch_size == 1 else f"batch --batch-size {batch_size}"


def write_inputs(folder: Path, resolution: int, jobs: int, seed: int) -> Path:
    """A scene, a reference and ``jobs`` jobs (one box each) in ``folder``; returns the jobs file."""
    Image.fromarray(synthetic_rgb(resolution, resolution, seed)).save(folder / "scene.png")
    Image.fromarray(synthetic_rgb(resolution // 2, resolution // 2, seed + 1)).save(folder / "reference.png")
    lines = []
    for k in range(jobs):
        x = resolution // 8 + k % 4 * resolution // 32
        box = [x, resolution // 4, x + resolution // 2, resolution * 3 // 4]
        lines.append({"id": f"job{k}", "scene": "scene.png", "box": box, "reference": "reference.png", "seed": k})
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def full_size_model(folder: Path, seed: int) -> Path:
    """The released architecture with random weights, saved as a project folder."""
    from subject_inpainting.models.build import random_components
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    pipe = SubjectInpaintPipeline(**random_components(model_sizes(quick=False), seed))
    return pipe.save_pretrained(folder / "model")


def command(argv: list[str]) -> float:
    """Run ``subject-inpaint ARGV`` in a fresh process; its wall time in seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "subject_inpainting.cli", *argv], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"subject-inpaint {' '.join(argv[:2])} failed: {proc.stderr.strip()[-500:]}")
    return seconds


def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        model = ["--model", str(full_size_model(root, args.seed))] if args.full else []
        resolution = 512 if args.full else 64
        jobs = write_inputs(root, resolution, args.jobs, args.seed)
        lines = [json.loads(line) for line in jobs.read_text().splitlines()]
        common = [*model, "--device", "cpu", "--quiet", *(["--steps", str(args.steps)] if args.steps else [])]
        sizes = {row_name(b): b for b in args.batch_sizes}
        records: dict[str, list[float]] = {"loop of inpaint": [], **{name: [] for name in sizes}}
        folders = {name: f"run{i}" for i, name in enumerate(records)}
        for r in range(args.repeats):
            order = list(records) if r % 2 == 0 else list(records)[::-1]
            for name in order:
                out = root / f"{folders[name]}-{r}"
                if name in sizes:
                    argv = ["batch", str(jobs), "--out-dir", str(out), "--batch-size", str(sizes[name])]
                    seconds = command([*argv, *common])
                else:
                    out.mkdir()
                    seconds = 0.0
                    for line in lines:
                        argv = ["inpaint", "--scene", str(root / "scene.png"), "--box", ",".join(map(str, line["box"]))]
                        argv += ["--reference", str(root / "reference.png"), "--seed", str(line["seed"])]
                        seconds += command([*argv, "--out", str(out / f"{line['id']}.png"), *common])
                records[name].append(seconds)
                print(f"  {name}, round {r + 1}: {seconds:.1f} s for {args.jobs} pictures", file=sys.stderr)
        differences = {
            name: max(
                int(
                    np.abs(
                        np.asarray(Image.open(root / f"{folders['loop of inpaint']}-{r}" / f"{k}.png")).astype(int)
                        - np.asarray(Image.open(root / f"{folders[name]}-{r}" / f"{k}.png"))
                    ).max()
                )
                for r in range(args.repeats)
                for k in (line["id"] for line in lines)
            )
            for name in sizes
        }
    rows = {
        name: {
            "seconds_median": statistics.median(s),
            "seconds": s,
            "pictures_per_minute": 60 * args.jobs / statistics.median(s),
        }
        for name, s in records.items()
    }
    result = {
        "command": "python benchmarks/bench_batch.py " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "size": "full (random weights, 512²)" if args.full else "embedded toy model (64²)",
        "rows": rows,
        "over_loop": {
            name: rows[name]["pictures_per_minute"] / rows["loop of inpaint"]["pictures_per_minute"] for name in sizes
        },
        "largest_difference_to_loop": differences,
        "machine": {**machine_info(torch.device("cpu")), "capability": torch.backends.cpu.get_cpu_capability()},
    }
    print("| run | pictures | s, median | pictures per minute | over the loop | largest difference to the loop's |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        over = f"{result['over_loop'][name]:.2f}×" if name in sizes else "1.00×"
        diff = differences.get(name, 0)
        speed = f"{row['seconds_median']:.1f} | {row['pictures_per_minute']:.1f}"
        print(f"| {name} | {args.jobs} | {speed} | {over} | {diff} |")
    print(format_machine(result["machine"], f"{result['size']}, CPU capability {result['machine']['capability']}"))
    if args.out:
        from subject_inpainting.utils.files import write_text_atomic

        write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
