#!/usr/bin/env python
"""Speed benchmark: the pipeline's speed levers, each alone and together (the ``fast`` preset), against the
original recipe and against diffusers' ``PaintByExamplePipeline``, on whole images.

What is measured
----------------
Weights: the full-size Paint-by-Example architecture (SD-v1 9-channel UNet, KL-f8 VAE, CLIP ViT-L/14 reference
encoder) with random weights under a seed, as ``bench_inference.py`` builds it, so nothing is downloaded; with
``--quick`` the embedded toy model (``subject_inpainting.weights.default_model()``, 64² pictures). Three
workloads, each a whole image (PIL scene at the model's resolution, mask, reference → PIL result, pasted back),
guidance scale 5, the same seed and initial noise for every row:

- ``a``: plain Paint-by-Example (no subject);
- ``b``: a LoRA subject (rank ``--lora-rank``) with modified guidance, w = 0.8;
- ``c``: a fully fine-tuned subject with modified guidance, w = 0.8.

The subjects are made in memory as ``bench_inference.py``'s guidance workload makes them. Rows, per workload:

- ``original``: ``preset="original"`` (PLMS 50, every step in full, guidance at every step, full decode);
- ``diffusers-50`` (workload ``a`` only): diffusers' ``PaintByExamplePipeline`` on the same UNet and VAE
  objects, with the released pipeline's scheduler (PNDM, PLMS steps) at its default 50 steps;
- each lever alone on top of the original recipe: ``few-steps`` (the ``fast`` preset's sampler and step count,
  or DPM-Solver++ 20 if that preset keeps the original's), ``deep-cache``
  (DeepCache at the ``fast`` preset's interval and branch, or every 3rd call full if that preset does not use
  it), ``guidance-interval`` (the ``fast`` preset's interval, or timesteps 100-800), ``region-decode`` (only the
  latent window around the mask decoded), ``token-merging`` (the ``fast`` preset's ratio, or 0.5; also
  ``token-merging-<dtype>`` per extra dtype), ``compile-inductor`` and ``compile-openvino`` (``pipe.compile`` on a
  separate pipeline whose UNet module holds the same tensors; ``--compile``; OpenVINO runs LoRA subjects'
  calls eagerly, see ``subject_inpainting.models.compiled``), and one row per extra dtype of ``--dtypes``
  (bfloat16 by default only on CPUs that compute it natively), with ``--compile`` also compiled in each
  (``compile-openvino-bfloat16`` ...);
- ``fast``: ``preset="fast"``, the default (its settings are read from ``PRESETS`` when the script runs), and
  ``fast-<dtype>`` per extra dtype;
- ``default``: what ``subject-inpaint inpaint`` runs here with no flags (its preset, ``--dtype auto``, int8 UNet
  layers where ``--int8 auto`` turns them on for the benchmark's model), ``default-float`` the same with
  ``--int8 off`` and ``default-int8`` with ``--int8 on`` (``enable_int8`` on a twin over the same tensors). None
  runs without ``--rows``.

For every row: the median wall time of its calls with the range, its ratio to the workload's ``original`` (and
``fast`` over ``diffusers-50``), the UNet evaluations per image with their batch sizes and how many ran the
whole UNet (DeepCache's cached calls run only its shallow path), where the time went (UNet, VAE encode and
decode, reference encoder, the rest), the peak RSS during the call and the peak minus the RSS just before it
(``bench_common.measure_call``). Compiled rows also give the compile time: a first call minus a second
one (1 step; 4 under DeepCache, so that both of its graphs are met). Besides the rows: the FLOPs of one
guided UNet step at batch 2 (``FlopCounterMode``, a multiply-add counting 2; the CPU flash-attention kernel,
which it does not know, counted as it counts the other attention kernels) over its measured time, against
the machine's float32 peak measured in the same process with a 2048³ matmul and a 3×3 convolution shaped like
the UNet's first layers (1×320×64×64 → 320).

How
---
One process builds every pipeline once (all weights stay resident, so ``peak RSS`` counts them all and
``peak − before`` is each call's own working memory). Each row gets an untimed 1-step warm-up (``--no-warmup``
skips it; compiled rows always get their two calls), then ``--repeats`` rounds in which every row of
every workload runs once, the order reversed every other round (``bench_common.timed_rounds``), so that a
machine whose speed drifts slows every row alike. UNet evaluations are counted by forward hooks: at the UNet's
``conv_in`` (every evaluation, cached or not, with its batch size) and at the UNet module (whole-UNet calls);
a compiled UNet is counted at its module only.

Compiled rows: each workload's compiled pipeline is a twin of its eager one (a structural copy of the UNet over
the same tensors, since ``pipe.compile`` compiles the module's ``forward`` in place). A backend that fails to
compile is reported and its rows dropped; the other rows go on. Under inductor a twin with the structure and
input shapes of one compiled earlier in the process reuses that graph (dynamo takes module parameters as inputs),
so only the first pays the compile time, and dynamo's bound on compiled entries per code object is raised so
that the twins never fall back to eager. OpenVINO converts each twin (the converted model holds its weights).

``--quick``: the embedded model, workload ``a`` and one torch thread unless given: its operations are too small
to gain from threads, and the threads' synchronisation stalls on a busy machine.

Usage::

    python benchmarks/bench_speed.py --quick                     # embedded toy model, workload a
    python benchmarks/bench_speed.py --quick --workloads a,b,c   # all three workloads
    python benchmarks/bench_speed.py --out benchmarks/results-speed.json --table benchmarks/results-speed.md
    python benchmarks/bench_speed.py --steps-original 10 --workloads a   # a shorter full-size trial
    python benchmarks/bench_speed.py --compile --workloads a --rows original,compile-inductor,compile-openvino

Random weights give noise images: only time, calls and memory mean anything here (the toy model's images are
real, but no quality is measured: ``subject-inpaint bench toy`` does that).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

# First: importing it sets the environment and reads the usable CPUs before torch loads.
from bench_common import (
    DEFAULT_LORA_RANK,
    DTYPES,
    GUIDANCE_SCALE,
    MODEL_WEIGHT,
    StageTimer,
    build_pipelines,
    fmt,
    format_machine,
    guidance_pipelines,
    guided_denoiser,
    image_inputs,
    machine_info,
    memory_keys,
    model_sizes,
    ratio,
    seconds,
    shared_weight_view,
    step_inputs,
    step_timestep,
    summarise,
    synchronize,
    timed_rounds,
)

# isort: split
import torch

WORKLOADS = {
    "a": "plain Paint-by-Example",
    "b": f"LoRA subject, modified guidance w = {MODEL_WEIGHT:g}",
    "c": f"full fine-tuned subject, modified guidance w = {MODEL_WEIGHT:g}",
}
PIPELINE_OF_WORKLOAD = {"a": "plain", "b": "lora", "c": "full"}  # guidance_pipelines' keys
EXTRA_DTYPES = ("bfloat16", "float16")
BACKENDS = ("inductor", "openvino")
INT8 = "int8"  # the variant prefix of rows whose UNet layers run in int8
# What `subject-inpaint inpaint` runs with no flags (int8 layers as `--int8 auto` chooses), and with `--int8 off`
# and `--int8 on`.
DEFAULT_ROWS = ("default", "default-float", "default-int8")
COMPILE_ROWS = tuple(f"compile-{b}" for b in BACKENDS)
COMPILE_DTYPE_ROWS = tuple(f"compile-{b}-{d}" for b in BACKENDS for d in EXTRA_DTYPES)
# The fast preset compiled with OpenVINO (DeepCache's calls in graphs of their own), and the variant each runs in.
FAST_OPENVINO_ROWS = {"fast-openvino": "openvino", **{f"fast-openvino-{d}": f"openvino-{d}" for d in EXTRA_DTYPES}}
# The token-merging rows and the variant each runs in.
TOKEN_MERGING_ROWS = {"token-merging": "eager", **{f"token-merging-{d}": d for d in EXTRA_DTYPES}}
# Every row, in the table's order; dtype rows exist only for the dtypes run.
ROWS = (
    "original",
    "diffusers-50",
    "few-steps",
    "deep-cache",
    "guidance-interval",
    "region-decode",
    "token-merging",
    *COMPILE_ROWS,
    *EXTRA_DTYPES,
    *(name for name in TOKEN_MERGING_ROWS if name != "token-merging"),
    *COMPILE_DTYPE_ROWS,
    "fast",
    *(f"fast-{d}" for d in EXTRA_DTYPES),
    *FAST_OPENVINO_ROWS,
    *DEFAULT_ROWS,
)
# The levers' values when the fast preset does not use them (so that the row still measures the lever).
DEFAULT_DEEP_CACHE = 3
DEFAULT_INTERVAL = (100, 800)
DEFAULT_FEW_STEPS = ("dpmsolver++", 20)
DEFAULT_TOKEN_MERGING = 0.5
QUICK_REPEATS, FULL_REPEATS = 3, 1
QUICK_WORKLOADS = ("a",)
QUICK_THREADS = 1
# The machine's peak: a square float32 matmul and a 3×3 convolution shaped like the UNet's first layers.
PEAK_MATMUL_N = 2048
PEAK_CONV = {"channels": 320, "side": 64}
PEAK_CALLS = 5
STEP_CALLS = 3


# ---------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One way to make an image: which pipeline runs it and with which call options."""

    name: str
    variant: str  # "eager", "diffusers", a dtype name, a backend, or "<backend>-<dtype>"
    options: dict[str, Any] = field(default_factory=dict)  # our pipeline call's (preset and overrides)


def lever_values() -> dict[str, Any]:
    """The levers' values the rows use: the fast preset's where it turns them on, else the defaults above."""
    from subject_inpainting.presets import PRESETS

    fast, original = PRESETS["fast"], PRESETS["original"]
    interval = fast["guidance_interval"]
    fewer = fast["num_inference_steps"] < original["num_inference_steps"]
    return {
        "sampler": fast["sampler"] if fewer else DEFAULT_FEW_STEPS[0],
        "num_inference_steps": fast["num_inference_steps"] if fewer else DEFAULT_FEW_STEPS[1],
        "deep_cache": fast["deep_cache"] if fast["deep_cache"] > 1 else DEFAULT_DEEP_CACHE,
        "deep_cache_branch": fast["deep_cache_branch"],
        "guidance_interval": tuple(interval) if interval is not None else DEFAULT_INTERVAL,
        "token_merging": fast["token_merging"] or DEFAULT_TOKEN_MERGING,
    }


def make_row(name: str, steps_original: int, default_int8: bool = False) -> Row:
    """The row called ``name`` (one of ``ROWS``); ``steps_original`` is the original recipe's step count,
    ``default_int8`` whether ``--int8 auto`` turns int8 layers on for the benchmark's model (``auto_int8``)."""
    original = {"preset": "original", "num_inference_steps": steps_original}
    levers = lever_values()
    if name == "original":
        return Row(name, "eager", original)
    if name == "diffusers-50":
        return Row(name, "diffusers")
    if name == "few-steps":
        steps = {k: levers[k] for k in ("sampler", "num_inference_steps")}
        return Row(name, "eager", {**original, **steps})
    if name == "deep-cache":
        cache = {k: levers[k] for k in ("deep_cache", "deep_cache_branch")}
        return Row(name, "eager", {**original, **cache})
    if name == "guidance-interval":
        return Row(name, "eager", {**original, "guidance_interval": levers["guidance_interval"]})
    if name == "region-decode":
        return Row(name, "eager", {**original, "decode": "region"})
    if name in TOKEN_MERGING_ROWS:
        return Row(name, TOKEN_MERGING_ROWS[name], {**original, "token_merging": levers["token_merging"]})
    if name in COMPILE_ROWS or name in COMPILE_DTYPE_ROWS:
        return Row(name, name.removeprefix("compile-"), original)
    if name in EXTRA_DTYPES:
        return Row(name, name, original)
    if name == "fast":
        return Row(name, "eager", {"preset": "fast"})
    if name in FAST_OPENVINO_ROWS:
        return Row(name, FAST_OPENVINO_ROWS[name], {"preset": "fast"})
    if name.removeprefix("fast-") in EXTRA_DTYPES:
        return Row(name, name.removeprefix("fast-"), {"preset": "fast"})
    if name in DEFAULT_ROWS:
        from subject_inpainting.presets import DEFAULT_PRESET

        int8 = {"default": default_int8, "default-float": False, "default-int8": True}[name]
        return Row(name, default_variant(int8), {"preset": DEFAULT_PRESET})
    raise ValueError(f"unknown row {name!r}")


def default_variant(int8: bool) -> str:
    """The variant of ``--dtype auto`` on this machine's CPU (``eager`` for float32, else the dtype's name), with
    int8 UNet layers (``int8-<dtype>``, ``int8`` in float32) when ``int8``."""
    from subject_inpainting.devices import resolve_dtype

    name = str(resolve_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    if int8:
        return INT8 if name == "float32" else f"{INT8}-{name}"
    return "eager" if name == "float32" else name


def auto_int8(quick: bool) -> bool:
    """Whether ``--int8 auto`` turns int8 layers on here for the benchmark's model (``devices.int8_auto`` for its
    UNet in ``--dtype auto``'s dtype; the UNet is built from its config on the meta device: no weights)."""
    from subject_inpainting.devices import int8_auto, resolve_dtype, unet_work
    from subject_inpainting.models.build import build_component

    if quick:
        from subject_inpainting.weights import default_model

        folder = default_model()
        if folder is None:
            return False
        config = json.loads((Path(folder) / "unet" / "config.json").read_text())
    else:
        config = model_sizes(quick=False).unet
    with torch.device("meta"):
        unet = build_component("unet", config)
    cpu = torch.device("cpu")
    return int8_auto(cpu, resolve_dtype("auto", cpu), unet_work(unet))


def default_rows(args: argparse.Namespace) -> list[str]:
    """The rows run without ``--rows``: the original, diffusers, each lever, compiled ones with ``--compile``,
    one per extra dtype, the fast preset (and per extra dtype)."""
    extra = [d for d in args.dtypes if d != "float32"]
    names = ["original", "diffusers-50", "few-steps", "deep-cache", "guidance-interval", "region-decode"]
    names += ["token-merging", *list(COMPILE_ROWS) * args.compile, *extra]
    names += [f"token-merging-{d}" for d in extra]
    names += [f"compile-{b}-{d}" for b in BACKENDS for d in extra] * args.compile
    names += ["fast"] + [f"fast-{d}" for d in extra]
    names += ["fast-openvino", *(f"fast-openvino-{d}" for d in extra)] * args.compile
    return names


def workload_rows(args: argparse.Namespace, workload: str) -> list[Row]:
    """The rows of ``workload``, in the table's order (diffusers' only for plain Paint-by-Example)."""
    names = args.rows if args.rows is not None else default_rows(args)
    return [
        make_row(n, args.steps_original, args.default_int8)
        for n in ROWS
        if n in names and not (n == "diffusers-50" and workload != "a")
    ]


def describe_options(options: dict[str, Any]) -> str:
    """What a call with ``options`` runs, in words (the preset's settings with the overrides applied)."""
    from subject_inpainting.presets import preset_settings

    s = preset_settings(options["preset"], **{k: v for k, v in options.items() if k != "preset"})
    parts = [f"{s['sampler'].upper() if s['sampler'] == 'plms' else s['sampler']} {s['num_inference_steps']}"]
    if s["deep_cache"] > 1:
        parts.append(f"DeepCache every {s['deep_cache']} (branch {s['deep_cache_branch']})")
    if s["guidance_interval"] is not None:
        low, high = s["guidance_interval"]
        parts.append(f"guidance at t {low}-{high}")
    if s["token_merging"]:
        parts.append(f"token merging {s['token_merging']:g}")
    if s["decode"] != "full":
        parts.append(f"{s['decode']} decode")
    return ", ".join(parts)


def row_label(row: Row, result: dict[str, Any]) -> str:
    """The table's description of a row."""
    if row.variant == "diffusers":
        return f"diffusers PaintByExamplePipeline, PNDM {result['num_inference_steps']}"
    text = describe_options(row.options)
    if row.name.startswith("fast"):
        text = f"fast preset: {text}"
    backend, dtype = split_variant(row.variant)
    if backend is not None:
        text += ", OpenVINO" if backend == "openvino" else f", torch.compile ({backend})"
    if int8_variant(row.variant):
        text += ", int8 UNet layers"
    if dtype != "float32":
        text += f", {dtype}"
    return text


def split_variant(variant: str) -> tuple[str | None, str]:
    """``(backend or None, dtype name)`` of a row's variant: ``"openvino-bfloat16"`` → ``("openvino", "bfloat16")``,
    ``"bfloat16"`` and ``"int8-bfloat16"`` → ``(None, "bfloat16")``, ``"eager"``, ``"int8"`` and ``"diffusers"`` →
    ``(None, "float32")``."""
    head, _, tail = variant.partition("-")
    if head in BACKENDS:
        return head, tail or "float32"
    if head == INT8:
        return None, tail or "float32"
    return None, variant if variant in DTYPES else "float32"


def int8_variant(variant: str) -> bool:
    """Whether a row's variant runs the UNet's convolutions and linear layers in int8 (``enable_int8``)."""
    return variant.partition("-")[0] == INT8


# ---------------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------------
def base_pipeline(args: argparse.Namespace, dtype: torch.dtype, diffusers: bool) -> tuple[Any, Any, dict[str, Any]]:
    """Our pipeline (the embedded model with ``--quick``, else the full size with random weights), and
    diffusers' on the same UNet and VAE when asked. Returns ``(ours, theirs or None, notes)``."""
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    device = torch.device(args.device)
    notes: dict[str, Any] = {}
    if args.quick:
        from subject_inpainting.weights import default_model

        folder = default_model()
        if folder is None:
            raise SystemExit("error: this installation has no embedded model (subject_inpainting.weights)")
        ours = SubjectInpaintPipeline.from_pretrained(folder, device=device, dtype=dtype)
        notes["model"] = f"embedded toy model ({folder})"
    else:
        sizes = model_sizes(quick=False)
        ours, _, prints = build_pipelines(sizes, args.seed, device, dtype, diffusers=False)
        notes["model"] = sizes.description
        notes["weights_fingerprint"] = prints["ours"]
    theirs = diffusers_pipeline(ours, args.seed, notes) if diffusers else None
    if theirs is not None:  # its UNet and VAE are ours, already there
        theirs.image_encoder.to(device, dtype)
    return ours, theirs, notes


def diffusers_pipeline(ours: Any, seed: int, notes: dict[str, Any]) -> Any:
    """diffusers' ``PaintByExamplePipeline`` over ``ours``' UNet and VAE (the same objects), with the released
    pipeline's PNDM scheduler. Its image encoder is ours converted, or, for an encoder diffusers cannot hold
    (the embedded model's: its mapper depth is not diffusers' ``(layers + 1) // 5``), diffusers' own encoder of
    the same tower with random weights (the same cost; only time is compared)."""
    import transformers
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    from bench_common import build_diffusers, fingerprint

    try:
        theirs = build_diffusers(ours.components, scheduler="PNDMScheduler")
        notes["diffusers_image_encoder"] = "ours, converted (same weights)"
        sums = [fingerprint({"encoder": m})["encoder"] for m in (ours.reference_encoder, theirs.image_encoder)]
        notes["diffusers_encoder_same_weights"] = math.isclose(*sums, rel_tol=1e-9, abs_tol=1e-9)
    except ValueError as e:
        config = ours.reference_encoder.config
        vision = {**dict(config.vision_config), "projection_dim": int(config.context_dim)}
        torch.manual_seed(seed + 20)
        encoder = PaintByExampleImageEncoder(transformers.CLIPVisionConfig(**vision))
        theirs = build_diffusers(ours.components, scheduler="PNDMScheduler", image_encoder=encoder)
        notes["diffusers_image_encoder"] = f"diffusers' own, random weights, same tower ({e})"
    notes["diffusers_scheduler"] = "PNDMScheduler (skip_prk_steps: PLMS steps, the released pipeline's)"
    return theirs


def twin_pipeline(pipe: Any, own_subject_unet: bool) -> Any:
    """A pipeline like ``pipe`` (same subject) whose UNet is a separate module over the same tensors
    (``shared_weight_view``), and with ``own_subject_unet`` a full subject's UNet too: a lever that changes the
    modules in place (compiling, int8 layers) then leaves ``pipe``'s as they were."""
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    twin = SubjectInpaintPipeline(**{**pipe.components, "unet": shared_weight_view(pipe.unet)})
    twin.subject = pipe.subject
    if own_subject_unet and pipe.subject is not None and pipe.subject.unet is not None:
        twin.subject = replace(pipe.subject, unet=shared_weight_view(pipe.subject.unet))
    return twin


def compiled_pipeline(pipe: Any, backend: str) -> Any:
    """``pipe``'s twin compiled with ``pipe.compile(backend)``, which compiles the pipeline's UNet only (a full
    subject's runs eager, and is ``pipe``'s own)."""
    return twin_pipeline(pipe, own_subject_unet=False).compile(backend)


def int8_pipeline(pipe: Any) -> Any:
    """``pipe``'s twin with ``enable_int8``, which quantizes a full subject's UNet too (so that twin has its own)."""
    return twin_pipeline(pipe, own_subject_unet=True).enable_int8()


def dtype_pipeline(pipe: Any, dtype: torch.dtype) -> Any:
    """A copy of ``pipe``'s components cast to ``dtype`` (the VAE stays float32 under float16)."""
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    components = {
        k: copy.deepcopy(v) if isinstance(v, torch.nn.Module) else dict(v) for k, v in pipe.components.items()
    }
    return SubjectInpaintPipeline(**components).to(pipe.device, dtype)


def backend_status(backend: str, dtype: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot compile a UNet in ``dtype`` here, or None if it can."""
    if backend == "openvino":
        from subject_inpainting.models.compiled import OPENVINO_PRECISION

        if device.type != "cpu":
            return "openvino runs on the CPU here; not measured on " + device.type
        if DTYPES[dtype] not in OPENVINO_PRECISION:
            return f"openvino does not compute in {dtype}"
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            return f"openvino is not installed ({e}); pip install openvino"
    return None


@dataclass
class Built:
    """Every pipeline the rows call, per workload and variant, and what was learnt while building them."""

    pipes: dict[tuple[str, str], Any]  # (workload, variant) → pipeline
    plain: Any  # the float32 pipeline without a subject (the FLOP measurement's)
    notes: dict[str, Any]
    skipped: dict[str, str]  # row → reason
    compile_s: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)


def build_all(args: argparse.Namespace) -> Built:
    """Build the pipelines the chosen rows need: the float32 base (and diffusers'), the subjects, compiled twins
    and copies in other dtypes. Views and copies are made before any hook is installed (a copied module would
    carry copies of its hooks)."""
    device = torch.device(args.device)
    wanted = {w: workload_rows(args, w) for w in args.workloads}
    variants = {r.variant for rows in wanted.values() for r in rows}
    ours, theirs, notes = base_pipeline(args, torch.float32, diffusers="diffusers" in variants)
    subjects = any(w != "a" for w in args.workloads)
    by_dtype = {"float32": guidance_pipelines(ours, args.lora_rank, args.seed) if subjects else {"plain": ours}}
    for name in sorted({split_variant(v)[1] for v in variants} & set(EXTRA_DTYPES)):
        base = dtype_pipeline(ours, DTYPES[name])
        by_dtype[name] = guidance_pipelines(base, args.lora_rank, args.seed) if subjects else {"plain": base}
    pipes: dict[tuple[str, str], Any] = {}
    skipped: dict[str, str] = {}
    for w in args.workloads:
        key = PIPELINE_OF_WORKLOAD[w]
        pipes[(w, "eager")] = by_dtype["float32"][key]
        for name in set(by_dtype) - {"float32"}:
            pipes[(w, name)] = by_dtype[name][key]
        if theirs is not None and w == "a":
            pipes[(w, "diffusers")] = theirs
        for variant in sorted(variants):
            backend, dtype = split_variant(variant)
            if backend is None:
                continue
            reason = backend_status(backend, dtype, device)
            if reason is None:
                pipes[(w, variant)] = compiled_pipeline(pipes[(w, "eager" if dtype == "float32" else dtype)], backend)
            else:
                skipped[f"compile-{variant}"] = reason
        for variant in sorted(v for v in variants if int8_variant(v)):
            dtype = split_variant(variant)[1]
            pipes[(w, variant)] = int8_pipeline(pipes[(w, "eager" if dtype == "float32" else dtype)])
    if any(split_variant(v)[0] == "inductor" for v in variants):
        # Every compiled twin runs the same code object (the UNet's forward), and dynamo keeps a bounded number
        # of compiled entries per code object before falling back to eager; a user's one compiled pipeline
        # never nears the bound, the benchmark's several twins (one per workload and backend) may.
        import torch._dynamo as dynamo

        limit = "recompile_limit" if hasattr(dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(dynamo.config, limit, max(getattr(dynamo.config, limit), 64))
    if any(split_variant(v)[0] for v in variants):
        notes["compile_time"] = (
            "first 1-step call minus a second one; under inductor a twin whose UNet has the structure and input "
            "shapes of one compiled earlier in this process reuses that graph (dynamo takes module parameters as "
            "inputs), so only the first pays, and inductor keeps compiled code on disk between runs "
            "(inductor_cache); openvino converts every twin (its model holds the weights)"
        )
    if "c" in args.workloads and any(split_variant(v)[0] for v in variants):
        notes["compile_scope"] = (
            "pipe.compile compiles the pipeline's UNet: for the full subject (c) the pretrained UNet; the "
            "subject's fine-tuned UNet runs eager"
        )
    if any(split_variant(v)[0] == "inductor" for v in variants):
        cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        notes["inductor_cache"] = {
            "dir": cache,
            "held_files_before": bool(cache and Path(cache).is_dir() and any(Path(cache).iterdir())),
        }
    return Built(pipes, ours, notes, skipped)


# ---------------------------------------------------------------------------------------------------
# Counting and timing
# ---------------------------------------------------------------------------------------------------
class LeverTimer(StageTimer):
    """``StageTimer`` whose UNet time and calls include DeepCache's cached calls.

    A cached call runs the UNet's shallow layers without the UNet's ``forward``, so a hook on the UNet module sees
    only the whole-UNet calls. Here every evaluation of an eager UNet is counted (with its batch size) at its
    ``conv_in``, timed from there to the end of its ``conv_out``, and the whole-UNet calls are counted at the
    module (``full_batches``). The layers of a compiled UNet run inside the compiled graph, where no hook should
    go: a compiled UNet is counted and timed at its module, and DeepCache's graphs, which run without the module,
    where they run (``_deep_cache_graphs``). Extra VAEs (other dtypes' copies) are timed too.
    """

    def __init__(
        self,
        device: torch.device,
        eager_unets: Sequence[torch.nn.Module],
        compiled_unets: Sequence[torch.nn.Module],
        vaes: Sequence[Any],
        encoders: Sequence[torch.nn.Module],
    ) -> None:
        super().__init__(device, compiled_unets, vaes[0], encoders)
        self.full_batches: list[int] = []
        self._whole_next = False
        for vae in vaes[1:]:
            vae.encode = self._wrap(vae.encode, "vae_encode")
            vae.decode = self._wrap(vae.decode, "vae_decode")
        for unet in compiled_unets:
            unet.register_forward_pre_hook(self._count_full, with_kwargs=True)
            backend = unet.__dict__.get("forward")
            if hasattr(backend, "run_graph"):
                backend.run_graph = self._deep_cache_graphs(backend.run_graph)
        for unet in eager_unets:
            unet.register_forward_pre_hook(self._count_full, with_kwargs=True)
            unet.register_forward_pre_hook(self._mark_whole)
            unet.conv_in.register_forward_pre_hook(self._evaluation)
            unet.conv_out.register_forward_hook(lambda *_: self._stop("unet"))

    def reset(self) -> None:
        super().reset()
        self.full_batches = []
        self._whole_next = False

    def _count_full(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.full_batches.append(int(sample.shape[0]))

    def _mark_whole(self, module: torch.nn.Module, args: tuple) -> None:
        self._whole_next = True  # the evaluation that starts next, at this eager UNet's conv_in, is a whole one

    def _deep_cache_graphs(self, run_graph: Callable[..., Any]) -> Callable[..., Any]:
        """``run_graph`` of a compiled UNet, counting and timing DeepCache's graphs, which run without the UNet
        module (its own graph runs inside the module's call, whose hooks count it)."""
        from subject_inpainting.sampling.deepcache import SHALLOW_GRAPH, WHOLE_GRAPH

        def timed(name: str, build: Any, inputs: tuple) -> Any:
            if not name.startswith((WHOLE_GRAPH, SHALLOW_GRAPH)):
                return run_graph(name, build, inputs)
            batch, whole = int(inputs[0].shape[0]), name.startswith(WHOLE_GRAPH)
            if whole:
                self.full_batches.append(batch)
            self.unet_batches.append(batch)
            self.unet_whole.append(whole)
            self._start("unet")
            try:
                return run_graph(name, build, inputs)
            finally:
                self._stop("unet")

        return timed

    def _evaluation(self, module: torch.nn.Module, args: tuple) -> None:
        self.unet_batches.append(int(args[0].shape[0]))
        self.unet_whole.append(self._whole_next)
        self._whole_next = False
        self._start("unet")


def unets_of(pipe: Any) -> list[torch.nn.Module]:
    """The UNet modules a pipeline's call runs: its own and its full subject's."""
    subject = getattr(pipe, "subject", None)
    return [pipe.unet] + ([subject.unet] if subject is not None and subject.unet is not None else [])


def install_timer(built: Built, device: torch.device) -> LeverTimer:
    """One ``LeverTimer`` over every UNet, VAE and reference encoder the rows use (each hooked once)."""
    eager: dict[int, torch.nn.Module] = {}
    compiled: dict[int, torch.nn.Module] = {}
    vaes: dict[int, Any] = {}
    encoders: dict[int, torch.nn.Module] = {}
    for (_, variant), pipe in built.pipes.items():
        if variant == "diffusers":
            encoders[id(pipe.image_encoder)] = pipe.image_encoder
            continue
        unets = unets_of(pipe)
        if split_variant(variant)[0] is not None:
            compiled[id(pipe.unet)] = pipe.unet
            unets = unets[1:]  # a full subject's own UNet stays eager
        eager.update({id(u): u for u in unets})
        vaes[id(pipe.vae)] = pipe.vae
        encoders[id(pipe.reference_encoder)] = pipe.reference_encoder
        if pipe.subject is not None:
            encoders[id(pipe.subject.encoder)] = pipe.subject.encoder
    return LeverTimer(
        device, list(eager.values()), list(compiled.values()), list(vaes.values()), list(encoders.values())
    )


def image_runner(pipe: Any, row: Row, inputs: tuple[Any, Any, Any], noise: torch.Tensor, args: argparse.Namespace):
    """``run(steps=None)``: one whole image of ``row`` (``steps`` overrides its step count: the warm-ups')."""
    scene, mask, reference = inputs

    if row.variant == "diffusers":

        def run_theirs(steps: int | None = None) -> Any:
            return pipe(
                example_image=reference,
                image=scene,
                mask_image=mask,
                num_inference_steps=steps or args.steps_original,
                guidance_scale=GUIDANCE_SCALE,
                generator=torch.Generator().manual_seed(args.seed),
                # diffusers moves given latents to the device but does not cast them
                latents=noise.to(pipe.unet.device, pipe.unet.dtype),
            ).images[0]

        return run_theirs

    def run_ours(steps: int | None = None) -> Any:
        options = {**row.options, "num_inference_steps": steps} if steps else row.options
        return pipe(
            scene,
            reference,
            mask=mask,
            guidance_scale=GUIDANCE_SCALE,
            model_weight=MODEL_WEIGHT,
            generator=torch.Generator().manual_seed(args.seed),
            latents=noise,
            paste_back=True,
            progress=False,
            **options,
        ).images[0]

    return run_ours


def time_once(run: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def measure_compile(key: str, run: Callable[..., Any], device: torch.device, steps: int = 1) -> dict[str, float]:
    """Compile time of a compiled row: its first ``steps``-step call (which compiles every graph those steps
    call) minus a second one."""
    first = time_once(lambda: run(steps), device)
    steady = time_once(lambda: run(steps), device)
    print(
        f"  [compile] {key}: first {steps}-step call {first:.1f} s, second {steady:.2f} s", file=sys.stderr, flush=True
    )
    return {"first_call_s": first, "steady_call_s": steady, "compile_s": first - steady, "steps": steps}


def compile_steps(row: Row) -> int:
    """Steps of a call that meets every graph of ``row``: 1, or under DeepCache enough for a shallow call after
    the guidance interval's change of batch (the interval's first steps run a row fewer)."""
    from subject_inpainting.presets import preset_settings

    options = {k: v for k, v in row.options.items() if k != "preset"}
    return 1 if preset_settings(row.options.get("preset", "original"), **options)["deep_cache"] <= 1 else 4


# ---------------------------------------------------------------------------------------------------
# FLOPs and the machine's peak
# ---------------------------------------------------------------------------------------------------
def cpu_attention_flops(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    """FLOPs of the CPU flash-attention kernel, which ``FlopCounterMode`` does not know: those of the others."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(run: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call of ``run`` (a multiply-add counts 2), in total and per operator."""
    from torch.utils.flop_counter import FlopCounterMode

    custom = {}
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        custom[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = cpu_attention_flops
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        run()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), per_op


def timed_calls(run: Callable[[], Any], calls: int, device: torch.device) -> list[float]:
    run()  # warm-up
    return [time_once(run, device) for _ in range(calls)]


def peak_probes(device: torch.device, dtype: torch.dtype, seed: int) -> dict[str, Callable[[], Any]]:
    """The peak's probes in ``dtype``: a ``PEAK_MATMUL_N``³ matmul and a 3×3 convolution shaped like the UNet's
    first layers (``PEAK_CONV``), on random inputs drawn under ``seed``."""
    g = torch.Generator().manual_seed(seed)
    n, c, s = PEAK_MATMUL_N, PEAK_CONV["channels"], PEAK_CONV["side"]
    a, b = (torch.randn(n, n, generator=g).to(device, dtype) for _ in range(2))
    x, w = (torch.randn(*shape, generator=g).to(device, dtype) for shape in ((1, c, s, s), (c, c, 3, 3)))
    return {"matmul": lambda: a @ b, "conv": lambda: torch.nn.functional.conv2d(x, w, padding=1)}


def flop_rates(pipe: Any, args: argparse.Namespace) -> dict[str, Any]:
    """GFLOP/s of one guided UNet step (batch 2) against a float32 matmul and a 3×3 convolution, same process."""
    device = torch.device(args.device)
    side = int(pipe.unet.config.sample_size)
    num_train = int(pipe.scheduler["num_train_timesteps"])
    inp = step_inputs(
        int(pipe.vae.config.latent_channels), side, pipe.reference_encoder.image_size, num_train, args.seed
    )
    n, c, s = PEAK_MATMUL_N, PEAK_CONV["channels"], PEAK_CONV["side"]
    probes = peak_probes(device, torch.float32, args.seed + 30)
    with torch.no_grad():
        denoiser = guided_denoiser(pipe, inp, device)
        latent, t = inp.x.to(device), step_timestep(inp, device)
        work = {
            "step": (
                f"one guided step, UNet at batch 2 ({side}×{side} latent)",
                lambda: denoiser(latent, t),
                STEP_CALLS,
            ),
            "matmul": (f"matmul {n}×{n} @ {n}×{n}, float32", probes["matmul"], PEAK_CALLS),
            "conv": (f"conv 3×3, 1×{c}×{s}×{s} → {c} channels, float32", probes["conv"], PEAK_CALLS),
        }
        out: dict[str, Any] = {}
        for name, (label, run, calls) in work.items():
            flops, per_op = count_flops(run)
            times = timed_calls(run, calls, device)
            # The step's rate is its median call's; the peak is the best call's (the machine at its best).
            best = statistics.median(times) if name == "step" else min(times)
            out[name] = {
                "label": label,
                "gflop": flops / 1e9,
                "gflop_per_op": {op: n / 1e9 for op, n in per_op.items()},
                "calls_s": times,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "gflop_per_s": flops / 1e9 / best,
            }
            print(f"  [flops] {name}: {flops / 1e9:.2f} GFLOP, {flops / 1e9 / best:.1f} GFLOP/s", file=sys.stderr)
    peak = max(out["matmul"]["gflop_per_s"], out["conv"]["gflop_per_s"])
    out["step"]["share_of_peak"] = out["step"]["gflop_per_s"] / peak
    return out


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------
def expected_original_calls(pipe: Any, steps: int, workload: str) -> int:
    """UNet evaluations of the original recipe: PLMS evaluates twice at its first step; a full subject's step
    calls two UNets (the fine-tuned one and the pretrained one)."""
    from subject_inpainting.sampling.samplers import num_denoiser_steps

    per_step = 2 if workload == "c" else 1
    return (num_denoiser_steps("plms", steps, pipe.scheduler) + 1) * per_step


def run_rows(args: argparse.Namespace, built: Built, timer: LeverTimer) -> tuple[dict[str, Any], list[str]]:
    """Warm up, measure compile times, then time alternating rounds of every row of every workload."""
    from subject_inpainting.models.int8 import int8_layers

    device = torch.device(args.device)
    runners: dict[str, Callable[[], Any]] = {}
    warmups: dict[str, Callable[[], Any]] = {}
    rows: dict[str, tuple[str, Row]] = {}
    full_batches: dict[str, list[list[int]]] = {}
    for w in args.workloads:
        base = built.pipes[(w, "eager")]
        inputs = image_inputs(base.resolution, base.reference_encoder.image_size, args.seed + 2)
        side, channels = int(base.unet.config.sample_size), int(base.vae.config.latent_channels)
        noise = torch.randn((1, channels, side, side), generator=torch.Generator().manual_seed(args.seed + 3))
        for row in workload_rows(args, w):
            if row.name in built.skipped:
                continue
            key = f"{w}/{row.name}"
            run = image_runner(built.pipes[(w, row.variant)], row, inputs, noise, args)
            warm_already = False
            if split_variant(row.variant)[0] is not None:
                try:
                    built.compile_s[(w, row.name)] = measure_compile(key, run, device, compile_steps(row))
                except Exception as e:  # a backend that cannot compile this UNet: reported, the rest goes on
                    reason = (str(e).strip().splitlines() or [""])[-1][:300]
                    built.skipped[row.name] = f"compiling failed ({key}): {type(e).__name__}: {reason}"
                    print(f"  [compile] {key}: failed, row dropped ({type(e).__name__})", file=sys.stderr)
                    continue
                warm_already = True  # its two calls above
            rows[key] = (w, row)
            full_batches[key] = []

            def timed(run=run, key=key) -> Any:
                out = run()
                full_batches[key].append(list(timer.full_batches))  # this call's (measure_call reset them)
                return out

            def warm(run=run, key=key) -> None:
                print(f"  [warm-up] {key}: {time_once(lambda: run(1), device):.2f} s (1 step)", file=sys.stderr)

            runners[key] = timed
            warmups[key] = (lambda: None) if warm_already else warm

    records, _, order = timed_rounds("speed", runners, warmups if args.warmup else None, args.repeats, device, timer)
    results: dict[str, Any] = {w: {} for w in args.workloads}
    for key, (w, row) in rows.items():
        pipe = built.pipes[(w, row.variant)]
        r = summarise(records[key])
        r["variant"] = row.variant
        r["options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in row.options.items()}
        if row.variant == "diffusers":
            r["num_inference_steps"] = args.steps_original
        r["unet_full_batches_per_run"] = full_batches[key][-1]
        r["unet_full_calls_per_run"] = len(full_batches[key][-1])
        r["label"] = row_label(row, r)
        if row.variant != "diffusers":
            from subject_inpainting.presets import preset_settings

            settings = preset_settings(row.options["preset"], **{k: v for k, v in row.options.items() if k != "preset"})
            r["settings"] = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
        if (w, row.name) in built.compile_s:
            r["compile"] = built.compile_s[(w, row.name)]
        r["dtype"] = str(pipe.unet.dtype).removeprefix("torch.")
        r["int8_layers"] = len(int8_layers(pipe.unet))
        results[w][row.name] = r
    for rs in results.values():
        base = rs.get("original")
        for r in rs.values():
            r["ratio_to_original"] = r["median_s"] / base["median_s"] if base else None
    return results, order


def checks_of(results: dict[str, Any], built: Built, args: argparse.Namespace) -> dict[str, Any]:
    """What must hold: the original recipe made the expected UNet calls (all whole, at the expected batch),
    DeepCache made fewer whole calls than evaluations, diffusers ran our very UNet and VAE."""
    checks: dict[str, Any] = {}
    for w, rs in results.items():
        base = built.pipes[(w, "eager")]
        if "original" in rs:
            r = rs["original"]
            expected = expected_original_calls(base, args.steps_original, w)
            batches = {"a": {2}, "b": {3}, "c": {1, 2}}[w]
            checks[f"{w}/original_unet_calls"] = (
                r["unet_calls_per_run"] == expected == r["unet_full_calls_per_run"]
                and set(r["unet_batches_per_run"]) == batches
            )
        if "deep-cache" in rs:
            r = rs["deep-cache"]
            checks[f"{w}/deep_cache_fewer_full_calls"] = r["unet_full_calls_per_run"] < r["unet_calls_per_run"]
    theirs = built.pipes.get(("a", "diffusers"))
    if theirs is not None:
        ours = built.pipes[("a", "eager")]
        checks["diffusers_shares_unet_and_vae"] = theirs.unet is ours.unet and theirs.vae is ours.vae
        if "diffusers_encoder_same_weights" in built.notes:
            checks["diffusers_encoder_same_weights"] = built.notes["diffusers_encoder_same_weights"]
    return checks


# ---------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------
def unet_cell(r: dict[str, Any]) -> str:
    """UNet evaluations per image, by batch size, and how many ran the whole UNet when not all did."""
    counts = collections.Counter(r["unet_batches_per_run"])
    by_batch = " + ".join(f"{n}×b{b}" for b, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    cell = f"{r['unet_calls_per_run']} ({by_batch})"
    if r["unet_full_calls_per_run"] != r["unet_calls_per_run"]:
        cell += f", {r['unet_full_calls_per_run']} whole"
    return cell


def format_rows(results: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown: one line per workload and row, time with range, ratio to the original, UNet calls, memory."""
    peak, over, memory = memory_keys(args.device)
    runs = f"{args.repeats} run{'s' * (args.repeats > 1)} each"
    lines = [
        f"| workload | row | what ({runs}) | UNet evaluations per image | s, median (range) | ratio to original "
        f"| {memory} GiB | peak − before GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for w, rs in results.items():
        for name, r in rs.items():
            cells = [
                f"{w}: {WORKLOADS[w]}",
                f"`{name}`",
                r["label"],
                unet_cell(r),
                seconds(r),
                fmt(r["ratio_to_original"]),
                fmt(r.get(peak)),
                fmt(r.get(over)),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    fast, theirs = results.get("a", {}).get("fast"), results.get("a", {}).get("diffusers-50")
    if fast and theirs:
        lines += ["", f"`fast` over `diffusers-50` (workload a): {ratio(fast['median_s'], theirs['median_s'])}"]
    return "\n".join(lines)


def format_stages(results: dict[str, Any]) -> str:
    """Markdown: where the median call's time goes (seconds)."""
    lines = [
        "| workload | row | total s | UNet s | VAE encode s | VAE decode s | reference encoder s | rest s "
        "| s per UNet evaluation, median |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w, rs in results.items():
        for name, r in rs.items():
            st = r["stages_median_s"]
            per = ", ".join(f"{kind} {sec:.3g}" for kind, sec in r["unet_evaluation_median_s"].items())
            lines.append(
                f"| {w} | `{name}` | {r['median_s']:.2f} | {st['unet']:.2f} | {st['vae_encode']:.2f} "
                f"| {st['vae_decode']:.2f} | {st['reference_encoder']:.2f} | {st['rest']:.2f} | {per} |"
            )
    return "\n".join(lines)


def format_flops(flops: dict[str, Any]) -> str:
    """Markdown: the guided step's GFLOP/s against the machine's matmul and convolution peak."""
    lines = [
        "| measured in the same process | GFLOP | s, median (range) | GFLOP/s | share of the better peak |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("step", "matmul", "conv"):
        f = flops[name]
        rate = "median call" if name == "step" else "best call"
        share = f"{100 * f['share_of_peak']:.0f} %" if "share_of_peak" in f else ""
        lines.append(
            f"| {f['label']} | {f['gflop']:.2f} | {f['median_s']:.3f} ({f['min_s']:.3f}–{f['max_s']:.3f}) "
            f"| {f['gflop_per_s']:.1f} ({rate}) | {share} |"
        )
    return "\n".join(lines)


def format_compile(results: dict[str, Any], skipped: dict[str, str]) -> str | None:
    lines = []
    for w, rs in results.items():
        for name, r in rs.items():
            if "compile" in r:
                c = r["compile"]
                lines.append(
                    f"- compile time, {w} `{name}`: {c['compile_s']:.1f} s (first {c.get('steps', 1)}-step call "
                    f"{c['first_call_s']:.1f} s minus a second one {c['steady_call_s']:.2f} s)"
                )
    if lines:
        lines.append(
            "- a compiled UNet with the structure and input shapes of one compiled earlier in the process reuses its "
            "graph: only the first pays"
        )
    lines += [f"- `{name}` not measured: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines) or None


def speed_machine(device: torch.device) -> dict[str, Any]:
    """``bench_common.machine_info`` plus the CPU capability torch dispatches to, native bf16 and the versions of
    the packages the levers use."""
    from subject_inpainting.utils import native_bf16

    info = machine_info(device)
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["native_bf16"] = native_bf16()
    for package in ("peft", "openvino"):
        try:
            info["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info["versions"][package] = None
    return info


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def comma_list(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of ``choices``, each once, in the order given."""

    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in choices]
        if not items or unknown:
            raise argparse.ArgumentTypeError(
                f"{what} must be a comma-separated list of {', '.join(choices)}; got {text!r}"
            )
        return list(dict.fromkeys(items))

    return parse


def default_dtypes(device: str) -> list[str]:
    """float32, and bfloat16 where the device computes it natively (other CPUs emulate it)."""
    from subject_inpainting.utils import native_bf16

    if device.startswith("cuda"):
        return ["float32"] + ["bfloat16"] * torch.cuda.is_bf16_supported()
    return ["float32"] + ["bfloat16"] * native_bf16()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Whole-image time, UNet calls and peak memory of the pipeline's speed levers, each alone on top "
        "of the original recipe and together (the fast preset), against diffusers' PaintByExamplePipeline, for plain "
        "Paint-by-Example and LoRA and full subjects, in one process, calls alternating; and the guided step's "
        "GFLOP/s against the machine's peak."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"the embedded toy model (64² pictures) instead of the full size; workload "
        f"{','.join(QUICK_WORKLOADS)}, {QUICK_REPEATS} repeats and {QUICK_THREADS} torch thread unless given",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1 ...")
    parser.add_argument(
        "--workloads",
        type=comma_list(tuple(WORKLOADS), "--workloads"),
        help="comma-separated: a (plain), b (LoRA subject), c (full subject); default a,b,c, with --quick a",
    )
    parser.add_argument(
        "--rows",
        type=comma_list(ROWS, "--rows"),
        help=f"comma-separated subset of the rows ({', '.join(ROWS)}); default: every row but the compiled ones "
        "(--compile) and the dtype ones (--dtypes)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"timed images per row (default {FULL_REPEATS} at full size, {QUICK_REPEATS} with --quick)",
    )
    parser.add_argument(
        "--steps-original",
        type=int,
        default=50,
        help="steps of the original recipe and of the rows built on it, and of diffusers' row (default 50; fewer "
        "for a shorter trial run)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add the compile-inductor and compile-openvino rows (each compiles its UNet before its timed calls)",
    )
    parser.add_argument(
        "--dtypes",
        type=comma_list(("float32", *EXTRA_DTYPES), "--dtypes"),
        help="comma-separated dtypes: each besides float32 adds a row of the original recipe and one of the fast "
        "preset in it (default float32, plus bfloat16 where the CPU computes it natively)",
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip each row's untimed 1-step warm-up call"
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=DEFAULT_LORA_RANK,
        help=f"rank of workload b's LoRA subject (default {DEFAULT_LORA_RANK})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and noise (default 0)")
    parser.add_argument(
        "--threads",
        type=int,
        help=f"torch threads (default: torch's choice; {QUICK_THREADS} with --quick, whose tiny operations gain "
        "nothing from threads and stall on busy machines)",
    )
    parser.add_argument("--out", type=Path, help="write every record, the settings and the machine as JSON here")
    parser.add_argument("--table", type=Path, help="also write the markdown tables here")
    args = parser.parse_args(argv)
    if args.workloads is None:
        args.workloads = list(QUICK_WORKLOADS if args.quick else WORKLOADS)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else FULL_REPEATS
    if args.threads is None:
        args.threads = QUICK_THREADS if args.quick else 0
    if args.dtypes is None:
        args.dtypes = default_dtypes(args.device)
    args.default_int8 = auto_int8(args.quick)
    for name in ("repeats", "steps_original", "lora_rank"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device (e.g. cpu, cuda, cuda:1)")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: only cpu and cuda are supported (memory is measured per kind)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    for flag in ("out", "table"):
        path = getattr(args, flag)
        if path is not None and not path.parent.is_dir():
            parser.error(f"--{flag} {path}: folder {path.parent} does not exist")
    return args


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"building the pipelines ({'embedded toy model' if args.quick else 'full size, random weights'}) ...")
    built = build_all(args)
    build_s = time.perf_counter() - started
    side = built.plain.resolution
    print(f"built in {build_s:.0f} s; image {side}×{side}, device {args.device}", flush=True)
    flops = flop_rates(built.plain, args)  # before the hooks: they would count and time its UNet calls
    timer = install_timer(built, device)
    with torch.no_grad():  # as the pipeline samples; compiled graphs are specialised to it
        results, order = run_rows(args, built, timer)
    checks = checks_of(results, built, args)
    info = speed_machine(device)

    tables = [format_rows(results, args), format_stages(results), format_flops(flops)]
    compiled = format_compile(results, built.skipped)
    if compiled:
        tables.append(compiled)
    settings = f"device {args.device}, dtypes {','.join(args.dtypes)}, torch CPU capability {info['cpu_capability']}"
    tables.append(format_machine(info, settings))
    text = "\n\n".join(tables)
    duration = time.perf_counter() - started
    print()
    print(text)
    print(f"- checks: {json.dumps(checks)}")
    print(f"- took {duration:.0f} s")
    if args.table is not None:
        args.table.write_text(text + "\n", encoding="utf-8")
    if args.out is not None:
        from subject_inpainting.presets import PRESETS

        report = {
            "benchmark": "bench_speed",
            "command": "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:]),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "settings": {
                **built.notes,
                "guidance_scale": GUIDANCE_SCALE,
                "model_weight": MODEL_WEIGHT,
                "presets": PRESETS,
                "lever_values": {k: list(v) if isinstance(v, tuple) else v for k, v in lever_values().items()},
                "workloads": WORKLOADS,
                "skipped_rows": built.skipped,
                "build_s": build_s,
            },
            "machine": info,
            "checks": checks,
            "flops": flops,
            "workloads": results,
            "order": order,
            "duration_s": duration,
            "markdown": text,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"- wrote {args.out}")
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        print(f"error: checks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
