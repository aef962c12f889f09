"""The dataset of annotated images: items determined by seed, epoch and index; references and holes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import BEAR_BOXES, FIXTURES, make_scene
from subject_inpainting.data import (
    AugmentConfig,
    InpaintingExamples,
    Record,
    read_photo_folder,
)
from subject_inpainting.imaging import InputError
from subject_inpainting.models.reference_encoder import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD

BEAR = FIXTURES / "dreambooth" / "bear_plushie"
NO_AUGMENT = AugmentConfig(flip_p=0.0, rotation_p=0.0)
SUBJECT_COLOUR = (250, 20, 230)


def examples(
    records, augment=NO_AUGMENT, seed=0, resolution=32, reference_size=16, cut_reference=False
) -> InpaintingExamples:
    return InpaintingExamples(
        records,
        resolution,
        reference_size,
        CLIP_IMAGE_MEAN,
        CLIP_IMAGE_STD,
        augment,
        seed=seed,
        cut_reference=cut_reference,
    )


def coloured_scene(tmp_path: Path, box=(30, 20, 60, 44), size=(96, 64)) -> Record:
    """A scene whose box holds one colour found nowhere else (gradients do not reach magenta)."""
    rgb = make_scene(size, seed=7)
    rgb[..., 1] = np.maximum(rgb[..., 1], 80)  # keep the background away from the subject's colour
    x0, y0, x1, y1 = box
    rgb[y0:y1, x0:x1] = SUBJECT_COLOUR
    path = tmp_path / "scene.png"
    Image.fromarray(rgb).save(path)
    return Record(path, [box], width=size[0], height=size[1])


def unnormalise(reference: torch.Tensor) -> torch.Tensor:
    return (
        reference * torch.tensor(CLIP_IMAGE_STD)[:, None, None] + torch.tensor(CLIP_IMAGE_MEAN)[:, None, None]
    ) * 255


def test_item_shapes_ranges_and_hole(tmp_path):
    dataset = examples([coloured_scene(tmp_path)], augment=AugmentConfig.subject(), resolution=40, reference_size=24)
    assert len(dataset) == 1
    item = dataset[0]
    assert item["pixel_values"].shape == (3, 40, 40) and item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min() >= -1 and item["pixel_values"].max() <= 1
    assert item["keep_mask"].shape == (1, 40, 40)
    assert set(item["keep_mask"].unique().tolist()) <= {0.0, 1.0} and (item["keep_mask"] == 0).any()
    assert item["reference"].shape == (3, 24, 24)
    assert item["box"].tolist() == [30, 20, 60, 44] and item["box"].dtype == torch.int64


def test_reference_is_cut_around_the_box(tmp_path):
    record = coloured_scene(tmp_path)
    tight = examples([record], augment=dataclasses.replace(NO_AUGMENT, reference_margin=0))[0]
    colour = unnormalise(tight["reference"]).mean(dim=(1, 2))
    assert torch.allclose(colour, torch.tensor(SUBJECT_COLOUR, dtype=torch.float32), atol=1.5)
    # With the original's 10-pixel margin the centre of the reference is still the subject.
    centre = unnormalise(examples([record])[0]["reference"])[:, 6:10, 6:10].mean(dim=(1, 2))
    assert torch.allclose(centre, torch.tensor(SUBJECT_COLOUR, dtype=torch.float32), atol=3)


def test_cut_reference_shows_only_the_masked_subject_on_white(tmp_path):
    record = coloured_scene(tmp_path)
    with pytest.raises(InputError, match=r"scene.png has no mask"):
        examples([record], cut_reference=True)
    # The mask keeps only the left half of the box: the rest of the box and the margin must turn white.
    mask = np.zeros((64, 96), dtype=np.uint8)
    mask[20:44, 30:45] = 255
    Image.fromarray(mask[::2, ::2]).save(tmp_path / "mask.png")  # half size: same aspect, resized
    record = dataclasses.replace(record, mask=tmp_path / "mask.png")
    wide = dataclasses.replace(NO_AUGMENT, reference_margin=4)
    plain, cut = (examples([record], augment=wide, cut_reference=c, reference_size=38)[0] for c in (False, True))
    for key in ("pixel_values", "keep_mask", "box", "extended_box", "crop"):  # the same draws, the same scene
        assert torch.equal(plain[key], cut[key])
    pixels = unnormalise(cut["reference"])  # 38 px for a 38×32 cut: about one pixel per source pixel
    subject = torch.tensor(SUBJECT_COLOUR, dtype=torch.float32)
    assert torch.allclose(pixels[:, 12:20, 6:15].mean(dim=(1, 2)), subject, atol=3)
    assert (pixels[:, :, 24:] > 250).all()  # the unmasked half of the subject is white
    assert not (unnormalise(plain["reference"])[:, :, 24:] > 250).all()


def test_items_are_determined_by_seed_epoch_and_index(tmp_path):
    records = [coloured_scene(tmp_path), Record(BEAR / "00.jpg", [(150, 120, 600, 700)])]
    first, second = (examples(records, augment=AugmentConfig.subject()) for _ in range(2))
    second.set_epoch(0)
    for i in range(2):
        a, b = first[i], second[i]
        assert all(torch.equal(a[k], b[k]) for k in a)
    first.set_epoch(1)
    later = first[1]
    assert not all(torch.equal(later[k], second[1][k]) for k in ("pixel_values", "keep_mask", "reference"))
    other_seed = examples(records, augment=AugmentConfig.subject(), seed=1)[1]
    assert not torch.equal(other_seed["reference"], second[1]["reference"])
    assert first[-1]["box"].tolist() == first[1]["box"].tolist()


def test_dataloader_workers_give_the_same_items(tmp_path):
    dataset = examples([coloured_scene(tmp_path)] * 4, augment=AugmentConfig.subject())
    dataset.set_epoch(3)
    direct = torch.stack([dataset[i]["reference"] for i in range(4)])
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    assert torch.equal(torch.cat([batch["reference"] for batch in loader]), direct)


def test_a_record_with_several_boxes_uses_each(tmp_path):
    record = dataclasses.replace(coloured_scene(tmp_path), boxes=[(30, 20, 60, 44), (0, 0, 10, 10)])
    dataset = examples([record])
    seen = set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        seen.add(tuple(dataset[0]["box"].tolist()))
    assert seen == {(30, 20, 60, 44), (0, 0, 10, 10)}


def test_real_photo_folder_to_examples(tmp_path):
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps({**BEAR_BOXES, "03.jpg": [200, 150, 650, 720]}))
    dataset = examples(read_photo_folder(BEAR, boxes_file=boxes_file), augment=AugmentConfig.subject(), resolution=64)
    item = dataset[3]
    assert item["pixel_values"].shape == (3, 64, 64) and item["reference"].shape == (3, 16, 16)


def test_records_that_disagree_with_their_image_fail_with_the_file_name(tmp_path):
    record = coloured_scene(tmp_path)
    with pytest.raises(InputError, match=r"scene.png is 96×64 but its record says 50×64"):
        examples([dataclasses.replace(record, width=50, boxes=[(0, 0, 5, 5)])])[0]
    with pytest.raises(InputError, match=r"scene.png: box .*outside the 96×64 image"):
        examples([Record(record.image, [(0, 0, 120, 10)])])[0]
    with pytest.raises(InputError, match=r"no such file"):
        examples([Record(tmp_path / "gone.png", [(0, 0, 5, 5)])])[0]


def test_dataset_arguments_are_checked(tmp_path):
    record = coloured_scene(tmp_path)
    with pytest.raises(ValueError, match=r"empty"):
        examples([])
    with pytest.raises(TypeError, match=r"not a Record"):
        examples([os.fspath(record.image)])
    with pytest.raises(ValueError, match=r"resolution 0"):
        examples([record], resolution=0)
    with pytest.raises(ValueError, match=r"image_std"):
        InpaintingExamples([record], 32, 16, CLIP_IMAGE_MEAN, (0.2, 0.0, 0.2), NO_AUGMENT)
    with pytest.raises(TypeError, match=r"AugmentConfig"):
        InpaintingExamples([record], 32, 16, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, None)
    with pytest.raises(ValueError, match=r"seed -1"):
        examples([record], seed=-1)
    with pytest.raises(ValueError, match=r"epoch -2"):
        examples([record]).set_epoch(-2)
    with pytest.raises(IndexError):
        examples([record])[1]
