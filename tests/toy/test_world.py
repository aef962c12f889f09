"""The toy world: deterministic by seed, consistent ground truth, disjoint splits."""

from __future__ import annotations

import numpy as np
import pytest

from subject_inpainting.toy import world


def test_identities_are_deterministic_and_splits_disjoint():
    assert world.identity(3, 17) == world.identity(3, 17)
    assert world.identity(3, 17) != world.identity(4, 17)
    splits = {name: world.split_identities(0, name) for name in world.SPLITS}
    indices = [{i.index for i in ids} for ids in splits.values()]
    assert all(a.isdisjoint(b) for k, a in enumerate(indices) for b in indices[k + 1 :])
    looks = {name: {tuple(world.attribute_labels(i).values()) for i in ids} for name, ids in splits.items()}
    # no training subject looks exactly like a held-out or evaluator one (the raw draws hold a few twins)
    assert looks["train"].isdisjoint(looks["heldout"]) and looks["train"].isdisjoint(looks["evaluator"])
    raw = [world.identity(0, i) for i in range(*world.SPLITS["train"])]
    assert len(splits["train"]) < len(raw) and len(splits["train"]) > 0.95 * len(raw)
    for ident in splits["train"][:50]:
        assert len({ident.body, ident.pattern_color, ident.marking_color}) == 3
    with pytest.raises(ValueError, match="holds 100 identities"):
        world.split_identities(0, "heldout", 101)


def test_attribute_labels_name_what_can_be_seen():
    for ident in (world.identity(0, i) for i in range(300)):
        labels = world.attribute_labels(ident)
        assert list(labels) == list(world.ATTRIBUTES)
        assert all(-1 <= v < world.ATTRIBUTES[k] for k, v in labels.items())
        assert world.SHAPES[labels["shape"]] == ident.shape and labels["body"] == ident.body
        assert (labels["pattern_color"] == -1) == (ident.pattern == "plain")
        assert (labels["marking_color"] == -1) == (ident.marking == "none")
        assert labels["pattern_color"] in (-1, ident.pattern_color)


def test_renders_are_deterministic_and_varied():
    ident = world.identity(0, 5)
    a, b, c = (world.render_scene(ident, 64, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.image, b.image) and a.box == b.box
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8


@pytest.mark.parametrize("seed", range(8))
def test_ground_truth_is_consistent(seed):
    r = world.render_scene(world.identity(0, seed), 64, seed=seed, occlusion_p=0.5)
    x0, y0, x1, y1 = r.box
    ys, xs = np.nonzero(r.mask)
    assert r.mask.any() and xs.min() == x0 and xs.max() + 1 == x1 and ys.min() == y0 and ys.max() + 1 == y1
    # the subject changes the picture only where its mask says; elsewhere image == background exactly
    assert np.array_equal(r.image[~r.mask], r.background[~r.mask])
    assert np.abs(r.image[r.mask].astype(int) - r.background[r.mask]).mean() > 5


def test_cases_and_photos():
    ident = world.split_identities(0, "heldout", 1)[0]
    case = world.make_case(ident, seed=3)
    assert np.array_equal(case.scene[~case.mask], case.truth[~case.mask])
    x0, y0, x1, y1 = case.box
    assert case.mask[y0:y1, x0:x1].all()
    assert case.identity == ident and case.reference.ndim == 3
    again = world.make_case(ident, seed=3)
    assert np.array_equal(again.truth, case.truth) and np.array_equal(again.reference, case.reference)
    photos = world.subject_photos(ident, 4, seed=1)
    assert len({p.image.tobytes() for p in photos}) == 4
    assert all(p.identity == ident for p in photos)


def test_pose_labels_bin_the_tilt_and_name_the_mirroring():
    # Five bins of 10 degrees over ±25: [-25, -15), [-15, -5), [-5, 5), [5, 15), [15, 25]; outside is clipped.
    angles = (-40, -25, -15.1, -15, -5.1, -5, 0, 4.9, 5, 14.9, 15, 25, 40)
    assert [world.pose_labels(a, False)["tilt"] for a in angles] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
    assert world.pose_labels(0, True) == {"tilt": 2, "flip": 1} and world.pose_labels(0, False)["flip"] == 0
    assert set(world.pose_labels(3, True)) == set(world.POSE_ATTRIBUTES)


def test_a_render_can_take_a_given_pose_and_keeps_everything_else():
    ident = world.identity(0, 12)
    free = world.render_scene(ident, 64, seed=5, occlusion_p=0.0)
    posed = world.render_scene(ident, 64, seed=5, occlusion_p=0.0, angle=-free.pose.angle, flip=not free.pose.flip)
    assert (posed.pose.angle, posed.pose.flip) == (-free.pose.angle, not free.pose.flip)
    assert (posed.pose.side, posed.pose.x, posed.pose.y) == (free.pose.side, free.pose.x, free.pose.y)
    assert np.array_equal(posed.background, free.background) and not np.array_equal(posed.image, free.image)
    same = world.render_scene(ident, 64, seed=5, occlusion_p=0.0, angle=free.pose.angle, flip=free.pose.flip)
    assert np.array_equal(same.image, free.image)


def _placed(pose: world.Pose) -> tuple:
    return pose.side, pose.x, pose.y, pose.flip


def test_tilt_scales_the_drawn_rotation_and_keeps_every_other_draw():
    ident = world.identity(0, 12)
    tilted = world.render_scene(ident, 64, seed=5)
    upright = world.render_scene(ident, 64, seed=5, tilt=0)
    half = world.render_scene(ident, 64, seed=5, tilt=world.TILT_RANGE / 2)
    assert tilted.pose.angle != 0
    assert upright.pose.angle == 0 and half.pose.angle == pytest.approx(tilted.pose.angle / 2)
    for r in (upright, half):
        assert _placed(r.pose) == _placed(tilted.pose)
        assert np.array_equal(r.background, tilted.background) and not np.array_equal(r.image, tilted.image)
    assert np.array_equal(world.render_scene(ident, 64, seed=5, tilt=world.TILT_RANGE).image, tilted.image)
    assert world.render_scene(ident, 64, seed=5, tilt=0, angle=7).pose.angle == 7  # a given angle wins
    for bad in (-1, 181, float("nan")):
        with pytest.raises(ValueError, match=r"tilt (-1|181|nan): expected a rotation range of 0-180 degrees"):
            world.render_scene(ident, 64, seed=5, tilt=bad)
