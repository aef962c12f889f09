"""The one training loop, for base training (Paint-by-Example) and subject fine-tuning.

One GPU, several, or several nodes through ``accelerate launch``; mixed precision; gradient
checkpointing; EMA; linear LR warm-up; exact resumption. Exactness of resumption comes from making every
random draw a function of the run's seed and the step: the data order of an epoch from ``(seed, epoch)``,
each example's augmentation from ``(seed, epoch, index)`` (the dataset), and the step's timesteps, noise,
VAE samples and unconditional dropout from ``(seed, micro-step, process)``. A resumed run therefore sees
exactly what the uninterrupted run would have seen.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..sampling.schedule import alphas_cumprod, prediction_type
from ..utils.files import check_output_folder, replacement_folder
from . import checkpoints as ckpt
from .config import TrainConfig
from .ema import EMA
from .latents import FIELDS as LATENT_FIELDS
from .latents import encode_example, sample_latents
from .losses import inpainting_loss

BASE_ENCODER_PARTS = ("class_mapper.", "class_norm.", "class_proj.", "uncond_vector")
DETAIL_ENCODER_PARTS = ("detail_mapper.", "detail_norm.", "detail_proj.")


class TrainingError(ValueError):
    """A training run that cannot start or go on (bad folder, changed settings ...): one line."""


class Trainable(nn.Module):
    """The trained modules as ONE module (what DDP wraps): UNet and reference encoder.

    ``forward`` returns the loss for a batch whose random draws were made by the loop.
    """

    def __init__(
        self,
        unet: nn.Module,
        encoder: nn.Module,
        hole_only: bool,
        alphas: torch.Tensor,
        snr_gamma: float = 0.0,
        prediction_type: str = "epsilon",
    ):
        super().__init__()
        self.unet = unet
        self.encoder = encoder
        self.hole_only = hole_only
        self.snr_gamma = snr_gamma
        self.prediction_type = prediction_type
        self.register_buffer("alphas", alphas, persistent=False)

    def forward(self, x_start, t, noise, reference, drop) -> torch.Tensor:
        """x_start ``(B, 9, h, w)``; t ``(B,)``; noise ``(B, 4, h, w)``; reference ``(B, 3, S, S)``;
        drop ``(B,)`` bool: use the learned unconditional vector instead of the reference."""
        context = self.encoder(reference)  # (B, T, C)
        mask = None
        if bool(drop.any()):
            uncond = self.encoder.unconditional(context.shape[0]).to(context.dtype)  # (B, 1, C)
            keep = (~drop)[:, None, None]
            if context.shape[1] == 1:
                context = torch.where(keep, context, uncond)
            else:  # [class, detail...] → [∅, padding] with the padding masked out, as at sampling time
                padded = torch.cat([uncond, torch.zeros_like(context[:, 1:])], dim=1)
                context = torch.where(keep, context, padded)
                mask = torch.ones(context.shape[:2], device=context.device, dtype=context.dtype)
                mask[drop, 1:] = 0
        return inpainting_loss(
            self.unet,
            x_start,
            t,
            noise,
            context,
            self.alphas,
            self.hole_only,
            mask,
            self.snr_gamma,
            self.prediction_type,
        )


def trainable_parameters(unet: nn.Module, encoder: nn.Module, mode: str, lora: bool) -> dict[str, nn.Parameter]:
    """Freeze everything, then unfreeze what ``mode`` trains; returns those parameters by name."""
    for p in [*unet.parameters(), *encoder.parameters()]:
        p.requires_grad_(False)
    chosen: dict[str, nn.Parameter] = {}
    for name, p in unet.named_parameters():
        if not lora or "lora_" in name:
            chosen[f"unet.{name}"] = p
    parts = BASE_ENCODER_PARTS if mode == "base" else DETAIL_ENCODER_PARTS
    for name, p in encoder.named_parameters():
        if name.startswith(parts):
            chosen[f"encoder.{name}"] = p
    for p in chosen.values():
        p.requires_grad_(True)
    return chosen


def epoch_batches(n: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation of the ``n`` examples drawn from ``(seed, epoch)``, cut into
    batches of ``global_batch`` (an incomplete last batch is dropped; fewer examples than one batch are
    repeated to fill it)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    while len(order) < global_batch:
        order += torch.randperm(n, generator=g).tolist()
    return [order[i : i + global_batch] for i in range(0, len(order) - global_batch + 1, global_batch)]


def batch_plan(n: int, global_batch: int, seed: int, start: int, procedural: bool):
    """The global batches of example ids from micro-step ``start`` on, as ``(epoch, batches)`` pairs: a
    finite dataset's epochs (``epoch_batches``; the first one entered at ``start``'s place), or a procedural
    dataset's single endless pass (``epoch`` None; micro-step m reads ids ``m * global_batch ...``)."""
    if procedural:
        yield None, (list(range(m * global_batch, (m + 1) * global_batch)) for m in itertools.count(start))
        return
    epoch, position = divmod(start, len(epoch_batches(n, global_batch, seed, 0)))
    while True:
        yield epoch, epoch_batches(n, global_batch, seed, epoch)[position:]
        epoch, position = epoch + 1, 0


def load_batches(dataset, plan, rank: int, batch_size: int, num_workers: int):
    """This process's examples of every micro-step, in order, as lists of items: read in the loop's process
    (``num_workers`` 0) or by a ``DataLoader``'s worker processes, one loader per epoch so that each epoch's
    workers copy the dataset after ``set_epoch``. Items depend only on (seed, epoch, index), so both give
    the same examples."""
    for epoch, batches in plan:
        if epoch is not None:
            dataset.set_epoch(epoch)
        local = (ids[rank * batch_size : (rank + 1) * batch_size] for ids in batches)
        if num_workers == 0:
            yield from ([dataset[i] for i in ids] for ids in local)
        else:
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=local, num_workers=num_workers, collate_fn=list)
            yield from loader


def step_generator(seed: int, micro_step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_step) * 4099 + rank)


@dataclass
class Run:
    """What the loop needs besides the settings: components, data, and how to publish results."""

    components: dict[str, Any]  # unet, vae, reference_encoder, scheduler
    dataset: Any  # InpaintingExamples-like: __len__, __getitem__, set_epoch
    out: Path
    publish: Callable[[dict[str, Any], Path], None]  # writes the final model/subject into OUT
    fingerprint: dict[str, Any]  # what identifies the run's data and base (must match on resumption)
    preview: Callable[[dict[str, Any], int], Image.Image | None] | None = None
    progress: bool = True


def work_folder(out: Path, overwrite: bool) -> Path:
    """Where a run writes: ``out``, or with ``overwrite`` of an existing folder a new folder beside it that
    replaces ``out`` only when the run finishes (``utils.files.replacing``), so that an interrupted run
    leaves the old folder whole. Every process computes the same before any writes."""
    out = Path(out)
    return replacement_folder(out) if overwrite and out.is_dir() and any(out.iterdir()) else out


def prepare_output(
    out: Path, config: TrainConfig, fingerprint: dict[str, Any], overwrite: bool, accelerator=None
) -> Path:
    """Check that ``out`` is new, a run of the same settings to resume, or (``overwrite``) a folder the project
    wrote, to be replaced; returns the folder the run writes (``work_folder``; run inside
    ``utils.files.replacing``). With several processes, the main one does it while the others wait.

    Raises:
        OutputError: ``out`` may not be written or replaced (``utils.files.check_output_folder``).
        TrainingError: ``out`` holds a run with other settings.
    """
    work = work_folder(out, overwrite)
    if accelerator is not None and accelerator.num_processes > 1:
        if accelerator.is_main_process:
            prepare_output(out, config, fingerprint, overwrite)
        accelerator.wait_for_everyone()
        return work
    out = Path(out)
    run = {"config": {k: getattr(config, k) for k in TrainConfig.RESUME_KEYS}, **fingerprint}
    mode = check_output_folder(out, kinds=(f"{config.mode}-training",), overwrite=overwrite, resume=True)
    if mode == "replace":
        shutil.rmtree(work, ignore_errors=True)  # an earlier replacement that did not finish: start over
    elif mode == "resume":
        previous = ckpt.read_run(out)
        previous["config"] = {"lr_decay": "none", **previous["config"]}  # runs from before the option
        if previous != run:
            changed = sorted(
                k
                for k in set(previous["config"]) | set(run["config"])
                if previous["config"].get(k) != run["config"].get(k)
            ) + sorted(k for k in run if k != "config" and previous.get(k) != run.get(k))
            raise TrainingError(
                f"--out {out}: holds a run with other settings ({', '.join(changed)}); resume it with the same "
                "settings, or use another --out (or --overwrite to start over)"
            )
    ckpt.write_run(work, run)
    return work


def make_accelerator(config: TrainConfig, out: Path, device: str = "auto"):
    """An ``Accelerator`` logging to TensorBoard in ``out`` (when installed); ``device="cpu"`` forces the
    CPU (a single process; several GPUs or nodes come from ``accelerate launch``)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise TrainingError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on this machine")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
        log_with="tensorboard" if _has_tensorboard() else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out)),
        cpu=device == "cpu",
    )


def train(config: TrainConfig, run: Run, accelerator=None) -> dict[str, Any]:
    """Train; returns ``{"step", "losses", "out"}``. Resumes from the newest checkpoint in ``run.out``."""
    config.validate()
    out = Path(run.out)
    accelerator = accelerator or make_accelerator(config, out)
    log_with = "tensorboard" if accelerator.log_with else None
    c = run.components
    unet, vae, encoder = c["unet"], c["vae"], c["reference_encoder"]
    lora = config.mode == "subject" and config.lora_rank > 0
    params = trainable_parameters(unet, encoder, config.mode, lora)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    vae.requires_grad_(False).eval()
    model = Trainable(
        unet,
        encoder,
        config.mode == "subject",
        alphas_cumprod(c["scheduler"]),
        config.snr_gamma,
        prediction_type(c["scheduler"]),
    )
    model.train()
    encoder.vision_model.eval()  # frozen tower: no dropout statistics to update
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr_at(0))
    ema = EMA(params, config.ema_decay) if config.ema_decay > 0 else None

    start = 0
    resume = ckpt.list_checkpoints(out)
    if resume:
        state = ckpt.load_checkpoint(resume[-1])
        missing = set(params) - set(state["trainable"])
        if missing:
            raise TrainingError(f"{resume[-1]}: checkpoint lacks {len(missing)} trained weights; is it this run's?")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(state["trainable"][k].to(p.dtype))
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        start = state["step"]
    model, optimizer = accelerator.prepare(model, optimizer)
    vae.to(accelerator.device)
    if log_with and accelerator.is_main_process:
        accelerator.init_trackers("logs", config=_flat_config(config))  # TensorBoard in OUT/logs

    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = config.batch_size * world
    # A procedural dataset (every index a new example) is read in order, one pass; a finite one in epochs.
    procedural = getattr(run.dataset, "procedural", False)
    micro = start * config.grad_accum
    plan = batch_plan(len(run.dataset), global_batch, config.seed, micro, procedural)
    batches = load_batches(run.dataset, plan, rank, config.batch_size, config.num_workers)
    losses: list[float] = []
    bar = tqdm(
        total=config.max_steps,
        initial=start,
        desc=f"training ({config.mode})",
        unit="step",
        disable=not (accelerator.is_main_process and run.progress),
    )
    step = start
    while step < config.max_steps:
        batch = _collate(next(batches), accelerator.device)
        g = step_generator(config.seed, micro, rank)
        with accelerator.accumulate(model):
            x_start, t, noise, drop = _draw(batch, vae, c["scheduler"], config.uncond_prob, g)
            loss = model(x_start, t, noise, batch["reference"], drop)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(list(params.values()), config.max_grad_norm)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        micro += 1
        if not accelerator.sync_gradients:
            continue
        step += 1
        if ema is not None:
            ema.update(params)
        value = accelerator.gather(loss.detach()[None]).mean().item()
        losses.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}")
        if log_with and step % config.log_every == 0:
            accelerator.log({"loss": value, "lr": config.lr_at(step - 1)}, step=step)
        if step % config.save_every == 0 or step == config.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                ckpt.save_checkpoint(
                    out, step, params, _inner(optimizer), ema.state_dict() if ema else None, config.keep_checkpoints
                )
        if run.preview and config.preview_every and step % config.preview_every == 0 and accelerator.is_main_process:
            _preview(run, c, ema, params, step, accelerator, log_with)
    bar.close()
    batches.close()  # stops the DataLoader's workers now, not at garbage collection
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(params)  # what is published is the EMA
        unet.eval()
        encoder.eval()
        run.publish(c, out)
    accelerator.end_training()
    return {"step": step, "losses": losses, "out": out}


def _draw(batch, vae, schedule, uncond_prob, g):
    """The step's random draws, all from ``g``: VAE posterior samples (as the original's training), the
    timesteps, the noise and the unconditional dropout."""
    sf = vae.config.scaling_factor
    if "scene_mean" in batch:  # a latent cache (training.latents): the posteriors were computed once
        z0, z_masked = (z * sf for z in sample_latents(batch, g))
        keep_latent = batch["keep_latent"]
    else:
        scene, masked, keep_latent = encode_example(vae, batch["pixel_values"], batch["keep_mask"])
        z0 = scene.sample(generator=g) * sf
        z_masked = masked.sample(generator=g) * sf
    b = z0.shape[0]
    x_start = torch.cat([z0.float(), z_masked.float(), keep_latent], dim=1)
    t = torch.randint(0, int(schedule["num_train_timesteps"]), (b,), generator=g).to(z0.device)
    noise = torch.randn(z0.shape, generator=g).to(z0.device)
    drop = (torch.rand(b, generator=g) < uncond_prob).to(z0.device)
    return x_start, t, noise, drop


def _collate(items: list[dict[str, torch.Tensor]], device) -> dict[str, torch.Tensor]:
    keys = LATENT_FIELDS if "scene_mean" in items[0] else ("pixel_values", "keep_mask", "reference")
    return {k: torch.stack([it[k] for it in items]).to(device) for k in keys}


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)


def _preview(run: Run, components, ema, params, step, accelerator, log_with) -> None:
    backup = None
    if ema is not None:  # preview what would be published: the EMA weights
        backup = {k: p.detach().clone() for k, p in params.items()}
        ema.copy_to(params)
    try:
        image = run.preview(components, step)
    finally:
        if backup is not None:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(backup[k])
        components["unet"].train()
        components["reference_encoder"].train()
        components["reference_encoder"].vision_model.eval()
    if image is None:
        return
    from ..imaging import save_image_atomic

    save_image_atomic(image, run.out / "previews" / f"step-{step:08d}.png")
    if log_with:
        tracker = accelerator.get_tracker("tensorboard", unwrap=True)
        tracker.add_image("preview", np.asarray(image).transpose(2, 0, 1), step)


def _flat_config(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))}


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("SI_NO_TENSORBOARD") is None
