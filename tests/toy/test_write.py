"""The toy world written to disk: deterministic, read back by the readers, refused where it would overwrite."""

from __future__ import annotations

import numpy as np
import pytest

from subject_inpainting.toy import world, write
from subject_inpainting.utils.files import OutputError


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_written_dataset_is_deterministic_and_reads_back(tmp_path):
    import json

    from PIL import Image

    from subject_inpainting.data.annotations import read_manifest, read_photo_folder

    kw = dict(world_seed=2, train_images=6, subjects=2, photos=3, cases=2, progress=False)
    write.write_dataset(tmp_path / "a", **kw)
    write.write_dataset(tmp_path / "b", **kw)
    a = _tree(tmp_path / "a")
    assert a == _tree(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left
    train = world.split_identities(2, "train")
    records = read_manifest(tmp_path / "a" / "train" / "manifest.jsonl")
    assert len(records) == 6
    for k, record in enumerate(records):
        assert record.meta["identity"] == train[k].index  # training images show train identities only
        expected = world.render_scene(train[k], 64, seed=world.seed_from(2, 30, k))
        assert np.array_equal(np.asarray(Image.open(record.image)), expected.image)
        assert record.boxes == [expected.box]
        assert np.array_equal(np.asarray(Image.open(record.mask)) > 127, expected.solid)
    heldout = {i.index for i in world.split_identities(2, "heldout")}
    subjects = sorted((tmp_path / "a" / "subjects").iterdir())
    assert [int(s.name) for s in subjects] == sorted(heldout)[:2]
    for s in subjects:
        photos = read_photo_folder(s / "photos", s / "boxes.json")
        assert len(photos) == 3
        for record in photos:  # every box lies inside its photo
            x0, y0, x1, y1 = record.boxes[0]
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        masked = read_photo_folder(s / "photos", masks_dir=s / "masks")  # the masks' boxes: within the boxes
        for record, boxed in zip(masked, photos, strict=True):
            (a0, b0, a1, b1), (x0, y0, x1, y1) = record.boxes[0], boxed.boxes[0]
            assert x0 <= a0 < a1 <= x1 and y0 <= b0 < b1 <= y1 and record.mask.parent.name == "masks"
    lines = [json.loads(x) for x in (tmp_path / "a" / "test" / "cases.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {x["identity"] for x in lines} <= heldout
    for line in lines:
        folder = tmp_path / "a" / "test"
        scene, truth = (np.asarray(Image.open(folder / line[k])) for k in ("scene", "truth"))
        mask = np.asarray(Image.open(folder / line["mask"])) > 127
        assert np.array_equal(scene[~mask], truth[~mask])  # the truth differs from the scene only in the hole
        x0, y0, x1, y1 = line["box"]
        assert mask[y0:y1, x0:x1].all() and np.abs(truth[mask].astype(int) - scene[mask]).mean() > 5
        assert (folder / line["subject"] / "boxes.json").is_file()


def test_write_dataset_refuses_existing_folders_and_bad_counts(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="was not written by subject-inpainting"):
        write.write_dataset(tmp_path / "taken", train_images=1, subjects=0, progress=False)
    with pytest.raises(OutputError, match="was not written by subject-inpainting"):
        write.write_dataset(tmp_path / "taken", train_images=1, subjects=0, progress=False, overwrite=True)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"
    write.write_dataset(tmp_path / "world", train_images=1, subjects=0, progress=False)
    with pytest.raises(OutputError, match="already holds a toy world"):
        write.write_dataset(tmp_path / "world", train_images=2, subjects=0, progress=False)
    write.write_dataset(tmp_path / "world", train_images=2, subjects=0, progress=False, overwrite=True)
    assert len((tmp_path / "world" / "train" / "manifest.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "world"]  # nothing left beside
    with pytest.raises(ValueError, match="photos must be an integer ≥ 1, got 0"):
        write.write_dataset(tmp_path / "x", photos=0, progress=False)
    with pytest.raises(ValueError, match="subjects 101: the toy world has 100 held-out identities; expected at most"):
        write.write_dataset(tmp_path / "x", subjects=101, progress=False)
    assert not (tmp_path / "x").exists()


def test_a_world_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 0, 10**6))
    with pytest.raises(ValueError, match=r"take up to 15.6 MB and the disk has 976.6 kB free"):
        write.write_dataset(tmp_path / "world", train_images=1000, subjects=0, size=64, progress=False)
    assert list(tmp_path.iterdir()) == []
