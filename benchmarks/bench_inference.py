#!/usr/bin/env python
"""Inference benchmark: ``SubjectInpaintPipeline`` side by side with diffusers' ``PaintByExamplePipeline``,
and the cost of the project's modified classifier-free guidance against plain guidance.

What is measured
----------------
Both implementations run on the SAME weights: the full-size Paint-by-Example architecture (SD-v1 9-channel
UNet, KL-f8 VAE, CLIP ViT-L/14 reference encoder with its 5-block mapper), randomly initialised under a
fixed seed, so nothing is downloaded. diffusers' pipeline is given the very same ``unet`` and ``vae``
module objects, and its ``PaintByExampleImageEncoder`` is filled from our reference encoder with
``to_diffusers_encoder`` (by assignment: its tensors are our encoder's). Three workloads (``step`` and
``image`` by default; ``guidance`` on request):

- ``step``: ONE guided denoising step at the 64×64 latent, one image, guidance scale 5, i.e. one UNet call
  at batch 2 plus the classifier-free-guidance combination. Ours is ``InpaintDenoiser(x, t)``; diffusers
  has no separate step function, so its side runs the body of the denoising loop of
  ``PaintByExamplePipeline.__call__`` (everything but ``scheduler.step``). The inputs (noisy latent,
  masked-scene latent, keep-mask, reference pixels) are the same random tensors for both; each side
  encodes the reference with its own encoder, outside the timing. The two predicted noises are compared,
  which checks that both really ran the same weights.
- ``image``: one whole 512×512 image from PIL inputs (scene, mask, reference) to a PIL output with DDIM at
  ``--steps`` steps (the same timesteps on both sides, the same initial noise): reference preprocessing
  and encoding, VAE encoding of the masked scene, ``--steps`` guided UNet calls, VAE decoding and
  post-processing (ours also pastes the result back into the scene with a feathered seam).
- ``guidance``: ours only, no diffusers. ONE guided denoising step at the 64×64 latent, one image, guidance
  scale 5, at a timestep below the guidance threshold (the pipeline's default 1000, so modified guidance
  applies), in three variants on the same base weights and the same random inputs (those of ``step``):

  1. ``plain``: classifier-free guidance with the base model alone, ``InpaintDenoiser``: one UNet call at
     batch 2 (unconditional and conditional rows) — the baseline, ratio 1.00;
  2. ``full``: modified guidance, ``ModifiedGuidanceDenoiser`` with weight w = 0.8 and a fully fine-tuned
     UNet: two UNet calls, the fine-tuned UNet at batch 1 (subject context) and the pretrained one at
     batch 2 (unconditional and class rows);
  3. ``lora``: modified guidance, w = 0.8, with a LoRA subject (rank ``--lora-rank``, default 4, on the
     attention projections, the project's ``lora_config``): ONE UNet call at batch 3 in which peft's
     per-row adapter names apply the adapter to the subject row only.

  Each denoiser is built the way ``SubjectInpaintPipeline.__call__`` builds it, from a pipeline holding
  the subject the way ``load_subject`` leaves it (subjects are made in memory, not read from disk): both
  subjects carry the reference encoder with the original's detail module (5 blocks, 8 heads, one detail
  token, randomly initialised), whose class path holds the base encoder's tensors, so the subject context
  is ``[class, detail]`` (2 tokens, padded and masked next to the 1-token rows); the full subject's UNet is
  a deep copy of the base UNet with its weights perturbed under the seed (a second UNet in memory, as a
  full subject is); the LoRA adapter (``lora_B`` seeded random, as peft starts it at zero) goes into a
  structural copy of the base UNet that holds the base's very tensors, so that the other two variants run
  a UNet without LoRA layers, as theirs would, with no third copy of the weights. Every context is
  encoded before the timer starts. A forward pre-hook on every UNet module counts the UNet calls of each
  step and their batch sizes, and the run fails unless they are 1, 2 and 1. All three variants' weights
  are resident in the process during every call, so ``peak RSS`` includes them all; ``peak − before`` is
  each step's own working memory, and ``weights held`` (computed from the tensors' sizes, shared storage
  counted once, not measured) is what a user of that variant holds: UNet(s), VAE and encoder(s).

How
---
Each workload runs in a fresh Python process that builds the weights once (same seed in every process; a
float64 sum of every component's parameters is recorded and compared) and both pipelines on them (for
``guidance``: our pipeline and its two subjects). After one untimed warm-up call of each implementation or
variant (a 1-step image for ``image``; ``--no-warmup`` skips it), the timed calls alternate, A B then B A
and so on, A B C then C B A for ``guidance`` (``--repeats`` rounds for ``step`` and ``guidance``,
``--image-repeats`` for ``image``), so that a machine whose speed drifts, as small cloud VMs do, slows
every side alike. The table gives the median of each side's calls, ``time.perf_counter``, with the range in
brackets.

Memory, CPU: before each timed call freed heap memory is returned to the system (``malloc_trim``) and the
resident-set high-water mark ``VmHWM`` is reset to the current RSS (``/proc/self/clear_refs``, Linux); the
mark read after the call is that call's peak. ``peak RSS`` is that peak, the (shared) weights included;
``peak − before`` is the peak minus the resident set just before the call: the working memory of
inference. Where the reset is not possible a thread polls ``VmRSS`` every 2 ms instead. CUDA:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, and the same minus the memory
allocated before the call.

Usage::

    python benchmarks/bench_inference.py --out benchmarks/results.json   # full size
    python benchmarks/bench_inference.py --quick                         # tiny sizes: checks the script
    python benchmarks/bench_inference.py --workloads step --repeats 5
    python benchmarks/bench_inference.py --workloads guidance --out benchmarks/results-guidance.json

Random weights give noise images: only time and memory mean anything here.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_common import (
    DEFAULT_LORA_RANK,
    DTYPES,
    GUIDANCE_SCALE,
    GUIDANCE_THRESHOLD,
    MODEL_WEIGHT,
    StageTimer,
    StepInputs,
    build_pipelines,
    fmt,
    format_machine,
    guidance_pipelines,
    guided_denoiser,
    held_modules,
    image_inputs,
    machine_info,
    memory_keys,
    model_sizes,
    ratio,
    seconds,
    step_inputs,
    step_timestep,
    summarise,
    timed_rounds,
    weights_gib,
)

# First: importing it sets the environment and reads the usable CPUs before torch loads.
from report import guidance_label

# isort: split
import torch

if TYPE_CHECKING:
    from subject_inpainting.models.configs import ModelSize

WORKLOADS = ("step", "image", "guidance")
DEFAULT_WORKLOADS = ("step", "image")  # guidance on request: it compares our guidance variants, not diffusers
IMPLEMENTATIONS = ("ours", "diffusers")
# The batch size of each UNet call one guided step makes, per variant (counted by a forward pre-hook).
EXPECTED_UNET_BATCHES = {"plain": [2], "full": [1, 2], "lora": [3]}
GUIDANCE_VARIANTS = tuple(EXPECTED_UNET_BATCHES)


def step_runners(ours: Any, theirs: Any, inp: StepInputs, steps: int, device: torch.device) -> dict[str, Callable]:
    """One guided step of each implementation, inputs prepared (reference encoded) outside the timing."""
    denoiser = guided_denoiser(ours, inp, device)
    x, t_ours = inp.x.to(device), step_timestep(inp, device)

    embeddings = theirs._encode_image(inp.reference, device, 1, True)  # [uncond; cond]
    act = embeddings.dtype
    # As prepare_mask_latents leaves them under guidance: duplicated, in the activations' dtype.
    masked_latents = torch.cat([inp.z_masked] * 2).to(device, act)
    mask = torch.cat([inp.keep] * 2).to(device, act)
    latents = inp.x.to(device, act)
    scheduler, unet = theirs.scheduler, theirs.unet
    scheduler.set_timesteps(steps, device=device)
    t_theirs = torch.tensor(inp.t, device=device)

    def run_theirs() -> torch.Tensor:
        # The body of PaintByExamplePipeline.__call__'s denoising loop, minus scheduler.step.
        model_input = torch.cat([latents] * 2)
        model_input = scheduler.scale_model_input(model_input, t_theirs)
        model_input = torch.cat([model_input, masked_latents, mask], dim=1)
        noise_pred = unet(model_input, t_theirs, encoder_hidden_states=embeddings).sample
        uncond_pred, cond_pred = noise_pred.chunk(2)
        return uncond_pred + GUIDANCE_SCALE * (cond_pred - uncond_pred)

    return {"ours": lambda: denoiser(x, t_ours), "diffusers": run_theirs}


def image_runners(ours: Any, theirs: Any, resolution: int, reference_side: int, seed: int) -> dict[str, Callable]:
    """One whole image of each implementation, PIL in → PIL out, ``steps`` DDIM steps, same initial noise."""
    scene, mask, reference = image_inputs(resolution, reference_side, seed + 2)
    side, channels = int(ours.unet.config.sample_size), int(ours.vae.config.latent_channels)
    noise = torch.randn((1, channels, side, side), generator=torch.Generator().manual_seed(seed + 3))

    def run_ours(steps: int) -> Any:
        return ours(
            scene,
            reference,
            mask=mask,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE_SCALE,
            sampler="ddim",
            generator=torch.Generator().manual_seed(seed),
            progress=False,
            latents=noise,
        ).images[0]

    def run_theirs(steps: int) -> Any:
        return theirs(
            example_image=reference,
            image=scene,
            mask_image=mask,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE_SCALE,
            generator=torch.Generator().manual_seed(seed),
            # diffusers moves given latents to the device but does not cast them
            latents=noise.to(theirs.unet.device, theirs.unet.dtype),
        ).images[0]

    return {"ours": run_ours, "diffusers": run_theirs}


def run_workload(workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build the pipelines on shared weights, warm up, then time alternating calls (A B B A ...)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    sizes = model_sizes(args.quick)
    if workload == "guidance":
        return run_guidance(args, sizes, device, dtype)
    start = time.perf_counter()
    ours, theirs, prints = build_pipelines(sizes, args.seed, device, dtype, diffusers=True)
    build_s = time.perf_counter() - start
    shared = theirs.unet is ours.unet and theirs.vae is ours.vae
    stages = StageTimer(device, [ours.unet], ours.vae, [ours.reference_encoder, theirs.image_encoder])
    side = int(ours.unet.config.sample_size)
    resolution = side * ours.vae_scale_factor
    reference_side = ours.reference_encoder.image_size

    with torch.no_grad():
        if workload == "step":
            num_train = int(sizes.schedule["num_train_timesteps"])
            inp = step_inputs(int(ours.vae.config.latent_channels), side, reference_side, num_train, args.seed + 1)
            runners = step_runners(ours, theirs, inp, args.steps, device)
            warmups = runners
            repeats = args.repeats
        else:
            images = image_runners(ours, theirs, resolution, reference_side, args.seed)
            runners = {k: (lambda f=f: f(args.steps)) for k, f in images.items()}
            # A 1-step image goes through every stage once (encoders, VAE both ways, UNet) at a fraction of the cost.
            warmups = {k: (lambda f=f: f(1)) for k, f in images.items()}
            repeats = args.image_repeats
        records, outputs, order = timed_rounds(
            workload, runners, warmups if args.warmup else None, repeats, device, stages
        )

    checks: dict[str, Any] = {"shared_unet_and_vae": shared}
    checks["same_weights"] = all(
        math.isclose(prints["ours"][k], prints["diffusers"][k], rel_tol=1e-9, abs_tol=1e-9) for k in prints["ours"]
    )
    if workload == "step":
        a, b = outputs["ours"].float().cpu(), outputs["diffusers"].float().cpu()
        checks["eps_max_abs_diff"] = (a - b).abs().max().item()
        checks["eps_max_abs"] = b.abs().max().item()
    return {
        "workload": workload,
        "resolution": resolution,
        "build_s": build_s,
        "repeats": repeats,
        "warmup": bool(args.warmup),
        "order": order,
        "weights_fingerprint": prints,
        "checks": checks,
        "results": {name: summarise(records[name]) for name in IMPLEMENTATIONS},
    }


def run_guidance(
    args: argparse.Namespace, sizes: ModelSize, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """One guided step, plain CFG vs modified guidance (full fine-tuned UNet, LoRA), alternating calls."""
    from peft.tuners.lora import LoraLayer

    start = time.perf_counter()
    ours, _, prints = build_pipelines(sizes, args.seed, device, dtype, diffusers=False)
    pipes = guidance_pipelines(ours, args.lora_rank, args.seed)
    build_s = time.perf_counter() - start
    # Every UNet module a variant calls (the LoRA one is its own module object over the base's tensors).
    unets = [ours.unet, pipes["full"].subject.unet, pipes["lora"].unet]
    stages = StageTimer(device, unets, ours.vae, [ours.reference_encoder, pipes["full"].subject.encoder])
    side = int(ours.unet.config.sample_size)
    reference_side = ours.reference_encoder.image_size
    num_train = int(sizes.schedule["num_train_timesteps"])
    # The step workload's inputs (same seed): the same noisy latent, scene latent, mask and reference.
    inp = step_inputs(int(ours.vae.config.latent_channels), side, reference_side, num_train, args.seed + 1)
    assert inp.t < GUIDANCE_THRESHOLD, "the step must be one where modified guidance applies"

    with torch.no_grad():
        denoisers = {name: guided_denoiser(pipe, inp, device) for name, pipe in pipes.items()}
        x, t = inp.x.to(device), step_timestep(inp, device)
        runners = {name: (lambda d=d: d(x, t)) for name, d in denoisers.items()}
        records, outputs, order = timed_rounds(
            "guidance", runners, runners if args.warmup else None, args.repeats, device, stages
        )

    results = {name: summarise(records[name]) for name in GUIDANCE_VARIANTS}
    for name, pipe in pipes.items():
        results[name]["weights_held_gib"] = weights_gib(held_modules(pipe))
    calls_per_variant = args.repeats + bool(args.warmup)
    batches = {name: [r["unet_batches"] for r in records[name]] for name in GUIDANCE_VARIANTS}
    base_tensors = {p.data_ptr() for p in ours.unet.parameters()}
    lora_tensors = {p.data_ptr() for p in pipes["lora"].unet.parameters()}
    eps = {name: outputs[name].float().cpu() for name in GUIDANCE_VARIANTS}
    checks = {
        "unet_batches_per_step": {name: results[name]["unet_batches_per_run"] for name in GUIDANCE_VARIANTS},
        # The hooks' count in every timed call, and the denoisers' own count over all their calls.
        "unet_calls_as_expected": all(
            all(b == EXPECTED_UNET_BATCHES[name] for b in batches[name])
            and denoisers[name].calls == len(EXPECTED_UNET_BATCHES[name]) * calls_per_variant
            for name in GUIDANCE_VARIANTS
        ),
        "lora_shares_base_weights": base_tensors <= lora_tensors and pipes["lora"].unet is not ours.unet,
        # The plain and full variants' pretrained UNet carries no LoRA layer (theirs would not).
        "base_unet_without_lora": not any(isinstance(m, LoraLayer) for m in ours.unet.modules()),
        "eps_finite": all(bool(e.isfinite().all()) for e in eps.values()),
        "eps_max_abs_diff_to_plain": {
            name: (eps[name] - eps["plain"]).abs().max().item() for name in GUIDANCE_VARIANTS if name != "plain"
        },
    }
    return {
        "workload": "guidance",
        "resolution": side * ours.vae_scale_factor,
        "build_s": build_s,
        "repeats": args.repeats,
        "warmup": bool(args.warmup),
        "order": order,
        "weights_fingerprint": prints,
        "guidance_scale": GUIDANCE_SCALE,
        "model_weight": MODEL_WEIGHT,
        "guidance_threshold": GUIDANCE_THRESHOLD,
        "timestep": inp.t,
        "lora_rank": args.lora_rank,
        "context_tokens": {
            "plain": int(denoisers["plain"].context.shape[1]),
            "subject": int(denoisers["full"].subject_context.shape[1]),
        },
        "expected_unet_batches": EXPECTED_UNET_BATCHES,
        "checks": checks,
        "results": results,
    }


def format_table(workloads: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one row per workload, ours and diffusers side by side, ratios ours / diffusers."""
    peak, over, memory = memory_keys(args.device)
    rows = [
        f"| workload | ours s | diffusers s | ratio | ours {memory} GiB | diffusers {memory} GiB | ratio "
        "| ours peak − before GiB | diffusers peak − before GiB | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in workloads.items():
        if name not in ("step", "image"):
            continue
        o, d = w["results"]["ours"], w["results"]["diffusers"]
        res = w["resolution"]
        label = (
            "one guided step (UNet at batch 2)"
            if name == "step"
            else f"whole {res}×{res} image, DDIM {args.steps} steps"
        )
        label += f", {w['repeats']} run{'s' * (w['repeats'] > 1)} each"
        cells = [
            label,
            seconds(o),
            seconds(d),
            ratio(o["median_s"], d["median_s"]),
            fmt(o.get(peak)),
            fmt(d.get(peak)),
            ratio(o.get(peak), d.get(peak)),
            fmt(o.get(over)),
            fmt(d.get(over)),
            ratio(o.get(over), d.get(over)),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_guidance(w: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown: one guided step per guidance variant, ratios to plain classifier-free guidance."""
    peak, over, memory = memory_keys(args.device)
    runs = f"{w['repeats']} run{'s' * (w['repeats'] > 1)} each"
    rows = [
        f"| one guided step, guidance {w['guidance_scale']:g} ({runs}) | UNet calls (batch sizes) | s "
        f"| ratio to plain | {memory} GiB | peak − before GiB | ratio to plain | weights held GiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plain = w["results"]["plain"]
    for name, r in w["results"].items():
        batches = r["unet_batches_per_run"]
        cells = [
            guidance_label(name, w),
            f"{len(batches)} ({' + '.join(map(str, batches))})",
            seconds(r),
            ratio(r["median_s"], plain["median_s"]),
            fmt(r.get(peak)),
            fmt(r.get(over)),
            ratio(r.get(over), plain.get(over)),
            fmt(r.get("weights_held_gib")),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_stages(workloads: dict[str, dict[str, Any]]) -> str:
    """Markdown: where each implementation's time goes (medians over its calls, seconds)."""
    rows = [
        "| workload | implementation | total s | UNet s (calls) | VAE encode s | VAE decode s | reference encoder s "
        "| rest s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in workloads.items():
        for impl, r in w["results"].items():
            st = r.get("stages_median_s")
            if st is None:
                continue
            rows.append(
                f"| {name} | {impl} | {r['median_s']:.2f} | {st['unet']:.2f} ({r['unet_calls_per_run']}) "
                f"| {st['vae_encode']:.2f} | {st['vae_decode']:.2f} | {st['reference_encoder']:.2f} "
                f"| {st['rest']:.2f} |"
            )
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time and peak memory of one guided step and one whole image: ours vs diffusers' "
        "PaintByExamplePipeline on the same random weights, calls alternating, one fresh process per workload; "
        "and (workload guidance) one step of plain vs modified guidance (full fine-tuned UNet, LoRA)."
    )
    parser.add_argument("--steps", type=int, default=5, help="DDIM steps of the whole-image workload (default 5)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed guided steps per implementation or variant (default 3)"
    )
    parser.add_argument(
        "--image-repeats", type=int, default=2, help="timed whole images per implementation (default 2)"
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up call of each implementation"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights' dtype (default float32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=list(DEFAULT_WORKLOADS),
        choices=WORKLOADS,
        metavar="WORKLOAD",
        help="any of step, image, guidance (default: step image)",
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=DEFAULT_LORA_RANK,
        help=f"rank of the LoRA subject of the guidance workload (default {DEFAULT_LORA_RANK})",
    )
    parser.add_argument("--out", type=Path, help="also write the results and the machine as JSON here")
    # Internal: run one workload in this process and write its result as JSON.
    parser.add_argument("--child", dest="child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", dest="child_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "repeats", "image_repeats", "lora_rank"):
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
    if args.out is not None and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.child and args.child_out is None:
        parser.error("--child needs --child-out")
    return args


def child_command(args: argparse.Namespace, workload: str, out: Path) -> list[str]:
    """This script's command line for one workload in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", workload, "--child-out", str(out)]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--image-repeats", str(args.image_repeats)]
    cmd += ["--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads), "--seed", str(args.seed)]
    cmd += ["--lora-rank", str(args.lora_rank)]
    return cmd + ["--quick"] * args.quick + ["--no-warmup"] * (not args.warmup)


# What each workload's checks must all hold (the process-wide one is checked on its own).
REQUIRED_CHECKS = {
    "step": ("same_weights", "shared_unet_and_vae"),
    "image": ("same_weights", "shared_unet_and_vae"),
    "guidance": ("unet_calls_as_expected", "lora_shares_base_weights", "base_unet_without_lora"),
}


def main(args: argparse.Namespace) -> int:
    if args.child:
        result = run_workload(args.child, args)
        args.child_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0

    sizes = model_sizes(args.quick)
    side = int(sizes.unet["sample_size"]) * 2 ** (len(sizes.vae["block_out_channels"]) - 1)
    print(f"model: {sizes.description}; image {side}×{side}; device {args.device}, dtype {args.dtype}", flush=True)
    workloads: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        for workload in args.workloads:
            out = Path(tmp) / f"{workload}.json"
            what = "our pipeline and two subjects" if workload == "guidance" else "both pipelines"
            print(f"[{workload}] building {what} in a fresh process ...", flush=True)
            start = time.perf_counter()
            proc = subprocess.run(child_command(args, workload, out), check=False)
            if proc.returncode != 0:
                print(f"error: workload {workload} failed (exit code {proc.returncode}); see above", file=sys.stderr)
                return 1
            workloads[workload] = json.loads(out.read_text(encoding="utf-8"))
            print(f"[{workload}] done in {time.perf_counter() - start:.0f} s", flush=True)

    checks = {name: w["checks"] for name, w in workloads.items()}
    prints = [w["weights_fingerprint"]["ours"] for w in workloads.values()]
    checks["same_weights_in_every_process"] = all(
        math.isclose(p[k], prints[0][k], rel_tol=1e-9, abs_tol=1e-9) for p in prints for k in p
    )
    info = machine_info(torch.device(args.device))
    table = format_table(workloads, args) if {"step", "image"} & set(workloads) else None
    guidance_table = format_guidance(workloads["guidance"], args) if "guidance" in workloads else None
    stage_table = format_stages(workloads)
    for text in (table, guidance_table, stage_table):
        if text is not None:
            print()
            print(text)
    print()
    print(format_machine(info, f"device {args.device}, dtype {args.dtype}"))
    print(f"- checks: {json.dumps(checks)}")
    if args.out is not None:
        report = {
            "model": sizes.description,
            "command": "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:]),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": info,
            "checks": checks,
            "workloads": workloads,
            "table_markdown": table,
            "stages_markdown": stage_table,
        }
        if guidance_table is not None:
            report["guidance_markdown"] = guidance_table
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"- wrote {args.out}")
    failed = [
        name
        for name, c in checks.items()
        if c is False or (isinstance(c, dict) and not all(c.get(k) for k in REQUIRED_CHECKS[name]))
    ]
    if "guidance" in failed:
        failed.remove("guidance")
        print(
            "error: the guidance variants did not run as expected (UNet calls per step, as batch sizes: "
            f"{checks['guidance']['unet_batches_per_step']}, expected {EXPECTED_UNET_BATCHES}; "
            f"LoRA over the base's tensors: {checks['guidance']['lora_shares_base_weights']}; "
            f"base UNet without LoRA layers: {checks['guidance']['base_unet_without_lora']})",
            file=sys.stderr,
        )
        if not failed:
            return 1
    if failed:
        print(f"error: the implementations did not run on the same weights ({', '.join(failed)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
