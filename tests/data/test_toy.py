"""The toy world: deterministic by seed, consistent ground truth, disjoint splits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from subject_inpainting.data import toy
from subject_inpainting.models.reference_encoder import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from subject_inpainting.utils.files import OutputError


def test_identities_are_deterministic_and_splits_disjoint():
    assert toy.identity(3, 17) == toy.identity(3, 17)
    assert toy.identity(3, 17) != toy.identity(4, 17)
    splits = {name: toy.split_identities(0, name) for name in toy.SPLITS}
    indices = [{i.index for i in ids} for ids in splits.values()]
    assert all(a.isdisjoint(b) for k, a in enumerate(indices) for b in indices[k + 1 :])
    looks = {name: {tuple(toy.attribute_labels(i).values()) for i in ids} for name, ids in splits.items()}
    # no training subject looks exactly like a held-out or evaluator one (the raw draws hold a few twins)
    assert looks["train"].isdisjoint(looks["heldout"]) and looks["train"].isdisjoint(looks["evaluator"])
    raw = [toy.identity(0, i) for i in range(*toy.SPLITS["train"])]
    assert len(splits["train"]) < len(raw) and len(splits["train"]) > 0.95 * len(raw)
    for ident in splits["train"][:50]:
        assert len({ident.body, ident.pattern_color, ident.marking_color}) == 3
    with pytest.raises(ValueError, match="holds 100 identities"):
        toy.split_identities(0, "heldout", 101)


def test_attribute_labels_name_what_can_be_seen():
    for ident in (toy.identity(0, i) for i in range(300)):
        labels = toy.attribute_labels(ident)
        assert list(labels) == list(toy.ATTRIBUTES)
        assert all(-1 <= v < toy.ATTRIBUTES[k] for k, v in labels.items())
        assert toy.SHAPES[labels["shape"]] == ident.shape and labels["body"] == ident.body
        assert (labels["pattern_color"] == -1) == (ident.pattern == "plain")
        assert (labels["marking_color"] == -1) == (ident.marking == "none")
        assert labels["pattern_color"] in (-1, ident.pattern_color)


def test_renders_are_deterministic_and_varied():
    ident = toy.identity(0, 5)
    a, b, c = (toy.render_scene(ident, 64, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.image, b.image) and a.box == b.box
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8


@pytest.mark.parametrize("seed", range(8))
def test_ground_truth_is_consistent(seed):
    r = toy.render_scene(toy.identity(0, seed), 64, seed=seed, occlusion_p=0.5)
    x0, y0, x1, y1 = r.box
    ys, xs = np.nonzero(r.mask)
    assert r.mask.any() and xs.min() == x0 and xs.max() + 1 == x1 and ys.min() == y0 and ys.max() + 1 == y1
    # the subject changes the picture only where its mask says; elsewhere image == background exactly
    assert np.array_equal(r.image[~r.mask], r.background[~r.mask])
    assert np.abs(r.image[r.mask].astype(int) - r.background[r.mask]).mean() > 5


def test_cases_and_photos():
    ident = toy.split_identities(0, "heldout", 1)[0]
    case = toy.make_case(ident, seed=3)
    assert np.array_equal(case.scene[~case.mask], case.truth[~case.mask])
    x0, y0, x1, y1 = case.box
    assert case.mask[y0:y1, x0:x1].all()
    assert case.identity == ident and case.reference.ndim == 3
    again = toy.make_case(ident, seed=3)
    assert np.array_equal(again.truth, case.truth) and np.array_equal(again.reference, case.reference)
    photos = toy.subject_photos(ident, 4, seed=1)
    assert len({p.image.tobytes() for p in photos}) == 4
    assert all(p.identity == ident for p in photos)


def test_training_examples_use_another_render_as_reference():
    ids = toy.split_identities(0, "train", 10)
    data = toy.ToyWorldExamples(ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, toy.toy_augment(), seed=0)
    a, b = data[7], data[7]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["identity"]) == 7
    assert a["pixel_values"].shape == (3, 64, 64) and a["reference"].shape == (3, 32, 32)
    assert (a["keep_mask"] == 0).any() and (a["keep_mask"] == 1).any()
    assert not torch.equal(data[8]["pixel_values"], a["pixel_values"])
    assert data.procedural


def test_pose_labels_bin_the_tilt_and_name_the_mirroring():
    # Five bins of 10 degrees over ±25: [-25, -15), [-15, -5), [-5, 5), [5, 15), [15, 25]; outside is clipped.
    angles = (-40, -25, -15.1, -15, -5.1, -5, 0, 4.9, 5, 14.9, 15, 25, 40)
    assert [toy.pose_labels(a, False)["tilt"] for a in angles] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    assert toy.pose_labels(0, True) == {"tilt": 2, "flip": 1} and toy.pose_labels(0, False)["flip"] == 0
    assert set(toy.pose_labels(3, True)) == set(toy.POSE_ATTRIBUTES)


def test_a_render_can_take_a_given_pose_and_keeps_everything_else():
    ident = toy.identity(0, 12)
    free = toy.render_scene(ident, 64, seed=5, occlusion_p=0.0)
    posed = toy.render_scene(ident, 64, seed=5, occlusion_p=0.0, angle=-free.pose.angle, flip=not free.pose.flip)
    assert (posed.pose.angle, posed.pose.flip) == (-free.pose.angle, not free.pose.flip)
    assert (posed.pose.side, posed.pose.x, posed.pose.y) == (free.pose.side, free.pose.x, free.pose.y)
    assert np.array_equal(posed.background, free.background) and not np.array_equal(posed.image, free.image)
    same = toy.render_scene(ident, 64, seed=5, occlusion_p=0.0, angle=free.pose.angle, flip=free.pose.flip)
    assert np.array_equal(same.image, free.image)


def _placed(pose: toy.Pose) -> tuple:
    return pose.side, pose.x, pose.y, pose.flip


def test_tilt_scales_the_drawn_rotation_and_keeps_every_other_draw():
    ident = toy.identity(0, 12)
    world = toy.render_scene(ident, 64, seed=5)
    upright = toy.render_scene(ident, 64, seed=5, tilt=0)
    half = toy.render_scene(ident, 64, seed=5, tilt=toy.TILT_RANGE / 2)
    assert world.pose.angle != 0
    assert upright.pose.angle == 0 and half.pose.angle == pytest.approx(world.pose.angle / 2)
    for r in (upright, half):
        assert _placed(r.pose) == _placed(world.pose)
        assert np.array_equal(r.background, world.background) and not np.array_equal(r.image, world.image)
    assert np.array_equal(toy.render_scene(ident, 64, seed=5, tilt=toy.TILT_RANGE).image, world.image)
    assert toy.render_scene(ident, 64, seed=5, tilt=0, angle=7).pose.angle == 7  # a given angle wins
    for bad in (-1, 181, float("nan")):
        with pytest.raises(ValueError, match=r"tilt (-1|181|nan): expected a rotation range of 0-180 degrees"):
            toy.render_scene(ident, 64, seed=5, tilt=bad)


def test_upright_examples_show_both_renders_upright_and_draw_the_rest_alike():
    ids = toy.split_identities(0, "train", 10)
    args = (ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, toy.toy_augment())
    upright, world = toy.ToyWorldExamples(*args, seed=0, tilt=0), toy.ToyWorldExamples(*args, seed=0)
    for i in range(4):
        for a, b in ((upright.scene(i), world.scene(i)), (upright._other(i), world._other(i))):
            assert a.pose.angle == 0 and b.pose.angle != 0
            assert _placed(a.pose) == _placed(b.pose)
        assert upright[i]["reference_pose"][0] == toy.pose_labels(0.0, False)["tilt"]  # the middle tilt bin
    same = toy.ToyWorldExamples(*args, seed=0, tilt=0, same_pose=True)
    assert all(same.scene(i).pose.angle == 0 == same._other(i).pose.angle for i in range(4))
    default = toy.ToyWorldExamples(*args, seed=0, tilt=toy.TILT_RANGE)[3]
    assert all(torch.equal(v, world[3][k]) for k, v in default.items())
    with pytest.raises(ValueError, match="tilt -5: expected a rotation range of 0-180 degrees"):
        toy.ToyWorldExamples(*args, tilt=-5)


def test_same_pose_examples_show_the_reference_in_the_scenes_pose():
    ids = toy.split_identities(0, "train", 10)
    args = (ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, toy.toy_augment())
    same, free = toy.ToyWorldExamples(*args, seed=0, same_pose=True), toy.ToyWorldExamples(*args, seed=0)
    matched = 0
    for i in range(8):
        scene, other = same.scene(i), same._other(i)
        assert (scene.pose.angle, scene.pose.flip) == (other.pose.angle, other.pose.flip)
        assert abs(scene.pose.angle) <= toy.TILT_RANGE
        assert scene.box != other.box or not np.array_equal(scene.background, other.background)
        item = same[i]
        assert item["reference_pose"].tolist() == list(toy.pose_labels(scene.pose.angle, scene.pose.flip).values())
        assert np.array_equal(item["pixel_values"].numpy(), same[i]["pixel_values"].numpy())
        f = free.scene(i)
        matched += free[i]["reference_pose"].tolist() == list(toy.pose_labels(f.pose.angle, f.pose.flip).values())
    assert matched < 8  # without same_pose the reference's pose is drawn on its own


def test_reference_and_scene_items_match_the_whole_item():
    from subject_inpainting.imaging import rgb_to_tensor

    ids = toy.split_identities(0, "train", 10)
    # an augmentation that draws nothing for the reference and never zooms into the scene
    still = dataclasses.replace(toy.toy_augment(), crop_min_share=1.0, flip_p=0.0, rotation_p=0.0)
    data = toy.ToyWorldExamples(
        ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, still, seed=0, cut_reference=True, same_pose=True
    )
    for i in range(4):
        item, ref = data[i], data.reference_item(i)
        assert set(ref) == {"reference", "identity", "reference_pose"}
        assert all(torch.equal(item[k], ref[k]) for k in ref)
        assert torch.equal(item["pixel_values"], rgb_to_tensor(data.scene(i).image)[0])


def test_references_are_cut_out_onto_white():
    from subject_inpainting.training.toy_stages import to_unit_range

    r = toy.render_scene(toy.identity(0, 3), 64, seed=4, occlusion_p=0.0)
    assert (r.solid <= r.mask).all() and r.solid.sum() > 0.8 * r.mask.sum()
    cut = r.cut_out()
    assert np.array_equal(cut[r.solid], r.image[r.solid]) and (cut[~r.solid] == 255).all()
    case = toy.make_case(toy.split_identities(0, "heldout", 1)[0], seed=3)
    corners = case.reference[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()  # the margin around the subject is white, not a scene
    ids = toy.split_identities(0, "train", 10)
    data = {
        cut: toy.ToyWorldExamples(
            ids, 64, 64, 32, CLIP_IMAGE_MEAN, CLIP_IMAGE_STD, toy.toy_augment(), seed=0, cut_reference=cut
        )
        for cut in (False, True)
    }
    for i in range(6):
        plain, cut = data[False][i], data[True][i]
        for key in ("pixel_values", "keep_mask", "box", "crop"):  # the same draws: only the reference differs
            assert torch.equal(plain[key], cut[key])
        border = torch.cat([cut["reference"][:, 0], cut["reference"][:, -1]], dim=-1)
        white = (to_unit_range(border[:, None])[:, 0] > 0.95).all(dim=0)
        assert white.float().mean() > 0.5, i  # most of the top and bottom rows: white (rotations move a few)
        assert not torch.equal(plain["reference"], cut["reference"])


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_written_dataset_is_deterministic_and_reads_back(tmp_path):
    import json

    from PIL import Image

    from subject_inpainting.data.datasets import read_manifest, read_photo_folder

    kw = dict(world_seed=2, train_images=6, subjects=2, photos=3, cases=2, progress=False)
    toy.write_dataset(tmp_path / "a", **kw)
    toy.write_dataset(tmp_path / "b", **kw)
    a = _tree(tmp_path / "a")
    assert a == _tree(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left
    train = toy.split_identities(2, "train")
    records = read_manifest(tmp_path / "a" / "train" / "manifest.jsonl")
    assert len(records) == 6
    for k, record in enumerate(records):
        assert record.meta["identity"] == train[k].index  # training images show train identities only
        expected = toy.render_scene(train[k], 64, seed=toy._seed(2, 30, k))
        assert np.array_equal(np.asarray(Image.open(record.image)), expected.image)
        assert record.boxes == [expected.box]
        assert np.array_equal(np.asarray(Image.open(record.mask)) > 127, expected.solid)
    heldout = {i.index for i in toy.split_identities(2, "heldout")}
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
        toy.write_dataset(tmp_path / "taken", train_images=1, subjects=0, progress=False)
    with pytest.raises(OutputError, match="was not written by subject-inpainting"):
        toy.write_dataset(tmp_path / "taken", train_images=1, subjects=0, progress=False, overwrite=True)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"
    toy.write_dataset(tmp_path / "world", train_images=1, subjects=0, progress=False)
    with pytest.raises(OutputError, match="already holds a toy world"):
        toy.write_dataset(tmp_path / "world", train_images=2, subjects=0, progress=False)
    toy.write_dataset(tmp_path / "world", train_images=2, subjects=0, progress=False, overwrite=True)
    assert len((tmp_path / "world" / "train" / "manifest.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken", "world"]  # nothing left beside
    with pytest.raises(ValueError, match="photos must be an integer ≥ 1, got 0"):
        toy.write_dataset(tmp_path / "x", photos=0, progress=False)
    with pytest.raises(ValueError, match="holds 100 identities, got 101"):
        toy.write_dataset(tmp_path / "x", subjects=101, progress=False)
    assert not (tmp_path / "x").exists()


def test_a_world_larger_than_the_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 0, 10**6))
    with pytest.raises(ValueError, match=r"take up to 15.6 MB and the disk has 976.6 kB free"):
        toy.write_dataset(tmp_path / "world", train_images=1000, subjects=0, size=64, progress=False)
    assert list(tmp_path.iterdir()) == []
