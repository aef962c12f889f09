"""Token merging in the UNet's high-resolution self-attention (ToMe for Stable Diffusion, Bolya & Hoffman,
CVPR Workshops 2023).

Self-attention at the UNet's top resolution (4,096 tokens for a 64×64 latent) costs time in proportion to the
square of its token count. Before it runs, the most similar tokens are merged: the latent grid is cut into
``stride × stride`` tiles, one token of each tile (drawn from a fixed pseudo-random sequence,
``TokenMergingConfig.seed``) is a *destination*, every other token a *source*; each source finds its most
similar destination (cosine similarity), and the ``ratio · N`` sources with the most similar destinations are
averaged into them. The attention runs on the ``N - ratio · N`` tokens left; its output is copied back, a merged
source taking its destination's value (unmerging), so the block's residual path keeps every token. As in the
paper's recommended setting, only the self-attention (``attn1``) of the transformer blocks at the top resolution
(``max_downsample`` 1) merges; cross-attention and the feed-forward layers see every token.

``merge_plan``, ``merge`` and ``unmerge`` are pure functions on ``(B, N, C)`` tokens; ``merged_tokens``
installs ``TokenMergingProcessor`` on a UNet's self-attention layers for one sampling run and restores the
processors after it. The layers of a run draw their tiles from one ``TilePatterns``, which a compiled graph can
feed instead (``models.compiled``), so that a graph merges as the eager UNet does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TokenMergingConfig:
    """How tokens merge (ToMe-SD's parameters).

    Args:
        ratio: fraction of a layer's tokens merged away, ``0 <= ratio <= 1 - 1 / stride²`` (0 = off).
        max_downsample: merge in layers whose latent is downsampled at most this much (1: the top resolution
            only; 2: also the next level down; 4, 8 ...).
        stride: side of the tiles that each give one destination token.
        seed: where each tile's destination lies follows a pseudo-random sequence from this seed, restarted for
            each sampling run (``pattern_generator``). It is not the call's generator, so that a picture does
            not depend on the other pictures of its batch nor on how their generators are shared out: the rows
            of a call share one sequence, as they would alone.
    """

    ratio: float
    max_downsample: int = 1
    stride: int = 2
    seed: int = 0

    def pattern_generator(self) -> torch.Generator:
        """A fresh CPU generator of the destinations' sequence (the same on every device)."""
        return torch.Generator().manual_seed(self.seed)

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 2:
            raise ValueError(f"token merging stride must be a whole number >= 2, got {self.stride!r}")
        high = 1 - 1 / self.stride**2
        if not isinstance(self.ratio, (int, float)) or not 0 <= self.ratio <= high:
            raise ValueError(f"token merging ratio must be 0 to {high:g} with stride {self.stride}, got {self.ratio!r}")
        if isinstance(self.max_downsample, bool) or self.max_downsample not in (1, 2, 4, 8):
            raise ValueError(f"token merging max_downsample must be 1, 2, 4 or 8, got {self.max_downsample!r}")


@dataclass(frozen=True)
class MergePlan:
    """Which tokens merge into which, for ``B`` rows of ``N`` tokens.

    ``src``/``dst`` ``(Ns,)``/``(Nd,)``: token positions of the sources and destinations; ``kept`` ``(B, Ns - r)``
    and ``merged`` ``(B, r)``: indices into ``src`` of the sources kept and merged; ``into`` ``(B, r)``: the
    index into ``dst`` each merged source joins.
    """

    src: torch.Tensor
    dst: torch.Tensor
    kept: torch.Tensor
    merged: torch.Tensor
    into: torch.Tensor
    num_tokens: int


def draw_picks(rows: int, cols: int, stride: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(rows, cols)`` int64 on the CPU: which of its ``stride²`` tokens (row-major within the tile) is each
    tile's destination, drawn from ``generator``."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(stride * stride, (rows, cols), generator=generator, device=device).cpu()


def tile_indices(picks: torch.Tensor, height: int, width: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(src (Ns,), dst (Nd,))``: token positions (row-major) of the sources and destinations of a ``height ×
    width`` grid whose whole ``stride × stride`` tiles have their destination at ``picks`` ``(rows, cols)``.
    ``dst`` holds one token per whole tile, tile by tile; ``src`` each tile's other tokens, tile by tile, then
    the tokens of partial tiles at the right or bottom edge (all sources). Arithmetic on ``picks`` only, so that
    a traced graph takes them as an input."""
    rows, cols = height // stride, width // stride
    within = torch.arange(stride * stride)
    ys = torch.arange(rows).view(-1, 1, 1) * stride + (within // stride).view(1, 1, -1)
    xs = torch.arange(cols).view(1, -1, 1) * stride + (within % stride).view(1, 1, -1)
    cells = (ys * width + xs).to(picks.device)  # (rows, cols, stride²)
    picks = picks.view(rows, cols, 1).to(torch.int64)
    dst = cells.gather(2, picks).reshape(-1)
    others = torch.arange(stride * stride - 1, device=picks.device).view(1, 1, -1)
    src = cells.gather(2, (others + (others >= picks).to(torch.int64)).expand(rows, cols, -1)).reshape(-1)
    if height % stride == 0 and width % stride == 0:
        return src, dst
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    edge = ((y >= rows * stride) | (x >= cols * stride)).flatten().nonzero().squeeze(1).to(picks.device)
    return torch.cat([src, edge]), dst


def merge_plan(
    tokens: torch.Tensor, height: int, width: int, num_merged: int, stride: int, picks: torch.Tensor
) -> MergePlan:
    """Bipartite soft matching of ``tokens`` ``(B, N, C)``, ``N = height * width`` in row-major order, with the
    destinations at ``picks`` (``draw_picks``): the ``num_merged`` sources (at most their count) whose best
    destination is the most similar."""
    n = tokens.shape[1]
    if n != height * width:
        raise ValueError(f"{n} tokens are not a {height}×{width} grid")
    src, dst = tile_indices(picks.to(tokens.device), height, width, stride)
    r = min(num_merged, len(src))
    metric = tokens.float()
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    scores = metric.index_select(1, src) @ metric.index_select(1, dst).transpose(1, 2)  # (B, Ns, Nd)
    best, best_dst = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True, stable=True)
    merged, kept = order[:, :r], order[:, r:]
    return MergePlan(src, dst, kept, merged, best_dst.gather(1, merged), n)


class TilePatterns:
    """Where each tile's destination lies, call after call, for every merging layer of a sampling run (one
    sequence, shared): drawn from ``generator``; while ``fed`` holds tensors (a traced graph's inputs), taken
    from them in order; while ``record`` is a list, the shape of each request is appended to it and the first
    token of each tile returned (nothing drawn: the sequence stays where it was)."""

    def __init__(self, generator: torch.Generator | None):
        self.generator = generator
        self.fed: list[torch.Tensor] | None = None
        self.record: list[tuple[int, int]] | None = None

    def __call__(self, rows: int, cols: int, stride: int) -> torch.Tensor:
        if self.fed is not None:
            return self.fed.pop(0)
        if self.record is not None:
            self.record.append((rows, cols))
            return torch.zeros(rows, cols, dtype=torch.int64)
        return draw_picks(rows, cols, stride, self.generator)


def _rows(index: torch.Tensor, channels: int) -> torch.Tensor:
    return index.unsqueeze(-1).expand(*index.shape, channels)


def merge(plan: MergePlan, x: torch.Tensor) -> torch.Tensor:
    """``(B, N, C)`` → ``(B, N - r, C)``: the kept sources, then each destination averaged with the sources
    merged into it."""
    c = x.shape[-1]
    sources, targets = x.index_select(1, plan.src), x.index_select(1, plan.dst)
    kept = sources.gather(1, _rows(plan.kept, c))
    joining = sources.gather(1, _rows(plan.merged, c))
    targets = targets.scatter_reduce(1, _rows(plan.into, c), joining, reduce="mean", include_self=True)
    return torch.cat([kept, targets], dim=1)


def unmerge(plan: MergePlan, y: torch.Tensor) -> torch.Tensor:
    """``(B, N - r, C)`` → ``(B, N, C)``: every token back at its position, a merged source taking its
    destination's value."""
    batch, _, c = y.shape
    num_kept = plan.kept.shape[1]
    kept, targets = y[:, :num_kept], y[:, num_kept:]
    out = y.new_empty(batch, plan.num_tokens, c)
    # scatter_ rather than indexed assignment: a traced graph keeps the batch size free
    out.scatter_(1, _rows(plan.dst.unsqueeze(0).expand(batch, -1), c), targets)
    out.scatter_(1, _rows(plan.src[plan.kept], c), kept)
    out.scatter_(1, _rows(plan.src[plan.merged], c), targets.gather(1, _rows(plan.into, c)))
    return out


def level_grids(height: int, width: int, max_downsample: int) -> dict[int, tuple[int, int]]:
    """Token count → ``(h, w)`` grid of each UNet level downsampled at most ``max_downsample`` from a
    ``height × width`` latent (each downsampling halves a side, rounding up, as a stride-2 convolution with
    padding 1 does)."""
    grids, h, w, factor = {}, height, width, 1
    while factor <= max_downsample:
        grids[h * w] = (h, w)
        h, w, factor = math.ceil(h / 2), math.ceil(w / 2), factor * 2
    return grids


class TokenMergingProcessor:
    """An attention processor that merges tokens around another (``inner``) when its self-attention runs on
    a grid of ``grids`` (token count → ``(h, w)``); any other call (cross-attention, an attention mask,
    another token count) is ``inner``'s unchanged."""

    def __init__(
        self, inner: Any, grids: dict[int, tuple[int, int]], config: TokenMergingConfig, patterns: TilePatterns
    ):
        self.inner, self.grids, self.config, self.patterns = inner, grids, config, patterns
        self.merged_calls = 0

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        # int(): a traced graph gives its sizes as tensors, which a dict does not find
        grid = self.grids.get(int(hidden_states.shape[1])) if hidden_states.ndim == 3 else None
        if grid is None or encoder_hidden_states is not None or attention_mask is not None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        c = self.config
        picks = self.patterns(grid[0] // c.stride, grid[1] // c.stride, c.stride)
        plan = merge_plan(hidden_states, *grid, int(hidden_states.shape[1] * c.ratio), c.stride, picks)
        self.merged_calls += 1
        out = self.inner(attn, merge(plan, hidden_states), None, None, temb, **kwargs)
        return unmerge(plan, out)


def self_attentions(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention layers (``attn1``) of ``unet``'s transformer blocks."""
    return [
        m.attn1
        for m in unet.modules()
        if hasattr(m, "attn1") and hasattr(m.attn1, "processor") and not getattr(m.attn1, "is_cross_attention", True)
    ]


@contextmanager
def merged_tokens(
    unets: Iterable[torch.nn.Module | None],
    config: TokenMergingConfig,
    latent_size: tuple[int, int],
    generator: torch.Generator | None,
) -> Iterator[list[TokenMergingProcessor]]:
    """Within the block, ``unets``' self-attention layers merge tokens (``config``) for a latent of
    ``latent_size`` ``(h, w)``; their processors are restored after it. A ratio of 0 changes nothing.

    Yields the processors installed (``merged_calls`` counts the merging calls of each).
    """
    layers = [] if config.ratio == 0 else [a for u in unets if u is not None for a in self_attentions(u)]
    grids = level_grids(*latent_size, config.max_downsample)
    saved = [(layer, layer.processor) for layer in layers]
    installed, patterns = [], TilePatterns(generator)
    try:
        for layer, processor in saved:
            installed.append(TokenMergingProcessor(processor, grids, config, patterns))
            layer.set_processor(installed[-1])
        yield installed
    finally:
        for layer, processor in saved:
            layer.set_processor(processor)
