"""Tiny configurations of every component: for tests, smoke runs and quick benchmarks.

A first-class small configuration (as nanoGPT's "baby" config): the same code paths as the full-size
model, built in milliseconds on a CPU. The UNet works on 16×16 latents, the VAE downsamples by 2, so the
model's resolution is 32 pixels.
"""

from __future__ import annotations

from typing import Any

import torch

from .build import build_component
from .configs import RELEASED_LDM_PARAMS, reference_encoder_config, scheduler_config_from_ldm

TINY_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 32,
}
TINY_UNET: dict[str, Any] = {
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
TINY_VAE: dict[str, Any] = {
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
# The released model's noise schedule: the tiny model differs in size only.
TINY_SCHEDULE: dict[str, Any] = scheduler_config_from_ldm(RELEASED_LDM_PARAMS)


def tiny_components(seed: int = 0, detail_layers: int = 0, detail_grid: int = 1) -> dict[str, Any]:
    """Tiny UNet (9 input channels), VAE and reference encoder with random weights drawn under ``seed``."""
    torch.manual_seed(seed)
    enc_cfg = reference_encoder_config(
        TINY_VISION,
        context_dim=TINY_UNET["cross_attention_dim"],
        class_mapper_layers=2,
        detail_mapper_layers=detail_layers,
        detail_mapper_heads=4,
        detail_grid=detail_grid,
    )
    return {
        "unet": build_component("unet", TINY_UNET).eval(),
        "vae": build_component("vae", TINY_VAE).eval(),
        "reference_encoder": build_component("reference_encoder", enc_cfg).eval(),
        "scheduler": dict(TINY_SCHEDULE),
    }
