"""The diffusers-format Paint-by-Example folder, as its authors publish it on the hub.

::

    model_index.json        {"_class_name": "PaintByExamplePipeline", ...}
    unet/ vae/              diffusers UNet2DConditionModel / AutoencoderKL
    image_encoder/          PaintByExampleImageEncoder: CLIPVisionConfig + weights
    scheduler/              a diffusers scheduler config (the training betas)
    feature_extractor/      CLIPImageProcessor config (pixel statistics, input size)
    safety_checker/         not used

The image encoder's mapper is built from diffusers ``BasicTransformerBlock`` s (separate ``to_q``,
``to_k``, ``to_v``; ``norm1``/``norm3``; ``ff.net``); it is the same computation as the original's fused
``c_qkv`` blocks with ONE head, so its weights are re-laid into our ``Mapper``. ``to_diffusers_encoder``
is the inverse (used to run diffusers' pipeline on the same weights).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..models.build import build_component, fill_component
from ..models.configs import reference_encoder_config
from ..models.reference_encoder import to_canonical_keys
from .checkpoint_io import CheckpointError, read_json
from .layout import require_parts
from .project import load_module, read_weights

# diffusers BasicTransformerBlock names → our ResidualAttentionBlock names (q/k/v handled apart).
_BLOCK_RENAMES = {
    "norm1": "ln_1",
    "norm3": "ln_2",
    "attn1.to_out.0": "attn.c_proj",
    "ff.net.0.proj": "mlp.c_fc",
    "ff.net.2": "mlp.c_proj",
}
_TOP_RENAMES = {
    "final_layer_norm.": "class_norm.",
    "proj_out.": "class_proj.",
    "uncond_vector": "uncond_vector",
}


def encoder_state_from_diffusers(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """``PaintByExampleImageEncoder`` state dict → canonical ``ReferenceEncoder`` keys, and mapper depth."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for key, value in sd.items():
        if key.endswith("position_ids"):
            continue
        if key.startswith("model."):
            out["vision_model." + key[len("model.") :].removeprefix("vision_model.")] = value
            continue
        m = re.fullmatch(r"mapper\.blocks\.(\d+)\.(.+)\.(weight|bias)", key)
        if m:
            i, name, leaf = m.groups()
            if name in ("attn1.to_q", "attn1.to_k", "attn1.to_v"):
                qkv.setdefault(i, {}).setdefault(leaf, {})[name[-1]] = value
            elif name in _BLOCK_RENAMES:
                out[f"class_mapper.resblocks.{i}.{_BLOCK_RENAMES[name]}.{leaf}"] = value
            else:
                raise CheckpointError(f"unexpected image-encoder key {key!r}")
            continue
        src = next((p for p in _TOP_RENAMES if key.startswith(p)), None)
        if src is None:
            raise CheckpointError(f"unexpected image-encoder key {key!r}")
        out[_TOP_RENAMES[src] + key[len(src) :]] = value
    for i, leaves in qkv.items():
        for leaf, parts in leaves.items():
            if set(parts) != {"q", "k", "v"}:
                raise CheckpointError(f"image-encoder mapper block {i} lacks some of to_q/to_k/to_v {leaf}")
            # One head: the fused per-head layout [q_h | k_h | v_h] is simply [q | k | v].
            out[f"class_mapper.resblocks.{i}.attn.c_qkv.{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out, len(qkv)


def to_diffusers_encoder(encoder) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Our Paint-by-Example ``ReferenceEncoder`` → (``CLIPVisionConfig`` dict, ``PaintByExampleImageEncoder``
    state dict). Only encoders diffusers can express: pooled class token, one-head mapper, no detail."""
    cfg = encoder.config
    if encoder.has_detail or cfg.class_token != "pooled" or cfg.class_mapper_heads != 1:
        raise ValueError("diffusers' PaintByExampleImageEncoder holds only a plain Paint-by-Example encoder")
    depth = (int(cfg.vision_config["num_hidden_layers"]) + 1) // 5  # diffusers derives its mapper depth so
    if cfg.class_mapper_layers != depth:
        raise ValueError(
            f"diffusers' PaintByExampleImageEncoder builds (tower layers + 1) // 5 = {depth} mapper blocks; this "
            f"encoder has {cfg.class_mapper_layers}"
        )
    inverse = {v: k for k, v in _BLOCK_RENAMES.items()}
    # diffusers' encoder holds the same CLIPVisionModel class as ours: same nesting in this installation.
    tower = "model.vision_model." if encoder.tower_nested() else "model."
    out: dict[str, torch.Tensor] = {}
    for key, value in to_canonical_keys(dict(encoder.state_dict())).items():
        if key.startswith("vision_model."):
            out[tower + key[len("vision_model.") :]] = value
        elif m := re.fullmatch(r"class_mapper\.resblocks\.(\d+)\.(.+)\.(weight|bias)", key):
            i, name, leaf = m.groups()
            if name == "attn.c_qkv":
                for part, chunk in zip("qkv", value.chunk(3), strict=True):
                    out[f"mapper.blocks.{i}.attn1.to_{part}.{leaf}"] = chunk
            else:
                out[f"mapper.blocks.{i}.{inverse[name]}.{leaf}"] = value
        else:
            src = next(p for p in ("class_norm.", "class_proj.", "uncond_vector") if key.startswith(p))
            dst = {
                "class_norm.": "final_layer_norm.",
                "class_proj.": "proj_out.",
                "uncond_vector": "uncond_vector",
            }
            out[dst[src] + key[len(src) :]] = value
    vision = dict(cfg.vision_config)
    vision["projection_dim"] = int(cfg.context_dim)
    return vision, out


def schedule_from_diffusers(config: dict[str, Any]) -> dict[str, Any]:
    """A diffusers scheduler config (PNDM, DDIM ...) → our schedule config (same betas, original spacing)."""
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")
    missing = [k for k in keys if k not in config]
    if missing:
        raise CheckpointError(f"the scheduler config lacks {', '.join(missing)}")
    return {
        "_class_name": "DDIMScheduler",
        **{k: config[k] for k in keys},
        "prediction_type": config.get("prediction_type", "epsilon"),
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }


def load_diffusers_pbe(folder: str | Path) -> dict[str, Any]:
    """Load a diffusers-format Paint-by-Example folder into our components."""
    folder = Path(folder)
    require_parts(folder, "diffusers")
    unet = load_module("unet", folder / "unet", str(folder / "unet"))
    vae = load_module("vae", folder / "vae", str(folder / "vae"))
    enc_dir = folder / "image_encoder"
    vision = read_json(enc_dir / "config.json", "image-encoder config")
    vision = {k: v for k, v in vision.items() if not k.startswith("_") and k not in ("architectures",)}
    try:
        state, depth = encoder_state_from_diffusers(read_weights(enc_dir))
    except CheckpointError as e:
        raise CheckpointError(f"{enc_dir}: {e}") from None
    if "class_proj.weight" not in state:
        raise CheckpointError(f"{enc_dir}: no proj_out weights: not a Paint-by-Example image encoder")
    enc_cfg = reference_encoder_config(vision, int(state["class_proj.weight"].shape[0]), class_mapper_layers=depth)
    processor = folder / "feature_extractor" / "preprocessor_config.json"
    if processor.is_file():
        proc = read_json(processor, "feature-extractor config")
        for key in ("image_mean", "image_std"):
            if proc.get(key):
                enc_cfg[key] = list(proc[key])
    encoder = build_component("reference_encoder", enc_cfg, empty=True)
    try:
        fill_component(encoder, encoder.to_installed_keys(state), str(enc_dir))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    sched_dir = folder / "scheduler"
    schedule = schedule_from_diffusers(read_json(sched_dir / "scheduler_config.json", "scheduler config"))
    return {"unet": unet, "vae": vae, "reference_encoder": encoder, "scheduler": schedule}
