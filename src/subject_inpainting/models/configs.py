"""Architectures as configs: the registry of model sizes, and LDM YAML → diffusers configs.

``MODEL_SIZES`` names every size the project builds (as DiT's ``DiT_models``): ``"sd-v1"``, the released
Paint-by-Example layout read from its published configuration (SD-v1 ``v1-inference.yaml`` with a 9-channel
input, CLIP ViT-L/14); ``"tiny"``, the same code paths built in milliseconds on a CPU (tests, smoke runs,
quick benchmarks); ``"toy"``, the embedded model trained on the toy world.

The original code describes its UNet and VAE with LDM-style parameters (``model_channels``,
``channel_mult``, ``attention_resolutions`` ...). The project runs them as ``diffusers``
``UNet2DConditionModel`` / ``AutoencoderKL``, whose configs these functions derive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The released Paint-by-Example model (``configs/v1.yaml`` of the original repository).
RELEASED_LDM_PARAMS: dict[str, Any] = {
    "linear_start": 0.00085,
    "linear_end": 0.012,
    "timesteps": 1000,
    "image_size": 64,
    "channels": 4,
    "scale_factor": 0.18215,
    "unet_config": {
        "params": {
            "image_size": 32,
            "in_channels": 9,
            "out_channels": 4,
            "model_channels": 320,
            "attention_resolutions": [4, 2, 1],
            "num_res_blocks": 2,
            "channel_mult": [1, 2, 4, 4],
            "num_heads": 8,
            "use_spatial_transformer": True,
            "transformer_depth": 1,
            "context_dim": 768,
            "legacy": False,
        }
    },
    "first_stage_config": {
        "params": {
            "embed_dim": 4,
            "ddconfig": {
                "double_z": True,
                "z_channels": 4,
                "resolution": 256,
                "in_channels": 3,
                "out_ch": 3,
                "ch": 128,
                "ch_mult": [1, 2, 4, 4],
                "num_res_blocks": 2,
                "attn_resolutions": [],
                "dropout": 0.0,
            },
        }
    },
}

# openai/clip-vit-large-patch14, vision half (``transformers.CLIPVisionConfig`` keyword arguments).
CLIP_VIT_L14_VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}

# Paint-by-Example's class mapper and the subject model's detail mapper (original code and README).
RELEASED_CLASS_MAPPER = {"layers": 5, "heads": 1}
RELEASED_DETAIL_MAPPER = {"layers": 5, "heads": 8}


def _ldm_params(ldm_config: dict[str, Any]) -> dict[str, Any]:
    """Accept a whole LDM YAML (``model: {target, params}``), its ``model`` entry, or its ``params``."""
    cfg = ldm_config.get("model", ldm_config)
    return cfg.get("params", cfg)


def scheduler_config_from_ldm(ldm_config: dict[str, Any]) -> dict[str, Any]:
    """The training noise schedule as a ``diffusers`` ``DDIMScheduler`` config.

    LDM's default ``beta_schedule="linear"`` is ``linspace(sqrt(start), sqrt(end))²``, which diffusers
    calls ``"scaled_linear"``. ``steps_offset=1`` and ``set_alpha_to_one=False`` reproduce the original
    DDIM/PLMS discretisation (timesteps ``… + 1``, final ``alpha_prev = alphas_cumprod[0]``).
    """
    p = _ldm_params(ldm_config)
    schedule = p.get("beta_schedule", "linear")
    if schedule != "linear":
        raise ValueError(f"LDM beta_schedule {schedule!r} is not supported (expected 'linear')")
    parameterization = p.get("parameterization", "eps")
    if parameterization not in ("eps", "v"):
        raise ValueError(f"LDM parameterization {parameterization!r} is not supported (expected 'eps' or 'v')")
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": int(p.get("timesteps", 1000)),
        "beta_start": float(p.get("linear_start", 0.00085)),
        "beta_end": float(p.get("linear_end", 0.012)),
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon" if parameterization == "eps" else "v_prediction",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }


def unet_config_from_ldm(ldm_config: dict[str, Any]) -> dict[str, Any]:
    """``UNet2DConditionModel`` keyword arguments equivalent to an LDM ``openaimodel.UNetModel``.

    A level ``l`` (downsampling factor ``2**l``) has cross-attention iff ``2**l`` is in
    ``attention_resolutions``; the middle block always has it (SD-v1 layout). Heads per level come from
    ``num_heads`` or, if given, ``num_head_channels``.
    """
    p = _ldm_params(ldm_config)
    u = p["unet_config"]["params"]
    if not u.get("use_spatial_transformer", False):
        raise ValueError("only LDM UNets with use_spatial_transformer: true (cross-attention) are supported")
    if not isinstance(u["num_res_blocks"], int):
        raise ValueError(f"num_res_blocks must be one integer, got {u['num_res_blocks']!r}")
    mult = list(u["channel_mult"])
    channels = [u["model_channels"] * m for m in mult]
    attn = [2**level in u["attention_resolutions"] for level in range(len(mult))]
    head_channels = u.get("num_head_channels", -1)
    heads = [c // head_channels if head_channels not in (-1, None) else u["num_heads"] for c in channels]
    depth = u.get("transformer_depth", 1)
    return {
        "sample_size": int(p.get("image_size", u.get("image_size", 64))),
        "in_channels": u["in_channels"],
        "out_channels": u["out_channels"],
        "block_out_channels": channels,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "layers_per_block": u["num_res_blocks"],
        "attention_head_dim": heads,  # diffusers' historical name: it is the number of heads
        "cross_attention_dim": u["context_dim"],
        "transformer_layers_per_block": depth,
        "use_linear_projection": bool(u.get("use_linear_in_transformer", False)),
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "act_fn": "silu",
    }


def vae_config_from_ldm(ldm_config: dict[str, Any]) -> dict[str, Any]:
    """``AutoencoderKL`` keyword arguments equivalent to an LDM KL autoencoder (``first_stage_config``)."""
    p = _ldm_params(ldm_config)
    fs = p["first_stage_config"]["params"]
    dd = fs["ddconfig"]
    if dd.get("attn_resolutions"):
        raise ValueError(
            f"LDM autoencoders with attention inside the resolution levels are not supported "
            f"(attn_resolutions={dd['attn_resolutions']})"
        )
    if not dd.get("double_z", True):
        raise ValueError("only KL autoencoders (double_z: true) are supported")
    n = len(dd["ch_mult"])
    return {
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": [dd["ch"] * m for m in dd["ch_mult"]],
        "layers_per_block": dd["num_res_blocks"],
        "latent_channels": fs["embed_dim"],
        "norm_num_groups": 32,
        "sample_size": dd["resolution"],
        "scaling_factor": float(p.get("scale_factor", 1.0)),
    }


def reference_encoder_config(
    vision_config: dict[str, Any],
    context_dim: int,
    class_mapper_layers: int = RELEASED_CLASS_MAPPER["layers"],
    class_mapper_heads: int = RELEASED_CLASS_MAPPER["heads"],
    detail_mapper_layers: int = 0,
    detail_mapper_heads: int = RELEASED_DETAIL_MAPPER["heads"],
    class_token: str = "pooled",
    detail_grid: int = 1,
) -> dict[str, Any]:
    """``ReferenceEncoder`` keyword arguments; the defaults are Paint-by-Example's."""
    return {
        "vision_config": dict(vision_config),
        "context_dim": int(context_dim),
        "class_mapper_layers": class_mapper_layers,
        "class_mapper_heads": class_mapper_heads,
        "class_token": class_token,
        "detail_mapper_layers": detail_mapper_layers,
        "detail_mapper_heads": detail_mapper_heads,
        "detail_grid": detail_grid,
    }


@dataclass(frozen=True)
class ModelSize:
    """The configs of every component of one model size (``MODEL_SIZES``).

    Attributes:
        description: what the size is, in a few words.
        resolution: the side of the pictures the model paints, in pixels.
        unet, vae: ``UNet2DConditionModel`` / ``AutoencoderKL`` keyword arguments.
        vision: the reference encoder's vision tower (``transformers.CLIPVisionConfig`` keyword arguments).
        class_mapper, detail_mapper: ``{"layers", "heads"}`` of the class mapper and of the detail module a
            subject adds.
        schedule: the training noise schedule (a ``DDIMScheduler`` config).
    """

    description: str
    resolution: int
    unet: dict[str, Any]
    vae: dict[str, Any]
    vision: dict[str, Any]
    class_mapper: dict[str, int]
    detail_mapper: dict[str, int]
    schedule: dict[str, Any]

    def reference_encoder_config(self, detail_layers: int = 0, detail_grid: int = 1) -> dict[str, Any]:
        """``ReferenceEncoder`` keyword arguments of this size, with a detail module of ``detail_layers``
        blocks (0: none) pooling ``detail_grid`` × ``detail_grid`` tokens."""
        return reference_encoder_config(
            self.vision,
            self.unet["cross_attention_dim"],
            class_mapper_layers=self.class_mapper["layers"],
            class_mapper_heads=self.class_mapper["heads"],
            detail_mapper_layers=detail_layers,
            detail_mapper_heads=self.detail_mapper["heads"],
            detail_grid=detail_grid,
        )


# The toy model: small enough to train on a CPU, big enough to paint recognisable subjects
# at 64 × 64 pixels. The VAE downsamples by 4 into 8 channels (16 × 16 × 8 latents): fewer channels, or
# downsampling by 8, lose the subjects' colours and patterns. The UNet is narrow, so that a CPU's training time
# buys many steps: a small model needs steps more than width. It has SD-v1's block order,
# attention at 16 × 16 and 8 × 8 but none at 4 × 4, which draws outlines better than attention at the
# coarse levels only. The vision tower is a small ViT with 4-pixel patches on 32-pixel references (an
# 8 × 8 grid of patch tokens, so that the detail module has fine detail to pool). docs/toy.md has the runs
# behind these choices.
_TOY_RESOLUTION = 64

MODEL_SIZES: dict[str, ModelSize] = {
    "sd-v1": ModelSize(
        "full (SD-v1 UNet, KL-f8 VAE, CLIP ViT-L/14)",
        resolution=512,
        unet=unet_config_from_ldm(RELEASED_LDM_PARAMS),
        vae=vae_config_from_ldm(RELEASED_LDM_PARAMS),
        vision=CLIP_VIT_L14_VISION,
        class_mapper=RELEASED_CLASS_MAPPER,
        detail_mapper=RELEASED_DETAIL_MAPPER,
        schedule=scheduler_config_from_ldm(RELEASED_LDM_PARAMS),
    ),
    # The same code paths as the full size: a UNet on 16 × 16 latents and a VAE downsampling by 2 (32 pixels).
    "tiny": ModelSize(
        "tiny",
        resolution=32,
        unet={
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
        },
        vae={
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "block_out_channels": [32, 32],
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "scaling_factor": 0.18215,
        },
        vision={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 32,
        },
        class_mapper={"layers": 2, "heads": 1},
        detail_mapper={"layers": 1, "heads": 4},
        schedule=scheduler_config_from_ldm(RELEASED_LDM_PARAMS),  # the released schedule: it differs in size only
    ),
    "toy": ModelSize(
        "toy (the embedded model's size)",
        resolution=_TOY_RESOLUTION,
        unet={
            "sample_size": _TOY_RESOLUTION // 4,
            "in_channels": 17,  # noisy latent + masked-scene latent + mask
            "out_channels": 8,
            "block_out_channels": [64, 64, 128],
            # SD-v1's order, attention at the two finer levels: the painted outlines follow the reference's
            # shape more often than with attention at the coarse levels only
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "attention_head_dim": 4,
            "cross_attention_dim": 128,
            "norm_num_groups": 16,
        },
        vae={
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "block_out_channels": [32, 64, 64],
            "layers_per_block": 1,
            "latent_channels": 8,  # 4 lose the subjects' colours
            "norm_num_groups": 16,
            "sample_size": _TOY_RESOLUTION,
            "scaling_factor": 1.0,  # replaced by 1 / std of the trained VAE's latents
        },
        vision={
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 4,
            "projection_dim": 128,
        },
        class_mapper={"layers": 2, "heads": 1},
        detail_mapper={"layers": 2, "heads": 4},
        schedule=scheduler_config_from_ldm(RELEASED_LDM_PARAMS),
    ),
}
