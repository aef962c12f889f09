"""Training settings: one dataclass for base training and subject fine-tuning, with the original defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MODES = ("base", "subject")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_DECAYS = ("none", "cosine")


@dataclass
class TrainConfig:
    """How to train. The defaults of ``for_mode`` are the original code's settings.

    Attributes:
        mode: ``"base"`` (Paint-by-Example: UNet, class mapper, LayerNorm, projection, unconditional
            vector; loss over the whole latent) or ``"subject"`` (UNet or its LoRA, and the detail module;
            loss on the hole only).
        learning_rate: peak learning rate (AdamW), not scaled by the batch size (as the original).
        warmup_steps, warmup_start: linear warm-up from ``warmup_start × lr`` to ``lr``.
        lr_decay: after the warm-up, ``"none"`` keeps ``lr`` (the original); ``"cosine"`` lowers it along a
            half cosine to 0 at ``max_steps`` (Loshchilov & Hutter 2017).
        batch_size: per process. max_steps: optimiser steps in all.
        uncond_prob: share of examples whose context is replaced by the learned unconditional vector.
        snr_gamma: 0 = the original's unweighted loss; γ > 0 = Min-SNR-γ weighting (faster from scratch).
        lora_rank: subject mode: 0 trains the whole UNet, r > 0 a rank-r LoRA on its attention layers.
        detail_layers, detail_heads, detail_grid: the detail module added when the base has none.
        ema_decay: 0 = no EMA; else the EMA of the trained weights is what gets saved.
        save_every: steps between resumable checkpoints; keep_checkpoints: how many to keep.
        preview_every: steps between preview images (0 = none); preview_steps: sampling steps for them.
    """

    mode: str = "base"
    learning_rate: float = 1e-5
    warmup_steps: int = 10_000
    warmup_start: float = 1e-6
    lr_decay: str = "none"
    batch_size: int = 4
    max_steps: int = 1000
    grad_accum: int = 1
    uncond_prob: float = 0.2
    snr_gamma: float = 0.0
    max_grad_norm: float = 0.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    lora_rank: int = 0
    lora_alpha: float | None = None
    detail_layers: int = 5
    detail_heads: int = 8
    detail_grid: int = 1
    ema_decay: float = 0.0
    seed: int = 0
    save_every: int = 500
    keep_checkpoints: int = 2
    preview_every: int = 0
    preview_steps: int = 20
    log_every: int = 10
    num_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_mode(cls, mode: str, **overrides: Any) -> TrainConfig:
        """The original settings of ``mode``, then ``overrides`` (None values are ignored)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        defaults = {"mode": mode}
        if mode == "subject":
            defaults.update(learning_rate=1e-4, warmup_start=1e-5)
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**defaults)
        config.validate()
        return config

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        positive = (
            "batch_size",
            "max_steps",
            "grad_accum",
            "save_every",
            "keep_checkpoints",
            "preview_steps",
            "log_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or not 0 < self.warmup_start <= 1:
            raise ValueError(
                f"warm-up needs warmup_steps >= 0 and 0 < warmup_start <= 1, "
                f"got {self.warmup_steps}, {self.warmup_start}"
            )
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        if self.snr_gamma < 0:
            raise ValueError(f"snr_gamma must be >= 0, got {self.snr_gamma}")
        if not 0 <= self.uncond_prob <= 1:
            raise ValueError(f"uncond_prob must be in [0, 1], got {self.uncond_prob}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.lora_rank < 0 or (self.lora_rank and self.mode != "subject"):
            raise ValueError(f"lora_rank applies to subject fine-tuning and must be >= 0, got {self.lora_rank}")
        if self.detail_layers < 0 or self.detail_heads < 1 or self.detail_grid < 1:
            raise ValueError(
                f"detail module: layers >= 0, heads >= 1, grid >= 1; got {self.detail_layers}, "
                f"{self.detail_heads}, {self.detail_grid}"
            )
        if self.preview_every < 0 or self.num_workers < 0 or self.max_grad_norm < 0:
            raise ValueError("preview_every, num_workers and max_grad_norm must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based): the original's linear warm-up, then flat or
        (``lr_decay="cosine"``) a half cosine down to 0 at ``max_steps``."""
        if self.warmup_steps == 0 or step >= self.warmup_steps:
            if self.lr_decay == "none":
                return self.learning_rate
            span = max(1, self.max_steps - self.warmup_steps)
            done = min(1.0, (step - self.warmup_steps) / span)
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * done))
        share = step / self.warmup_steps
        return self.learning_rate * (self.warmup_start + (1 - self.warmup_start) * share)

    # What must not change between a run and its resumption.
    RESUME_KEYS = (
        "mode",
        "learning_rate",
        "warmup_steps",
        "warmup_start",
        "lr_decay",
        "batch_size",
        "grad_accum",
        "uncond_prob",
        "snr_gamma",
        "lora_rank",
        "lora_alpha",
        "detail_layers",
        "detail_heads",
        "detail_grid",
        "ema_decay",
        "seed",
    )


def check_config(config: object, mode: str) -> TrainConfig:
    """``config`` if it is a ``TrainConfig`` of ``mode`` (a run spec's check)."""
    if not isinstance(config, TrainConfig) or config.mode != mode:
        raise ValueError(f"config {config!r}: expected a TrainConfig of mode {mode!r}")
    return config
