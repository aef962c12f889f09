#!/usr/bin/env python
"""The benchmark results as text: every results table and every measured number of ``benchmarks/README.md``, and
of the ``## Speed`` section of ``README.md``, rendered from the results JSON files in ``benchmarks/``.

A rendered block sits between two marker comments; the text outside them is left as it is::

    <!-- results: results-speed-15.json rows+stages+flops -->
    (rendered text)
    <!-- end results -->

The opening marker names one or more JSON files (paths relative to ``benchmarks/``), then one or more views
joined by ``+`` (see ``VIEWS``), then arguments that each view of the block receives (rows, settings ...). A
block holding a table ends with one line per file naming its run: the command, commit, date, duration and
machine as the JSON records them, and which of these it does not record. A block of sentences ends with a
short reference to its file. Each sentence of ratios reads one file only. A marker may be indented (inside
a list item); the rendered lines get its indent.

    python benchmarks/report.py            # rewrite the blocks in place
    python benchmarks/report.py --check    # exit 1, naming each stale block, when any differs

``--check`` also fails when a results JSON under ``benchmarks/`` is named by no block (superseded results are
deleted; git keeps them) and when a ``results-*.md`` written beside a JSON by ``bench_speed.py --table`` differs
from the tables that JSON holds.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
# The documents whose blocks this script renders, relative to the repository.
DOCUMENTS = ("benchmarks/README.md", "README.md")
MARKER = re.compile(
    r"^(?P<indent>[ \t]*)<!-- results: (?P<spec>[^\n]*?) -->\n(?P<body>.*?)^(?P=indent)<!-- end results -->$",
    re.MULTILINE | re.DOTALL,
)


class ReportError(ValueError):
    """A block that cannot be rendered: an unknown view, a missing file, a row its JSON does not hold."""


@dataclass(frozen=True)
class Run:
    """One results JSON: its path relative to ``benchmarks/`` and its content."""

    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class View:
    render: Callable[[Sequence[Run], str], str]
    table: bool  # a table's block names the run in full; a sentence's block refers to its file
    files: int | None = 1  # how many JSON files it reads (None: any number)


# ---------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------
def num(x: float) -> str:
    """Seconds and similar magnitudes: one decimal from 10, two from 0.1, else three significant digits."""
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def times(x: float) -> str:
    """A speed-up: two decimals below 2, one above."""
    return f"{x:.2f}×" if x < 2 else f"{x:.1f}×"


def percent(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f} %"


def gib(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def span(values: Sequence[float], unit: str = "", fmt: Callable[[float], str] = num) -> str:
    """``low–high unit``, or one value when they round alike."""
    low, high = fmt(min(values)), fmt(max(values))
    text = low if low == high else f"{low}–{high}"
    return f"{text} {unit}".rstrip()


def median_range(r: dict[str, Any]) -> str:
    """A summary's median seconds with the range in brackets when there were several calls."""
    text = f"{r['median_s']:.2f}"
    if len(r.get("calls", [])) > 1:
        text += f" ({r['min_s']:.2f}–{r['max_s']:.2f})"
    return text


def listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def args_list(arg: str, sep: str = ",") -> list[str]:
    return [a.strip() for a in arg.split(sep) if a.strip()]


# ---------------------------------------------------------------------------------------------------
# The run behind a block
# ---------------------------------------------------------------------------------------------------
def machine_text(m: dict[str, Any]) -> str:
    """The machine as its JSON records it (``bench_common.machine_info`` or ``toy.bench.machine_summary``)."""
    parts = []
    cpu = m.get("cpu")
    if cpu:
        detail = [m["cpu_id"]] if m.get("cpu_id") else []
        if "simd" in m:
            detail.append(", ".join(m["simd"]) or "no AVX2")
        parts.append(cpu + (f" ({'; '.join(detail)})" if detail else ""))
    if m.get("usable_cpus") is not None:
        parts.append(f"{m['usable_cpus']} of {m.get('logical_cpus', '?')} CPUs usable")
    threads = m.get("torch_threads", m.get("threads"))
    if threads is not None:
        parts.append(f"torch threads {threads}")
    if "threading_env" in m:
        env = " ".join(f"{k}={v}" for k, v in m["threading_env"].items())
        parts.append(f"threading environment {env or 'default'}")
    if m.get("ram_gib") is not None:
        parts.append(f"{m['ram_gib']} GiB RAM")
    capability = m.get("cpu_capability", m.get("capability"))
    if capability:
        bf16 = {True: ", native bfloat16", False: ", no native bfloat16"}.get(m.get("native_bf16"), "")
        parts.append(f"torch CPU capability {capability}{bf16}")
    if m.get("gpu"):
        parts.append(f"GPU {m['gpu']}")
    if m.get("os"):
        parts.append(m["os"])
    software = [f"Python {m['python']}"] if m.get("python") else []
    versions = m.get("versions") or ({"torch": m["torch"]} if m.get("torch") else {})
    software += [f"{k} {v}" for k, v in versions.items() if v and k not in ("numpy", "pillow")]
    if software:
        parts.append(", ".join(software))
    return "; ".join(parts)


def model_text(model: str) -> str:
    """The recorded model: a description as it is, a path from ``src/`` on (the machine's prefix dropped)."""
    if "src/subject_inpainting/" in model:
        return "`" + model[model.index("src/subject_inpainting/") :] + "`"
    return model


def duration_text(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def link(run: Run, document: Path) -> str:
    target = os.path.relpath(BENCHMARKS / run.name, document.parent)
    return f"[`{run.name}`]({Path(target).as_posix()})"


def run_line(run: Run, document: Path) -> str:
    """The run in full: what its JSON records of the command, commit, date, duration and machine, and what not."""
    d, m = run.data, run.data.get("machine") or {}
    said, missing = [], []
    if d.get("command"):
        said.append(f"`{d['command']}`")
    else:
        missing.append("command")
        settings = d.get("settings")
        if isinstance(settings, dict) and all(not isinstance(v, dict) for v in settings.values()):
            said.append("settings " + ", ".join(f"{k} {v}" for k, v in settings.items()))
        only = (d.get("config") or {}).get("only")
        if only:
            said.append(f"settings chosen by `{only}`")
    if d.get("model") and not d.get("command"):
        said.append(f"model {model_text(d['model'])}")
    if m.get("git"):
        said.append(f"commit {m['git']}")
    else:
        missing.append("commit")
    date = m.get("date_utc") or d.get("date")
    if date:
        said.append(date.replace("T", " ").replace("+00:00", " UTC"))
    else:
        missing.append("date")
    seconds = d.get("duration_s", d.get("seconds"))
    if seconds is not None:
        said.append(f"took {duration_text(seconds)}")
    if m:
        said.append(machine_text(m))
    else:
        missing.append("machine")
    if missing:
        said.append(f"not recorded in this JSON: {listing(missing)}")
    return f"*Run* {link(run, document)}: " + "; ".join(said) + "."


def source_note(run: Run, document: Path) -> str:
    """The short reference to a file that a block of sentences ends with."""
    m = run.data.get("machine") or {}
    bits = [link(run, document)]
    bits.append(f"commit {m['git']}" if m.get("git") else "commit not recorded")
    if m.get("cpu"):
        cpus = m.get("usable_cpus")
        bits.append(m["cpu"] + (f", {cpus} CPUs" if cpus else ""))
    capability = m.get("cpu_capability", m.get("capability"))
    if capability:
        bits.append(capability)
    return ", ".join(bits)


# ---------------------------------------------------------------------------------------------------
# bench_inference.py
# ---------------------------------------------------------------------------------------------------
def inference_table(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    rows = []
    for name in ("step", "image"):
        w = d["workloads"].get(name)
        if w is None:
            continue
        o, t = w["results"]["ours"], w["results"]["diffusers"]
        res = w["resolution"]
        label = (
            "one guided step (UNet at batch 2)"
            if name == "step"
            else f"whole {res}×{res} image, DDIM {d['options']['steps']} steps"
        )
        label += f", {len(o['calls'])} runs each"
        cells = [label, median_range(o), median_range(t), f"{o['median_s'] / t['median_s']:.2f}"]
        for key in ("peak_rss_gib", "peak_over_before_gib"):
            cells += [gib(o.get(key)), gib(t.get(key)), f"{o[key] / t[key]:.2f}"]
        rows.append(cells)
    header = ["workload", "ours s", "diffusers s", "ratio", "ours peak RSS GiB", "diffusers peak RSS GiB", "ratio"]
    header += ["ours peak − before GiB", "diffusers peak − before GiB", "ratio"]
    return table(header, ["---", *["---:"] * 9], rows)


def inference_stages(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    rows = []
    for name, w in d["workloads"].items():
        for impl, r in w["results"].items():
            st = r.get("stages_median_s")
            if st is None:
                return (
                    f"This run's JSON holds no per-component times (no `stages_median_s` in workload `{name}`), "
                    "so where the time goes is not known for it."
                )
            rows.append(
                [
                    name,
                    impl,
                    f"{r['median_s']:.2f}",
                    f"{st['unet']:.2f} ({r['unet_calls_per_run']})",
                    *(f"{st[k]:.2f}" for k in ("vae_encode", "vae_decode", "reference_encoder", "rest")),
                ]
            )
    header = ["workload", "implementation", "total s", "UNet s (calls)", "VAE encode s", "VAE decode s"]
    header += ["reference encoder s", "rest s"]
    return "Where the median call's time goes:\n\n" + table(header, ["---", "---", *["---:"] * 6], rows)


def inference_checks(runs: Sequence[Run], arg: str) -> str:
    c = runs[0].data["checks"]
    yes = {True: "yes", False: "**no**"}
    parts = []
    for name in ("step", "image"):
        if name in c:
            parts.append(f"{name}: UNet and VAE objects shared {yes[c[name]['shared_unet_and_vae']]}")
    parts.append(f"parameter sums equal in every process {yes[c['same_weights_in_every_process']]}")
    if "step" in c and "eps_max_abs_diff" in c["step"]:
        parts.append(
            f"largest difference between the two guided steps' predicted noise {c['step']['eps_max_abs_diff']:g} "
            f"(largest |noise| {c['step']['eps_max_abs']:.2f})"
        )
    return "Checks: " + "; ".join(parts) + "."


def image_shares(runs: Sequence[Run], arg: str) -> str:
    res = runs[0].data["workloads"]["image"]["results"]
    o, t = res["ours"], res["diffusers"]
    so, st = o["stages_median_s"], t["stages_median_s"]
    both = (so, st)
    calls = o["unet_calls_per_run"]
    return (
        f"Of the median whole-image call, the {calls} UNet calls take {percent(so['unet'] / o['median_s'])} of ours "
        f"({num(so['unet'])} s) and {percent(st['unet'] / t['median_s'])} of diffusers' ({num(st['unet'])} s); "
        f"VAE decoding takes {span([s['vae_decode'] for s in both], 's')}, VAE encoding "
        f"{span([s['vae_encode'] for s in both], 's')}, the reference encoder "
        f"{span([s['reference_encoder'] for s in both], 's')}, and everything else together (preprocessing, "
        f"the sampler's arithmetic, post-processing, our paste-back) at most {num(max(so['rest'], st['rest']))} s."
    )


def inference_memory(runs: Sequence[Run], arg: str) -> str:
    w = runs[0].data["workloads"]
    calls = [c for x in w.values() for r in x["results"].values() for c in r["calls"]]
    before = [c["rss_before_gib"] for c in calls]
    text = [f"Resident before a call: {span(before, 'GiB', gib)}."]
    for name, what in (("step", "one guided step"), ("image", "a whole image")):
        if name in w:
            over = [c["peak_over_before_gib"] for r in w[name]["results"].values() for c in r["calls"]]
            text.append(f"Working memory (peak − before) of {what}: {span(over, 'GiB', gib)}.")
    if "image" in w:
        per = {
            impl: ", ".join(gib(c["peak_over_before_gib"]) for c in r["calls"])
            for impl, r in w["image"]["results"].items()
        }
        text.append(f"Per whole-image call: ours {per['ours']} GiB; diffusers' {per['diffusers']} GiB.")
    return " ".join(text)


def guidance_label(name: str, w: dict[str, Any]) -> str:
    weight = f"w = {w['model_weight']:g}"
    return {
        "plain": "plain CFG, base model",
        "full": f"modified guidance, full fine-tuned UNet, {weight}",
        "lora": f"modified guidance, LoRA rank {w['lora_rank']}, {weight}",
    }[name]


def guidance_table(runs: Sequence[Run], arg: str) -> str:
    w = runs[0].data["workloads"]["guidance"]
    plain = w["results"]["plain"]
    rows = []
    for name, r in w["results"].items():
        batches = r["unet_batches_per_run"]
        rows.append(
            [
                guidance_label(name, w),
                f"{len(batches)} ({' + '.join(map(str, batches))})",
                median_range(r),
                f"{r['median_s'] / plain['median_s']:.2f}",
                gib(r.get("peak_over_before_gib")),
                gib(r.get("weights_held_gib")),
            ]
        )
    runs_each = len(plain["calls"])
    header = [f"one guided step, guidance {w['guidance_scale']:g} ({runs_each} runs each)", "UNet calls (batch sizes)"]
    header += ["s, median (range)", "ratio to plain", "peak − before GiB", "weights held GiB"]
    return table(header, ["---", *["---:"] * 5], rows)


def guidance_summary(runs: Sequence[Run], arg: str) -> str:
    r = runs[0].data["workloads"]["guidance"]["results"]
    plain = r["plain"]["median_s"]
    return (
        f"A step with modified guidance costs {times(r['full']['median_s'] / plain)} a plain step with a full "
        f"subject (two UNet calls) and {times(r['lora']['median_s'] / plain)} with a LoRA subject (one call at "
        f"batch 3). Weights held: {gib(r['lora']['weights_held_gib'])} GiB with the LoRA subject against "
        f"{gib(r['full']['weights_held_gib'])} GiB with the full one ({gib(r['plain']['weights_held_gib'])} GiB "
        "for the base model alone)."
    )


# ---------------------------------------------------------------------------------------------------
# bench_speed.py
# ---------------------------------------------------------------------------------------------------
WORKLOAD_SHORT = {"a": "for plain Paint-by-Example", "b": "with a LoRA subject", "c": "with a fully fine-tuned one"}


def speed_workloads(run: Run) -> dict[str, dict[str, Any]]:
    return run.data["workloads"]


def speed_row(run: Run, workload: str, row: str) -> dict[str, Any]:
    try:
        return run.data["workloads"][workload][row]
    except KeyError:
        raise ReportError(f"{run.name} has no row {row!r} in workload {workload!r}") from None


def unet_cell(r: dict[str, Any]) -> str:
    """UNet evaluations per image by batch size, and how many ran the whole UNet when not all did."""
    counts = collections.Counter(r["unet_batches_per_run"])
    by_batch = " + ".join(f"{n}×b{b}" for b, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    cell = f"{r['unet_calls_per_run']} ({by_batch})"
    whole = r.get("unet_full_calls_per_run")
    if whole is not None and whole != r["unet_calls_per_run"]:
        cell += f", {whole} whole"
    return cell


def speed_rows(runs: Sequence[Run], arg: str) -> str:
    run = runs[0]
    names = run.data["settings"]["workloads"]
    rows = []
    for w, rs in speed_workloads(run).items():
        original = rs.get("original")
        for name, r in rs.items():
            ratio = f"{r['median_s'] / original['median_s']:.2f}" if original else "—"
            rows.append(
                [
                    f"{w}: {names[w]}",
                    f"`{name}`",
                    r["label"],
                    unet_cell(r),
                    str(len(r["calls"])),
                    median_range(r),
                    ratio,
                    gib(r.get("peak_rss_gib")),
                    gib(r.get("peak_over_before_gib")),
                ]
            )
    header = ["workload", "row", "what", "UNet evaluations per image", "runs", "s, median (range)"]
    header += ["ratio to original", "peak RSS GiB", "peak − before GiB"]
    return table(header, ["---", "---", "---", *["---:"] * 6], rows)


def kind_text(kind: str) -> str:
    """``"whole b2"`` → ``"whole at batch 2"``."""
    how, _, batch = kind.partition(" b")
    return f"{how} at batch {batch}"


def speed_stages(runs: Sequence[Run], arg: str) -> str:
    rows = []
    for w, rs in speed_workloads(runs[0]).items():
        for name, r in rs.items():
            st = r["stages_median_s"]
            per = r.get("unet_evaluation_median_s")
            per_text = ", ".join(f"{k} {v:.3g}" for k, v in per.items()) if per else "not recorded"
            rows.append(
                [
                    w,
                    f"`{name}`",
                    f"{r['median_s']:.2f}",
                    *(f"{st[k]:.2f}" for k in ("unet", "vae_encode", "vae_decode", "reference_encoder", "rest")),
                    per_text,
                ]
            )
    header = ["workload", "row", "total s", "UNet s", "VAE encode s", "VAE decode s", "reference encoder s", "rest s"]
    header.append("s per UNet evaluation, median (`whole b2`: the whole UNet at batch 2; `cached`: DeepCache's)")
    return table(header, ["---", "---", *["---:"] * 6, "---"], rows)


def speed_flops(runs: Sequence[Run], arg: str) -> str:
    flops = runs[0].data["flops"]
    rows = []
    for name in ("step", "matmul", "conv"):
        f = flops[name]
        rate = "median call" if name == "step" else "best call"
        share = percent(f["share_of_peak"]) if "share_of_peak" in f else ""
        rows.append(
            [
                f["label"],
                f"{f['gflop']:.2f}",
                f"{f['median_s']:.3f} ({f['min_s']:.3f}–{f['max_s']:.3f})",
                f"{f['gflop_per_s']:.1f} ({rate})",
                share,
            ]
        )
    header = ["measured in the same process", "GFLOP", "s, median (range)", "GFLOP/s", "share of the better peak"]
    return table(header, ["---", *["---:"] * 4], rows)


def speed_compile(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    lines = []
    for w, rs in speed_workloads(runs[0]).items():
        for name, r in rs.items():
            c = r.get("compile")
            if c:
                lines.append(
                    f"- compile time, {w} `{name}`: {num(c['compile_s'])} s (a first {c.get('steps', 1)}-step call, "
                    f"{num(c['first_call_s'])} s, minus a second one, {num(c['steady_call_s'])} s)"
                )
    cache = d["settings"].get("inductor_cache")
    if cache is not None:
        state = "held compiled code" if cache.get("held_files_before") else "was empty"
        lines.append(f"- inductor's cache {state} when the run started")
    lines += [f"- `{name}` not measured: {why}" for name, why in d["settings"].get("skipped_rows", {}).items()]
    return "\n".join(lines) or "No row of this run was compiled or skipped."


def speedup(runs: Sequence[Run], arg: str) -> str:
    """``ROW[,ROW...] [short]``: each row's speed-up over ``original`` per workload, and over ``diffusers-50``."""
    args = arg.split()
    short = "short" in args
    rows = args_list(args[0]) if args and args[0] != "short" else ["fast"]
    run = runs[0]
    names = run.data["settings"]["workloads"]
    sentences = []
    for row in rows:
        parts, theirs = [], None
        for w, rs in speed_workloads(run).items():
            if row not in rs or "original" not in rs:
                continue
            r, o = rs[row], rs["original"]
            gain = times(o["median_s"] / r["median_s"]) + (" faster than `original`" if not parts else "")
            if short:
                parts.append(f"{gain} {WORKLOAD_SHORT.get(w, 'in ' + w)}")
            else:
                parts.append(f"{gain} in {w} ({names[w]}: {num(r['median_s'])} s against {num(o['median_s'])} s)")
            if "diffusers-50" in rs:
                theirs = (w, rs["diffusers-50"], r)
        if not parts:
            raise ReportError(f"{run.name}: no workload has both `{row}` and `original`")
        text = f"`{row}` paints a whole image {listing(parts)}"
        if theirs is not None:
            w, t, r = theirs
            gain = times(t["median_s"] / r["median_s"])
            if short:
                text += f", and {gain} faster than diffusers' pipeline at {t['num_inference_steps']} steps"
            else:
                text += f", and {gain} faster than `diffusers-50` in {w} ({num(t['median_s'])} s)"
        sentences.append(text + ".")
    return " ".join(sentences)


def working_memory(runs: Sequence[Run], arg: str) -> str:
    by_dtype: dict[str, list[float]] = {}
    for rs in speed_workloads(runs[0]).values():
        for r in rs.values():
            by_dtype.setdefault(r.get("dtype", "float32"), []).append(r["peak_over_before_gib"])
    parts = [f"{span(v, 'GiB', gib)} over the {dtype} rows" for dtype, v in by_dtype.items()]
    return f"Working memory (peak − before): {listing(parts)}."


def evaluations(runs: Sequence[Run], arg: str) -> str:
    """``WORKLOAD ROW``: the row's median seconds per UNet evaluation, by kind."""
    w, row = arg.split()
    r = speed_row(runs[0], w, row)
    kinds = [f"{num(v)} s {kind_text(k)}" for k, v in r["unet_evaluation_median_s"].items()]
    return f"`{row}`'s UNet evaluations in {w} take a median of {listing(kinds)}."


def vae_share(runs: Sequence[Run], arg: str) -> str:
    """``WORKLOAD ROW``: the VAE's part of the row's median image."""
    w, row = arg.split()
    r = speed_row(runs[0], w, row)
    vae = r["stages_median_s"]["vae_encode"] + r["stages_median_s"]["vae_decode"]
    return (
        f"The VAE (encode and decode) takes {num(vae)} s of `{row}`'s {num(r['median_s'])} s in {w} "
        f"({percent(vae / r['median_s'])})."
    )


def shares(runs: Sequence[Run], arg: str) -> str:
    """``ROW[,ROW...]``: each row's time as a share of the original recipe's, per workload."""
    parts = []
    for row in args_list(arg):
        each = [
            f"{rs[row]['median_s'] / rs['original']['median_s']:.2f} ({w})"
            for w, rs in speed_workloads(runs[0]).items()
            if row in rs and "original" in rs
        ]
        if not each:
            raise ReportError(f"{runs[0].name}: no workload has both `{row}` and `original`")
        parts.append(f"`{row}` {listing(each)}")
    return f"Each alone on top of the original recipe, as a share of its time: {'; '.join(parts)}."


def spread(runs: Sequence[Run], arg: str) -> str:
    """How much the median whole UNet evaluation of the original's batch varies over a workload's rows."""
    parts = []
    for w, rs in speed_workloads(runs[0]).items():
        original = rs.get("original")
        if original is None:
            continue
        kind = f"whole b{max(original['unet_batches_per_run'])}"
        alike = [
            r["unet_evaluation_median_s"][kind]
            for r in rs.values()
            if r.get("dtype") == original.get("dtype")
            and r.get("variant") == "eager"
            and kind in r["unet_evaluation_median_s"]
        ]
        parts.append(f"{span(alike, 's')} {kind_text(kind)} in {w} ({len(alike)} rows)")
    return f"The median whole UNet evaluation, read from each eager row's own calls, ranges over {listing(parts)}."


def whole_kind(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The whole-UNet evaluation kind both rows ran, at the largest batch."""
    common = [k for k in a["unet_evaluation_median_s"] if k.startswith("whole") and k in b["unet_evaluation_median_s"]]
    return max(common, key=lambda k: int(k.partition(" b")[2]), default=None)


def against(runs: Sequence[Run], arg: str) -> str:
    """``ROW:BASE [ROW:BASE ...] [in WORKLOAD]``: each row against its base, in one workload (default a)."""
    args = arg.split()
    workload = args[args.index("in") + 1] if "in" in args else "a"
    pairs = [p.split(":") for p in args if ":" in p]
    sentences = []
    for row, base in pairs:
        r, b = speed_row(runs[0], workload, row), speed_row(runs[0], workload, base)
        gain = times(b["median_s"] / r["median_s"])
        parts = [f"a whole image {num(r['median_s'])} s against {num(b['median_s'])} s, {gain}"]
        kind = whole_kind(r, b)
        if kind is not None:
            x, y = r["unet_evaluation_median_s"][kind], b["unet_evaluation_median_s"][kind]
            parts.append(f"a UNet evaluation ({kind_text(kind)}) {num(x)} s against {num(y)} s, {times(y / x)}")
        rs, bs = r["stages_median_s"], b["stages_median_s"]
        vae_r, vae_b = rs["vae_encode"] + rs["vae_decode"], bs["vae_encode"] + bs["vae_decode"]
        parts.append(f"the VAE {num(vae_r)} s against {num(vae_b)} s, {times(vae_b / vae_r)}")
        c = r.get("compile")
        if c and kind is not None and y > x:
            parts.append(
                f"compiled in {num(c['compile_s'])} s, which the faster evaluations repay after "
                f"{math.ceil(c['compile_s'] / (y - x))} of them"
            )
        elif c:
            parts.append(f"compiled in {num(c['compile_s'])} s")
        parts.append(
            f"working memory {gib(r['peak_over_before_gib'])} GiB against {gib(b['peak_over_before_gib'])} GiB"
        )
        sentences.append(f"`{row}` against `{base}` ({workload}): {'; '.join(parts)}.")
    return " ".join(sentences)


def peak_share(runs: Sequence[Run], arg: str) -> str:
    f = runs[0].data["flops"]["step"]
    return (
        f"Eager PyTorch runs {f['label']} at {f['gflop_per_s']:.0f} GFLOP/s, {percent(f['share_of_peak'])} of the "
        "better float32 peak (matmul or convolution) measured in the same process."
    )


def summary_compile(runs: Sequence[Run], arg: str) -> str:
    """README: the compiled backends' UNet evaluation against eager, and their compile times, from one run."""
    rs = speed_workloads(runs[0])["a"]
    base = rs["original"]
    parts, costs = [], []
    for row, name in (("compile-inductor", "torch.compile"), ("compile-openvino", "OpenVINO")):
        if row not in rs:
            continue
        r = rs[row]
        kind = whole_kind(r, base)
        gain = base["unet_evaluation_median_s"][kind] / r["unet_evaluation_median_s"][kind]
        parts.append(f"{times(gain)} faster with {name}")
        costs.append(f"{num(r['compile']['compile_s'])} s")
    if not parts:
        raise ReportError(f"{runs[0].name}: no compiled row in workload a")
    return (
        f"A float32 UNet call runs {listing(parts)} than in eager PyTorch, after compiling for {listing(costs)}"
        f"{' respectively' if len(costs) > 1 else ''}."
    )


def summary_openvino(runs: Sequence[Run], arg: str) -> str:
    """README: OpenVINO in bfloat16 against eager bfloat16, from one run."""
    rs = speed_workloads(runs[0])["a"]
    r, b = rs["compile-openvino-bfloat16"], rs["bfloat16"]
    kind = whole_kind(r, b)
    return (
        f"In bfloat16 an OpenVINO UNet call runs "
        f"{times(b['unet_evaluation_median_s'][kind] / r['unet_evaluation_median_s'][kind])} faster than an eager "
        f"one, after converting for {num(r['compile']['compile_s'])} s."
    )


def summary_dtype(runs: Sequence[Run], arg: str) -> str:
    """README: ``ROW:BASE``: a dtype row against its float32 row, from one run."""
    row, base = arg.split(":")
    r, b = speed_row(runs[0], "a", row), speed_row(runs[0], "a", base)
    return (
        f"On a CPU that computes bfloat16 natively, `{base}` paints {times(b['median_s'] / r['median_s'])} faster "
        "in bfloat16 than in float32."
    )


# ---------------------------------------------------------------------------------------------------
# bench_batch.py
# ---------------------------------------------------------------------------------------------------
def batch_table(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    jobs = d["settings"]["jobs"]
    rows = []
    for name, r in d["rows"].items():
        over = d["over_loop"].get(name, 1.0)
        diff = d["largest_difference_to_loop"].get(name)
        rows.append(
            [
                d["size"],
                "loop of `inpaint`" if name == "loop of inpaint" else f"`{name}`",
                str(jobs),
                str(len(r["seconds"])),
                num(r["seconds_median"]),
                num(r["pictures_per_minute"]),
                f"{over:.2f}×",
                "" if diff is None else str(diff),
            ]
        )
    header = ["model", "run", "pictures", "rounds", "s, median", "pictures per minute", "over the loop"]
    header.append("largest difference to the loop's (0–255)")
    return table(header, ["---", "---", *["---:"] * 6], rows)


def batch_summary(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    over, diff = d["over_loop"], d["largest_difference_to_loop"]
    loop = d["rows"]["loop of inpaint"]
    batched = [name for name in over if name != "batch"]
    text = [
        f"{d['size'][:1].upper()}{d['size'][1:]}: `batch` paints {times(over['batch'])} as many pictures per minute "
        "as the loop "
        f"(largest difference to its pictures: {diff['batch']}); one picture of the loop takes "
        f"{num(loop['seconds_median'] / d['settings']['jobs'])} s."
    ]
    for name in batched:
        text.append(
            f"`{name}` paints {times(over[name])} as many as the loop, {times(over[name] / over['batch'])} as many "
            f"as `batch` (largest difference: {diff[name]})."
        )
    return " ".join(text)


# ---------------------------------------------------------------------------------------------------
# bench_threads.py
# ---------------------------------------------------------------------------------------------------
def threads_table(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    rows = []
    for name, r in d["rows"].items():
        unet, demo = r["unet_call_ms"], r["demo_seconds"]
        rows.append(
            [
                f"`{name}`",
                num(unet["quiet"]),
                num(unet["busy"]),
                f"{times(r['busy_over_quiet'])} ({times(r['busy_over_quiet_best'])})",
                num(demo["quiet"]),
                num(demo["busy"]),
                times(r["demo_busy_over_quiet"]),
            ]
        )
    header = ["threads", "UNet call ms, quiet", "busy", "busy over quiet (over the best quiet)"]
    header += [f"demo of {d['settings']['cases']} s, quiet", "busy", "busy over quiet"]
    return table(header, ["---", *["---:"] * 6], rows)


def threads_summary(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    (default, default_row), (auto, auto_row) = d["rows"].items()
    return (
        f"With another process on one of the cores, a UNet call of the {d['model']} on {default} takes "
        f"{times(default_row['busy_over_quiet'])} as long as on a quiet machine, and the demo "
        f"{times(default_row['demo_busy_over_quiet'])}; on the threads `Session` chooses for it, {auto}, "
        f"{times(auto_row['busy_over_quiet_best'])} the best quiet call and "
        f"{times(auto_row['demo_busy_over_quiet'])} its quiet demo, for a quiet call "
        f"{times(auto_row['unet_call_ms']['quiet'] / default_row['unet_call_ms']['quiet'])} as long."
    )


# ---------------------------------------------------------------------------------------------------
# bench_profile.py
# ---------------------------------------------------------------------------------------------------
def profile_table(runs: Sequence[Run], arg: str) -> str:
    """``arg``: how many operators each row names (default 5), largest share first."""
    shown = int(arg) if arg else 5
    rows = []
    for r in runs[0].data["rows"].values():
        ops = sorted(r["operators"].items(), key=lambda kv: kv[1]["share"], reverse=True)[:shown]
        rows.append(
            [
                r["dtype"] + (", int8 layers" if r.get("int8") else ""),
                str(r["batch"]),
                f"{r['token_merging']:g}",
                num(r["seconds"]),
                f"{r['gflop_per_s']:.0f}",
                percent(r["share_of_peak"]),
                ", ".join(f"{name.removeprefix('aten::')} {percent(o['share'])}" for name, o in ops),
            ]
        )
    header = ["dtype", "batch", "token merging", "s", "GFLOP/s", "share of peak", "self time by operator"]
    return table(header, ["---", "---:", "---:", "---:", "---:", "---:", "---"], rows)


def int8_summary(runs: Sequence[Run], arg: str) -> str:
    """The int8 layers' packing time and the peak probes as int8 layers against the float ones, per dtype."""
    data = runs[0].data
    sentences = []
    for dtype, pack in data["int8_pack_s"].items():
        floats, ints = data["peak_gflop_per_s"][dtype], data["int8_peak_gflop_per_s"][dtype]
        probes = [
            f"the {name} at {ints[name]:.0f} GFLOP/s against {floats[name]:.0f} ({times(ints[name] / floats[name])})"
            for name in ("matmul", "conv")
        ]
        sentences.append(
            f"Packing the UNet's int8 weights took {num(pack)} s in {dtype}; as int8 layers (quantization "
            f"included), {listing(probes)}, best calls."
        )
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------
# bench_layout.py
# ---------------------------------------------------------------------------------------------------
def layout_table(runs: Sequence[Run], arg: str) -> str:
    rows = [
        [
            r["operation"],
            r["dtype"],
            r["layout"],
            num(r["seconds"]),
            times(r["faster_than_contiguous"]),
            f"{r['largest_difference']:.2g}",
        ]
        for r in runs[0].data["rows"].values()
    ]
    header = ["operation", "dtype", "layout", "s, median of the rounds' bests", "faster than contiguous"]
    return table([*header, "largest difference"], ["---", "---", "---", "---:", "---:", "---:"], rows)


def layout_summary(runs: Sequence[Run], arg: str) -> str:
    """``arg``: the layout named (``channels-last input`` …); one clause per operation and dtype."""
    rows = [r for r in runs[0].data["rows"].values() if r["layout"] == arg]
    if not rows:
        raise ReportError(f"{runs[0].name} has no rows of layout {arg!r}")
    clauses = [
        f"{r['operation']} in {r['dtype']} {times(r['faster_than_contiguous'])} ({num(r['seconds'])} s)" for r in rows
    ]
    return f"With a {arg}, against contiguous: " + "; ".join(clauses) + "."


# ---------------------------------------------------------------------------------------------------
# bench_floor.py
# ---------------------------------------------------------------------------------------------------
def floor_table(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    rows = []
    for r in d["rows"].values():
        g = r["gflop"]
        best = r.get("highest_ratio_to_original")
        rows.append(
            [
                r["workload"],
                f"`{r['row']}`",
                r["dtype"],
                f"{g['unet']:,.0f}",
                f"{g['vae_encode'] + g['vae_decode']:,.0f}",
                f"{g['reference_encoder']:,.0f}",
                f"{g['total']:,.0f}",
                num(r["floor_s"]),
                num(r["measured_s"]),
                percent(r["share_of_peak"]),
                "—" if best is None else times(best),
            ]
        )
    header = ["workload", "row", "dtype", "UNet GFLOP", "VAE GFLOP", "reference encoder GFLOP", "total GFLOP"]
    header += ["floor s", "measured s", "share of peak", "highest ratio to original"]
    peaks = "; ".join(
        f"{dtype}: matmul {p['matmul']:.0f}, convolution {p['conv']:.0f} GFLOP/s"
        for dtype, p in d["peak_gflop_per_s"].items()
    )
    body = table(header, ["---", "---", "---", *["---:"] * 8], rows)
    return f"{body}\n\nPeaks measured in the same process (best call): {peaks}."


def floor_summary(runs: Sequence[Run], arg: str) -> str:
    """``arg``: the row (``default`` …) whose floor is told, in each workload that has it."""
    d = runs[0].data
    rows = [r for r in d["rows"].values() if r["row"] == arg]
    if not rows:
        raise ReportError(f"{runs[0].name} has no row {arg!r}")
    clauses = []
    for r in rows:
        peak = max(d["peak_gflop_per_s"][r["dtype"]].values())
        clause = (
            f"in workload {r['workload']} `{arg}` computes {r['gflop']['total'] / 1000:.1f} TFLOP per image: "
            f"{num(r['floor_s'])} s at the {r['dtype']} peak of {peak:.0f} GFLOP/s, against {num(r['measured_s'])} s "
            f"measured ({percent(r['share_of_peak'])} of the peak)"
        )
        if r.get("highest_ratio_to_original") is not None:
            clause += (
                f"; even at the peak it would be at most {times(r['highest_ratio_to_original'])} faster than the "
                "original recipe's measured time"
            )
        clauses.append(clause)
    return "On the CPU measured, " + "; ".join(clauses) + "."


# ---------------------------------------------------------------------------------------------------
# subject-inpaint bench toy (benchmarks/toy/results.json and kin)
# ---------------------------------------------------------------------------------------------------
def toy_rows_of(run: Run) -> dict[str, dict[str, Any]]:
    return {r["setting"]: r for r in run.data["results"]}


def toy_row(run: Run, setting: str) -> dict[str, Any]:
    rows = toy_rows_of(run)
    if setting not in rows:
        raise ReportError(f"{run.name} has no setting {setting!r}")
    return rows[setting]


def rate_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def toy_table(runs: Sequence[Run], arg: str) -> str:
    """``REGEX``: the settings whose names match (all without one), mean ± standard error over the cases."""
    pattern = re.compile(arg.strip() or ".")
    rows = []
    for r in runs[0].data["results"]:
        if not pattern.search(r["setting"]):
            continue
        n = r["cases"]
        rows.append(
            [
                r["setting"],
                f"{r['identity_mean']:.3f} ± {r['identity_std'] / math.sqrt(n):.3f}",
                f"{r['psnr_outside_db']:.1f} ± {r['psnr_std'] / math.sqrt(n):.2f}",
                f"{r['frechet_distance']:.3f} ± {r['frechet_se']:.3f}",
                f"{100 * r['outline_read']:.0f} ± {100 * rate_se(r['outline_read'], n):.0f} %",
                str(n),
            ]
        )
    if not rows:
        raise ReportError(f"{runs[0].name}: no setting matches {arg!r}")
    header = ["setting", "identity ↑", "PSNR outside dB ↑", "Fréchet ↓", "outline read ↑", "cases"]
    return table(header, ["---", *["---:"] * 5], rows) + (
        "\n\nMean ± standard error over the cases (the Fréchet distance's by bootstrap over the cases)."
    )


def paired_se(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    diff = [y - x for x, y in zip(a, b, strict=True)]
    return statistics.fmean(diff), statistics.stdev(diff) / math.sqrt(len(diff))


def toy_paired(runs: Sequence[Run], arg: str) -> str:
    """``REFERENCE > OTHER; ...``: each OTHER against its REFERENCE on the same cases."""
    from subject_inpainting.evaluation.metrics import paired_exact_test

    rows = []
    for pair in args_list(arg, ";"):
        ref_name, _, other_name = (p.strip() for p in pair.partition(">"))
        ref, other = toy_row(runs[0], ref_name), toy_row(runs[0], other_name)
        ident = paired_se(ref["identity_cases"], other["identity_cases"])
        psnr = paired_se(ref["psnr_cases"], other["psnr_cases"])
        frechet = other["frechet_distance"] - ref["frechet_distance"]
        frechet_se = math.hypot(ref["frechet_se"], other["frechet_se"])
        only_ref, only_other, p = paired_exact_test(ref["outline_cases"], other["outline_cases"])
        rows.append(
            [
                f"{other_name} − {ref_name}",
                f"{ident[0]:+.3f} ± {ident[1]:.3f}",
                f"{psnr[0]:+.2f} ± {psnr[1]:.2f}",
                f"{frechet:+.3f} ± {frechet_se:.3f}",
                f"{only_ref} / {only_other} (p = {p:.2g})",
            ]
        )
    header = ["difference", "identity (paired)", "PSNR outside dB (paired)", "Fréchet (unpaired)"]
    header.append("outline: cases read right only with the first / the second (exact McNemar p)")
    return table(header, ["---", *["---:"] * 4], rows) + (
        "\n\nDifference ± its standard error; paired: over the differences case by case."
    )


# ---------------------------------------------------------------------------------------------------
# benchmarks/toy/region_decode.py
# ---------------------------------------------------------------------------------------------------
WINDOW = re.compile(r"margin (?P<margin>\d+), side (?P<side>\d+)")


def windows(run: Run) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for key, w in run.data["windows"].items():
        m = WINDOW.fullmatch(key)
        if m is None:
            raise ReportError(f"{run.name}: window {key!r} is not 'margin M, side S'")
        out.append((int(m["margin"]), int(m["side"]), w))
    return out


def region_full(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    whole = d["whole_decode_seconds"]
    rows = [
        [
            str(margin),
            str(side),
            percent(w["share_decoded"]),
            num(w["seconds"]),
            times(whole / w["seconds"]),
            str(w["max_difference_inside_region"]),
            f"{w['mean_difference_inside_region']:.2f}",
        ]
        for margin, side, w in windows(runs[0])
    ]
    header = ["margin (latent cells)", "region side (pixels)", "latent decoded", "window decode s"]
    header += [f"faster than the whole decode ({num(whole)} s)", "largest difference inside", "mean difference inside"]
    return table(header, ["---:"] * 7, rows)


def region_toy(runs: Sequence[Run], arg: str) -> str:
    d = runs[0].data
    rows = [
        [margin, percent(m["mean_share_decoded"]), str(m["max_difference_inside_region"])]
        for margin, m in d["margins"].items()
    ]
    header = ["margin (latent cells)", f"latent decoded, mean over {d['cases']} cases", "largest difference inside"]
    return table(header, ["---:"] * 3, rows)


def summary_region(runs: Sequence[Run], arg: str) -> str:
    """README: ``MARGIN``: the window decode's speed-up and its largest difference at that margin."""
    margin = int(arg.strip())
    d = runs[0].data
    chosen = [(side, w) for m, side, w in windows(runs[0]) if m == margin]
    if not chosen:
        raise ReportError(f"{runs[0].name}: no window with margin {margin}")
    speed = [d["whole_decode_seconds"] / w["seconds"] for _, w in chosen]
    sides = [side for side, _ in chosen]
    worst = max(w["max_difference_inside_region"] for _, w in chosen)
    return (
        f"With {margin} latent cells of margin, decoding only the window around a square region of "
        f"{min(sides)}–{max(sides)} pixels with the {d['model'].partition(',')[0]} is "
        f"{span(speed, fmt=lambda x: f'{x:.1f}')}× faster "
        f"than the whole decode, but differs from it by up to {worst} levels (of 255) inside the region."
    )


# ---------------------------------------------------------------------------------------------------
# benchmarks/toy/outline_diagnosis.py (two runs: a model and the one it is compared with)
# ---------------------------------------------------------------------------------------------------
def model_names(runs: Sequence[Run]) -> list[str]:
    return [r.data["model"].split(" (")[0] for r in runs]


def default_reader() -> tuple[int, int]:
    from subject_inpainting.toy.outline import TEMPLATE_ALPHA, read_shape

    return inspect.signature(read_shape).parameters["threshold"].default, TEMPLATE_ALPHA


def rate_text(x: float) -> str:
    return f"{100 * x:.1f} %"


def outline_truths(runs: Sequence[Run], arg: str) -> str:
    threshold, alpha = default_reader()
    keys = list(runs[0].data["truths"])
    header = ["truths read right: threshold / template opacity"]
    header += [k + (" (default)" if k == f"{threshold}/{alpha}" else "") for k in keys]
    rows = [
        [name, *(rate_text(r.data["truths"][k]) for k in keys)] for name, r in zip(model_names(runs), runs, strict=True)
    ]
    return table(header, ["---"] * (len(keys) + 1), rows)


def outline_paintings(runs: Sequence[Run], arg: str) -> str:
    threshold, _ = default_reader()
    keys = list(runs[0].data["paintings"])
    names = " / ".join(model_names(runs))
    header = ["silhouette threshold", *(k + (" (default)" if k == str(threshold) else "") for k in keys)]
    right = [f"paintings read right ({names})"]
    square = [f"paintings read as the whole hole, a square, of {runs[0].data['cases']} ({names})"]
    for k in keys:
        right.append(" / ".join(rate_text(r.data["paintings"][k]["read_right"]) for r in runs))
        square.append(" / ".join(str(r.data["paintings"][k]["read_as_square"]) for r in runs))
    return table(header, ["---"] * (len(keys) + 1), [right, square])


def outline_stages(runs: Sequence[Run], arg: str) -> str:
    threshold, _ = default_reader()
    rows = [["truth through the VAE and back", *(rate_text(r.data["vae_round_trip"]) for r in runs)]]
    for t in runs[0].data["noised_truth"]:
        rows.append(
            [
                f"the model's one-step prediction from the truth noised to t = {t}",
                *(rate_text(r.data["noised_truth"][t]) for r in runs),
            ]
        )
    rows.append(["painting", *(rate_text(r.data["paintings"][str(threshold)]["read_right"]) for r in runs)])
    rows.append(
        [
            "painting with an unrelated reference of another shape: read as THAT reference's shape",
            *(rate_text(r.data["unrelated_reference"]["read_as_its_shape"]) for r in runs),
        ]
    )
    rows.append(
        [
            "… read as the case's own subject's shape",
            *(rate_text(r.data["unrelated_reference"]["read_as_the_subjects_shape"]) for r in runs),
        ]
    )
    header = ["picture, read with the reader's defaults", *model_names(runs)]
    return table(header, ["---"] * (len(runs) + 1), rows)


def outline_shapes(runs: Sequence[Run], arg: str) -> str:
    threshold, _ = default_reader()
    first = runs[0].data
    truth = first["truth_shapes"]

    def right(run: Run, shape: str) -> int:
        return run.data["painted_right_by_shape"].get(shape, 0)

    order = sorted(truth, key=lambda s: (-right(runs[0], s) / truth[s], s))
    by_shape = ", ".join(f"{s} {' / '.join(str(right(r, s)) for r in runs)} of {truth[s]}" for s in order)
    reads = []
    for name, r in zip(model_names(runs), runs, strict=True):
        counts = sorted(r.data["paintings"][str(threshold)]["reads"].items(), key=lambda kv: (-kv[1], kv[0]))
        reads.append(f"{name}: " + ", ".join(f"{s} {n}" for s, n in counts))
    return (
        f"Paintings read right, by the subject's shape ({' / '.join(model_names(runs))}): {by_shape}. "
        f"What the paintings read as ({'; '.join(reads)})."
    )


def outline_compare(runs: Sequence[Run], arg: str) -> str:
    from subject_inpainting.evaluation.metrics import paired_exact_test

    a, b = (r.data["case_reads"] for r in runs)
    if a["shapes"] != b["shapes"]:
        raise ReportError(f"{runs[0].name} and {runs[1].name} are not the same cases")
    only_a, only_b, p = paired_exact_test(
        [x == s for x, s in zip(a["paintings"], a["shapes"], strict=True)],
        [x == s for x, s in zip(b["paintings"], b["shapes"], strict=True)],
    )
    n = len(a["shapes"])
    names = model_names(runs)
    return (
        f"Paired on the same {n} cases (`--compare`): {only_a} read right only with {names[0]}, {only_b} only with "
        f"{names[1]}; exact McNemar p = {p:.2g}. At {n} cases the standard error of one rate is up to "
        f"{100 * rate_se(0.5, n):.1f} points (at one half)."
    )


# ---------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------
VIEWS: dict[str, View] = {
    # bench_inference.py
    "inference": View(inference_table, True),
    "inference-stages": View(inference_stages, True),
    "inference-checks": View(inference_checks, False),
    "image-shares": View(image_shares, False),
    "inference-memory": View(inference_memory, False),
    "guidance": View(guidance_table, True),
    "guidance-summary": View(guidance_summary, False),
    # bench_speed.py
    "rows": View(speed_rows, True),
    "stages": View(speed_stages, True),
    "flops": View(speed_flops, True),
    "compile": View(speed_compile, True),
    "speedup": View(speedup, False),
    "memory": View(working_memory, False),
    "evaluations": View(evaluations, False),
    "vae-share": View(vae_share, False),
    "shares": View(shares, False),
    "spread": View(spread, False),
    "against": View(against, False),
    "peak-share": View(peak_share, False),
    "summary-compile": View(summary_compile, False),
    "summary-openvino": View(summary_openvino, False),
    "summary-dtype": View(summary_dtype, False),
    # bench_batch.py
    "batch": View(batch_table, True),
    "batch-summary": View(batch_summary, False),
    # bench_threads.py
    "threads": View(threads_table, True),
    "threads-summary": View(threads_summary, False),
    # bench_floor.py
    "floor": View(floor_table, True),
    "floor-summary": View(floor_summary, False),
    # bench_profile.py
    "profile": View(profile_table, True),
    "int8-summary": View(int8_summary, False),
    # bench_layout.py
    "layout": View(layout_table, True),
    "layout-summary": View(layout_summary, False),
    # bench toy
    "toy": View(toy_table, True),
    "toy-paired": View(toy_paired, True),
    # toy/region_decode.py
    "region-full": View(region_full, True),
    "region-toy": View(region_toy, True),
    "summary-region": View(summary_region, False),
    # toy/outline_diagnosis.py
    "outline-truths": View(outline_truths, True, None),
    "outline-paintings": View(outline_paintings, True, None),
    "outline-stages": View(outline_stages, True, None),
    "outline-shapes": View(outline_shapes, False, None),
    "outline-compare": View(outline_compare, False, 2),
}


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    spec: str
    indent: str
    body: str  # as it stands in the document
    rendered: str  # as the JSON gives it

    @property
    def files(self) -> list[str]:
        return parse_spec(self.spec)[0]

    @property
    def stale(self) -> bool:
        return self.body != self.rendered

    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}: <!-- results: {self.spec} -->"


def parse_spec(spec: str) -> tuple[list[str], list[str], str]:
    """``FILE.json ... VIEW[+VIEW...] ARGS`` → (files, views, args)."""
    tokens = spec.split(" ")
    files = []
    while tokens and tokens[0].endswith(".json"):
        files.append(tokens.pop(0))
    if not files or not tokens:
        raise ReportError(f"marker {spec!r}: expected FILE.json ... VIEW[+VIEW...] [ARGUMENTS]")
    return files, tokens[0].split("+"), " ".join(tokens[1:])


def load(name: str, cache: dict[str, Run]) -> Run:
    if name not in cache:
        path = BENCHMARKS / name
        try:
            cache[name] = Run(name, json.loads(path.read_text(encoding="utf-8")))
        except OSError as e:
            raise ReportError(f"{name}: cannot read it ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise ReportError(f"{name}: not JSON ({e})") from None
    return cache[name]


def render_block(spec: str, document: Path, cache: dict[str, Run]) -> str:
    """The text of a block: its views, then the runs named in full (tables) or referred to (sentences)."""
    files, views, arg = parse_spec(spec)
    runs = [load(f, cache) for f in files]
    parts, full = [], False
    for name in views:
        view = VIEWS.get(name)
        if view is None:
            raise ReportError(f"unknown view {name!r} (known: {', '.join(VIEWS)})")
        if view.files is not None and view.files != len(runs):
            raise ReportError(f"view {name!r} reads {view.files} file(s), the marker names {len(runs)}")
        try:
            parts.append(view.render(runs, arg))
        except ReportError:
            raise
        except (KeyError, ValueError, TypeError, ZeroDivisionError) as e:
            raise ReportError(f"view {name!r} on {', '.join(files)}: {type(e).__name__} {e}") from None
        full = full or view.table
    if full:
        return "\n\n".join([*parts, *(run_line(run, document) for run in runs)])
    # Sentences make one paragraph, which ends with the files they read.
    return " ".join(parts) + " (" + "; ".join(source_note(run, document) for run in runs) + ")"


# A line that starts with one of these would begin a list, a heading or a quote instead of continuing a paragraph.
BLOCK_START = re.compile(r"(?:[-+*>]|#+|\d+[.)]|=+)$|\|")


def wrap(text: str, width: int) -> str:
    """Paragraphs and list items wrapped at ``width`` on spaces (no continuation line opens a markdown block);
    tables as they are."""
    out = []
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("|"):
            out.append(paragraph)
            continue
        items = re.split(r"\n(?=- )", paragraph) if paragraph.startswith("- ") else [paragraph.replace("\n", " ")]
        lines = []
        for item in items:
            hang = "  " if item.startswith("- ") else ""
            line = ""
            for word in item.replace("\n", " ").split(" "):
                if line and len(line) + 1 + len(word) > width and not BLOCK_START.match(word):
                    lines.append(line)
                    line = hang + word
                else:
                    line = f"{line} {word}" if line else word
            lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out)


WIDTH = 115  # the documents' line length


def indented(text: str, indent: str) -> str:
    return "".join((indent + line if line.strip() else line) + "\n" for line in text.split("\n"))


def blocks_of(document: Path, text: str, cache: dict[str, Run]) -> list[Block]:
    blocks = []
    for m in MARKER.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        try:
            body = wrap(render_block(m["spec"], document, cache), WIDTH - len(m["indent"]))
            rendered = indented(body, m["indent"])
        except ReportError as e:
            raise ReportError(f"{document.relative_to(ROOT)}:{line}: {e}") from None
        blocks.append(Block(document, line, m["spec"], m["indent"], m["body"], rendered))
    return blocks


def rewrite(text: str, blocks: Sequence[Block]) -> str:
    rendered = iter(blocks)

    def fill(m: re.Match[str]) -> str:
        block = next(rendered)
        return f"{m['indent']}<!-- results: {m['spec']} -->\n{block.rendered}{m['indent']}<!-- end results -->"

    return MARKER.sub(fill, text)


def results_files() -> list[str]:
    """Every results JSON under ``benchmarks/``, relative to it."""
    return sorted(p.relative_to(BENCHMARKS).as_posix() for p in BENCHMARKS.rglob("*.json"))


def table_files(cache: dict[str, Run]) -> list[str]:
    """Problems of the ``results-*.md`` files: each must hold the tables of the JSON beside it."""
    problems = []
    for md in sorted(BENCHMARKS.glob("results*.md")):
        name = md.with_suffix(".json").name
        json_path = BENCHMARKS / name
        if not json_path.exists():
            problems.append(f"benchmarks/{md.name}: no {name} beside it")
            continue
        tables = load(name, cache).data.get("markdown")
        if tables is not None and md.read_text(encoding="utf-8").strip() != tables.strip():
            problems.append(f"benchmarks/{md.name}: differs from the tables {name} holds (its `markdown`)")
    return problems


def check(documents: Sequence[str] | None = None) -> list[str]:
    """What is out of date: stale blocks, results files no block names, tables files that differ from their
    JSON. Empty when the documents say what the JSON files hold."""
    cache: dict[str, Run] = {}
    problems, named = [], set()
    for doc in documents or DOCUMENTS:
        path = ROOT / doc
        try:
            blocks = blocks_of(path, path.read_text(encoding="utf-8"), cache)
        except ReportError as e:
            problems.append(str(e))
            continue
        for block in blocks:
            named.update(block.files)
            if block.stale:
                problems.append(f"{block.where()} is stale: rerun python benchmarks/report.py")
    problems += [
        f"benchmarks/{f}: no block names it (delete a superseded result)" for f in results_files() if f not in named
    ]
    return problems + table_files(cache)


def write(documents: Sequence[str] | None = None) -> list[str]:
    """Rewrite every block of the documents; returns the documents that changed."""
    cache: dict[str, Run] = {}
    changed = []
    for doc in documents or DOCUMENTS:
        path = ROOT / doc
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, blocks_of(path, text, cache))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(doc)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 naming each block that differs from its JSON"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    try:
        changed = write()
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("rewrote " + ", ".join(changed) if changed else "up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
