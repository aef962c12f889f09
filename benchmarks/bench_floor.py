"""The work in one image and the least time this CPU could paint it in: every row of a ``bench_speed.py`` run
counted in FLOPs and set against the peak of its dtype, measured in the same process.

For each row of the results file (``--results``), its first timed image's UNet calls (batch size, whole or
DeepCache's shallow path, as ``bench_speed.py`` recorded them) are counted with the FLOPs of one such call of
the released architecture at the row's token-merging ratio (``torch.utils.flop_counter``, batch 1, times the
batch: every operation is per row), plus the VAE's encode and decode and the reference encoder. A LoRA's
low-rank products are left out (a rank-4 LoRA adds well under 1 % to a UNet call). The *floor* is those FLOPs at
the peak of the row's dtype: the best call of a 2048³ matmul or a 3×3 convolution of 320 channels at 64×64
(``bench_speed.py``'s probes), whichever is faster. ``share of peak`` is the floor over the measured time.

The highest ratio a row could reach against the original recipe on this CPU is the original's measured time
over the row's floor: a target above it needs less work per image, not faster kernels.

    python benchmarks/bench_floor.py --results benchmarks/results-speed-default.json \\
        --out benchmarks/results-floor.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# First: importing it sets the environment before torch loads.
from bench_common import build_ours, model_sizes, write_results

# isort: split
import torch

from bench_speed import PEAK_CALLS, count_flops, peak_probes, timed_calls
from subject_inpainting.models.token_merging import TokenMergingConfig, merged_tokens
from subject_inpainting.sampling.deepcache import DeepCacheUNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, required=True, help="a bench_speed.py results JSON")
    p.add_argument("--quick", action="store_true", help="count the tiny architecture (for a trial of the script)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    try:
        args.speed = json.loads(args.results.read_text(encoding="utf-8"))
        args.speed["workloads"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        p.error(f"--results {args.results}: not a bench_speed.py results file ({e})")
    return args


def gflop(run: Callable[[], Any]) -> float:
    with torch.no_grad():
        return count_flops(run)[0] / 1e9


def peak_gflop_per_s(dtype: torch.dtype) -> dict[str, float]:
    """Best-call GFLOP/s of ``bench_speed.py``'s matmul and convolution probes in ``dtype``."""
    cpu = torch.device("cpu")
    with torch.no_grad():
        return {
            name: gflop(run) / min(timed_calls(run, PEAK_CALLS, cpu))
            for name, run in peak_probes(cpu, dtype, 0).items()
        }


class Counter:
    """FLOPs of the released architecture's parts at batch 1, counted once per kind and merging ratio."""

    def __init__(self, quick: bool):
        self.parts = build_ours(model_sizes(quick), 0)
        self.unet = self.parts["unet"].eval().to(torch.bfloat16)
        self.counted: dict[tuple[str, float, int], float] = {}

    def unet_call(self, kind: str, ratio: float, branch: int) -> float:
        key = (kind, ratio, branch)
        if key not in self.counted:
            c, side = self.unet.config, int(self.unet.config.sample_size)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(1, c.in_channels, side, side, generator=g).bfloat16()
            context = torch.randn(1, 1, c.cross_attention_dim, generator=g).bfloat16()
            t = torch.tensor([500])
            cached = DeepCacheUNet(self.unet, interval=2, branch=branch)
            config = TokenMergingConfig(ratio)
            with torch.no_grad(), merged_tokens([self.unet], config, (side, side), config.pattern_generator()):
                whole = gflop(lambda: cached(x, t, context))
                self.counted[("whole", ratio, branch)] = whole
                self.counted[("cached", ratio, branch)] = gflop(lambda: cached(x, t, context))
        return self.counted[key]

    def others(self) -> dict[str, float]:
        # FLOPs do not depend on the dtype; bfloat16 counts them faster where the CPU computes it natively.
        vae, encoder = (self.parts[k].eval().to(torch.bfloat16) for k in ("vae", "reference_encoder"))
        side = int(self.unet.config.sample_size)
        f = 2 ** (len(vae.config.block_out_channels) - 1)
        image = torch.zeros(1, vae.config.in_channels, side * f, side * f, dtype=torch.bfloat16)
        latent = torch.zeros(1, vae.config.latent_channels, side, side, dtype=torch.bfloat16)
        pixels = torch.zeros(1, 3, encoder.image_size, encoder.image_size, dtype=torch.bfloat16)
        return {
            "vae_encode": gflop(lambda: vae.encode(image).latent_dist.mean),
            "vae_decode": gflop(lambda: vae.decode(latent).sample),
            "reference_encoder": gflop(lambda: encoder(pixels)),
        }


def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    counter = Counter(args.quick)
    others = counter.others()
    peaks: dict[str, dict[str, float]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for workload, wrows in args.speed["workloads"].items():
        for name, r in wrows.items():
            dtype = r.get("dtype", "float32")
            if dtype not in peaks:
                peaks[dtype] = peak_gflop_per_s(getattr(torch, dtype))
            settings = r.get("settings") or {}
            ratio = float(settings.get("token_merging") or 0.0)
            branch = int(settings.get("deep_cache_branch") or 0)
            call = r["calls"][0]
            whole = call.get("unet_whole") or [True] * len(call["unet_batches"])
            unet = sum(
                batch * counter.unet_call("whole" if w else "cached", ratio, branch)
                for batch, w in zip(call["unet_batches"], whole, strict=True)
            )
            total = unet + sum(others.values())
            peak = max(peaks[dtype].values())
            rows[f"{workload} {name}"] = {
                "workload": workload,
                "row": name,
                "dtype": dtype,
                "label": r.get("label", name),
                "gflop": {"unet": unet, **others, "total": total},
                "floor_s": total / peak,
                "measured_s": r["median_s"],
                "share_of_peak": total / peak / r["median_s"],
            }
            floor = total / peak
            print(f"{workload} {name:22} {total:9.0f} GFLOP  floor {floor:7.1f} s  measured {r['median_s']:7.1f} s")
    for workload in args.speed["workloads"]:
        original = rows.get(f"{workload} original")
        for row in rows.values():
            if original is not None and row["workload"] == workload:
                row["highest_ratio_to_original"] = original["measured_s"] / row["floor_s"]
    return write_results(
        "bench_floor.py",
        args.out,
        {
            "results": args.results.name,
            "model": "tiny architecture (--quick)" if args.quick else "released architecture",
            "unet_call_gflop_batch_1": {
                f"{kind} (token merging {r}, branch {b})": gf for (kind, r, b), gf in counter.counted.items()
            },
            "other_gflop": others,
            "peak_gflop_per_s": peaks,
            "rows": rows,
        },
        started,
    )


if __name__ == "__main__":
    main(parse_args())
