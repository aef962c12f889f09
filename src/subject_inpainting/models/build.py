"""Building components from configs, and filling them from state dicts with full checks."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from .configs import ModelSize
from .reference_encoder import ReferenceEncoder

COMPONENT_CLASSES: dict[str, type] = {
    "unet": UNet2DConditionModel,
    "vae": AutoencoderKL,
    "reference_encoder": ReferenceEncoder,
}


def build_component(name: str, config: Mapping[str, Any], empty: bool = False) -> nn.Module:
    """Instantiate component ``name`` (``unet``, ``vae``, ``reference_encoder``) from its config.

    With ``empty=True`` the parameters live on the meta device (no memory, no random init): use it
    before ``fill_component``, which assigns real tensors.
    """
    cls = COMPONENT_CLASSES[name]
    ctx = _empty_weights() if empty else contextlib.nullcontext()
    with ctx:
        # from_config (not cls(**config)) tolerates the extra and renamed keys of older diffusers configs.
        return cls.from_config(dict(config))


def _empty_weights():
    from accelerate import init_empty_weights

    # Buffers stay real: some (CLIP's position_ids) are not in any checkpoint.
    return init_empty_weights(include_buffers=False)


def state_dict_problems(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state_dict`` from filling ``module`` exactly: missing, unexpected, wrong shapes."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    wrong = [
        f"{k}: {tuple(state_dict[k].shape)} vs {expected[k]}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != expected[k]
    ]
    if wrong:
        problems.append(f"{len(wrong)} of the wrong shape (e.g. {'; '.join(wrong[:3])})")
    return problems


def fill_component(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Load ``state_dict`` into ``module`` (built empty or not), requiring an exact match.

    Raises:
        ValueError: naming ``what`` and every kind of mismatch.
    """
    problems = state_dict_problems(module, state_dict)
    if problems:
        raise ValueError(f"{what} does not fit the architecture: {'; '.join(problems)}")
    own = module.state_dict()
    # Weights stored in another precision (the embedded model is half precision on disk) take the module's
    # dtype now: casting the filled module later makes diffusers warn about modules kept in float32.
    state = {
        k: v.to(own[k].dtype) if v.is_floating_point() and own[k].is_floating_point() else v
        for k, v in state_dict.items()
    }
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval()


def move(module: nn.Module, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """``module.to(...)`` with only what changes (diffusers warns about every dtype argument)."""
    kwargs = {}
    if device is not None and torch.device(device) != next(module.parameters()).device:
        kwargs["device"] = device
    if dtype is not None and dtype != next(module.parameters()).dtype:
        kwargs["dtype"] = dtype
    return module.to(**kwargs) if kwargs else module


def random_components(size: ModelSize, seed: int = 0, detail_layers: int = 0, detail_grid: int = 1) -> dict[str, Any]:
    """Every component of ``size`` (``configs.MODEL_SIZES``) with random weights drawn under ``seed``, in eval
    mode, and its schedule; a detail module of ``detail_layers`` blocks (0: none)."""
    if not isinstance(size, ModelSize):
        raise TypeError(f"size must be a ModelSize (configs.MODEL_SIZES), got {type(size).__name__}")
    torch.manual_seed(seed)
    encoder_config = size.reference_encoder_config(detail_layers=detail_layers, detail_grid=detail_grid)
    return {
        "unet": build_component("unet", size.unet).eval(),
        "vae": build_component("vae", size.vae).eval(),
        "reference_encoder": build_component("reference_encoder", encoder_config).eval(),
        "scheduler": dict(size.schedule),
    }
