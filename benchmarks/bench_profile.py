"""Where a whole UNet call's time goes, by operator: ``torch.profiler`` on the released architecture (random
weights) at batch 1 and 2, in each dtype, with the default preset's token merging and without it.

With ``--int8`` each setting runs a second time with the UNet's int8 layers (``enable_int8``'s), after the
time their weights take to pack (once per loaded model: its first int8 call pays it), and the peak probes run as
int8 layers too (their activations' quantization included; FLOPs as the float probes').

Each setting is run once untimed, then profiled once; the table keeps the operators above ``--min-share`` of the
call's time (self time, so that nested operators are not counted twice) and sums the rest. The call's GFLOP
rate and its share of the dtype's peak (``bench_speed.py``'s matmul and convolution probes, same process) say
how close the call runs to what the CPU can do.

    python benchmarks/bench_profile.py --out benchmarks/results-profile.json
    python benchmarks/bench_profile.py --dtypes bfloat16 --int8 --out benchmarks/results-profile-int8.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

# First: importing it sets the environment before torch loads.
from bench_common import build_ours, cpu_dtypes, model_sizes, run_fields, write_results

# isort: split
import torch

from bench_floor import gflop, peak_gflop_per_s
from bench_speed import PEAK_CALLS, PEAK_CONV, PEAK_MATMUL_N, count_flops, peak_probes, timed_calls
from subject_inpainting.models.int8 import dequantize_int8, int8_layers, int8_unavailable, quantize_int8
from subject_inpainting.models.token_merging import TokenMergingConfig, merged_tokens
from subject_inpainting.presets import PRESETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the tiny architecture instead of the released one")
    p.add_argument(
        "--dtypes", default=None, help="comma-separated dtypes (default: float32, and bfloat16 where native)"
    )
    p.add_argument("--batches", default="1,2", help="comma-separated batch sizes (default 1,2)")
    p.add_argument("--min-share", type=float, default=0.01, help="operators below this share are summed (0.01)")
    p.add_argument(
        "--int8", action="store_true", help="also every setting with the UNet's int8 layers, and their packing time"
    )
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.int8 and int8_unavailable() is not None:
        p.error(f"--int8: {int8_unavailable()}")
    try:
        args.dtypes = cpu_dtypes(args.dtypes)
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError as e:
        p.error(str(e))
    if any(b < 1 for b in args.batches) or not 0 <= args.min_share < 1:
        p.error(f"batch sizes must be >= 1 and --min-share in [0, 1), got {args.batches} and {args.min_share}")
    return args


def profile_call(unet: torch.nn.Module, batch: int, ratio: float, min_share: float) -> dict[str, Any]:
    """One whole call of ``unet`` at ``batch``, merging ``ratio`` of the top-resolution tokens: its wall time,
    GFLOP and self time by operator."""
    from torch.profiler import ProfilerActivity, profile

    c, side = unet.config, int(unet.config.sample_size)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c.in_channels, side, side, generator=g).to(unet.dtype)
    context = torch.randn(batch, 1, c.cross_attention_dim, generator=g).to(unet.dtype)
    t = torch.full((batch,), 500)
    config = TokenMergingConfig(ratio)
    with torch.no_grad(), merged_tokens([unet], config, (side, side), config.pattern_generator()):
        run = lambda: unet(x, t, encoder_hidden_states=context)  # noqa: E731
        flops = count_flops(run)[0]
        run()
        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    ops, rest = {}, 0.0
    for e in events:
        share = e.self_cpu_time_total / total
        if share >= min_share:
            ops[e.key] = {"share": share, "calls": e.count}
        else:
            rest += share
    return {"seconds": seconds, "gflop": flops / 1e9, "operators": ops, "other_operators_share": rest}


def int8_peak_gflop_per_s(dtype: torch.dtype) -> dict[str, float]:
    """Best-call GFLOP/s of ``bench_speed.py``'s matmul and convolution probes run as int8 layers in ``dtype``
    (a bias-free linear layer and convolution holding the probes' right-hand operands), quantization included."""
    cpu = torch.device("cpu")
    floats = peak_probes(cpu, dtype, 0)
    g = torch.Generator().manual_seed(0)
    n, c, side = PEAK_MATMUL_N, PEAK_CONV["channels"], PEAK_CONV["side"]
    matmul_in = torch.randn(n, n, generator=g).to(dtype)
    linear = torch.nn.Linear(n, n, bias=False).to(dtype)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(dtype)
    conv_in = torch.randn(1, c, side, side, generator=g).to(dtype)
    quantize_int8(torch.nn.ModuleList([linear, conv]))
    runs = {"matmul": lambda: linear(matmul_in), "conv": lambda: conv(conv_in)}
    with torch.no_grad():
        return {name: gflop(floats[name]) / min(timed_calls(run, PEAK_CALLS, cpu)) for name, run in runs.items()}


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    unet = build_ours(model_sizes(args.quick), 0)["unet"].eval()
    ratio = float(PRESETS["fast"]["token_merging"])
    rows: dict[str, Any] = {}
    peaks, int8_peaks, pack_s = {}, {}, {}
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        unet.to(dtype)
        peaks[dtype_name] = peak_gflop_per_s(dtype)
        peak = max(peaks[dtype_name].values())
        flops: dict[tuple[int, float], float] = {}
        for int8 in (False, True) if args.int8 else (False,):
            if int8:
                int8_peaks[dtype_name] = int8_peak_gflop_per_s(dtype)
                quantize_int8(unet)
                start = time.perf_counter()
                for layer in int8_layers(unet):
                    layer.pack()
                pack_s[dtype_name] = time.perf_counter() - start
            for batch in args.batches:
                for r in dict.fromkeys((0.0, ratio)):
                    row = profile_call(unet, batch, r, args.min_share)
                    # flop_counter does not count oneDNN's int8 operators: the float call's FLOPs
                    row["gflop"] = flops.setdefault((batch, r), row["gflop"])
                    row.update(dtype=dtype_name, batch=batch, token_merging=r, int8=int8)
                    row["gflop_per_s"] = row["gflop"] / row["seconds"]
                    row["share_of_peak"] = row["gflop_per_s"] / peak
                    rows[f"{dtype_name}{' int8' if int8 else ''} b{batch} token merging {r:g}"] = row
                    print(
                        f"{dtype_name:9}{' int8' if int8 else ''} b{batch} merging {r:g}: {row['seconds']:.2f} s, "
                        f"{row['gflop_per_s']:.0f} GFLOP/s ({100 * row['share_of_peak']:.0f} % of peak)",
                        flush=True,
                    )
        dequantize_int8(unet)
    return write_results(
        "bench_profile.py",
        args.out,
        {
            **run_fields(args),
            "peak_gflop_per_s": peaks,
            "int8_peak_gflop_per_s": int8_peaks,
            "int8_pack_s": pack_s,
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main(parse_args())
