"""The original checkpoints (``model.ckpt`` of Paint-by-Example and of subject inpainting) → components.

Key layout of the original (LDM) format, and where each part goes:

==========================================  =======================================================
``model.diffusion_model.*``                  ``unet`` (LDM ``openaimodel`` names → diffusers names)
``first_stage_model.*``                      ``vae`` (LDM autoencoder names → diffusers names)
``cond_stage_model.transformer.*``           ``reference_encoder.vision_model`` (a CLIP vision tower)
``cond_stage_model.mapper.*`` / ``final_ln``  ``reference_encoder.class_mapper`` / ``class_norm``
``proj_out.*`` / ``learnable_vector``        ``reference_encoder.class_proj`` / ``uncond_vector``
``cond_stage_model.mapper2.*`` / ``final_ln2`` / ``proj_out2.*``  the detail (VDP) module
schedule buffers (``betas``, ``alphas_cumprod`` …), ``*.position_ids``, ``model_ema.*``  ignored: the
schedule is rebuilt from the config, position ids are constants, EMA shadows are not the model.
==========================================  =======================================================

The key maps are computed from the architecture's config, so the same code handles the released
full-size model and the tiny fixtures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..models.build import build_component, fill_component, state_dict_problems
from ..models.configs import (
    CLIP_VIT_L14_VISION,
    RELEASED_CLASS_MAPPER,
    RELEASED_DETAIL_MAPPER,
    RELEASED_LDM_PARAMS,
    reference_encoder_config,
    scheduler_config_from_ldm,
    unet_config_from_ldm,
    vae_config_from_ldm,
)
from .checkpoint_io import CheckpointError, read_json, read_state_dict, read_yaml

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TOWER_PREFIX = "cond_stage_model.transformer."

# Buffers of the original LatentDiffusion that describe the noise schedule; rebuilt from the config.
SCHEDULE_BUFFERS = frozenset(
    {
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
        "logvar",
    }
)

_RESNET_RENAMES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_VAE_RESNET_RENAMES = {"nin_shortcut": "conv_shortcut"}
_VAE_ATTN_RENAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}

_ENCODER_PREFIXES = {
    "cond_stage_model.mapper.": "class_mapper.",
    "cond_stage_model.final_ln.": "class_norm.",
    "proj_out.": "class_proj.",
    "cond_stage_model.mapper2.": "detail_mapper.",
    "cond_stage_model.final_ln2.": "detail_norm.",
    "proj_out2.": "detail_proj.",
}


def is_ignored_key(key: str) -> bool:
    """Keys of an original checkpoint that are deliberately not loaded (see the module docstring)."""
    return key in SCHEDULE_BUFFERS or key.endswith("position_ids") or key.startswith("model_ema.")


# ---------------------------------------------------------------------------------------------------
# Key maps: {original prefix: (our prefix, inner renames)}
# ---------------------------------------------------------------------------------------------------
def unet_prefix_map(unet_config: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """Prefix map from LDM ``UNetModel`` names to diffusers ``UNet2DConditionModel`` names."""
    n_levels = len(unet_config["block_out_channels"])
    n_res = unet_config["layers_per_block"]
    has_attn = [t.startswith("CrossAttn") for t in unet_config["down_block_types"]]
    plain: dict[str, str] = {}
    m: dict[str, tuple[str, dict[str, str]]] = {
        "time_embed.0.": ("time_embedding.linear_1.", plain),
        "time_embed.2.": ("time_embedding.linear_2.", plain),
        "input_blocks.0.0.": ("conv_in.", plain),
        "out.0.": ("conv_norm_out.", plain),
        "out.2.": ("conv_out.", plain),
        "middle_block.0.": ("mid_block.resnets.0.", _RESNET_RENAMES),
        "middle_block.1.": ("mid_block.attentions.0.", plain),
        "middle_block.2.": ("mid_block.resnets.1.", _RESNET_RENAMES),
    }
    k = 0
    for level in range(n_levels):
        for j in range(n_res):
            k += 1
            m[f"input_blocks.{k}.0."] = (f"down_blocks.{level}.resnets.{j}.", _RESNET_RENAMES)
            if has_attn[level]:
                m[f"input_blocks.{k}.1."] = (f"down_blocks.{level}.attentions.{j}.", plain)
        if level != n_levels - 1:
            k += 1
            m[f"input_blocks.{k}.0.op."] = (f"down_blocks.{level}.downsamplers.0.conv.", plain)
    k = 0
    for i, level in enumerate(reversed(range(n_levels))):
        for j in range(n_res + 1):
            m[f"output_blocks.{k}.0."] = (f"up_blocks.{i}.resnets.{j}.", _RESNET_RENAMES)
            if has_attn[level]:
                m[f"output_blocks.{k}.1."] = (f"up_blocks.{i}.attentions.{j}.", plain)
            if level != 0 and j == n_res:
                slot = 2 if has_attn[level] else 1
                m[f"output_blocks.{k}.{slot}.conv."] = (f"up_blocks.{i}.upsamplers.0.conv.", plain)
            k += 1
    return m


def vae_prefix_map(vae_config: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """Prefix map from the LDM KL autoencoder's names to diffusers ``AutoencoderKL`` names."""
    n_levels = len(vae_config["block_out_channels"])
    n_res = vae_config["layers_per_block"]
    plain: dict[str, str] = {}
    m: dict[str, tuple[str, dict[str, str]]] = {
        "quant_conv.": ("quant_conv.", plain),
        "post_quant_conv.": ("post_quant_conv.", plain),
    }
    for part in ("encoder", "decoder"):
        m[f"{part}.conv_in."] = (f"{part}.conv_in.", plain)
        m[f"{part}.conv_out."] = (f"{part}.conv_out.", plain)
        m[f"{part}.norm_out."] = (f"{part}.conv_norm_out.", plain)
        m[f"{part}.mid.block_1."] = (f"{part}.mid_block.resnets.0.", _VAE_RESNET_RENAMES)
        m[f"{part}.mid.attn_1."] = (f"{part}.mid_block.attentions.0.", _VAE_ATTN_RENAMES)
        m[f"{part}.mid.block_2."] = (f"{part}.mid_block.resnets.1.", _VAE_RESNET_RENAMES)
    for i in range(n_levels):
        for j in range(n_res):
            m[f"encoder.down.{i}.block.{j}."] = (f"encoder.down_blocks.{i}.resnets.{j}.", _VAE_RESNET_RENAMES)
        if i != n_levels - 1:
            m[f"encoder.down.{i}.downsample.conv."] = (f"encoder.down_blocks.{i}.downsamplers.0.conv.", plain)
        # The LDM decoder numbers its levels from the lowest resolution up; diffusers the other way.
        up = n_levels - 1 - i
        for j in range(n_res + 1):
            m[f"decoder.up.{i}.block.{j}."] = (f"decoder.up_blocks.{up}.resnets.{j}.", _VAE_RESNET_RENAMES)
        if i != 0:
            m[f"decoder.up.{i}.upsample.conv."] = (f"decoder.up_blocks.{up}.upsamplers.0.conv.", plain)
    return m


def _apply_prefix_map(
    sd: Mapping[str, torch.Tensor], prefix_map: Mapping[str, tuple[str, dict[str, str]]]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename ``sd``'s keys by the longest matching prefix; return (renamed, keys that matched none)."""
    out: dict[str, torch.Tensor] = {}
    unmatched: list[str] = []
    prefixes = sorted(prefix_map, key=len, reverse=True)
    for key, value in sd.items():
        src = next((p for p in prefixes if key.startswith(p)), None)
        if src is None:
            unmatched.append(key)
            continue
        dst, renames = prefix_map[src]
        rest = key[len(src) :]
        name, _, leaf = rest.rpartition(".")
        out[dst + (renames.get(name, name) + "." if name else "") + leaf] = value
    return out, unmatched


def _squeeze_vae_attention(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # LDM's autoencoder attention uses 1×1 convolutions; diffusers uses linear layers.
    for k, v in sd.items():
        if ".mid_block.attentions." in k and k.endswith("weight") and v.ndim == 4:
            sd[k] = v.reshape(v.shape[0], v.shape[1])
    return sd


# ---------------------------------------------------------------------------------------------------
# Architecture of an original checkpoint
# ---------------------------------------------------------------------------------------------------
def original_configs(
    state_dict: Mapping[str, torch.Tensor],
    ldm_config: Mapping[str, Any] | None = None,
    vision_config: Mapping[str, Any] | None = None,
    class_token: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Component configs of an original checkpoint.

    Without ``ldm_config``/``vision_config`` the released layout is assumed (SD-v1 UNet with a 9-channel
    input, KL-f8 VAE, CLIP ViT-L/14). Mapper depths are read off the keys; the mapper heads are the
    original's (class 1, detail 8). ``class_token`` defaults to each original's choice: the pooled output
    for Paint-by-Example, the pre-LayerNorm class state for a subject checkpoint (one with ``mapper2``).
    """
    ldm = dict(ldm_config) if ldm_config is not None else RELEASED_LDM_PARAMS
    vision = dict(vision_config) if vision_config is not None else dict(CLIP_VIT_L14_VISION)
    try:
        unet_cfg = unet_config_from_ldm(ldm)
        vae_cfg = vae_config_from_ldm(ldm)
        sched_cfg = scheduler_config_from_ldm(ldm)
    except KeyError as e:
        raise CheckpointError(f"the LDM config has no {e.args[0]!r} entry") from None
    if "proj_out.weight" not in state_dict:
        raise CheckpointError(
            "not a Paint-by-Example checkpoint: it has no 'proj_out.weight' (the reference projection)"
        )

    def depth(prefix: str) -> int:
        blocks = {k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)}
        return len(blocks)

    class_layers = depth("cond_stage_model.mapper.resblocks.")
    detail_layers = depth("cond_stage_model.mapper2.resblocks.")
    context_dim = int(state_dict["proj_out.weight"].shape[0])
    if context_dim != unet_cfg["cross_attention_dim"]:
        raise CheckpointError(
            f"the reference projection gives {context_dim}-wide tokens but the UNet config expects "
            f"context_dim {unet_cfg['cross_attention_dim']}"
        )
    enc_cfg = reference_encoder_config(
        vision,
        context_dim,
        class_mapper_layers=class_layers,
        class_mapper_heads=RELEASED_CLASS_MAPPER["heads"],
        detail_mapper_layers=detail_layers,
        detail_mapper_heads=RELEASED_DETAIL_MAPPER["heads"],
        class_token=class_token or ("hidden" if detail_layers else "pooled"),
    )
    return {"unet": unet_cfg, "vae": vae_cfg, "reference_encoder": enc_cfg, "scheduler": sched_cfg}


def map_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], configs: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, dict[str, torch.Tensor]], list[str], list[str]]:
    """Split and rename an original state dict into per-component state dicts.

    Args:
        state_dict: original keys → tensors (meta tensors are fine).
        configs: from ``original_configs``.

    Returns:
        ``(components, ignored, unused)``: ``{"unet": {...}, "vae": {...}, "reference_encoder": {...}}``,
        the keys deliberately ignored, and the keys nothing consumed (a complete conversion has none).
        The reference encoder's keys are canonical (``ReferenceEncoder.to_installed_keys`` adapts them).
    """
    groups: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "vae": {}, "encoder": {}}
    ignored, unused = [], []
    enc_prefixes = sorted(_ENCODER_PREFIXES, key=len, reverse=True)
    for key, value in state_dict.items():
        if is_ignored_key(key):
            ignored.append(key)
        elif key.startswith(UNET_PREFIX):
            groups["unet"][key[len(UNET_PREFIX) :]] = value
        elif key.startswith(VAE_PREFIX):
            groups["vae"][key[len(VAE_PREFIX) :]] = value
        elif key.startswith(TOWER_PREFIX):
            rest = key[len(TOWER_PREFIX) :].removeprefix("vision_model.")
            groups["encoder"]["vision_model." + rest] = value
        elif key == "learnable_vector":
            groups["encoder"]["uncond_vector"] = value
        elif (src := next((p for p in enc_prefixes if key.startswith(p)), None)) is not None:
            groups["encoder"][_ENCODER_PREFIXES[src] + key[len(src) :]] = value
        else:
            unused.append(key)
    unet_sd, unet_unused = _apply_prefix_map(groups["unet"], unet_prefix_map(configs["unet"]))
    vae_sd, vae_unused = _apply_prefix_map(groups["vae"], vae_prefix_map(configs["vae"]))
    unused += [UNET_PREFIX + k for k in unet_unused] + [VAE_PREFIX + k for k in vae_unused]
    components = {
        "unet": unet_sd,
        "vae": _squeeze_vae_attention(vae_sd),
        "reference_encoder": groups["encoder"],
    }
    return components, ignored, unused


def read_ldm_checkpoint(
    checkpoint: Path,
    ldm_config: str | Path | Mapping[str, Any] | None,
    vision_config: str | Path | Mapping[str, Any] | None,
    kind: str,
) -> tuple[dict[str, torch.Tensor], Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """An LDM checkpoint's state dict and its configs (those given as paths read), refusing a checkpoint
    without UNet keys as not ``kind`` (e.g. "an original LDM").

    Raises:
        CheckpointError: a config or the checkpoint cannot be read, or the checkpoint has no UNet.
    """
    if isinstance(ldm_config, (str, Path)):
        ldm_config = read_yaml(ldm_config, "LDM model config")
    if isinstance(vision_config, (str, Path)):
        vision_config = read_json(vision_config, "CLIP vision config")
    sd = read_state_dict(checkpoint)
    if not any(k.startswith(UNET_PREFIX) for k in sd):
        raise CheckpointError(f"{checkpoint}: not {kind} checkpoint (no '{UNET_PREFIX}*' keys)")
    return sd, ldm_config, vision_config


def load_original(
    checkpoint: str | Path,
    ldm_config: str | Path | Mapping[str, Any] | None = None,
    vision_config: str | Path | Mapping[str, Any] | None = None,
    class_token: str | None = None,
) -> dict[str, Any]:
    """Load an original ``model.ckpt`` into ``{"unet", "vae", "reference_encoder", "scheduler"}``.

    Args:
        checkpoint: the original checkpoint (``.ckpt``/``.pt`` pickle, read with ``weights_only=True``,
            or a ``.safetensors`` repack with the same keys).
        ldm_config: the LDM YAML (path or parsed) if not the released layout.
        vision_config: the vision tower's ``CLIPVisionConfig`` (JSON path or dict) if not ViT-L/14.
        class_token: override the class-token source (see ``original_configs``).

    Raises:
        CheckpointError: a one-line description naming the file and what is wrong.
    """
    checkpoint = Path(checkpoint)
    sd, ldm_config, vision_config = read_ldm_checkpoint(checkpoint, ldm_config, vision_config, "an original LDM")
    try:
        configs = original_configs(sd, ldm_config, vision_config, class_token)
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint}: {e}") from None
    modules = {name: build_component(name, configs[name], empty=True) for name in COMPONENTS}
    parts, _, unused = map_original_state_dict(sd, configs)
    parts["reference_encoder"] = modules["reference_encoder"].to_installed_keys(parts["reference_encoder"])
    if unused:
        raise CheckpointError(
            f"{checkpoint}: {len(unused)} keys belong to no component (e.g. {', '.join(unused[:3])}); "
            "is the config right for this checkpoint?"
        )
    for name in COMPONENTS:
        problems = state_dict_problems(modules[name], parts[name])
        if problems:
            raise CheckpointError(f"{checkpoint}: the {name} weights do not fit the config: {'; '.join(problems)}")
        fill_component(modules[name], parts[name], f"{checkpoint} ({name})")
    return {**modules, "scheduler": configs["scheduler"]}


COMPONENTS = ("unet", "vae", "reference_encoder")
