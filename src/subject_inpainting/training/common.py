"""What base training and subject fine-tuning share: options and previews."""

from __future__ import annotations

import argparse
import copy
from typing import TYPE_CHECKING, Any

from .. import imaging
from ..utils.parse import float_option, int_option, seed_option
from .config import LR_DECAYS, MIXED_PRECISION, TrainConfig

if TYPE_CHECKING:
    from PIL import Image

# Bounds of the counts (documented in the README's reliability section): past them a run is a typo.
MAX_STEPS = 100_000_000
MAX_BATCH = 4096
MAX_WORKERS = 256


def add_training_args(p: argparse.ArgumentParser, mode: str) -> None:
    """Options of the loop; their defaults (None) fall back to ``TrainConfig.for_mode(mode)``."""
    d = TrainConfig.for_mode(mode)
    g = p.add_argument_group("training")
    g.add_argument(
        "--lr", type=float_option(1e-12, 1.0), help=f"peak learning rate, AdamW (default {d.learning_rate:g})"
    )
    g.add_argument(
        "--warmup-steps", type=int_option(0, MAX_STEPS), help=f"linear warm-up steps (default {d.warmup_steps})"
    )
    g.add_argument(
        "--warmup-start",
        type=float_option(1e-12, 1.0),
        help=f"warm-up starts at this share of the learning rate (default {d.warmup_start:g})",
    )
    g.add_argument(
        "--lr-decay",
        choices=LR_DECAYS,
        help="after the warm-up: none (flat, the original) or cosine (down to 0 at --max-steps) (default none)",
    )
    g.add_argument(
        "--batch-size", type=int_option(1, MAX_BATCH), help=f"examples per step and process (default {d.batch_size})"
    )
    g.add_argument("--grad-accum", type=int_option(1, MAX_BATCH), help="micro-batches per optimiser step (default 1)")
    g.add_argument(
        "--uncond-prob",
        type=float_option(0.0, 1.0),
        help=f"share of examples trained with the unconditional vector (default {d.uncond_prob:g})",
    )
    g.add_argument(
        "--snr-gamma",
        type=float_option(0.0, 1000.0),
        help="Min-SNR-γ loss weighting, e.g. 5 (default 0 = off, the original)",
    )
    g.add_argument(
        "--max-grad-norm", type=float_option(0.0, 1e6), help="clip gradients to this norm (default 0 = no clipping)"
    )
    g.add_argument("--mixed-precision", choices=MIXED_PRECISION, help="no, fp16 (CUDA) or bf16 (default no)")
    g.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        default=None,
        help="recompute UNet activations in the backward pass (less memory, slower)",
    )
    g.add_argument(
        "--ema-decay", type=float_option(0.0, 0.999999), help="keep and publish an EMA of the weights (default 0 = off)"
    )
    g.add_argument("--seed", type=seed_option, help="seed of everything random in the run (default 0)")
    g.add_argument(
        "--save-every",
        type=int_option(1, MAX_STEPS),
        help=f"steps between resumable checkpoints (default {d.save_every})",
    )
    g.add_argument(
        "--keep-checkpoints", type=int_option(1, 1000), help=f"checkpoints kept (default {d.keep_checkpoints})"
    )
    g.add_argument(
        "--preview-every",
        type=int_option(0, MAX_STEPS),
        help="steps between preview images in OUT/previews (default 0 = none)",
    )
    g.add_argument(
        "--preview-steps", type=int_option(1, 1000), help=f"sampling steps of a preview (default {d.preview_steps})"
    )
    g.add_argument(
        "--log-every",
        type=int_option(1, MAX_STEPS),
        help=f"steps between TensorBoard points in OUT/logs (default {d.log_every})",
    )
    g.add_argument(
        "--num-workers",
        type=int_option(0, MAX_WORKERS),
        help="processes reading training examples (default 0: the training process itself)",
    )
    g.add_argument(
        "--cut-reference",
        action="store_true",
        help="cut the subject out of each reference with its mask, onto white: for models trained on references "
        "without background, such as the toy model (needs a mask for every image; the toy world has them)",
    )
    g.add_argument(
        "--device",
        default="auto",
        help="single-process device: auto, cpu, cuda (several GPUs: `accelerate launch`) (default auto)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="delete OUT and start over (otherwise a run in OUT with the same settings is resumed)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, mode: str, **extra: Any) -> TrainConfig:
    """``TrainConfig`` from parsed options (the mode's defaults where an option is not given)."""
    return TrainConfig.for_mode(
        mode,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        warmup_start=args.warmup_start,
        lr_decay=args.lr_decay,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        uncond_prob=args.uncond_prob,
        snr_gamma=args.snr_gamma,
        max_grad_norm=args.max_grad_norm,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        ema_decay=args.ema_decay,
        seed=args.seed,
        save_every=args.save_every,
        keep_checkpoints=args.keep_checkpoints,
        preview_every=args.preview_every,
        preview_steps=args.preview_steps,
        log_every=args.log_every,
        num_workers=args.num_workers,
        **extra,
    )


def preview_function(dataset, mode: str, steps: int, count: int = 4):
    """A preview: for the first ``count`` examples (of epoch 0, fixed), scene | hole | reference | result,
    sampled with the model being trained (plain guidance; in subject mode the fine-tuned model alone)."""
    import torch
    from PIL import Image

    from ..pipeline import SubjectInpaintPipeline

    fixed = copy.copy(dataset)  # its own epoch: previews must not move the training data's epoch
    fixed.set_epoch(0)
    examples = [fixed[i] for i in range(min(count, len(fixed)))]

    def preview(components: dict[str, Any], step: int) -> Image.Image:
        pipe = SubjectInpaintPipeline(**components)
        enc = pipe.reference_encoder
        rows = []
        for ex in examples:
            scene = Image.fromarray(imaging.tensor_to_rgb((ex["pixel_values"][None] + 1) / 2)[0])
            hole = Image.fromarray(((1 - ex["keep_mask"][0].numpy()) * 255).astype("uint8"))
            result = pipe(
                scene,
                ex["reference"][None],
                mask=hole,
                num_inference_steps=steps,
                sampler="ddim",
                generator=torch.Generator().manual_seed(0),
                progress=False,
                preset="original",
            )
            rows.append(
                [
                    scene,
                    hole,
                    imaging.reference_to_image(ex["reference"], enc.image_mean, enc.image_std),
                    result.images[0],
                ]
            )
        return imaging.image_grid(rows, cell=max(64, pipe.resolution))

    return preview
