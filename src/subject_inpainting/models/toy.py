"""The toy world's model sizes: small enough to train on a CPU in about an hour, big enough to paint
recognisable subjects at 64 × 64 pixels.

The VAE downsamples by 4 into 8 channels (16 × 16 × 8 latents): fewer channels, or downsampling by 8, lose
the subjects' colours and patterns. The UNet is narrow, so that an hour on a CPU buys many training steps:
a small model needs steps more than width. It has SD-v1's block order, attention at 16 × 16 and 8 × 8 but
none at 4 × 4, which draws outlines better than attention at the coarse levels only. The vision tower is a
small ViT with 4-pixel patches on 32-pixel references (an 8 × 8 grid of patch tokens, so that the detail
module has fine detail to pool). docs/toy.md has the runs behind these choices.
"""

from __future__ import annotations

from typing import Any

TOY_RESOLUTION = 64

TOY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 8,  # 4 lose the subjects' colours
    "norm_num_groups": 16,
    "sample_size": TOY_RESOLUTION,
    "scaling_factor": 1.0,  # replaced by 1 / std of the trained VAE's latents
}
TOY_UNET: dict[str, Any] = {
    "sample_size": TOY_RESOLUTION // 4,
    "in_channels": 17,  # noisy latent + masked-scene latent + mask
    "out_channels": 8,
    "block_out_channels": [64, 64, 128],
    # SD-v1's order, attention at the two finer levels: the painted outlines follow the reference's shape
    # more often than with attention at the coarse levels only
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "cross_attention_dim": 128,
    "norm_num_groups": 16,
}
TOY_VISION: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 4,
    "projection_dim": 128,
}
TOY_CLASS_MAPPER = {"layers": 2, "heads": 1}
TOY_DETAIL_MAPPER = {"layers": 2, "heads": 4}
TOY_EVALUATOR: dict[str, Any] = {"image_size": 32, "channels": [32, 64, 128], "embed_dim": 128}
