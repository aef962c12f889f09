"""The training dataset of annotated images: ``InpaintingExamples`` turns ``Record``s into Paint-by-Example
examples (``examples.make_example``), reproducibly item by item."""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence

import numpy as np
import torch

from ..imaging import (
    InputError,
    open_image,
    to_rgb,
)
from ._random import randint
from .annotations import Record, read_mask
from .augment import AugmentConfig
from .boxes import check_box
from .examples import check_example_sizes, make_example


class InpaintingExamples(torch.utils.data.Dataset):
    """Records → Paint-by-Example training examples (see ``make_example``), reproducible item by item.

    Item ``i`` of epoch ``e`` draws all its randomness (which box, extension, hole, crop, augmentation)
    from a ``torch.Generator`` seeded from ``(seed, e, i)``: the same triple gives the same tensors in any
    process, with any number of DataLoader workers, so a resumed run sees exactly the examples it would
    have seen. Call ``set_epoch`` before each epoch's iterator is created (DataLoader workers copy the
    dataset when the iterator starts; with ``persistent_workers=True`` they keep the first epoch's copy).

    Args:
        records: at least one ``Record``.
        resolution: side R of the training images.
        reference_size: side S of the vision tower's input.
        image_mean, image_std: the vision tower's normalisation.
        augment: the randomisation settings (``AugmentConfig.base()`` or ``.subject()``).
        seed: the run's data seed (≥ 0).
        cut_reference: cut each reference out with its record's mask, onto white (``make_example``'s
            ``reference_mask``): for models trained on references without background (the toy model).
            Every record must then have a mask.
    """

    def __init__(
        self,
        records: Sequence[Record],
        resolution: int,
        reference_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        augment: AugmentConfig,
        seed: int = 0,
        cut_reference: bool = False,
    ) -> None:
        records = list(records)
        if not records:
            raise ValueError("records: the list is empty (nothing to train on)")
        for n, record in enumerate(records):
            if not isinstance(record, Record):
                raise TypeError(f"records[{n}] is a {type(record).__name__}, not a Record")
            if cut_reference and record.mask is None:
                raise InputError(
                    f"training image {record.image} has no mask: cutting the reference out needs one mask per "
                    "image (give the photos' masks)"
                )
        if not isinstance(augment, AugmentConfig):
            raise TypeError(f"augment must be an AugmentConfig, got {type(augment).__name__}")
        self.resolution, self.reference_size, self.image_mean, self.image_std = check_example_sizes(
            resolution, reference_size, image_mean, image_std
        )
        self.records = records
        self.augment = augment
        self.seed = _check_count("seed", seed)
        self.cut_reference = bool(cut_reference)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose examples the next items are (a different draw for each epoch)."""
        self.epoch = _check_count("epoch", epoch)

    def __len__(self) -> int:
        return len(self.records)

    def item_generator(self, index: int) -> torch.Generator:
        """The generator item ``index`` of the current epoch draws from (seeded from seed, epoch, index)."""
        state = np.random.SeedSequence((self.seed, self.epoch, index)).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = operator.index(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} records")
        record = self.records[index]
        rgb, _ = to_rgb(open_image(record.image, "training image"))
        size = (rgb.shape[1], rgb.shape[0])
        if record.size is not None and record.size != size:
            raise InputError(
                f"training image {record.image} is {size[0]}×{size[1]} but its record says "
                f"{record.width}×{record.height}"
            )
        generator = self.item_generator(index)
        box = record.boxes[randint(generator, 0, len(record.boxes) - 1)]
        try:
            box = check_box(box, size)
        except ValueError as e:
            raise InputError(f"training image {record.image}: {e}") from None
        subject = read_mask(record.mask, size) if self.cut_reference else None
        return make_example(
            rgb,
            box,
            resolution=self.resolution,
            reference_size=self.reference_size,
            image_mean=self.image_mean,
            image_std=self.image_std,
            augment=self.augment,
            generator=generator,
            reference_mask=subject,
        )


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} {value!r}: must be a whole number ≥ 0")
    return int(value)
