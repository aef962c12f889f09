"""A fixed pool of training examples encoded by the frozen VAE once (``train --latent-cache N``).

The VAE is frozen during training, yet the loop encodes every step's scene and masked scene again: on a CPU
with a small UNet that is a sizeable share of a step. The cache stores, per example, the VAE posterior of the
scene and of the masked scene (mean and standard deviation), the keep-mask at latent resolution and the
reference; the loop then draws the posterior samples from the cache exactly as it draws them from the
VAE (``mean + std · ε`` with the step's generator), so a cached run trains on the same distribution as an
uncached one over the same examples. The price: each example's augmentation is fixed once (the pool is
visited in epochs, with new timesteps and noise every time).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..utils import atomic_file

FIELDS = ("scene_mean", "scene_std", "masked_mean", "masked_std", "keep_latent", "reference")


def encode_example(vae: torch.nn.Module, pixels: torch.Tensor, keep: torch.Tensor):
    """The VAE's view of a training batch: the posteriors of the scene and of the masked scene, and the keep
    mask at latent resolution (bilinear, as the original resizes it).

    Args:
        pixels: ``(B, 3, H, W)`` in [-1, 1]; keep: ``(B, 1, H, W)``, 1 = keep, 0 = hole.
    Returns:
        ``(scene, masked, keep_latent)``: two ``DiagonalGaussianDistribution`` and ``(B, 1, h, w)``.
    """
    pixels = pixels.to(vae.dtype)
    with torch.no_grad():
        scene = vae.encode(pixels).latent_dist
        masked = vae.encode(pixels * keep.to(vae.dtype)).latent_dist
    keep_latent = F.interpolate(keep.float(), size=scene.mean.shape[-2:], mode="bilinear", align_corners=False)
    return scene, masked, keep_latent


class LatentCache(torch.utils.data.Dataset):
    """Encoded examples; item ``i`` is ``{field: tensor}`` for the fields in ``FIELDS``.

    Args:
        tensors: ``scene_mean``/``scene_std``/``masked_mean``/``masked_std`` ``(N, C, h, w)``,
            ``keep_latent`` ``(N, 1, h, w)`` (1 = keep), ``reference`` ``(N, 3, S, S)``.
    """

    procedural = False

    def __init__(self, tensors: dict[str, torch.Tensor]):
        missing = [k for k in FIELDS if k not in tensors]
        if missing:
            raise ValueError(f"latent cache lacks {', '.join(missing)}")
        sizes = {len(tensors[k]) for k in FIELDS}
        if len(sizes) != 1:
            raise ValueError(f"latent cache fields disagree on the number of examples: {sorted(sizes)}")
        self.tensors = {k: tensors[k] for k in FIELDS}

    def __len__(self) -> int:
        return len(self.tensors["reference"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index].float() for k, v in self.tensors.items()}

    def set_epoch(self, epoch: int) -> None:  # the pool is fixed; the loop reorders it every epoch
        pass

    @classmethod
    def build(
        cls,
        dataset: Any,
        vae: torch.nn.Module,
        count: int,
        batch: int = 64,
        progress: bool = True,
        dtype: torch.dtype = torch.float16,
        num_workers: int = 0,
    ) -> LatentCache:
        """Encode items ``0 .. count-1`` of ``dataset`` (epoch 0) with ``vae``; stored in ``dtype``.

        ``dataset`` items carry ``pixel_values`` ``(3, H, W)`` in [-1, 1], ``keep_mask`` ``(1, H, W)`` and
        ``reference``, as ``data.examples.make_example`` makes them. ``num_workers`` > 0 makes the items in
        that many processes while this one encodes (the same items, in the same order).
        """
        if count < 1 or count > len(dataset):
            raise ValueError(f"latent cache of {count} examples: expected 1 to {len(dataset)} (the data's size)")
        dataset.set_epoch(0)
        _check_memory(dataset[0], vae, count, dtype)
        device = next(vae.parameters()).device
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in FIELDS}
        batches = [list(range(start, min(count, start + batch))) for start in range(0, count, batch)]
        if num_workers > 0:
            loaded = torch.utils.data.DataLoader(
                dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=list
            )
        else:
            loaded = ([dataset[i] for i in indices] for indices in batches)
        with tqdm(total=count, desc="encoding the latent cache", unit="example", disable=not progress) as bar:
            for items in loaded:
                pixels = torch.stack([it["pixel_values"] for it in items]).to(device)
                keep = torch.stack([it["keep_mask"] for it in items]).to(device)
                scene, masked, keep_latent = encode_example(vae, pixels, keep)
                for name, value in (
                    ("scene_mean", scene.mean),
                    ("scene_std", scene.std),
                    ("masked_mean", masked.mean),
                    ("masked_std", masked.std),
                    ("keep_latent", keep_latent),
                    ("reference", torch.stack([it["reference"] for it in items])),
                ):
                    parts[name].append(value.detach().to("cpu", dtype))
                bar.update(len(items))
        return cls({k: torch.cat(v) for k, v in parts.items()})

    def save(self, path: str | os.PathLike) -> Path:
        """Write the cache to a safetensors file atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_file(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(tmp))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatentCache:
        from safetensors.torch import load_file

        return cls(load_file(str(path)))


def _check_memory(item: dict[str, torch.Tensor], vae: torch.nn.Module, count: int, dtype: torch.dtype) -> None:
    """Refuse a pool that would not fit in memory: its fields in ``dtype``, held twice while the parts are
    joined, against what the machine has available now."""
    from ..utils import available_memory, human_bytes

    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    _, height, width = item["pixel_values"].shape
    latent = (height // factor) * (width // factor)
    per_example = (4 * vae.config.latent_channels * latent + latent + item["reference"].numel()) * dtype.itemsize
    need, have = 2 * count * per_example, available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"a latent cache of {count:,} examples needs about {human_bytes(need)} of memory, and "
            f"{human_bytes(have)} is available: use a smaller --latent-cache"
        )


def sample_latents(batch: dict[str, torch.Tensor], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior samples of the scene and of the masked scene from a cached batch, drawn from ``g`` in the
    order (and with the same draws) as ``vae.encode(x).latent_dist.sample(generator=g)`` makes them."""
    out = []
    for name in ("scene", "masked"):
        mean, std = batch[f"{name}_mean"], batch[f"{name}_std"]
        eps = torch.randn(mean.shape, generator=g, dtype=mean.dtype).to(mean.device)
        out.append(mean + std * eps)
    return out[0], out[1]
