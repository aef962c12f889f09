"""The evaluator identity encoder: a small CNN that maps a picture of a subject to an identity embedding.

Trained on identities that neither the models nor the benchmark see (the toy world's ``evaluator``
split) and used only for scoring: the identity score of a painted subject is the cosine between its
embedding and the ground truth's. Deliberately another architecture than the reference encoder's vision
tower, so that a model cannot score well by matching its own features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .. import imaging

if TYPE_CHECKING:
    from .world import InpaintCase

# The embedded evaluator's size.
EVALUATOR_CONFIG: dict[str, Any] = {"image_size": 32, "channels": [32, 64, 128], "embed_dim": 128}


class IdentityEncoder(ModelMixin, ConfigMixin):
    """``(B, 3, S, S)`` pictures in [-1, 1] → unit embeddings ``(B, embed_dim)``.

    Args:
        image_size: side ``S`` of the input.
        channels: widths of the stride-2 convolution stages.
        embed_dim: embedding width.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, image_size: int = 32, channels: tuple[int, ...] = (32, 64, 128), embed_dim: int = 128):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, stride=2, padding=1),
                nn.GroupNorm(8, c),
                nn.SiLU(),
                nn.Conv2d(c, c, 3, padding=1),
                nn.GroupNorm(8, c),
                nn.SiLU(),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.embed = nn.Linear(c_in, embed_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if pixels.shape[-2:] != (size, size):
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = self.features(pixels.to(self.dtype)).mean(dim=(2, 3))  # (B, C)
        return F.normalize(self.embed(x), dim=-1)


def identity_score(encoder: IdentityEncoder, painted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``(B,)`` between the embeddings of ``painted`` and ``truth`` crops (``(B, 3, S, S)``,
    [-1, 1])."""
    with torch.no_grad():
        return (encoder(painted) * encoder(truth)).sum(-1)


def crop_pixels(rgb: np.ndarray, box: Sequence[int]) -> torch.Tensor:
    """A box of an image as ``(1, 3, h, w)`` in [-1, 1] (the evaluator's input)."""
    x0, y0, x1, y1 = box
    return imaging.rgb_to_tensor(np.ascontiguousarray(rgb[y0:y1, x0:x1]))


def identity_scores(
    evaluator: IdentityEncoder, cases: Sequence[InpaintCase], results: Sequence[np.ndarray]
) -> list[float]:
    """Evaluator cosine between each result's painted box and the truth's."""
    scores = []
    for case, result in zip(cases, results, strict=True):
        box = imaging.mask_bbox(case.mask)
        scores.append(float(identity_score(evaluator, crop_pixels(result, box), crop_pixels(case.truth, box))[0]))
    return scores
