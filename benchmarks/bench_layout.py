"""Memory layout on the CPU: the VAE and the UNet in PyTorch's default (contiguous, NCHW) layout against
channels-last (NHWC), in each dtype, in one run.

- ``vae encode`` / ``vae decode``: the VAE given a contiguous input against a channels-last one (its weights
  untouched: a convolution's output keeps its input's layout, so the whole VAE then runs channels-last). This is
  what ``devices.conv_layout`` does before the pipeline's VAE calls.
- ``unet whole b2``: the whole UNet at batch 2 (a guided step), its input channels-last with contiguous
  weights, and with its weights converted too (``unet.to(memory_format=torch.channels_last)``).

Every setting is timed in each of ``--rounds`` alternating rounds (best of ``--calls`` per round; the report
gives the median of the rounds' bests); ``largest difference`` is the largest absolute difference of the outputs
against the contiguous run, in the output's units (the VAE's pixels in [-1, 1], the UNet's predicted noise).

    python benchmarks/bench_layout.py --out benchmarks/results-layout.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# First: importing it sets the environment before torch loads.
from bench_common import build_ours, cpu_dtypes, model_sizes, run_fields, write_results

# isort: split
import torch

CL = torch.channels_last


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the tiny architecture instead of the released one")
    p.add_argument(
        "--dtypes",
        default=None,
        help="comma-separated dtypes (default: float32, and bfloat16 where the CPU computes it natively)",
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of every setting (default 3)")
    p.add_argument("--calls", type=int, default=1, help="timed calls per setting and round, best kept (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        p.error(f"--rounds and --calls must be >= 1, got {args.rounds} and {args.calls}")
    try:
        args.dtypes = cpu_dtypes(args.dtypes)
    except ValueError as e:
        p.error(str(e))
    return args


def best_seconds(run: Callable[[], Any], calls: int) -> float:
    """The fastest of ``calls`` timed calls, after one untimed one."""
    run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def cases(components: dict[str, Any], dtype: torch.dtype, seed: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """Per operation, its settings: name → a call returning the output tensor."""
    vae, unet = components["vae"].eval().to(dtype), components["unet"].eval().to(dtype)
    g = torch.Generator().manual_seed(seed)
    side, f = int(unet.config.sample_size), 2 ** (len(vae.config.block_out_channels) - 1)
    image = torch.randn(1, vae.config.in_channels, side * f, side * f, generator=g).to(dtype)
    latent = torch.randn(1, vae.config.latent_channels, side, side, generator=g).to(dtype)
    sample = torch.randn(2, unet.config.in_channels, side, side, generator=g).to(dtype)
    context = torch.randn(2, 1, unet.config.cross_attention_dim, generator=g).to(dtype)
    t = torch.tensor([500, 500])

    def unet_weights(layout: torch.memory_format) -> Callable[[], Any]:
        def run():
            unet.to(memory_format=layout)
            return unet(sample.contiguous(memory_format=layout), t, encoder_hidden_states=context).sample

        return run

    return {
        "vae encode": {
            "contiguous": lambda: vae.encode(image).latent_dist.mean,
            "channels-last input": lambda: vae.encode(image.contiguous(memory_format=CL)).latent_dist.mean,
        },
        "vae decode": {
            "contiguous": lambda: vae.decode(latent).sample,
            "channels-last input": lambda: vae.decode(latent.contiguous(memory_format=CL)).sample,
        },
        "unet whole b2": {
            "contiguous": unet_weights(torch.contiguous_format),
            "channels-last input": lambda: (
                unet(sample.contiguous(memory_format=CL), t, encoder_hidden_states=context).sample
            ),
            "channels-last weights": unet_weights(CL),
        },
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    components = build_ours(model_sizes(args.quick), args.seed)
    rows: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            for op, settings in cases(components, dtype, args.seed).items():
                # The weights are contiguous before every setting; the weights' own setting converts them.
                components["unet"].to(memory_format=torch.contiguous_format)
                reference = settings["contiguous"]().float()
                best: dict[str, list[float]] = {name: [] for name in settings}
                difference = {}
                for name, run in settings.items():
                    difference[name] = (run().float() - reference).abs().max().item()
                    components["unet"].to(memory_format=torch.contiguous_format)
                for _ in range(args.rounds):
                    for name, run in settings.items():
                        best[name].append(best_seconds(run, args.calls))
                        components["unet"].to(memory_format=torch.contiguous_format)
                base = statistics.median(best["contiguous"])
                for name in settings:
                    seconds = statistics.median(best[name])
                    rows[f"{op}, {dtype_name}, {name}"] = {
                        "operation": op,
                        "dtype": dtype_name,
                        "layout": name,
                        "seconds": seconds,
                        "rounds": best[name],
                        "faster_than_contiguous": base / seconds,
                        "largest_difference": difference[name],
                    }
                    print(f"{op:14} {dtype_name:9} {name:22} {seconds:8.3f} s  {base / seconds:5.2f}x", flush=True)
    return write_results(
        "bench_layout.py",
        args.out,
        {
            **run_fields(args),
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main(parse_args())
