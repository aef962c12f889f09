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

    python benchmarks/bench_inference.py --out benchmarks/results.json   # full size, ~15-25 min on 2 cores
    python benchmarks/bench_inference.py --quick                         # tiny sizes: checks the script
    python benchmarks/bench_inference.py --workloads step --repeats 5
    python benchmarks/bench_inference.py --workloads guidance --out benchmarks/results-guidance.json

Random weights give noise images: only time and memory mean anything here.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import gc
import itertools
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

WORKLOADS = ("step", "image", "guidance")
DEFAULT_WORKLOADS = ("step", "image")  # guidance on request: it compares our guidance variants, not diffusers
IMPLEMENTATIONS = ("ours", "diffusers")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GUIDANCE_SCALE = 5.0  # the paper's and both pipelines' default
GIB = 1024**3

# The guidance workload: the pipeline's defaults for w and T (T above the step's timestep: modified guidance).
MODEL_WEIGHT = 0.8
GUIDANCE_THRESHOLD = 1000
DEFAULT_LORA_RANK = 4
DETAIL_GRID = 1  # one detail token, as the original (its mapper depth and heads: RELEASED_DETAIL_MAPPER)
# The batch size of each UNet call one guided step makes, per variant (counted by a forward pre-hook).
EXPECTED_UNET_BATCHES = {"plain": [2], "full": [1, 2], "lora": [3]}
GUIDANCE_VARIANTS = tuple(EXPECTED_UNET_BATCHES)

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


def build_pipelines(sizes: Sizes, seed: int, device: torch.device, dtype: torch.dtype, diffusers: bool):
    """Our pipeline (and diffusers' on the same weights) on ``device`` in ``dtype``, and the weights' sums.

    Returns ``(ours, theirs or None, {"ours": sums, "diffusers": sums})``.
    """
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    components = build_ours(sizes, seed)
    # Before any cast: under float16 our pipeline keeps the VAE in float32 and diffusers' does not.
    prints = {"ours": fingerprint({k: components[k] for k in ("unet", "vae", "reference_encoder")})}
    theirs = None
    if diffusers:
        theirs = build_diffusers(components)
        prints["diffusers"] = fingerprint(
            {"unet": theirs.unet, "vae": theirs.vae, "reference_encoder": theirs.image_encoder}
        )
    ours = SubjectInpaintPipeline(**components).to(device, dtype)
    if theirs is not None:
        theirs = theirs.to(device, dtype)
    return ours, theirs, prints


def shared_weight_view(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module``'s structure whose parameters and buffers ARE ``module``'s (no weight memory).

    Modules injected into the copy (LoRA layers) leave ``module`` itself as it was.
    """
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


def guidance_pipelines(ours: Any, lora_rank: int, seed: int) -> dict[str, Any]:
    """Three pipelines over ``ours``' weights: no subject, a fully fine-tuned subject, a LoRA subject.

    Each holds its subject as ``SubjectInpaintPipeline.load_subject`` leaves it (``Subject``: encoder with the
    detail module, fine-tuned UNet or adapter name), made here in memory with random weights instead of
    read from a subject folder; one subject encoder serves both subjects, so both get the same context.
    """
    from subject_inpainting.convert.subject import (
        ADAPTER_NAME,
        DETAIL_PREFIXES,
        Subject,
        add_lora,
        lora_config,
    )
    from subject_inpainting.models.build import build_component, fill_component
    from subject_inpainting.models.configs import RELEASED_DETAIL_MAPPER
    from subject_inpainting.pipeline import SubjectInpaintPipeline
    from subject_inpainting.training.finetune import subject_encoder

    base_encoder = ours.reference_encoder
    # The encoder as fine-tuning makes it (base + a fresh detail module), then held as load_subject holds it:
    # built empty, the class path assigned the base encoder's tensors (no copy), the detail weights its own.
    trained = subject_encoder(
        base_encoder, RELEASED_DETAIL_MAPPER["layers"], RELEASED_DETAIL_MAPPER["heads"], DETAIL_GRID, seed + 10
    )
    state = {k: v for k, v in base_encoder.state_dict().items() if not k.startswith(DETAIL_PREFIXES)}
    state.update({k: v for k, v in trained.state_dict().items() if k.startswith(DETAIL_PREFIXES)})
    config = {k: v for k, v in dict(trained.config).items() if not k.startswith("_")}
    del trained
    encoder = fill_component(build_component("reference_encoder", config, empty=True), state, "subject encoder")

    # Full subject: a second UNet, the base's weights slightly perturbed (random weights: only cost matters).
    full_unet = copy.deepcopy(ours.unet)
    g = torch.Generator().manual_seed(seed + 11)
    with torch.no_grad():
        for p in full_unet.parameters():
            if p.numel() > 1:
                noise = torch.randn(p.shape, generator=g)
                p.add_((noise * (0.01 * p.float().std())).to(p.device, p.dtype))

    # LoRA subject: the adapter injected into (a view of) the base UNet, as load_subject injects it.
    lora_unet = shared_weight_view(ours.unet)
    torch.manual_seed(seed + 12)  # lora_A's initialisation
    add_lora(lora_unet, lora_config(lora_rank))
    g = torch.Generator().manual_seed(seed + 13)
    with torch.no_grad():  # peft starts lora_B at zero; give the adapter an effect
        for name, p in lora_unet.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=g) * 0.01).to(p.device, p.dtype))

    pipes = {"plain": ours}
    pipes["full"] = SubjectInpaintPipeline(**ours.components)
    pipes["full"].subject = Subject(encoder, full_unet, None, "benchmark: full fine-tuned UNet (random)")
    pipes["lora"] = SubjectInpaintPipeline(**{**ours.components, "unet": lora_unet})
    pipes["lora"].subject = Subject(encoder, None, ADAPTER_NAME, f"benchmark: LoRA rank {lora_rank} (random)")
    return pipes


def held_modules(pipe: Any) -> list[torch.nn.Module]:
    """The modules a user of ``pipe`` holds in memory: its components and its subject's."""
    modules = [pipe.unet, pipe.vae, pipe.reference_encoder]
    if pipe.subject is not None:
        modules += [pipe.subject.encoder] + ([pipe.subject.unet] if pipe.subject.unet is not None else [])
    return modules


def weights_gib(modules: Sequence[torch.nn.Module]) -> float:
    """Bytes of the modules' parameters and buffers, in GiB, each storage counted once (shared tensors)."""
    storages = {}
    for module in modules:
        for t in itertools.chain(module.parameters(), module.buffers()):
            storage = t.untyped_storage()
            storages[(str(t.device), storage.data_ptr())] = storage.nbytes()
    return sum(storages.values()) / GIB


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
    """Wall time spent inside the big components during a call, and the UNet calls (number, batch sizes).

    Forward hooks on the UNet(s) and on the reference encoders; ``vae.encode``/``vae.decode`` are wrapped on
    the (shared) VAE instance, which both pipelines call. Whatever is left of a call's time is the pipelines'
    own work: preprocessing, sampler arithmetic, post-processing.
    """

    def __init__(
        self,
        device: torch.device,
        unets: Sequence[torch.nn.Module],
        vae: Any,
        encoders: Sequence[torch.nn.Module],
    ) -> None:
        self.device = device
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.unet_calls = 0
        self.unet_batches: list[int] = []
        self._open: dict[str, float] = {}
        for unet in unets:
            unet.register_forward_pre_hook(self._count_unet_call, with_kwargs=True)
            self._hook(unet, "unet")
        for encoder in encoders:
            self._hook(encoder, "reference_encoder")
        vae.encode = self._wrap(vae.encode, "vae_encode")
        vae.decode = self._wrap(vae.decode, "vae_decode")

    def reset(self) -> None:
        self.totals = dict.fromkeys(STAGES, 0.0)
        self.unet_calls = 0
        self.unet_batches = []

    def _count_unet_call(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.unet_batches.append(int(sample.shape[0]))

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
        "unet_batches": stages.unet_batches,
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
        "unet_batches_per_run": records[0]["unet_batches"],
        "peak_rss_gib": max(r["peak_rss_gib"] for r in records),
        "peak_over_before_gib": max(r["peak_over_before_gib"] for r in records),
        "stages_median_s": {k: statistics.median(r["stages_s"][k] for r in records) for k in records[0]["stages_s"]},
        "calls": records,
    }
    for key in ("cuda_peak_gib", "cuda_peak_over_before_gib"):
        if key in records[0]:
            summary[key] = max(r[key] for r in records)
    return summary


def guided_denoiser(pipe: Any, inp: StepInputs, device: torch.device) -> Any:
    """The denoiser ``SubjectInpaintPipeline.__call__`` makes for one image, made as it makes it: plain
    classifier-free guidance without a subject, modified guidance with one. The reference is encoded here,
    outside any timing."""
    from subject_inpainting.sampling.guidance import InpaintDenoiser, ModifiedGuidanceDenoiser

    reference, z_masked, keep = inp.reference.to(device), inp.z_masked.to(device), inp.keep.to(device)
    if pipe.subject is None:
        cond, uncond = pipe.encode_reference(reference)
        return InpaintDenoiser(pipe.unet, cond, uncond, GUIDANCE_SCALE, z_masked, keep)
    subject_ctx, class_ctx, uncond = pipe.encode_subject_reference(reference)
    return ModifiedGuidanceDenoiser(
        pipe.unet,
        pipe.subject.unet if pipe.subject.unet is not None else pipe.unet,
        subject_ctx,
        class_ctx,
        uncond,
        GUIDANCE_SCALE,
        MODEL_WEIGHT,
        GUIDANCE_THRESHOLD,
        z_masked,
        keep,
        subject_adapter=pipe.subject.adapter,
    )


def step_timestep(inp: StepInputs, device: torch.device) -> torch.Tensor:
    return torch.full((1,), inp.t, device=device, dtype=torch.long)


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


def timed_rounds(
    workload: str,
    runners: dict[str, Callable[[], Any]],
    warmups: dict[str, Callable[[], Any]] | None,
    repeats: int,
    device: torch.device,
    stages: StageTimer,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], list[str]]:
    """One untimed warm-up call of each runner (unless ``warmups`` is None), then ``repeats`` timed rounds in
    which every runner is called once, the order reversed every other round (A B C, C B A, ...).

    Returns ``(records per runner, each runner's last output, the order of the timed calls)``.
    """
    names = list(runners)
    if warmups is not None:
        for name in names:
            warmups[name]()
            synchronize(device)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    outputs: dict[str, Any] = {}
    order: list[str] = []
    for i in range(repeats):
        # Alternating which goes first (A B, B A, ...) spreads slow drifts of the machine over all sides.
        for name in names if i % 2 == 0 else names[::-1]:
            outputs.pop(name, None)  # the previous result is not kept alive during the call
            record, outputs[name] = measure_call(runners[name], device, stages)
            records[name].append(record)
            order.append(name)
            print(f"  [{workload}] {name}: {record['seconds']:.2f} s", file=sys.stderr, flush=True)
    return records, outputs, order


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


def run_guidance(args: argparse.Namespace, sizes: Sizes, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
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


def memory_keys(args: argparse.Namespace) -> tuple[str, str, str]:
    """The summary keys of the peak and of the peak over before, and the peak's name, for the device."""
    if args.device.startswith("cuda"):
        return "cuda_peak_gib", "cuda_peak_over_before_gib", "CUDA peak"
    return "peak_rss_gib", "peak_over_before_gib", "peak RSS"


def seconds(r: dict[str, Any]) -> str:
    """A summary's median seconds, with the range in brackets when there were several calls."""
    spread = f" ({r['min_s']:.2f}–{r['max_s']:.2f})" if len(r["calls"]) > 1 else ""
    return f"{r['median_s']:.2f}{spread}"


def format_table(workloads: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one row per workload, ours and diffusers side by side, ratios ours / diffusers."""
    peak, over, memory = memory_keys(args)
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


def guidance_label(name: str, w: dict[str, Any]) -> str:
    weight = f"w = {w['model_weight']:g}"
    return {
        "plain": "plain CFG, base model",
        "full": f"modified guidance, full fine-tuned UNet, {weight}",
        "lora": f"modified guidance, LoRA rank {w['lora_rank']}, {weight}",
    }[name]


def format_guidance(w: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown: one guided step per guidance variant, ratios to plain classifier-free guidance."""
    peak, over, memory = memory_keys(args)
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
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script in under a minute")
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
    print(f"model: {sizes.name}; image {side}×{side}; device {args.device}, dtype {args.dtype}", flush=True)
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
