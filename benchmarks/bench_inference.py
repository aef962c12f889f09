#!/usr/bin/env python
"""Inference benchmark: ``SubjectInpaintPipeline`` side by side with diffusers' ``PaintByExamplePipeline``.

What is measured
----------------
Both implementations run on the SAME weights: the full-size Paint-by-Example architecture (SD-v1 9-channel
UNet, KL-f8 VAE, CLIP ViT-L/14 reference encoder with its 5-block mapper), randomly initialised under a
fixed seed, so nothing is downloaded. diffusers' pipeline is given the very same ``unet`` and ``vae``
module objects, and its ``PaintByExampleImageEncoder`` is filled from our reference encoder with
``to_diffusers_encoder`` (by assignment: its tensors are our encoder's). Two workloads:

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

How
---
Each workload runs in a fresh Python process that builds the weights once (same seed in every process; a
float64 sum of every component's parameters is recorded and compared) and both pipelines on them. After
one untimed warm-up call of each implementation (a 1-step image for ``image``; ``--no-warmup`` skips it),
the timed calls alternate, A B then B A and so on (``--repeats`` rounds for ``step``, ``--image-repeats``
for ``image``), so that a machine whose speed drifts, as small cloud VMs do, slows both sides alike. The
table gives the median of each side's calls, ``time.perf_counter``, with the range in brackets.

Memory, CPU: before each timed call freed heap memory is returned to the system (``malloc_trim``) and the
resident-set high-water mark ``VmHWM`` is reset to the current RSS (``/proc/self/clear_refs``, Linux); the
mark read after the call is that call's peak. ``peak RSS`` is that peak, the (shared) weights included;
``peak − before`` is the peak minus the resident set just before the call: the working memory of
inference. Where the reset is not possible a thread polls ``VmRSS`` every 2 ms instead. CUDA:
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, and the same minus the memory
allocated before the call.

Usage::

    python benchmarks/bench_inference.py --out benchmarks/results.json   # full size, ~15-25 min on 2 cores
    python benchmarks/bench_inference.py --quick                         # tiny sizes: checks the script
    python benchmarks/bench_inference.py --workloads step --repeats 5

Random weights give noise images: only time and memory mean anything here.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

# Random weights only: nothing may be fetched from a hub, in this process or in the workload subprocesses.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Read before torch loads: with OMP_PROC_BIND set, OpenMP pins this thread to one core as it starts.
USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

import numpy as np  # noqa: E402 (after the environment and the CPU set above)
import torch  # noqa: E402

WORKLOADS = ("step", "image")
IMPLEMENTATIONS = ("ours", "diffusers")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GUIDANCE_SCALE = 5.0  # the paper's and both pipelines' default
GIB = 1024**3

# --quick: the test suite's tiny sizes (tests/conftest.py), copied so the script does not import tests.
# The tower has 4 layers because diffusers derives its mapper depth from it: (4 + 1) // 5 = 1 block.
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 32,
}
TINY_UNET = {
    "sample_size": 16,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 2,
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}


# ---------------------------------------------------------------------------------------------------
# Sizes and weights
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Component configs of one model size."""

    name: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    vision: dict[str, Any]
    context_dim: int
    schedule: dict[str, Any] = field(repr=False)


def model_sizes(quick: bool) -> Sizes:
    """The released Paint-by-Example architecture, or the tiny one of ``--quick``."""
    from subject_inpainting.models.configs import (
        CLIP_VIT_L14_VISION,
        RELEASED_LDM_PARAMS,
        scheduler_config_from_ldm,
        unet_config_from_ldm,
        vae_config_from_ldm,
    )

    schedule = scheduler_config_from_ldm(RELEASED_LDM_PARAMS)
    if quick:
        return Sizes("tiny (--quick)", TINY_UNET, TINY_VAE, TINY_VISION, 32, schedule)
    unet = unet_config_from_ldm(RELEASED_LDM_PARAMS)
    return Sizes(
        "full (SD-v1 UNet, KL-f8 VAE, CLIP ViT-L/14)",
        unet,
        vae_config_from_ldm(RELEASED_LDM_PARAMS),
        CLIP_VIT_L14_VISION,
        int(unet["cross_attention_dim"]),
        schedule,
    )


def mapper_layers(vision: dict[str, Any]) -> int:
    """Class-mapper depth that diffusers' ``PaintByExampleMapper`` builds for this tower.

    diffusers does not store the depth: it derives it as ``(num_hidden_layers + 1) // 5`` (5 for ViT-L/14,
    the released model's), so our encoder must have that depth for the weights to carry over.
    """
    return (int(vision["num_hidden_layers"]) + 1) // 5


def build_ours(sizes: Sizes, seed: int) -> dict[str, Any]:
    """Our components, randomly initialised under ``seed`` (identical in every process)."""
    from subject_inpainting.models.build import build_component
    from subject_inpainting.models.configs import reference_encoder_config

    torch.manual_seed(seed)
    encoder_config = reference_encoder_config(
        sizes.vision, sizes.context_dim, class_mapper_layers=mapper_layers(sizes.vision)
    )
    return {
        "unet": build_component("unet", sizes.unet).eval(),
        "vae": build_component("vae", sizes.vae).eval(),
        "reference_encoder": build_component("reference_encoder", encoder_config).eval(),
        "scheduler": dict(sizes.schedule),
    }


def pixel_stats(encoder: Any) -> tuple[list[float], list[float]]:
    """The reference encoder's input normalisation (OpenAI CLIP's unless its config says otherwise)."""
    from subject_inpainting.models import reference_encoder as module

    mean = getattr(encoder.config, "image_mean", None) or module.CLIP_IMAGE_MEAN
    std = getattr(encoder.config, "image_std", None) or module.CLIP_IMAGE_STD
    return [float(v) for v in mean], [float(v) for v in std]


def build_diffusers(components: dict[str, Any]) -> Any:
    """diffusers' ``PaintByExamplePipeline`` on our weights: same ``unet``/``vae`` objects, converted encoder."""
    import transformers
    from accelerate import init_empty_weights
    from diffusers import DDIMScheduler, PaintByExamplePipeline
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    from subject_inpainting.convert.diffusers_format import to_diffusers_encoder

    ours = components["reference_encoder"]
    vision, state = to_diffusers_encoder(ours)
    # Built empty and filled by assignment: the tensors stay ours (no copy, no second random init).
    with init_empty_weights(include_buffers=False):
        encoder = PaintByExampleImageEncoder(transformers.CLIPVisionConfig(**vision))
    encoder.load_state_dict(state, strict=True, assign=True)
    side = ours.image_size
    mean, std = pixel_stats(ours)
    # CLIPImageProcessor needs torchvision in transformers 5; its PIL twin does the same preprocessing.
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor = processor_cls(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_mean=mean, image_std=std
    )
    scheduler = DDIMScheduler.from_config({k: v for k, v in components["scheduler"].items() if k != "_class_name"})
    pipe = PaintByExamplePipeline(
        vae=components["vae"],
        image_encoder=encoder.eval(),
        unet=components["unet"],
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=processor,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fingerprint(modules: dict[str, torch.nn.Module]) -> dict[str, float]:
    """A float64 sum of each module's parameters: equal sums ⇒ (almost surely) the same weights.

    The sum does not depend on how the tensors are laid out, so our fused q|k|v mapper weights and
    diffusers' split ones give the same number.
    """
    with torch.no_grad():
        return {
            name: float(sum(p.detach().to("cpu", torch.float64).sum() for p in m.parameters()))
            for name, m in modules.items()
        }


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------
def synthetic_rgb(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth random RGB picture (gradients plus noise) as ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width * 255, yy / height * 255, (xx + yy) / (width + height) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def image_inputs(resolution: int, reference_side: int, seed: int):
    """Scene and mask at the model's resolution (so neither pipeline resizes them) and a reference photo
    larger than the encoder's input (so both resize it)."""
    from PIL import Image

    scene = Image.fromarray(synthetic_rgb(resolution, resolution, seed), "RGB")
    mask = np.zeros((resolution, resolution), dtype=np.uint8)
    q = resolution // 4
    mask[q : 3 * q, q : 3 * q] = 255  # white = the region to paint
    ref_side = max(reference_side * 4 // 3, reference_side + 1)
    reference = Image.fromarray(synthetic_rgb(ref_side, ref_side, seed + 1), "RGB")
    return scene, Image.fromarray(mask, "L"), reference


@dataclass
class StepInputs:
    x: torch.Tensor  # noisy latent (1, C, h, w)
    z_masked: torch.Tensor  # masked-scene latent (1, C, h, w)
    keep: torch.Tensor  # keep-mask at latent size (1, 1, h, w), 1 = keep
    reference: torch.Tensor  # normalised reference pixels (1, 3, S, S)
    t: int


def step_inputs(latent_channels: int, latent_side: int, reference_side: int, num_train: int, seed: int) -> StepInputs:
    g = torch.Generator().manual_seed(seed)
    shape = (1, latent_channels, latent_side, latent_side)
    keep = torch.ones(1, 1, latent_side, latent_side)
    q = latent_side // 4
    keep[..., q : 3 * q, q : 3 * q] = 0
    return StepInputs(
        x=torch.randn(shape, generator=g),
        z_masked=torch.randn(shape, generator=g),
        keep=keep,
        reference=torch.randn(1, 3, reference_side, reference_side, generator=g),
        t=num_train // 2 + 1,  # a DDIM timestep of the original spacing (steps_offset 1)
    )


# ---------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------
def proc_status_kib(field_name: str) -> int | None:
    """A ``/proc/self/status`` memory field in KiB (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident set size over a ``with`` block, in bytes.

    Linux keeps the high-water mark ``VmHWM``; writing ``5`` to ``/proc/self/clear_refs`` resets it to the
    current RSS, so the mark read at the end belongs to the block alone. Without that (other systems,
    restricted /proc) a thread samples ``VmRSS`` every 2 ms, which can miss a very short spike.
    """

    def __init__(self) -> None:
        self.method = ""
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._polled = 0

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            self.method = "VmHWM reset (clear_refs)"
        except OSError:
            self.method = "VmRSS polled every 2 ms"
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._polled = max(self._polled, proc_status_kib("VmRSS") or 0)
            self._stop.wait(0.002)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = self._polled * 1024
        else:
            self.peak_bytes = (proc_status_kib("VmHWM") or 0) * 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


STAGES = ("unet", "vae_encode", "vae_decode", "reference_encoder")


class StageTimer:
    """Wall time spent inside the big components during a call, and the number of UNet calls.

    Forward hooks on the UNet and on both reference encoders; ``vae.encode``/``vae.decode`` are wrapped on the
    (shared) VAE instance, which both pipelines call. Whatever is left of a call's time is the pipelines' own
    work: preprocessing, sampler arithmetic, post-processing.
    """

    def __init__(self, device: torch.device, unet: Any, vae: Any, encoders: Sequence[torch.nn.Module]) -> None:
        self.device = device
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.unet_calls = 0
        self._open: dict[str, float] = {}
        self._hook(unet, "unet")
        for encoder in encoders:
            self._hook(encoder, "reference_encoder")
        vae.encode = self._wrap(vae.encode, "vae_encode")
        vae.decode = self._wrap(vae.decode, "vae_decode")

    def reset(self) -> None:
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.unet_calls = 0

    def _start(self, stage: str) -> None:
        synchronize(self.device)
        self._open[stage] = time.perf_counter()
        self.unet_calls += stage == "unet"

    def _stop(self, stage: str) -> None:
        synchronize(self.device)
        self.totals[stage] += time.perf_counter() - self._open.pop(stage)

    def _hook(self, module: torch.nn.Module, stage: str) -> None:
        module.register_forward_pre_hook(lambda *_: self._start(stage))
        module.register_forward_hook(lambda *_: self._stop(stage))

    def _wrap(self, method: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            self._start(stage)
            try:
                return method(*a, **k)
            finally:
                self._stop(stage)

        return timed


def release_free_memory() -> None:
    """Give freed heap memory back to the system, so that a call's peak RSS is its own.

    glibc keeps freed blocks below its mmap threshold in the heap, still resident: without a trim, the
    implementation measured second would find the pages the first one faulted in and look smaller.
    """
    gc.collect()
    # Not glibc: nothing to trim, and a peak may then reuse pages an earlier call left resident.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure_call(run: Callable[[], Any], device: torch.device, stages: StageTimer) -> tuple[dict[str, Any], Any]:
    """Time one call of ``run`` and its peak memory over what was resident just before it."""
    release_free_memory()
    before = (proc_status_kib("VmRSS") or 0) * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    stages.reset()
    with PeakRSS() as peak:
        start = time.perf_counter()
        out = run()
        synchronize(device)
        seconds = time.perf_counter() - start
    record = {
        "seconds": seconds,
        "unet_calls": stages.unet_calls,
        "stages_s": {**stages.totals, "rest": seconds - sum(stages.totals.values())},
        "rss_before_gib": before / GIB,
        "peak_rss_gib": peak.peak_bytes / GIB,
        "peak_over_before_gib": (peak.peak_bytes - before) / GIB,
        "peak_method": peak.method,
    }
    if device.type == "cuda":
        record["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
        record["cuda_peak_over_before_gib"] = (torch.cuda.max_memory_allocated(device) - cuda_before) / GIB
    return record, out


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in records]
    summary = {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "unet_calls_per_run": records[0]["unet_calls"],
        "peak_rss_gib": max(r["peak_rss_gib"] for r in records),
        "peak_over_before_gib": max(r["peak_over_before_gib"] for r in records),
        "stages_median_s": {k: statistics.median(r["stages_s"][k] for r in records) for k in records[0]["stages_s"]},
        "calls": records,
    }
    for key in ("cuda_peak_gib", "cuda_peak_over_before_gib"):
        if key in records[0]:
            summary[key] = max(r[key] for r in records)
    return summary


def step_runners(ours: Any, theirs: Any, inp: StepInputs, steps: int, device: torch.device) -> dict[str, Callable]:
    """One guided step of each implementation, inputs prepared (reference encoded) outside the timing."""
    from subject_inpainting.sampling.guidance import InpaintDenoiser

    cond, uncond = ours.encode_reference(inp.reference.to(device))
    denoiser = InpaintDenoiser(ours.unet, cond, uncond, GUIDANCE_SCALE, inp.z_masked.to(device), inp.keep.to(device))
    x, t_ours = inp.x.to(device), torch.full((1,), inp.t, device=device, dtype=torch.long)

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
    """Build both pipelines on shared weights, warm up, then time alternating calls (A B B A ...)."""
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    sizes = model_sizes(args.quick)
    start = time.perf_counter()
    components = build_ours(sizes, args.seed)
    # Before any cast: under float16 our pipeline keeps the VAE in float32 and diffusers' does not.
    prints = {"ours": fingerprint({k: components[k] for k in ("unet", "vae", "reference_encoder")})}
    theirs = build_diffusers(components)
    prints["diffusers"] = fingerprint(
        {"unet": theirs.unet, "vae": theirs.vae, "reference_encoder": theirs.image_encoder}
    )
    ours = SubjectInpaintPipeline(**components).to(device, dtype)
    theirs = theirs.to(device, dtype)
    del components
    build_s = time.perf_counter() - start
    shared = theirs.unet is ours.unet and theirs.vae is ours.vae
    stages = StageTimer(device, ours.unet, ours.vae, [ours.reference_encoder, theirs.image_encoder])
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
        if args.warmup:
            for name in IMPLEMENTATIONS:
                warmups[name]()
                synchronize(device)
        records: dict[str, list[dict[str, Any]]] = {name: [] for name in IMPLEMENTATIONS}
        outputs: dict[str, Any] = {}
        order: list[str] = []
        for i in range(repeats):
            # Alternating which goes first (A B, B A, ...) spreads slow drifts of the machine over both.
            for name in IMPLEMENTATIONS if i % 2 == 0 else IMPLEMENTATIONS[::-1]:
                outputs.pop(name, None)  # the previous result is not kept alive during the call
                record, outputs[name] = measure_call(runners[name], device, stages)
                records[name].append(record)
                order.append(name)
                print(f"  [{workload}] {name}: {record['seconds']:.2f} s", file=sys.stderr, flush=True)

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


# ---------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "vendor_id", "cpu family", "model", "flags") and key not in cpu:
                    cpu[key] = value.strip()
    except OSError:
        pass
    flags = set(cpu.get("flags", "").split())
    mem_kib = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for package in ("torch", "diffusers", "transformers", "accelerate", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info: dict[str, Any] = {
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": f"{cpu.get('vendor_id', '?')} family {cpu.get('cpu family', '?')} model {cpu.get('model', '?')}",
        "simd": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": USABLE_CPUS,
        "torch_threads": torch.get_num_threads(),
        "threading_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_"))},
        "ram_gib": round(mem_kib / 1024**2, 1) if mem_kib else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def git_state() -> str | None:
    """The checked-out commit, ``+dirty`` when the work tree differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "—" if value is None else pattern.format(value)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def format_table(workloads: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one row per workload, ours and diffusers side by side, ratios ours / diffusers."""
    cuda = args.device.startswith("cuda")
    peak, over = ("cuda_peak_gib", "cuda_peak_over_before_gib") if cuda else ("peak_rss_gib", "peak_over_before_gib")
    memory = "CUDA peak" if cuda else "peak RSS"
    rows = [
        f"| workload | ours s | diffusers s | ratio | ours {memory} GiB | diffusers {memory} GiB | ratio "
        "| ours peak − before GiB | diffusers peak − before GiB | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in workloads.items():
        o, d = w["results"]["ours"], w["results"]["diffusers"]
        res = w["resolution"]
        label = (
            "one guided step (UNet at batch 2)"
            if name == "step"
            else f"whole {res}×{res} image, DDIM {args.steps} steps"
        )
        label += f", {w['repeats']} run{'s' * (w['repeats'] > 1)} each"

        def seconds(r: dict[str, Any]) -> str:
            spread = f" ({r['min_s']:.2f}–{r['max_s']:.2f})" if len(r["calls"]) > 1 else ""
            return f"{r['median_s']:.2f}{spread}"

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


def format_stages(workloads: dict[str, dict[str, Any]]) -> str:
    """Markdown: where each implementation's time goes (medians over its calls, seconds)."""
    rows = [
        "| workload | implementation | total s | UNet s (calls) | VAE encode s | VAE decode s | reference encoder s "
        "| rest s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in workloads.items():
        for impl in IMPLEMENTATIONS:
            r = w["results"][impl]
            st = r.get("stages_median_s")
            if st is None:
                continue
            rows.append(
                f"| {name} | {impl} | {r['median_s']:.2f} | {st['unet']:.2f} ({r['unet_calls_per_run']}) "
                f"| {st['vae_encode']:.2f} | {st['vae_decode']:.2f} | {st['reference_encoder']:.2f} "
                f"| {st['rest']:.2f} |"
            )
    return "\n".join(rows)


def format_machine(info: dict[str, Any], args: argparse.Namespace) -> str:
    v = info["versions"]
    threading_env = " ".join(f"{k}={val}" for k, val in info["threading_env"].items())
    lines = [
        f"- CPU: {info['cpu']} ({info['cpu_id']}; {', '.join(info['simd']) or 'no AVX2'}), {info['usable_cpus']} "
        f"usable of {info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']}",
        f"- RAM: {info['ram_gib']} GiB; {info['os']}" + (f"; GPU: {info['gpu']}" if "gpu" in info else ""),
        f"- Python {info['python']}, torch {v['torch']}, diffusers {v['diffusers']}, transformers "
        f"{v['transformers']}, accelerate {v['accelerate']}",
        f"- device {args.device}, dtype {args.dtype}; threading environment "
        f"{threading_env or 'default (no OMP_/GOMP_/KMP_/MKL_ variables)'}",
        f"- date {info['date_utc']}; repository {info['git']}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time and peak memory of one guided step and one whole image: ours vs diffusers' "
        "PaintByExamplePipeline on the same random weights, calls alternating, one fresh process per workload."
    )
    parser.add_argument("--steps", type=int, default=5, help="DDIM steps of the whole-image workload (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed guided steps per implementation (default 3)")
    parser.add_argument(
        "--image-repeats", type=int, default=2, help="timed whole images per implementation (default 2)"
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up call of each implementation"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script in under a minute")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights' dtype (default float32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=list(WORKLOADS),
        choices=WORKLOADS,
        metavar="WORKLOAD",
        help="step and/or image (default both)",
    )
    parser.add_argument("--out", type=Path, help="also write the results and the machine as JSON here")
    # Internal: run one workload in this process and write its result as JSON.
    parser.add_argument("--child", dest="child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", dest="child_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "repeats", "image_repeats"):
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
    return cmd + ["--quick"] * args.quick + ["--no-warmup"] * (not args.warmup)


def main(args: argparse.Namespace) -> int:
    if args.child:
        result = run_workload(args.child, args)
        args.child_out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0

    sizes = model_sizes(args.quick)
    side = int(sizes.unet["sample_size"]) * 2 ** (len(sizes.vae["block_out_channels"]) - 1)
    print(f"model: {sizes.name}; image {side}×{side}; device {args.device}, dtype {args.dtype}", flush=True)
    workloads: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        for workload in args.workloads:
            out = Path(tmp) / f"{workload}.json"
            print(f"[{workload}] building both pipelines in a fresh process ...", flush=True)
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
    table = format_table(workloads, args)
    stage_table = format_stages(workloads)
    print()
    print(table)
    print()
    print(stage_table)
    print()
    print(format_machine(info, args))
    print(f"- checks: {json.dumps(checks)}")
    if args.out is not None:
        report = {
            "model": sizes.name,
            "command": "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:]),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": info,
            "checks": checks,
            "workloads": workloads,
            "table_markdown": table,
            "stages_markdown": stage_table,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"- wrote {args.out}")
    failed = [
        name
        for name, c in checks.items()
        if c is False or (isinstance(c, dict) and not (c.get("same_weights") and c.get("shared_unet_and_vae")))
    ]
    if failed:
        print(f"error: the implementations did not run on the same weights ({', '.join(failed)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
