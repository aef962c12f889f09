"""Reading the outline of a subject in a toy scene: the truth's shape is read right, an empty hole reads as
nothing, and a silhouette fits its own shape best."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from subject_inpainting.toy import world
from subject_inpainting.toy.outline import painted_silhouette, read_shape, shape_fits


@pytest.mark.parametrize("shape", world.SHAPES)
def test_the_truths_shape_is_read(shape):
    # every shape, in three held-out scenes and poses: a truth has exactly the outline the world drew
    for k, ident in enumerate(world.split_identities(0, "heldout", 3)):
        case = world.make_case(replace(ident, shape=shape), seed=40 + k)
        assert read_shape(case.truth, case.scene, case.mask) == shape


def test_another_shape_is_read_as_that_shape():
    ident = world.split_identities(0, "heldout", 1)[0]
    other = world.SHAPES[(world.SHAPES.index(ident.shape) + 3) % len(world.SHAPES)]
    case = world.make_case(ident, seed=7)
    changed = world.make_case(replace(ident, shape=other), seed=7)  # same scene and pose
    assert np.array_equal(case.scene, changed.scene)
    assert read_shape(case.truth, case.scene, case.mask) == ident.shape
    assert read_shape(changed.truth, case.scene, changed.mask) == other != ident.shape


def test_an_unpainted_hole_reads_as_no_shape():
    case = world.make_case(world.split_identities(0, "heldout", 1)[0], seed=3)
    assert not painted_silhouette(case.scene, case.scene, case.mask).any()
    assert read_shape(case.scene, case.scene, case.mask) is None
    assert set(shape_fits(np.zeros((8, 8), bool)).values()) == {0.0}


def test_pixels_outside_the_region_do_not_count():
    case = world.make_case(world.split_identities(0, "heldout", 1)[0], seed=3)
    assert read_shape(case.truth, case.scene, np.zeros_like(case.mask)) is None


def test_a_drawn_silhouette_fits_its_own_shape_best():
    canvas = np.zeros((40, 40), bool)
    canvas[6:34, 6:34] = np.asarray(world.shape_mask("star", 28)) >= 128
    fits = shape_fits(canvas)
    assert max(fits, key=fits.get) == "star" and fits["star"] > 0.85
    assert all(v < fits["star"] for k, v in fits.items() if k != "star")


def test_mismatched_pictures_are_refused():
    with pytest.raises(ValueError, match=r"image \(8, 8, 3\), scene \(8, 9, 3\)"):
        painted_silhouette(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), np.ones((8, 8), bool))


def test_a_higher_threshold_keeps_fewer_pixels():
    # the truth's subject differs from the scene by various amounts: raising the threshold can only drop pixels
    case = world.make_case(world.split_identities(0, "heldout", 1)[0], seed=3)
    low, high = (painted_silhouette(case.truth, case.scene, case.mask, t) for t in (16, 96))
    assert high.sum() < low.sum() and not (high & ~low).any()


@pytest.mark.parametrize(
    "kwargs", [{"threshold": -1}, {"threshold": 255}, {"template_alpha": 0}, {"template_alpha": 256}]
)
def test_reader_settings_out_of_range_are_refused(kwargs):
    case = world.make_case(world.split_identities(0, "heldout", 1)[0], seed=3)
    name, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=rf"{name} must be .* got {value}"):
        read_shape(case.truth, case.scene, case.mask, **kwargs)
