"""Initialising Paint-by-Example from a Stable Diffusion v1.x checkpoint (the original's base training).

The original starts from SD-v1.4: its UNet's first convolution gets 5 extra input channels (the masked-scene
latent and the mask), initialised to zero so that the model starts as the text-to-image UNet; the VAE is
kept; the text encoder is dropped and replaced by a CLIP vision tower (ViT-L/14) with a freshly initialised
class mapper, LayerNorm, projection and unconditional vector.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..models.build import build_component, fill_component, state_dict_problems
from ..models.configs import CLIP_VIT_L14_VISION, RELEASED_LDM_PARAMS, reference_encoder_config
from ..utils import hub_offline
from .checkpoint_io import CheckpointError
from .original import (
    UNET_PREFIX,
    VAE_PREFIX,
    _apply_prefix_map,
    _squeeze_vae_attention,
    is_ignored_key,
    read_ldm_checkpoint,
    scheduler_config_from_ldm,
    unet_config_from_ldm,
    unet_prefix_map,
    vae_config_from_ldm,
    vae_prefix_map,
)

CLIP_VIT_L14_ID = "openai/clip-vit-large-patch14"


def _inpainting_ldm(ldm: Mapping[str, Any]) -> dict[str, Any]:
    """The same LDM config with the UNet's input widened to latent + masked latent + mask channels."""
    cfg = dict(ldm.get("model", ldm))
    params = dict(cfg.get("params", cfg))
    unet = dict(params["unet_config"])
    unet_params = dict(unet["params"])
    latent = unet_params["out_channels"]
    unet_params["in_channels"] = 2 * latent + 1
    unet["params"] = unet_params
    params["unet_config"] = unet
    return params


def widen_conv_in(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``(O, I, k, k)`` → ``(O, in_channels, k, k)``: the new input channels start at zero."""
    out = weight.new_zeros(weight.shape[0], in_channels, *weight.shape[2:])
    out[:, : weight.shape[1]] = weight
    return out


def load_vision_tower(spec: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A CLIP vision tower's config and weights from a local folder or a hub id (``CLIPVisionModel`` or a
    whole ``CLIPModel``, whose vision half is taken)."""
    from transformers import CLIPVisionModel

    path = Path(spec).expanduser()
    offline = hub_offline()
    if not path.exists() and offline:
        raise CheckpointError(
            f"{spec}: not a local folder, and the hub cannot be reached (HF_HUB_OFFLINE is set); give a local "
            "CLIP vision model folder"
        )
    try:
        tower = CLIPVisionModel.from_pretrained(str(spec))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{spec}: could not load a CLIP vision model ({str(e).splitlines()[0]})") from None
    config = {k: v for k, v in tower.config.to_dict().items() if not k.startswith("_")}
    for key in ("architectures", "transformers_version", "model_type", "torch_dtype", "dtype", "id2label", "label2id"):
        config.pop(key, None)
    return config, tower.state_dict()


def load_from_sd(
    checkpoint: str | Path,
    vision_model: str | os.PathLike | None = CLIP_VIT_L14_ID,
    ldm_config: str | Path | Mapping[str, Any] | None = None,
    vision_config: str | Path | Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build Paint-by-Example components from an SD-v1.x checkpoint.

    Args:
        checkpoint: the SD ``.ckpt``/``.safetensors`` (original LDM key names).
        vision_model: CLIP vision tower to use (hub id or folder); None = random weights from
            ``vision_config`` (for tests and experiments).
        ldm_config: the SD LDM YAML if not SD-v1's layout (its UNet is widened to 9 input channels).
        vision_config: the tower's config when ``vision_model`` is None.
        seed: initialisation of the new parts (mapper, LayerNorm, projection, unconditional vector).

    Raises:
        CheckpointError: not an SD checkpoint, or weights that do not fit.
    """
    checkpoint = Path(checkpoint)
    sd, ldm_config, vision_config = read_ldm_checkpoint(checkpoint, ldm_config, vision_config, "a Stable Diffusion")
    if "proj_out.weight" in sd:
        raise CheckpointError(f"{checkpoint}: already a Paint-by-Example checkpoint; convert it without --from-sd")
    ldm = _inpainting_ldm(ldm_config if ldm_config is not None else RELEASED_LDM_PARAMS)
    unet_cfg, vae_cfg, sched_cfg = unet_config_from_ldm(ldm), vae_config_from_ldm(ldm), scheduler_config_from_ldm(ldm)
    unet_sd, unet_unused = _apply_prefix_map(
        {k[len(UNET_PREFIX) :]: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}, unet_prefix_map(unet_cfg)
    )
    vae_sd, vae_unused = _apply_prefix_map(
        {k[len(VAE_PREFIX) :]: v for k, v in sd.items() if k.startswith(VAE_PREFIX)}, vae_prefix_map(vae_cfg)
    )
    if unet_unused or vae_unused:
        unused = unet_unused + vae_unused
        raise CheckpointError(f"{checkpoint}: {len(unused)} UNet/VAE keys fit no layer (e.g. {', '.join(unused[:3])})")
    if "conv_in.weight" in unet_sd:
        unet_sd["conv_in.weight"] = widen_conv_in(unet_sd["conv_in.weight"], unet_cfg["in_channels"])
    other = [
        k for k in sd if not k.startswith((UNET_PREFIX, VAE_PREFIX, "cond_stage_model.")) and not is_ignored_key(k)
    ]
    if other:
        raise CheckpointError(f"{checkpoint}: {len(other)} keys belong to no part (e.g. {', '.join(other[:3])})")

    if vision_model is not None:
        vision, tower_sd = load_vision_tower(vision_model)
    elif vision_config is not None:
        vision, tower_sd = dict(vision_config), None
    else:
        vision, tower_sd = dict(CLIP_VIT_L14_VISION), None
    torch.manual_seed(seed)
    encoder = build_component("reference_encoder", reference_encoder_config(vision, unet_cfg["cross_attention_dim"]))
    if tower_sd is not None:
        state = dict(encoder.state_dict())
        state.update({"vision_model." + k.removeprefix("vision_model."): v for k, v in tower_sd.items()})
        state = encoder.to_installed_keys(state)
        fill_component(encoder, state, f"{vision_model} (vision tower)")

    modules = {}
    for name, cfg, state in (("unet", unet_cfg, unet_sd), ("vae", vae_cfg, _squeeze_vae_attention(vae_sd))):
        module = build_component(name, cfg, empty=True)
        problems = state_dict_problems(module, state)
        if problems:
            raise CheckpointError(f"{checkpoint}: the {name} weights do not fit the config: {'; '.join(problems)}")
        modules[name] = fill_component(module, state, f"{checkpoint} ({name})")
    return {**modules, "reference_encoder": encoder.eval(), "scheduler": sched_cfg}
