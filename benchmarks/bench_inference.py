#!/usr/bin/env python
"""Inference benchmark: ``SubjectInpaintPipeline`` side by side with diffusers' ``PaintByExamplePipeline``.

What is measured
----------------
Both implementations run on the SAME weights: the full-size Paint-by-Example architecture (SD-v1 9-channel
UNet, KL-f8 VAE, CLIP ViT-L/14 reference encoder with its 5-block mapper), randomly initialised under a
fixed seed, so nothing is downloaded. diffusers' pipeline is given the very same ``unet`` and ``vae``
module objects, and its ``PaintByExampleImageEncoder`` is filled from our reference encoder with
``to_diffusers_encoder`` (its tensors share our encoder's storage). Four cases:

- ``ours-step`` / ``diffusers-step``: ONE guided denoising step at the 64×64 latent, one image, guidance
  scale 5, i.e. one UNet call at batch 2 plus the classifier-free-guidance combination. Ours is
  ``InpaintDenoiser(x, t)``; diffusers has no separate step function, so its case runs the body of the
  denoising loop of ``PaintByExamplePipeline.__call__`` (everything but ``scheduler.step``). The inputs
  (noisy latent, masked-scene latent, keep-mask, reference pixels) are the same random tensors for both;
  each side encodes the reference with its own encoder. The two predicted noises are compared afterwards,
  which checks that both really ran the same weights.
- ``ours-image`` / ``diffusers-image``: one whole 512×512 image from PIL inputs (scene, mask, reference)
  to PIL output with DDIM at ``--steps`` steps (same timesteps on both sides, same initial noise): reference
  preprocessing and encoding, VAE encoding of the masked scene, ``--steps`` guided UNet calls, VAE decoding,
  post-processing (ours also pastes the result back into the scene).

How
---
Every case runs in a fresh Python subprocess, so that each peak memory figure belongs to that case only.
The subprocess builds the weights (same seed → same weights in every case; a float64 sum of every
component's parameters is recorded and checked), runs one untimed warm-up call (a 1-step image for the
image cases; ``--no-warmup`` skips it), then times ``--repeats`` (step) or ``--image-repeats`` (image) calls with
``time.perf_counter`` and reports their median. Memory on the CPU: the resident-set high-water mark
(``VmHWM``) is reset to the current RSS just before the timed calls (``/proc/self/clear_refs``, Linux), so
``peak RSS`` is the process's largest resident set during the timed calls, weights included, and
``peak − before`` is that peak minus the resident set just before the timed calls (pipeline built and
warmed up): the working memory of inference on top of the weights. Where the reset is not possible a
thread polls ``VmRSS`` every 2 ms instead. On CUDA the peak is ``torch.cuda.max_memory_allocated``.

Usage::

    python benchmarks/bench_inference.py                    # full size (about 15 min on 2 CPU cores)
    python benchmarks/bench_inference.py --quick            # tiny sizes, a few seconds: checks the script
    python benchmarks/bench_inference.py --steps 5 --repeats 3 --out benchmarks/results.json

Random weights give noise images: only time and memory mean anything here.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
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

# Random weights only: nothing may be fetched from a hub, in this process or in the case subprocesses.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

CASES = ("ours-step", "diffusers-step", "ours-image", "diffusers-image")
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


def count_unet_calls(unet: torch.nn.Module) -> list[int]:
    """A counter of UNet forward calls (both pipelines call the module, so a hook sees every call)."""
    counter = [0]

    def hook(*_: object) -> None:
        counter[0] += 1

    unet.register_forward_pre_hook(hook)
    return counter


def measure(
    run: Callable[[], Any], warmup: Callable[[], Any] | None, repeats: int, device: torch.device, unet_calls: list[int]
) -> tuple[dict[str, Any], Any]:
    """Warm up, then time ``repeats`` calls of ``run`` under the memory monitor."""
    with torch.no_grad():
        if warmup is not None:
            warmup()
        synchronize(device)
        gc.collect()
        built_bytes = (proc_status_kib("VmRSS") or 0) * 1024
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, out = [], None
        calls_before = unet_calls[0]
        with PeakRSS() as peak:
            for _ in range(repeats):
                out = None  # the previous result is not kept alive during the next call
                start = time.perf_counter()
                out = run()
                synchronize(device)
                seconds.append(time.perf_counter() - start)
    result = {
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "unet_calls_per_run": (unet_calls[0] - calls_before) / repeats,
        "rss_before_timed_gib": built_bytes / GIB,
        "peak_rss_gib": peak.peak_bytes / GIB,
        "peak_over_before_timed_gib": (peak.peak_bytes - built_bytes) / GIB,
        "peak_method": peak.method,
    }
    if device.type == "cuda":
        result["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    return result, out


def run_case(case: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Build, warm up and measure one case in this process; save its output for the comparison."""
    from subject_inpainting.pipeline import SubjectInpaintPipeline
    from subject_inpainting.sampling.guidance import InpaintDenoiser

    if args.threads:
        torch.set_num_threads(args.threads)
    impl, workload = case.split("-")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    sizes = model_sizes(args.quick)
    start = time.perf_counter()
    components = build_ours(sizes, args.seed)
    # Before any cast: under float16 our pipeline keeps the VAE in float32 and diffusers' does not.
    prints = fingerprint({k: components[k] for k in ("unet", "vae", "reference_encoder")})
    if impl == "ours":
        pipe = SubjectInpaintPipeline(**components).to(device, dtype)
    else:
        pipe = build_diffusers(components)
        prints["reference_encoder"] = fingerprint({"e": pipe.image_encoder})["e"]  # the converted copy's sum
        pipe = pipe.to(device, dtype)
    unet, vae, side = pipe.unet, pipe.vae, int(pipe.unet.config.sample_size)
    reference_side = int(sizes.vision["image_size"])
    del components  # diffusers' pipeline holds what it needs; nothing else of the build stays alive
    gc.collect()
    build_s = time.perf_counter() - start
    calls = count_unet_calls(unet)
    latent_channels = int(vae.config.latent_channels)
    resolution = side * 2 ** (len(vae.config.block_out_channels) - 1)

    if workload == "step":
        inp = step_inputs(
            latent_channels, side, reference_side, int(sizes.schedule["num_train_timesteps"]), args.seed + 1
        )
        with torch.no_grad():
            if impl == "ours":
                cond, uncond = pipe.encode_reference(inp.reference.to(device))
                denoiser = InpaintDenoiser(
                    unet, cond, uncond, GUIDANCE_SCALE, inp.z_masked.to(device), inp.keep.to(device)
                )
                x, t = inp.x.to(device), torch.full((1,), inp.t, device=device, dtype=torch.long)

                def run() -> torch.Tensor:
                    return denoiser(x, t)

            else:
                embeddings = pipe._encode_image(inp.reference, device, 1, True)  # [uncond; cond]
                act = embeddings.dtype
                # As prepare_mask_latents leaves them for guidance: duplicated, in the activations' dtype.
                masked_latents = torch.cat([inp.z_masked] * 2).to(device, act)
                mask = torch.cat([inp.keep] * 2).to(device, act)
                latents = inp.x.to(device, act)
                scheduler = pipe.scheduler
                scheduler.set_timesteps(args.steps, device=device)
                t = torch.tensor(inp.t, device=device)

                def run() -> torch.Tensor:
                    # The body of PaintByExamplePipeline.__call__'s denoising loop, minus scheduler.step.
                    model_input = torch.cat([latents] * 2)
                    model_input = scheduler.scale_model_input(model_input, t)
                    model_input = torch.cat([model_input, masked_latents, mask], dim=1)
                    noise_pred = unet(model_input, t, encoder_hidden_states=embeddings).sample
                    uncond_pred, cond_pred = noise_pred.chunk(2)
                    return uncond_pred + GUIDANCE_SCALE * (cond_pred - uncond_pred)

        warmup = run if args.warmup else None
        repeats = args.repeats
    else:
        scene, mask_image, reference = image_inputs(resolution, reference_side, args.seed + 2)
        noise = torch.randn((1, latent_channels, side, side), generator=torch.Generator().manual_seed(args.seed + 3))

        def image(steps: int) -> Any:
            generator = torch.Generator().manual_seed(args.seed)
            if impl == "ours":
                return pipe(
                    scene,
                    reference,
                    mask=mask_image,
                    num_inference_steps=steps,
                    guidance_scale=GUIDANCE_SCALE,
                    sampler="ddim",
                    generator=generator,
                    progress=False,
                    latents=noise,
                ).images[0]
            return pipe(
                example_image=reference,
                image=scene,
                mask_image=mask_image,
                num_inference_steps=steps,
                guidance_scale=GUIDANCE_SCALE,
                generator=generator,
                latents=noise.to(device, unet.dtype),  # diffusers moves given latents but does not cast them
            ).images[0]

        def run() -> Any:
            return image(args.steps)

        # A 1-step image goes through every stage once (encoder, VAE both ways, UNet) at a fraction of the cost.
        warmup = (lambda: image(1)) if args.warmup else None
        repeats = args.image_repeats

    result, out = measure(run, warmup, repeats, device, calls)
    output_path = workdir / f"{case}.{'pt' if workload == 'step' else 'png'}"
    if workload == "step":
        torch.save(out.detach().to("cpu", torch.float32), output_path)
    else:
        out.save(output_path)
    return {
        "case": case,
        "implementation": impl,
        "workload": workload,
        "build_s": build_s,
        "repeats": repeats,
        "warmup": bool(args.warmup),
        "weights_fingerprint": prints,
        "output": str(output_path),
        "peak_rss_total_gib": (proc_status_kib("VmHWM") or 0) * 1024 / GIB,
        **result,
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
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
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
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
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


def compare_outputs(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Same weights in every case, and the same predicted noise from both implementations' guided step."""
    checks: dict[str, Any] = {}
    prints = [r["weights_fingerprint"] for r in results.values()]
    if prints:
        same = all(abs(p[k] - prints[0][k]) <= 1e-9 * max(1.0, abs(prints[0][k])) for p in prints for k in prints[0])
        checks["same_weights_in_every_case"] = same
    if "ours-step" in results and "diffusers-step" in results:
        ours = torch.load(results["ours-step"]["output"], weights_only=True)
        theirs = torch.load(results["diffusers-step"]["output"], weights_only=True)
        diff = (ours - theirs).abs().max().item()
        checks["step_eps_max_abs_diff"] = diff
        checks["step_eps_max_abs"] = theirs.abs().max().item()
    return checks


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def format_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one row per workload, ours and diffusers side by side, ratios ours / diffusers."""
    memory = "CUDA peak" if args.device.startswith("cuda") else "peak RSS"
    rows = [
        f"| workload | ours s | diffusers s | s ratio | ours {memory} GiB | diffusers {memory} GiB | ratio "
        f"| ours peak − before GiB | diffusers peak − before GiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "step": "one guided step (UNet batch 2)",
        "image": f"whole {{res}}×{{res}} image, DDIM {args.steps} steps",
    }
    for workload in ("step", "image"):
        ours, theirs = results.get(f"ours-{workload}"), results.get(f"diffusers-{workload}")
        if ours is None and theirs is None:
            continue

        def get(r: dict[str, Any] | None, key: str) -> float | None:
            return None if r is None else r.get(key)

        mem_key = "cuda_peak_gib" if args.device.startswith("cuda") else "peak_rss_gib"
        res = (ours or theirs).get("resolution", "?")
        cells = [
            names[workload].format(res=res),
            fmt(get(ours, "median_s"), "{:.2f}"),
            fmt(get(theirs, "median_s"), "{:.2f}"),
            ratio(get(ours, "median_s"), get(theirs, "median_s")),
            fmt(get(ours, mem_key), "{:.2f}"),
            fmt(get(theirs, mem_key), "{:.2f}"),
            ratio(get(ours, mem_key), get(theirs, mem_key)),
            fmt(get(ours, "peak_over_before_timed_gib"), "{:.2f}"),
            fmt(get(theirs, "peak_over_before_timed_gib"), "{:.2f}"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def format_machine(info: dict[str, Any], args: argparse.Namespace) -> str:
    v = info["versions"]
    return (
        f"- CPU: {info['cpu']} ({info['cpu_id']}; {', '.join(info['simd']) or 'no AVX2'}), "
        f"{info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']}\n"
        f"- RAM: {info['ram_gib']} GiB; {info['os']}" + (f"; GPU: {info['gpu']}" if "gpu" in info else "") + "\n"
        f"- Python {info['python']}, torch {v['torch']}, diffusers {v['diffusers']}, transformers "
        f"{v['transformers']}, accelerate {v['accelerate']}\n"
        f"- device {args.device}, dtype {args.dtype}; date {info['date_utc']}; repository {info['git']}"
    )


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time and peak memory of one guided step and one whole image: ours vs diffusers' "
        "PaintByExamplePipeline, same random weights, each case in a fresh subprocess."
    )
    parser.add_argument("--steps", type=int, default=5, help="DDIM steps of the whole-image case (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed guided steps per case (default 3)")
    parser.add_argument("--image-repeats", type=int, default=1, help="timed whole images per case (default 1)")
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up call of each case"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script in seconds")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights' dtype (default float32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs (default 0)")
    parser.add_argument(
        "--cases", nargs="+", default=list(CASES), choices=CASES, metavar="CASE", help=f"subset of {', '.join(CASES)}"
    )
    parser.add_argument("--out", type=Path, help="also write the results and machine as JSON here")
    # Internal: run one case in this process and write its result into the folder.
    parser.add_argument("--case", dest="child_case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", dest="child_workdir", type=Path, help=argparse.SUPPRESS)
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
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: only cpu and cuda are supported (memory is measured per kind)")
    if args.out is not None and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.child_case and args.child_workdir is None:
        parser.error("--case needs --workdir")
    return args


def child_command(args: argparse.Namespace, case: str, workdir: Path) -> list[str]:
    """This script's command line for one case in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--workdir", str(workdir)]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--image-repeats", str(args.image_repeats)]
    cmd += ["--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads), "--seed", str(args.seed)]
    cmd += ["--quick"] * args.quick + ["--no-warmup"] * (not args.warmup)
    return cmd


def main(args: argparse.Namespace) -> int:
    if args.child_case:
        result = run_case(args.child_case, args, args.child_workdir)
        (args.child_workdir / f"{args.child_case}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0

    sizes = model_sizes(args.quick)
    side = int(sizes.unet["sample_size"]) * 2 ** (len(sizes.vae["block_out_channels"]) - 1)
    print(f"model: {sizes.name}; image {side}×{side}; device {args.device}, dtype {args.dtype}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        workdir = Path(tmp)
        for case in args.cases:
            print(f"[{case}] running in a fresh process ...", flush=True)
            start = time.perf_counter()
            proc = subprocess.run(child_command(args, case, workdir), check=False)
            if proc.returncode != 0:
                print(f"error: case {case} failed (exit code {proc.returncode}); see its output above", file=sys.stderr)
                return 1
            result = json.loads((workdir / f"{case}.json").read_text(encoding="utf-8"))
            result["resolution"] = side
            results[case] = result
            print(
                f"[{case}] {result['median_s']:.3f} s (median of {result['repeats']}), peak RSS "
                f"{result['peak_rss_gib']:.2f} GiB, {result['unet_calls_per_run']:g} UNet calls per run; "
                f"process {time.perf_counter() - start:.0f} s",
                flush=True,
            )
        checks = compare_outputs(results)
    for r in results.values():
        r.pop("output", None)  # the temporary folder is gone

    info = machine_info(torch.device(args.device))
    table = format_table(results, args)
    print()
    print(table)
    print()
    print(format_machine(info, args))
    if checks:
        print(f"- checks: {json.dumps(checks)}")
    if checks.get("same_weights_in_every_case") is False:
        print("error: the cases did not run on the same weights (fingerprints differ)", file=sys.stderr)
        return 1
    if args.out is not None:
        report = {
            "model": sizes.name,
            "resolution": side,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
            "machine": info,
            "checks": checks,
            "results": results,
            "table_markdown": table,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"- wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
