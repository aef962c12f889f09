"""The reference (exemplar) encoder: CLIP vision tower → mapper(s) → LayerNorm → projection.

Paint-by-Example (Yang et al., 2022, §3.2) conditions the UNet on ONE token: the vision tower's pooled
class token passed through a small transformer "mapper", a LayerNorm and a linear projection to the
UNet's cross-attention width. A learned vector stands in for "no reference" (classifier-free guidance).

Subject inpainting adds the visual detail preserving (VDP) module: the tower's patch tokens go through
their own mapper and LayerNorm, are pooled and projected to a "detail" token, and the context becomes
``[class, detail]``. Here it is an option of the same module (``detail_mapper_layers > 0``), with a k×k
grid of pooled detail tokens as a further option (``detail_grid``; 1 = the original's mean pool).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from .mapper import FP32LayerNorm, Mapper

# OpenAI CLIP's pixel statistics (the normalisation every CLIP tower was trained with).
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

CLASS_TOKEN_SOURCES = ("pooled", "hidden")
TOWER = "vision_model."


def to_canonical_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flatten the tower's keys to the canonical ``vision_model.<name>`` whatever the nesting."""
    return {
        (TOWER + k[len(TOWER) :].removeprefix(TOWER) if k.startswith(TOWER) else k): v for k, v in state_dict.items()
    }


class ReferenceEncoder(ModelMixin, ConfigMixin):
    """Encodes reference images into the UNet's cross-attention context.

    Args:
        vision_config: keyword arguments of a ``transformers.CLIPVisionConfig`` (the tower's sizes).
        context_dim: width of the UNet's cross-attention context (768 for SD-v1).
        class_mapper_layers: residual attention blocks of the class mapper (5 in Paint-by-Example).
        class_mapper_heads: their heads (1 in Paint-by-Example).
        class_token: ``"pooled"`` — the tower's pooled output, after its final LayerNorm (Paint-by-Example);
            ``"hidden"`` — the last hidden state at the class position, before that LayerNorm (the subject
            inpainting code).
        detail_mapper_layers: blocks of the detail (VDP) mapper; 0 turns the detail module off.
        detail_mapper_heads: its heads (8 in subject inpainting).
        detail_grid: the patch tokens are average-pooled to a ``detail_grid × detail_grid`` grid of detail
            tokens; 1 is the original's mean over all patches.
        image_mean, image_std: per-channel normalisation of the tower's input (None: OpenAI CLIP's).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        vision_config: dict[str, Any],
        context_dim: int,
        class_mapper_layers: int = 5,
        class_mapper_heads: int = 1,
        class_token: str = "pooled",
        detail_mapper_layers: int = 0,
        detail_mapper_heads: int = 8,
        detail_grid: int = 1,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
    ):
        super().__init__()
        if class_token not in CLASS_TOKEN_SOURCES:
            raise ValueError(f"class_token must be one of {CLASS_TOKEN_SOURCES}, got {class_token!r}")
        if detail_grid < 1:
            raise ValueError(f"detail_grid must be >= 1, got {detail_grid}")
        tower_config = CLIPVisionConfig(**vision_config)
        width = tower_config.hidden_size
        if tower_config.image_size % tower_config.patch_size:
            raise ValueError(
                f"vision tower image_size {tower_config.image_size} is not a multiple of its patch_size "
                f"{tower_config.patch_size}"
            )
        if detail_grid > tower_config.image_size // tower_config.patch_size:
            raise ValueError(
                f"detail_grid {detail_grid} exceeds the tower's patch grid "
                f"{tower_config.image_size // tower_config.patch_size}"
            )
        self.vision_model = CLIPVisionModel(tower_config)
        self.class_mapper = Mapper(width, class_mapper_layers, class_mapper_heads)
        self.class_norm = FP32LayerNorm(width)
        self.class_proj = nn.Linear(width, context_dim)
        self.uncond_vector = nn.Parameter(torch.randn(1, 1, context_dim))
        if detail_mapper_layers > 0:
            self.detail_mapper = Mapper(width, detail_mapper_layers, detail_mapper_heads)
            self.detail_norm = FP32LayerNorm(width)
            self.detail_proj = nn.Linear(width, context_dim)

    # -- sizes -------------------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        """Side of the square input the tower expects (224 for ViT-L/14)."""
        return int(self.config.vision_config["image_size"])

    @property
    def image_mean(self) -> tuple[float, ...]:
        return tuple(self.config.image_mean or CLIP_IMAGE_MEAN)

    @property
    def image_std(self) -> tuple[float, ...]:
        return tuple(self.config.image_std or CLIP_IMAGE_STD)

    @property
    def has_detail(self) -> bool:
        return self.config.detail_mapper_layers > 0

    @property
    def num_tokens(self) -> int:
        """Tokens in the conditional context: 1 (class), or 1 + detail_grid² with the detail module."""
        return 1 + (self.config.detail_grid**2 if self.has_detail else 0)

    # -- state-dict layout -------------------------------------------------------------------------
    def tower_nested(self) -> bool:
        """Whether the installed ``transformers`` nests the tower's weights (``vision_model.vision_model.``)."""
        return any(k.startswith(TOWER) for k in self.vision_model.state_dict())

    def to_installed_keys(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Canonical keys → this installation's keys.

        ``transformers`` < 5 nests the CLIP tower's weights one level deeper (``vision_model.vision_model.``)
        than 5.x does. Saved files use the flat, canonical form (``vision_model.embeddings...``).
        """
        nested = self.tower_nested()
        out = {}
        for k, v in to_canonical_keys(state_dict).items():
            if nested and k.startswith(TOWER):
                k = TOWER + k
            out[k] = v
        return out

    # -- encoding ----------------------------------------------------------------------------------
    def tower_states(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the vision tower.

        Args:
            pixel_values: ``(B, 3, S, S)`` normalised images, ``S = image_size``.

        Returns:
            ``class_state (B, W)`` — chosen by ``class_token`` — and ``patch_states (B, P, W)``, the last
            hidden state's patch tokens.
        """
        expected = (3, self.image_size, self.image_size)
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"reference pixel_values must have shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(pixel_values.shape)}"
            )
        out = self.vision_model(pixel_values=pixel_values.to(self.dtype))
        hidden = out.last_hidden_state  # (B, 1 + P, W)
        class_state = out.pooler_output if self.config.class_token == "pooled" else hidden[:, 0]
        return class_state, hidden[:, 1:]

    def class_features(self, class_state: torch.Tensor) -> torch.Tensor:
        """``(B, W)`` class state → mapper → LayerNorm: ``(B, 1, W)``, before the projection."""
        return self.class_norm(self.class_mapper(class_state[:, None]))

    def detail_features(self, patch_states: torch.Tensor) -> torch.Tensor:
        """``(B, P, W)`` patch tokens → detail mapper → LayerNorm → pooling: ``(B, k², W)``."""
        if not self.has_detail:
            raise ValueError("this reference encoder has no detail module (detail_mapper_layers = 0)")
        x = self.detail_norm(self.detail_mapper(patch_states))  # (B, P, W)
        k = self.config.detail_grid
        if k == 1:
            return x.mean(dim=1, keepdim=True)
        b, p, w = x.shape
        side = round(p**0.5)
        grid = x.transpose(1, 2).reshape(b, w, side, side)  # (B, W, g, g)
        return F.adaptive_avg_pool2d(grid, k).flatten(2).transpose(1, 2)  # (B, k², W)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Conditional context ``(B, num_tokens, context_dim)``: ``[class]`` or ``[class, detail...]``."""
        class_state, patch_states = self.tower_states(pixel_values)
        tokens = [self.class_proj(self.class_features(class_state))]
        if self.has_detail:
            tokens.append(self.detail_proj(self.detail_features(patch_states)))
        return torch.cat(tokens, dim=1)

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """The learned "no reference" context, ``(batch_size, 1, context_dim)``."""
        return self.uncond_vector.expand(batch_size, -1, -1)
