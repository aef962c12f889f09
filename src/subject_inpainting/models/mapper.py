"""The residual attention "mapper" of Paint-by-Example and of the detail (VDP) module.

It follows the original code's GLIDE-style text transformer (``ldm/modules/encoders/xf.py``), parameter
names included, so that original checkpoints load with a prefix change only:

- ``attn.c_qkv`` is ONE linear layer whose output is laid out *per head*: for head ``h`` the columns
  ``[h·3d, (h+1)·3d)`` hold ``[q_h | k_h | v_h]`` (``d = width / heads``). With one head this is the
  plain ``[q | k | v]`` split; with 8 heads (the detail mapper) a three-way split would be wrong.
- the MLP uses the exact (erf) GELU;
- every LayerNorm computes in float32, whatever the activations' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FP32LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` that normalises in float32 and returns the input's dtype (as the original)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class FusedQKVAttention(nn.Module):
    """Multi-head self-attention with a fused, per-head ``c_qkv`` projection.

    Args:
        width: model width ``W``.
        heads: number of heads ``H``; ``W`` must be divisible by ``H``.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"mapper width {width} is not divisible by its number of heads {heads}")
        self.heads = heads
        self.c_qkv = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape  # (B, T, W)
        head_dim = w // self.heads
        qkv = self.c_qkv(x).view(b, t, self.heads, 3 * head_dim)  # (B, T, H, 3d), per head [q|k|v]
        q, k, v = (z.transpose(1, 2) for z in qkv.split(head_dim, dim=-1))  # (B, H, T, d) each
        # The original scales q and k by d^-1/4 each and softmaxes in float32; SDPA's d^-1/2 is the same.
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, d)
        return self.c_proj(out.transpose(1, 2).reshape(b, t, w))


class MLP(nn.Module):
    def __init__(self, width: int, mult: int = 4):
        super().__init__()
        self.c_fc = nn.Linear(width, width * mult)
        self.gelu = nn.GELU()  # exact erf GELU, as the original
        self.c_proj = nn.Linear(width * mult, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = FusedQKVAttention(width, heads)
        self.ln_1 = FP32LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = FP32LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Mapper(nn.Module):
    """A stack of ``layers`` residual attention blocks of width ``width`` with ``heads`` heads.

    Paint-by-Example's class mapper is 5 blocks with 1 head at the vision tower's width; the detail
    mapper of subject inpainting is 5 blocks with 8 heads. Input and output ``(B, T, width)``.
    """

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x
