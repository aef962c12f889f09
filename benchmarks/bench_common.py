"""Helpers shared by the inference benchmarks (``bench_inference.py``, ``bench_speed.py``).

Importing this module sets the environment the benchmarks need before torch loads: nothing is fetched
from a hub (random or embedded weights only), and the CPUs this process may use are read before OpenMP
starts (with ``OMP_PROC_BIND`` set, OpenMP pins the importing thread to one core as it starts). Import it
before torch.

- Sizes and weights: the released Paint-by-Example architecture (or the tiny one of ``--quick``), both from
  the project's ``MODEL_SIZES``, built with random weights under a seed (``build_ours``); diffusers'
  ``PaintByExamplePipeline`` over the same modules (``build_diffusers``); subjects (LoRA and fully
  fine-tuned) made in memory (``guidance_pipelines``).
- Inputs: a synthetic scene, mask and reference (``image_inputs``) and the random tensors of one guided step
  (``step_inputs``).
- Measuring: per-call peak RSS (``PeakRSS``, ``release_free_memory``), per-component wall time and UNet calls
  (``StageTimer``), one call (``measure_call``), alternating rounds of calls (``timed_rounds``) and their
  summary (``summarise``).
- Reporting: the machine and the repository's state (``machine_info``, ``format_machine``), table cells.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import datetime
import gc
import itertools
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Random or embedded weights only: nothing may be fetched from a hub, in this process or in its subprocesses.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Read before torch loads: with OMP_PROC_BIND set, OpenMP pins this thread to one core as it starts.
USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

import numpy as np  # noqa: E402 (after the environment and the CPU set above)
import torch  # noqa: E402

if TYPE_CHECKING:
    from subject_inpainting.models.configs import ModelSize

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GUIDANCE_SCALE = 5.0  # the paper's and both pipelines' default
GIB = 1024**3

# Subjects' modified guidance: the pipeline's defaults for w and T (T above every timestep: modified guidance).
MODEL_WEIGHT = 0.8
GUIDANCE_THRESHOLD = 1000
DEFAULT_LORA_RANK = 4
DETAIL_GRID = 1  # one detail token, as the original (its mapper depth and heads: RELEASED_DETAIL_MAPPER)


# ---------------------------------------------------------------------------------------------------
# Sizes and weights
# ---------------------------------------------------------------------------------------------------
def model_sizes(quick: bool) -> ModelSize:
    """The released Paint-by-Example architecture, or the tiny one of ``--quick`` (``MODEL_SIZES``), each with
    the class-mapper depth diffusers derives from its tower (``mapper_layers``), so that its pipeline holds
    the same weights. The tiny tower gets 4 layers here: diffusers' depth of the registry's 2 would be 0."""
    import dataclasses

    from subject_inpainting.models.configs import MODEL_SIZES

    if quick:
        size = MODEL_SIZES["tiny"]
        vision = {**size.vision, "num_hidden_layers": 4}
        size = dataclasses.replace(size, description="tiny (--quick)", vision=vision)
    else:
        size = MODEL_SIZES["sd-v1"]
    return dataclasses.replace(size, class_mapper={**size.class_mapper, "layers": mapper_layers(size.vision)})


def mapper_layers(vision: dict[str, Any]) -> int:
    """Class-mapper depth that diffusers' ``PaintByExampleMapper`` builds for this tower.

    diffusers does not store the depth: it derives it as ``(num_hidden_layers + 1) // 5`` (5 for ViT-L/14,
    the released model's), so our encoder must have that depth for the weights to carry over.
    """
    return (int(vision["num_hidden_layers"]) + 1) // 5


def build_ours(sizes: ModelSize, seed: int) -> dict[str, Any]:
    """Our components, randomly initialised under ``seed`` (identical in every process)."""
    from subject_inpainting.models.build import random_components

    return random_components(sizes, seed)


def pixel_stats(encoder: Any) -> tuple[list[float], list[float]]:
    """The reference encoder's input normalisation (OpenAI CLIP's unless its config says otherwise)."""
    from subject_inpainting.models import reference_encoder as module

    mean = getattr(encoder.config, "image_mean", None) or module.CLIP_IMAGE_MEAN
    std = getattr(encoder.config, "image_std", None) or module.CLIP_IMAGE_STD
    return [float(v) for v in mean], [float(v) for v in std]


def build_diffusers(components: dict[str, Any], scheduler: str = "DDIMScheduler", image_encoder: Any = None) -> Any:
    """diffusers' ``PaintByExamplePipeline`` on our weights: same ``unet``/``vae`` objects, converted encoder.

    Args:
        components: our components (``build_ours``, or a pipeline's ``components``).
        scheduler: the diffusers scheduler class, on our training schedule (``PNDMScheduler`` is the released
            pipeline's: PLMS without Runge-Kutta warm-up steps).
        image_encoder: diffusers' ``PaintByExampleImageEncoder`` to use instead of ours converted, for an
            encoder diffusers cannot hold (``to_diffusers_encoder`` says which).
    """
    import diffusers
    import transformers
    from accelerate import init_empty_weights
    from diffusers import PaintByExamplePipeline
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    from subject_inpainting.loaders.diffusers_format import to_diffusers_encoder

    ours = components["reference_encoder"]
    encoder = image_encoder
    if encoder is None:
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
    schedule = {k: v for k, v in components["scheduler"].items() if k != "_class_name"}
    if scheduler == "PNDMScheduler":
        schedule["skip_prk_steps"] = True
    pipe = PaintByExamplePipeline(
        vae=components["vae"],
        image_encoder=encoder.eval(),
        unet=components["unet"],
        scheduler=getattr(diffusers, scheduler).from_config(schedule),
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


def build_pipelines(sizes: ModelSize, seed: int, device: torch.device, dtype: torch.dtype, diffusers: bool):
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
    from subject_inpainting.loaders.subject import DETAIL_PREFIXES, Subject
    from subject_inpainting.models.build import build_component, fill_component
    from subject_inpainting.models.configs import RELEASED_DETAIL_MAPPER
    from subject_inpainting.models.lora import ADAPTER_NAME, add_lora, lora_config
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
        # per UNet evaluation, in the order of ``unet_batches``: its seconds, and whether it ran the whole UNet
        self.unet_seconds: list[float] = []
        self.unet_whole: list[bool] = []
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
        self.unet_seconds = []
        self.unet_whole = []

    def _count_unet_call(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.unet_batches.append(int(sample.shape[0]))
        self.unet_whole.append(True)

    def _start(self, stage: str) -> None:
        synchronize(self.device)
        self._open[stage] = time.perf_counter()
        self.unet_calls += stage == "unet"

    def _stop(self, stage: str) -> None:
        synchronize(self.device)
        seconds = time.perf_counter() - self._open.pop(stage)
        self.totals[stage] += seconds
        if stage == "unet":
            self.unet_seconds.append(seconds)

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
        "unet_seconds": stages.unet_seconds,
        "unet_whole": stages.unet_whole,
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
        "unet_evaluation_median_s": evaluation_medians(records),
        "calls": records,
    }
    for key in ("cuda_peak_gib", "cuda_peak_over_before_gib"):
        if key in records[0]:
            summary[key] = max(r[key] for r in records)
    return summary


def evaluation_medians(records: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds of one UNet evaluation over every call's, by kind: ``"whole b2"`` (the whole UNet at
    batch 2), ``"cached b2"`` (DeepCache's shallow path) ... Within one row, so that the cost of a one-row
    evaluation against a two-row one is read from calls made close together, not from rows run far apart."""
    kinds: dict[str, list[float]] = {}
    for r in records:
        for batch, whole, seconds in zip(r["unet_batches"], r["unet_whole"], r["unet_seconds"], strict=True):
            kinds.setdefault(f"{'whole' if whole else 'cached'} b{batch}", []).append(seconds)
    return {k: statistics.median(v) for k, v in sorted(kinds.items(), key=lambda kv: (kv[0][0] != "w", kv[0]))}


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


def write_results(script: str, out: Path | None, fields: dict[str, Any], started: float) -> dict[str, Any]:
    """A run's results: the command that ran ``benchmarks/<script>``, ``fields``, the seconds since ``started``
    (``time.perf_counter``) and the machine; written as JSON to ``out`` (atomically) when given."""
    result = {
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        **fields,
        "duration_s": time.perf_counter() - started,
        "machine": {**machine_info(torch.device("cpu")), "capability": torch.backends.cpu.get_cpu_capability()},
    }
    if out:
        import json

        from subject_inpainting.utils.files import write_text_atomic

        write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    return result


def run_fields(args: Any) -> dict[str, Any]:
    """The results' ``settings`` (the script's options but ``--out``) and ``model`` (``--quick``'s tiny
    architecture or the released one, random weights) for a script that builds its model with ``build_ours``."""
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "model": "tiny architecture (--quick)" if args.quick else "released architecture, random weights",
    }


def cpu_dtypes(names: str | None) -> list[str]:
    """A ``--dtypes`` value (comma-separated names, ``auto`` among them) → distinct dtype names for the CPU;
    None → float32, and bfloat16 where the CPU computes it natively.

    Raises:
        ValueError: an unknown name.
    """
    from subject_inpainting.devices import resolve_dtype

    chosen = [resolve_dtype(n.strip(), torch.device("cpu")) for n in (names or "float32,auto").split(",")]
    return list(dict.fromkeys(str(d).removeprefix("torch.") for d in chosen))


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
        "simd": [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_int8") if f in flags],
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


def memory_keys(device: str) -> tuple[str, str, str]:
    """The summary keys of the peak and of the peak over before, and the peak's name, for the device."""
    if device.startswith("cuda"):
        return "cuda_peak_gib", "cuda_peak_over_before_gib", "CUDA peak"
    return "peak_rss_gib", "peak_over_before_gib", "peak RSS"


def seconds(r: dict[str, Any]) -> str:
    """A summary's median seconds, with the range in brackets when there were several calls."""
    spread = f" ({r['min_s']:.2f}–{r['max_s']:.2f})" if len(r["calls"]) > 1 else ""
    return f"{r['median_s']:.2f}{spread}"


def format_machine(info: dict[str, Any], settings: str) -> str:
    """Markdown bullets: the machine, the software, ``settings`` (device, dtype ...) and the repository."""
    v = info["versions"]
    threading_env = " ".join(f"{k}={val}" for k, val in info["threading_env"].items())
    lines = [
        f"- CPU: {info['cpu']} ({info['cpu_id']}; {', '.join(info['simd']) or 'no AVX2'}), {info['usable_cpus']} "
        f"usable of {info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']}",
        f"- RAM: {info['ram_gib']} GiB; {info['os']}" + (f"; GPU: {info['gpu']}" if "gpu" in info else ""),
        f"- Python {info['python']}, torch {v['torch']}, diffusers {v['diffusers']}, transformers "
        f"{v['transformers']}, accelerate {v['accelerate']}",
        f"- {settings}; threading environment {threading_env or 'default (no OMP_/GOMP_/KMP_/MKL_ variables)'}",
        f"- date {info['date_utc']}; repository {info['git']}",
    ]
    return "\n".join(lines)
