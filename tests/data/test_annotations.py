"""Annotation readers: manifests, Open Images, COCO and subject photo folders; one-line errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import BEAR_BOXES, FIXTURES, make_scene, save_scene
from subject_inpainting.data import (
    NoSubjectLocation,
    Record,
    image_size,
    read_coco,
    read_manifest,
    read_openimages,
    read_photo_folder,
    write_manifest,
)
from subject_inpainting.imaging import InputError

BEAR = FIXTURES / "dreambooth" / "bear_plushie"


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_manifest_round_trip_with_relative_paths(tmp_path):
    a = save_scene(tmp_path / "data" / "images" / "a.png")
    b = save_scene(tmp_path / "data" / "images" / "b.png", size=(30, 50), seed=1)
    mask = save_scene(tmp_path / "data" / "masks" / "b.png", size=(30, 50))
    outside = save_scene(tmp_path / "elsewhere" / "c.png")
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
    image = save_scene(tmp_path / "a.png")
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
    save_scene(tmp_path / "a.png")
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
    assert image_size(save_scene(tmp_path / "plain.png")) == (48, 40)
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
        save_scene(tmp_path / "images" / f"{name}.jpg", size=(100, 50))
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
    save_scene(tmp_path / "images" / "aaa.jpg", size=(100, 50))
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
        save_scene(tmp_path / "images" / entry["file_name"], size=(100, 50))
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
