"""The original's residual attention mapper: per-head fused qkv, exact GELU, float32 LayerNorms."""

from __future__ import annotations

import math

import pytest
import torch

from subject_inpainting.models.mapper import FP32LayerNorm, FusedQKVAttention, Mapper


def attention_by_hand(attn: FusedQKVAttention, x: torch.Tensor) -> torch.Tensor:
    """The original's QKVMultiheadAttention written out head by head (columns [q_h | k_h | v_h])."""
    _b, _t, w = x.shape
    h = attn.heads
    d = w // h
    qkv = attn.c_qkv(x)  # (B, T, 3W)
    outs = []
    for head in range(h):
        block = qkv[..., head * 3 * d : (head + 1) * 3 * d]
        q, k, v = block[..., :d], block[..., d : 2 * d], block[..., 2 * d :]
        scale = 1 / math.sqrt(math.sqrt(d))
        weight = torch.softmax((q * scale) @ (k * scale).transpose(1, 2), dim=-1)
        outs.append(weight @ v)
    return attn.c_proj(torch.cat(outs, dim=-1))


@pytest.mark.parametrize("heads", [1, 8])
def test_fused_qkv_is_laid_out_per_head(heads):
    torch.manual_seed(0)
    attn = FusedQKVAttention(64, heads)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        assert torch.allclose(attn(x), attention_by_hand(attn, x), atol=1e-5)


def test_a_plain_three_way_split_would_differ_with_several_heads():
    """Guards the layout: reading c_qkv as [q | k | v] gives another result once heads > 1."""
    torch.manual_seed(0)
    attn = FusedQKVAttention(64, 8)
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        q, k, v = attn.c_qkv(x).chunk(3, dim=-1)
        split = lambda z: z.view(1, 5, 8, 8).transpose(1, 2)  # noqa: E731
        naive = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
        naive = attn.c_proj(naive.transpose(1, 2).reshape(1, 5, 64))
        assert not torch.allclose(attn(x), naive, atol=1e-3)


def test_width_must_divide_by_heads():
    with pytest.raises(ValueError, match="not divisible"):
        FusedQKVAttention(30, 8)


def test_mlp_uses_exact_gelu():
    block = Mapper(16, 1, 1).resblocks[0]
    assert block.mlp.gelu.approximate == "none"


def test_fp32_layernorm_on_half_inputs():
    torch.manual_seed(0)
    ln = FP32LayerNorm(16)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(3, 16) * 100
    out = ln(x.half())
    assert out.dtype == torch.float16
    expected = torch.nn.functional.layer_norm(x.half().float(), (16,), ln.weight, ln.bias, ln.eps)
    assert torch.allclose(out.float(), expected, atol=1e-2)


def test_mapper_depth_and_names_follow_the_original():
    m = Mapper(32, 5, 1)
    names = set(m.state_dict())
    assert len(m.resblocks) == 5
    for part in ("attn.c_qkv", "attn.c_proj", "ln_1", "mlp.c_fc", "mlp.c_proj", "ln_2"):
        assert f"resblocks.4.{part}.weight" in names
