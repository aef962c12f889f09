"""Token merging (ToMe for SD): the merge and unmerge are the bipartite soft matching the paper describes, the
processors merge only the top-resolution self-attention, and a UNet is left as it was after the block."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_UNET, tiny_components
from subject_inpainting.models.token_merging import (
    TokenMergingConfig,
    TokenMergingProcessor,
    draw_picks,
    level_grids,
    merge,
    merge_plan,
    merged_tokens,
    self_attentions,
    tile_indices,
    unmerge,
)


def _tokens(batch=2, h=8, w=6, c=5, seed=0):
    return torch.randn(batch, h * w, c, generator=torch.Generator().manual_seed(seed))


def _picks(h, w, stride=2, seed=0):
    return draw_picks(h // stride, w // stride, stride, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("h", "w", "stride"), [(8, 6, 2), (7, 5, 2), (9, 9, 3), (1, 1, 2)])
def test_one_destination_per_whole_tile_and_every_other_token_a_source(h, w, stride):
    src, dst = tile_indices(_picks(h, w, stride, seed=1), h, w, stride)
    assert sorted(torch.cat([src, dst]).tolist()) == list(range(h * w))  # each token exactly once
    grid = torch.zeros(h * w, dtype=torch.bool)
    grid[dst] = True
    grid = grid.view(h, w)
    rows, cols = h // stride, w // stride
    assert int(grid.sum()) == rows * cols
    assert not grid[rows * stride :].any() and not grid[:, cols * stride :].any()  # partial tiles: sources only
    for i in range(rows):
        for j in range(cols):
            assert int(grid[i * stride : (i + 1) * stride, j * stride : (j + 1) * stride].sum()) == 1


def test_destinations_lie_where_the_picks_say():
    picks = torch.tensor([[0, 3], [2, 1]])  # row-major within each 2×2 tile
    _, dst = tile_indices(picks, 4, 4, 2)
    assert dst.tolist() == [0, 7, 12, 11]
    first = _picks(16, 16, seed=3)
    assert torch.equal(first, _picks(16, 16, seed=3)) and not torch.equal(first, _picks(16, 16, seed=4))


def test_merge_averages_each_destination_with_its_sources_and_unmerge_copies_back():
    x = _tokens()
    plan = merge_plan(x, 8, 6, 20, 2, _picks(8, 6))
    merged = merge(plan, x)
    assert merged.shape == (2, 48 - 20, 5)
    for b in range(2):
        for k, d in enumerate(plan.dst.tolist()):
            joined = [plan.src[s] for s, into in zip(plan.merged[b], plan.into[b], strict=True) if into == k]
            expected = torch.stack([x[b, d], *(x[b, s] for s in joined)]).mean(0)
            assert torch.allclose(merged[b, 28 - len(plan.dst) + k], expected, atol=1e-6)
    back = unmerge(plan, merged)
    for b in range(2):
        kept = plan.src[plan.kept[b]]
        assert torch.equal(back[b, kept], x[b, kept])  # unmerged sources come back unchanged
        targets = merged[b, plan.kept.shape[1] :]
        assert torch.equal(back[b, plan.dst], targets)
        assert torch.equal(back[b, plan.src[plan.merged[b]]], targets[plan.into[b]])


def test_the_most_similar_sources_merge_first():
    x = _tokens(batch=1, h=4, w=4, c=8, seed=2)
    plan0 = merge_plan(x, 4, 4, 0, 2, _picks(4, 4, seed=5))
    copies = plan0.src[:3]
    x[0, copies] = x[0, plan0.dst[1]] * 2.5  # same direction as destination 1: cosine similarity 1
    plan = merge_plan(x, 4, 4, 3, 2, _picks(4, 4, seed=5))
    assert sorted(plan.src[plan.merged[0]].tolist()) == sorted(copies.tolist())
    assert plan.into[0].tolist() == [1, 1, 1]


def test_no_merging_is_the_identity_and_the_count_is_capped():
    x = _tokens()
    plan = merge_plan(x, 8, 6, 0, 2, _picks(8, 6))
    assert torch.equal(unmerge(plan, merge(plan, x)), x)
    everything = merge_plan(x, 8, 6, 10_000, 2, _picks(8, 6))
    assert merge(everything, x).shape[1] == len(everything.dst)  # every source merged, destinations left


def test_a_grid_that_is_not_the_token_count_is_refused():
    with pytest.raises(ValueError, match="48 tokens are not a 7×7 grid"):
        merge_plan(_tokens(), 7, 7, 4, 2, _picks(7, 7))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0.8}, "ratio must be 0 to 0.75 with stride 2, got 0.8"),
        ({"ratio": -0.1}, "ratio must be 0 to 0.75"),
        ({"ratio": 0.5, "stride": 1}, "stride must be a whole number >= 2, got 1"),
        ({"ratio": 0.5, "max_downsample": 3}, "max_downsample must be 1, 2, 4 or 8, got 3"),
    ],
)
def test_config_bounds(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenMergingConfig(**kwargs)


def test_level_grids_halve_rounding_up():
    assert level_grids(64, 48, 1) == {3072: (64, 48)}
    assert level_grids(7, 5, 4) == {35: (7, 5), 12: (4, 3), 4: (2, 2)}


def _unet_inputs(batch=2, size=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, TINY_UNET["in_channels"], size, size, generator=g)
    context = torch.randn(batch, 1, TINY_UNET["cross_attention_dim"], generator=g)
    return x, torch.full((batch,), 400), context


def test_only_the_top_resolution_self_attention_merges_and_the_unet_is_restored():
    unet = tiny_components()["unet"]
    x, t, context = _unet_inputs()
    before = {id(a): a.processor for a in self_attentions(unet)}
    assert before, "the tiny UNet has self-attention layers"
    seen = []
    original_call = TokenMergingProcessor.__call__

    def record(self, attn, hidden_states, *args, **kwargs):
        seen.append(hidden_states.shape[1])
        return original_call(self, attn, hidden_states, *args, **kwargs)

    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=context).sample
        config = TokenMergingConfig(0.5)
        TokenMergingProcessor.__call__ = record
        try:
            with merged_tokens([unet, None], config, (16, 16), torch.Generator().manual_seed(0)) as installed:
                merged = unet(x, t, encoder_hidden_states=context).sample
        finally:
            TokenMergingProcessor.__call__ = original_call
        again = unet(x, t, encoder_hidden_states=context).sample
    top_layers = sum(1 for count in seen if count == 256)
    assert top_layers >= 2 and sum(p.merged_calls for p in installed) == top_layers
    assert set(seen) - {256} and all(count < 256 for count in set(seen) - {256})  # lower levels: unmerged
    assert not torch.allclose(merged, plain, atol=1e-4)
    assert (merged - plain).abs().mean() < plain.abs().mean()  # a close approximation, not another picture
    assert {id(a): a.processor for a in self_attentions(unet)} == before
    assert torch.equal(again, plain)


def test_processors_are_restored_when_the_block_raises():
    unet = tiny_components()["unet"]
    before = [a.processor for a in self_attentions(unet)]
    with pytest.raises(RuntimeError, match="stop"), merged_tokens([unet], TokenMergingConfig(0.5), (16, 16), None):
        assert all(isinstance(a.processor, TokenMergingProcessor) for a in self_attentions(unet))
        raise RuntimeError("stop")
    assert [a.processor for a in self_attentions(unet)] == before


def test_ratio_zero_installs_nothing():
    unet = tiny_components()["unet"]
    with merged_tokens([unet], TokenMergingConfig(0.0), (16, 16), None) as installed:
        assert installed == []
        assert not any(isinstance(a.processor, TokenMergingProcessor) for a in self_attentions(unet))
