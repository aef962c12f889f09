"""A small model on a busy machine: the embedded toy model's UNet call and demo, with PyTorch's threads and with
what ``Session`` chooses (``devices.threads_for``: one thread for a small model), on a quiet machine and with
one core held by another process (a one-thread PyTorch matrix product in a loop, as a second job would).

Each setting is timed in the same run, alternating (``--rounds``): the UNet call (batch 2, as a guided step
calls it) by its median over ``--calls``, and the demo (``toy.demo.demo``, ``--cases`` pictures) by its
median wall time; the busy process is started before the busy rounds and stopped after them.

    python benchmarks/bench_threads.py --out benchmarks/results-threads.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# First: importing it sets the environment before torch loads.
from bench_common import machine_info

# isort: split
import torch

from subject_inpainting.devices import threads_for
from subject_inpainting.pipeline import SubjectInpaintPipeline
from subject_inpainting.weights import default_model

BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=30, help="UNet calls per setting and round (default 30)")
    p.add_argument("--cases", type=int, default=4, help="demo pictures per setting and round (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of every setting (default 3)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def unet_seconds(unet: torch.nn.Module, threads: int, calls: int) -> list[float]:
    """``calls`` timed UNet calls (batch 2) on ``threads`` threads, after two untimed ones."""
    c = unet.config
    x = torch.randn(2, c.in_channels, c.sample_size, c.sample_size)
    t, context = torch.tensor([500, 500]), torch.randn(2, 1, c.cross_attention_dim)
    torch.set_num_threads(threads)
    times = []
    with torch.no_grad():
        for k in range(calls + 2):
            start = time.perf_counter()
            unet(x, t, encoder_hidden_states=context)
            if k >= 2:
                times.append(time.perf_counter() - start)
    return times


def demo_seconds(threads: int | str | None, cases: int) -> float:
    """One demo of ``cases`` pictures painted with ``Session(threads=threads)``, in wall seconds."""
    from subject_inpainting.toy.demo import demo

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        demo(default_model(), Path(tmp) / "demo.png", cases, None, None, 0, threads=threads)
        return time.perf_counter() - start


def main(args: argparse.Namespace) -> dict[str, Any]:
    default_threads = torch.get_num_threads()
    unet = SubjectInpaintPipeline.from_pretrained(default_model()).unet
    chosen = threads_for(unet) or default_threads
    settings = {f"PyTorch's ({default_threads} threads)": (default_threads, None), f"auto ({chosen})": (chosen, "auto")}
    unet_times: dict[str, dict[str, list[float]]] = {"quiet": {}, "busy": {}}
    demo_times: dict[str, dict[str, list[float]]] = {"quiet": {}, "busy": {}}
    for load in ("quiet", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "busy" else None
        try:
            time.sleep(2 if busy else 0)  # the other process is computing before the first timing
            for _ in range(args.rounds):
                for name, (threads, session_threads) in settings.items():
                    unet_times[load].setdefault(name, []).extend(unet_seconds(unet, threads, args.calls))
                    torch.set_num_threads(default_threads)
                    demo_times[load].setdefault(name, []).append(demo_seconds(session_threads, args.cases))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    torch.set_num_threads(default_threads)
    rows = {
        name: {
            "unet_call_ms": {load: 1000 * statistics.median(unet_times[load][name]) for load in unet_times},
            "demo_seconds": {load: statistics.median(demo_times[load][name]) for load in demo_times},
        }
        for name in settings
    }
    quiet_best = min(r["unet_call_ms"]["quiet"] for r in rows.values())
    for r in rows.values():
        r["busy_over_quiet"] = r["unet_call_ms"]["busy"] / r["unet_call_ms"]["quiet"]
        r["busy_over_quiet_best"] = r["unet_call_ms"]["busy"] / quiet_best
        r["demo_busy_over_quiet"] = r["demo_seconds"]["busy"] / r["demo_seconds"]["quiet"]
    result = {
        "command": "python benchmarks/bench_threads.py " + " ".join(sys.argv[1:]),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "model": "embedded toy model",
        "busy": "another process: a one-thread 512² float32 matrix product in a loop",
        "rows": rows,
        "machine": {**machine_info(torch.device("cpu")), "capability": torch.backends.cpu.get_cpu_capability()},
    }
    print(json.dumps(rows, indent=1))
    if args.out:
        from subject_inpainting.utils.files import write_text_atomic

        write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
