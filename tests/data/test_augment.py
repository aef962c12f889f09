"""Reference augmentation and the training settings presets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_scene
from subject_inpainting.data import AugmentConfig, augment_reference

OFF = AugmentConfig(flip_p=0.0, rotation_p=0.0, blur_p=0.0, elastic_p=0.0)
IMAGE = make_scene((40, 32), seed=3)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_presets_match_the_original_settings():
    base = AugmentConfig.base()
    assert (base.reference_margin, base.flip_p, base.rotation_degrees) == (10, 0.5, 20.0)
    assert (base.blur_p, base.elastic_p) == (0.0, 0.0)
    assert (base.box_extension, base.bezier_p, base.crop_min_share) == (0.4, 0.5, 0.0)
    assert base.rotation_p == 0.5 and base.blur_radius == (0.1, 2.0) and base.bezier_jitter == 5.0
    subject = AugmentConfig.subject()
    assert (subject.blur_p, subject.elastic_p) == (0.3, 0.3)
    assert dataclasses.replace(subject, blur_p=0.0, elastic_p=0.0) == base


def test_same_seed_gives_the_same_output_and_seeds_differ():
    config = dataclasses.replace(AugmentConfig.subject(), flip_p=0.5, rotation_p=1.0, blur_p=0.5, elastic_p=0.5)
    outputs = [augment_reference(IMAGE, config, gen(s)) for s in range(4)]
    assert np.array_equal(outputs[2], augment_reference(IMAGE, config, gen(2)))
    assert len({o.tobytes() for o in outputs}) == 4


def test_everything_off_leaves_the_image_unchanged_and_copies_it():
    out = augment_reference(IMAGE, OFF, gen(0))
    assert np.array_equal(out, IMAGE) and out is not IMAGE
    rotation_zero = dataclasses.replace(OFF, rotation_p=1.0, rotation_degrees=0.0)
    assert np.array_equal(augment_reference(IMAGE, rotation_zero, gen(0)), IMAGE)


def test_flip_with_p_one_is_a_mirror():
    out = augment_reference(IMAGE, dataclasses.replace(OFF, flip_p=1.0), gen(0))
    assert np.array_equal(out, np.fliplr(IMAGE))


def test_rotation_turns_the_content_and_fills_corners_from_the_image():
    config = dataclasses.replace(OFF, rotation_p=1.0, rotation_degrees=20.0)
    out = augment_reference(IMAGE, config, gen(0))
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - IMAGE).mean() > 5
    # A flat image stays flat: corners are mirrored from inside, never a fill colour.
    flat = np.full((30, 50, 3), (200, 40, 90), dtype=np.uint8)
    assert np.array_equal(augment_reference(flat, config, gen(1)), flat)


def test_rotation_by_a_quarter_turn_moves_the_content_counter_clockwise():
    image = np.zeros((21, 21, 3), dtype=np.uint8)
    image[10, 15:19] = 255  # a bar right of the centre
    config = dataclasses.replace(OFF, rotation_p=1.0, rotation_degrees=90.0)
    # Find a seed whose angle is close to +90° (angle = (2u - 1) · 90 from the third draw).
    seed = next(s for s in range(500) if torch.rand(6, generator=gen(s), dtype=torch.float64)[2] > 0.999)
    out = augment_reference(image, config, gen(seed))
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert ys.mean() < 8 and abs(xs.mean() - 10) < 1.5  # now above the centre


def test_blur_softens_and_keeps_the_mean():
    out = augment_reference(IMAGE, dataclasses.replace(OFF, blur_p=1.0, blur_radius=(1.5, 2.0)), gen(0))
    assert np.abs(np.diff(out.astype(int), axis=1)).mean() < np.abs(np.diff(IMAGE.astype(int), axis=1)).mean()
    assert abs(out.astype(float).mean() - IMAGE.astype(float).mean()) < 2


def test_elastic_deformation_changes_the_image_but_not_its_shape_or_dtype():
    config = dataclasses.replace(OFF, elastic_p=1.0)
    for image in (IMAGE, make_scene((224, 224), seed=4), make_scene((3, 2), seed=5)):
        out = augment_reference(image, config, gen(0))
        assert out.shape == image.shape and out.dtype == np.uint8
    out = augment_reference(IMAGE, config, gen(0))
    assert not np.array_equal(out, IMAGE)
    # A mild warp: the image still resembles the input far more than a shuffled copy does.
    shuffled = IMAGE.reshape(-1, 3)[np.random.default_rng(0).permutation(IMAGE.shape[0] * IMAGE.shape[1])]
    assert (
        np.abs(out.astype(int) - IMAGE).mean() < 0.5 * np.abs(shuffled.reshape(IMAGE.shape).astype(int) - IMAGE).mean()
    )


def test_bad_inputs_and_settings_raise():
    with pytest.raises(TypeError, match=r"uint8"):
        augment_reference(IMAGE.astype(np.float32), OFF, gen(0))
    with pytest.raises(TypeError, match=r"uint8"):
        augment_reference(IMAGE[..., 0], OFF, gen(0))
    with pytest.raises(TypeError, match=r"AugmentConfig"):
        augment_reference(IMAGE, {"flip_p": 1}, gen(0))
    with pytest.raises(TypeError, match=r"torch.Generator"):
        augment_reference(IMAGE, OFF, 0)
    for bad in (
        {"flip_p": 1.5},
        {"bezier_p": -0.1},
        {"rotation_degrees": -1},
        {"elastic_sigma": 0.0},
        {"crop_min_share": 1.2},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AugmentConfig(**bad)
    with pytest.raises(ValueError, match=r"reference_margin"):
        AugmentConfig(reference_margin=2.5)
    with pytest.raises(ValueError, match=r"blur_radius"):
        AugmentConfig(blur_radius=(2.0, 1.0))
    assert AugmentConfig(blur_radius=[0.5, 1.0]).blur_radius == (0.5, 1.0)
