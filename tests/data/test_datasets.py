"""Dataset readers (manifest, Open Images, COCO, photo folder) and the training examples."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import FIXTURES, make_scene
from subject_inpainting.data import (
    AugmentConfig,
    InpaintingExamples,
    NoSubjectLocation,
    Record,
    image_size,
    make_example,
    read_coco,
    read_manifest,
    read_openimages,
    read_photo_folder,
    write_manifest,
)
from subject_inpainting.imaging import InputError

BEAR = FIXTURES / "dreambooth" / "bear_plushie"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NO_AUGMENT = AugmentConfig(flip_p=0.0, rotation_p=0.0)
SUBJECT_COLOUR = (250, 20, 230)


def save(path: Path, size=(48, 40), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_scene(size, seed)).save(path)
    return path


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def examples(
    records, augment=NO_AUGMENT, seed=0, resolution=32, reference_size=16, cut_reference=False
) -> InpaintingExamples:
    return InpaintingExamples(
        records, resolution, reference_size, CLIP_MEAN, CLIP_STD, augment, seed=seed, cut_reference=cut_reference
    )


# ---------------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------------
def test_manifest_round_trip_with_relative_paths(tmp_path):
    a = save(tmp_path / "data" / "images" / "a.png")
    b = save(tmp_path / "data" / "images" / "b.png", size=(30, 50), seed=1)
    mask = save(tmp_path / "data" / "masks" / "b.png", size=(30, 50))
    outside = save(tmp_path / "elsewhere" / "c.png")
    records = [
        Record(a, [(1, 2, 30, 20), (5, 5, 48, 40)], width=48, height=40, meta={"identity": 3}),
        Record(b, [(0, 0, 30, 50)], mask=mask),
        Record(outside, [(2, 2, 4, 4)]),
    ]
    path = write_manifest(records, tmp_path / "data" / "train.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {
        "image": "images/a.png",
        "boxes": [[1, 2, 30, 20], [5, 5, 48, 40]],
        "width": 48,
        "height": 40,
        "meta": {"identity": 3},
    }
    assert lines[1]["mask"] == "masks/b.png" and lines[2]["image"] == str(outside)
    # Without width/height in the file the size is read from the image header.
    expected = [
        records[0],
        dataclasses.replace(records[1], width=30, height=50),
        Record(outside, [(2, 2, 4, 4)], width=48, height=40),
    ]
    assert read_manifest(path) == expected
    # The folder can move: relative paths follow it.
    shutil.move(tmp_path / "data", tmp_path / "moved")
    assert read_manifest(tmp_path / "moved" / "train.jsonl")[0].image == tmp_path / "moved" / "images" / "a.png"


def test_write_manifest_is_atomic_and_overwrites(tmp_path):
    image = save(tmp_path / "a.png")
    path = tmp_path / "m.jsonl"
    path.write_text("old\n")
    write_manifest([Record(image, [(0, 0, 4, 4)])], path)
    assert read_manifest(path)[0].boxes == [(0, 0, 4, 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "m.jsonl"]
    assert path.stat().st_mode & 0o044  # not left private like the temporary file
    with pytest.raises(TypeError, match=r"records\[0\]"):
        write_manifest([{"image": "a.png"}], path)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"image": "a.png", "boxes": [[0, 0, 5, 5]]', "not valid JSON"),
        ('{"boxes": [[0, 0, 5, 5]]}', "missing key\\(s\\) 'image'"),
        ('{"image": "a.png", "box": [[0, 0, 5, 5]]}', "unknown key\\(s\\) 'box'"),
        ('{"image": "a.png", "boxes": [[0, 0, 500, 5]]}', "box \\(0, 0, 500, 5\\): outside the 48×40 image"),
        ('{"image": "a.png", "boxes": [[9, 0, 5, 5]]}', "empty"),
        ('{"image": "a.png", "boxes": []}', "empty"),
        ('{"image": "a.png", "boxes": [0, 0, 5, 5]}', "four numbers"),
        ('{"image": "missing.png", "boxes": [[0, 0, 5, 5]]}', "missing.png: no such file"),
        ('{"image": "a.png", "boxes": [[0, 0, 5, 5]], "mask": "nope.png"}', "nope.png: no such file"),
        ('{"image": "a.png", "boxes": [[0, 0, 5, 5]], "width": 48}', "give both or neither"),
        ('["a.png"]', "expected a JSON object"),
        ('{"image": 3, "boxes": [[0, 0, 5, 5]]}', "expected a file path"),
    ],
)
def test_bad_manifest_lines_give_one_line_errors_naming_the_line(tmp_path, line, match):
    save(tmp_path / "a.png")
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.png", "boxes": [[0, 0, 5, 5]]}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=match) as excinfo:
        read_manifest(path)
    assert one_line_error(excinfo).startswith(f"manifest {path}, line 3: ")


def test_manifest_without_image_checks_trusts_the_stated_size(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "not/there.png", "boxes": [[0, 0, 5, 5]], "width": 10, "height": 8}\n')
    [record] = read_manifest(path, check_images=False)
    assert record.image == tmp_path / "not" / "there.png" and record.size == (10, 8)
    path.write_text('{"image": "x.png", "boxes": [[0, 0, 50, 5]], "width": 10, "height": 8}\n')
    with pytest.raises(InputError, match=r"line 1: box .*outside the 10×8 image"):
        read_manifest(path, check_images=False)


def test_empty_or_missing_manifest(tmp_path):
    (tmp_path / "m.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match=r"no records"):
        read_manifest(tmp_path / "m.jsonl")
    with pytest.raises(InputError, match=r"no such file"):
        read_manifest(tmp_path / "none.jsonl")


def test_image_size_reads_the_header_and_honours_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned by a quarter: the decoded photo is 40 wide, 48 high
    Image.fromarray(make_scene((48, 40))).save(tmp_path / "turned.jpg", exif=exif)
    assert image_size(tmp_path / "turned.jpg") == (40, 48)
    assert image_size(save(tmp_path / "plain.png")) == (48, 40)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"not an image"):
        image_size(tmp_path / "bad.jpg")


# ---------------------------------------------------------------------------------------------------
# Open Images and COCO
# ---------------------------------------------------------------------------------------------------
OI_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)


def oi_row(image_id: str, x0: float, x1: float, y0: float, y1: float) -> str:
    return f"{image_id},xclick,/m/01g317,1,{x0},{x1},{y0},{y1},0,0,0,0,0"


def test_openimages_area_filter_and_pixel_boxes(tmp_path):
    for name in ("aaa", "bbb"):
        save(tmp_path / "images" / f"{name}.jpg", size=(100, 50))
    rows = [
        oi_row("aaa", 0.1, 0.2, 0.1, 0.2),  # 1% of the image: dropped
        oi_row("aaa", 0.0, 0.95, 0.0, 0.95),  # 90%: dropped
        oi_row("aaa", 0.2, 0.8, 0.1, 0.6),  # 30%: kept
        oi_row("bbb", 0.5, 0.6, 0.5, 0.6),  # bbb has only a 1% box: skipped
    ]
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("\n".join([OI_HEADER, *rows]) + "\n")
    records = read_openimages(csv_path, tmp_path / "images")
    assert records == [Record(tmp_path / "images" / "aaa.jpg", [(20, 5, 80, 30)], width=100, height=50)]
    assert read_openimages(csv_path, tmp_path / "images", min_area=0.0, max_area=1.0)[0].boxes == [
        (10, 5, 20, 10),
        (0, 0, 95, 48),
        (20, 5, 80, 30),
    ]


def test_openimages_errors_name_the_line_and_missing_images(tmp_path):
    save(tmp_path / "images" / "aaa.jpg", size=(100, 50))
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("\n".join([OI_HEADER, oi_row("aaa", 0.2, 0.8, 0.1, 0.6), oi_row("aaa", "x", 0.8, 0.1, 0.6)]))
    with pytest.raises(InputError, match=r"line 3: .*expected four numbers") as excinfo:
        read_openimages(csv_path, tmp_path / "images")
    one_line_error(excinfo)
    csv_path.write_text("\n".join([OI_HEADER, oi_row("aaa", 0.8, 0.2, 0.1, 0.6)]))
    with pytest.raises(InputError, match=r"line 2: .*need 0 ≤ min ≤ max ≤ 1"):
        read_openimages(csv_path, tmp_path / "images")
    csv_path.write_text("\n".join([OI_HEADER, oi_row("../aaa", 0.2, 0.8, 0.1, 0.6)]))
    with pytest.raises(InputError, match=r"line 2: ImageID '../aaa'"):
        read_openimages(csv_path, tmp_path / "images")
    csv_path.write_text("ImageID,XMin,XMax\naaa,0.1,0.2\n")
    with pytest.raises(InputError, match=r"missing column\(s\) YMin, YMax"):
        read_openimages(csv_path, tmp_path / "images")
    csv_path.write_text("\n".join([OI_HEADER, oi_row("aaa", 0.2, 0.8, 0.1, 0.6), oi_row("ccc", 0.2, 0.8, 0.1, 0.6)]))
    with pytest.raises(InputError, match=r"ccc.jpg: no such file"):
        read_openimages(csv_path, tmp_path / "images")
    assert [r.image.stem for r in read_openimages(csv_path, tmp_path / "images", skip_missing=True)] == ["aaa"]
    with pytest.raises(ValueError, match=r"min_area 0.9 is larger"):
        read_openimages(csv_path, tmp_path / "images", min_area=0.9, max_area=0.8)


def coco_file(tmp_path: Path, annotations: list[dict]) -> Path:
    images = [
        {"id": 1, "file_name": "one.jpg", "width": 100, "height": 50},
        {"id": 2, "file_name": "two.jpg", "width": 100, "height": 50},
    ]
    for entry in images:
        save(tmp_path / "images" / entry["file_name"], size=(100, 50))
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": []}))
    return path


def test_coco_area_filter_and_crowd_boxes(tmp_path):
    annotations = [
        {"id": 10, "image_id": 1, "bbox": [10, 5, 10, 5], "iscrowd": 0},  # 1%: dropped
        {"id": 11, "image_id": 1, "bbox": [0, 0, 95, 47.4], "iscrowd": 0},  # 90%: dropped
        {"id": 12, "image_id": 1, "bbox": [20.2, 4.6, 60, 25], "iscrowd": 0},  # 30%: kept
        {"id": 13, "image_id": 2, "bbox": [20, 5, 60, 25], "iscrowd": 1},  # crowd: skipped, so image 2 is
    ]
    records = read_coco(coco_file(tmp_path, annotations), tmp_path / "images")
    assert records == [Record(tmp_path / "images" / "one.jpg", [(20, 5, 80, 30)], width=100, height=50)]


def test_coco_boxes_overshooting_by_a_fraction_are_clipped_and_errors_name_the_entry(tmp_path):
    annotations = [{"id": 1, "image_id": 1, "bbox": [40.0, 20.0, 60.4, 30.3]}]
    assert read_coco(coco_file(tmp_path, annotations), tmp_path / "images")[0].boxes == [(40, 20, 100, 50)]
    for bad, match in [
        ({"id": 2, "image_id": 7, "bbox": [0, 0, 50, 25]}, "annotations\\[1\\]: image_id 7: no such image"),
        ({"id": 2, "image_id": 1, "bbox": [0, 0, 150, 25]}, "annotations\\[1\\]: bbox .* outside the 100×50 image"),
        ({"id": 2, "image_id": 1, "bbox": [0, 0, 50]}, "annotations\\[1\\]: bbox .* four numbers"),
    ]:
        with pytest.raises(InputError, match=match) as excinfo:
            read_coco(coco_file(tmp_path, [*annotations, bad]), tmp_path / "images")
        one_line_error(excinfo)
    path = coco_file(tmp_path, annotations)
    (tmp_path / "images" / "one.jpg").unlink()
    with pytest.raises(InputError, match=r"one.jpg: no such file"):
        read_coco(path, tmp_path / "images")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match=r"broken.json"):
        read_coco(tmp_path / "broken.json", tmp_path / "images")


def test_coco_skip_missing_images(tmp_path):
    path = coco_file(tmp_path, [{"id": 1, "image_id": 1, "bbox": [20, 5, 60, 25]}])
    (tmp_path / "images" / "one.jpg").unlink()
    assert read_coco(path, tmp_path / "images", skip_missing=True) == []


# ---------------------------------------------------------------------------------------------------
# A folder of subject photos
# ---------------------------------------------------------------------------------------------------
BEAR_BOXES = {
    "00.jpg": [150, 120, 600, 700],
    "01.jpg": [100, 100, 700, 700],
    "02.jpg": [0, 0, 768, 768],
    "03.jpg": [1, 2, 3, 4],
}


def test_photo_folder_with_boxes_file(tmp_path):
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(BEAR_BOXES))
    records = read_photo_folder(BEAR, boxes_file=boxes_file)
    assert [r.image.name for r in records] == ["00.jpg", "01.jpg", "02.jpg", "03.jpg"]
    assert records[0] == Record(BEAR / "00.jpg", [(150, 120, 600, 700)], width=768, height=768)
    for changed, match in [
        ({**BEAR_BOXES, "00.jpg": [150, 120, 800, 700]}, "photo 00.jpg: box .* outside the 768×768 image"),
        ({k: v for k, v in BEAR_BOXES.items() if k != "03.jpg"}, "no box for photo 03.jpg"),
        ({**BEAR_BOXES, "04.jpg": [0, 0, 5, 5]}, "entry '04.jpg' names no photo"),
    ]:
        boxes_file.write_text(json.dumps(changed))
        with pytest.raises(InputError, match=match) as excinfo:
            read_photo_folder(BEAR, boxes_file=boxes_file)
        one_line_error(excinfo)


def test_photo_folder_with_masks(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for n, name in enumerate(sorted(BEAR_BOXES)):
        mask = np.zeros((384, 384), dtype=np.uint8)  # half the photo's size: the same aspect ratio
        mask[50 + n : 300, 60 : 200 + n] = 255
        Image.fromarray(mask).save(masks / f"{Path(name).stem}.png")
    records = read_photo_folder(BEAR, masks_dir=masks)
    assert records[0].boxes == [(120, 100, 400, 600)] and records[0].mask == masks / "00.png"
    assert records[3].boxes == [(120, 106, 406, 600)]
    Image.fromarray(np.zeros((384, 384), dtype=np.uint8)).save(masks / "02.png")
    with pytest.raises(InputError, match=r"02.png: empty"):
        read_photo_folder(BEAR, masks_dir=masks)
    (masks / "02.png").unlink()
    with pytest.raises(InputError, match=r"no mask for photo 02.jpg"):
        read_photo_folder(BEAR, masks_dir=masks)


def test_photo_folder_without_location_empty_or_unreadable(tmp_path):
    with pytest.raises(NoSubjectLocation, match=r"4 photos") as excinfo:
        read_photo_folder(BEAR)
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(ValueError, match=r"not both"):
        read_photo_folder(BEAR, boxes_file=tmp_path / "b.json", masks_dir=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    with pytest.raises(InputError, match=r"no photos in"):
        read_photo_folder(empty)
    broken = tmp_path / "broken"
    shutil.copytree(BEAR, broken)
    (broken / "02.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "b.json").write_text(json.dumps(BEAR_BOXES))
    with pytest.raises(InputError, match=r"02.jpg") as excinfo:
        read_photo_folder(broken, boxes_file=tmp_path / "b.json")
    one_line_error(excinfo)
    with pytest.raises(InputError, match=r"no such folder"):
        read_photo_folder(tmp_path / "none")


# ---------------------------------------------------------------------------------------------------
# Training examples
# ---------------------------------------------------------------------------------------------------
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
    return (reference * torch.tensor(CLIP_STD)[:, None, None] + torch.tensor(CLIP_MEAN)[:, None, None]) * 255


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


@st.composite
def scenes_with_boxes(draw):
    width, height = draw(st.integers(8, 80)), draw(st.integers(8, 80))
    x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
    box = (x0, y0, draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height)))
    return np.zeros((height, width, 3), dtype=np.uint8), box


@settings(max_examples=60, deadline=None)
@given(scenes_with_boxes(), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_hole_covers_the_box_and_stays_in_the_extended_box(case, seed, bezier_p):
    rgb, box = case
    resolution = 24
    item = make_example(
        rgb,
        box,
        resolution=resolution,
        reference_size=8,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        augment=dataclasses.replace(AugmentConfig.subject(), bezier_p=bezier_p),
        generator=torch.Generator().manual_seed(seed),
    )
    hole = item["keep_mask"][0] == 0
    cx0, cy0, cx1, cy1 = item["crop"].tolist()
    sx, sy = resolution / (cx1 - cx0), resolution / (cy1 - cy0)

    def pixels(b, inward: bool) -> tuple[slice, slice]:
        """Output pixels wholly inside box ``b`` (inward) or touching it (outward)."""
        lo, hi = (math.ceil, math.floor) if inward else (math.floor, math.ceil)
        xs = slice(max(0, lo((b[0] - cx0) * sx - 1e-6)), hi((b[2] - cx0) * sx + 1e-6))
        ys = slice(max(0, lo((b[1] - cy0) * sy - 1e-6)), hi((b[3] - cy0) * sy + 1e-6))
        return ys, xs

    assert hole[pixels(box, inward=True)].all()
    outside = torch.ones_like(hole)
    outside[pixels(item["extended_box"].tolist(), inward=False)] = False
    assert not (hole & outside).any()
    assert hole.any()


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
        InpaintingExamples([record], 32, 16, CLIP_MEAN, (0.2, 0.0, 0.2), NO_AUGMENT)
    with pytest.raises(TypeError, match=r"AugmentConfig"):
        InpaintingExamples([record], 32, 16, CLIP_MEAN, CLIP_STD, None)
    with pytest.raises(ValueError, match=r"seed -1"):
        examples([record], seed=-1)
    with pytest.raises(ValueError, match=r"epoch -2"):
        examples([record]).set_epoch(-2)
    with pytest.raises(IndexError):
        examples([record])[1]
