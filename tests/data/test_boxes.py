"""Boxes: validation, the original's box extension, square crops and reference boxes (property tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from subject_inpainting.data import as_box, check_box, check_size, extend_box, reference_box, square_crop
from subject_inpainting.data.boxes import contains

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def box_in_image(draw, max_side: int = 400):
    """``(box, size)`` with the box anywhere inside an image of random size (1 × 1 included)."""
    width = draw(st.integers(1, max_side))
    height = draw(st.integers(1, max_side))
    x0 = draw(st.integers(0, width - 1))
    y0 = draw(st.integers(0, height - 1))
    x1 = draw(st.integers(x0 + 1, width))
    y1 = draw(st.integers(y0 + 1, height))
    return (x0, y0, x1, y1), (width, height)


seeds = st.integers(0, 2**32 - 1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@SETTINGS
@given(box_in_image(), st.floats(0, 1), seeds)
def test_extended_box_inside_image_holds_box_and_respects_share(case, share, seed):
    box, (width, height) = case
    ext = extend_box(box, (width, height), share, generator=gen(seed))
    assert all(isinstance(v, int) for v in ext)
    assert contains((0, 0, width, height), ext) and contains(ext, box)
    free = (box[0], box[1], width - box[2], height - box[3])
    moved = (box[0] - ext[0], box[1] - ext[1], ext[2] - box[2], ext[3] - box[3])
    for m, f in zip(moved, free, strict=True):
        assert 0 <= m <= share * f + 1e-9


def test_extension_uses_its_range_and_zero_share_is_identity():
    box, size = (40, 40, 60, 60), (100, 100)
    moves = np.array([np.subtract(extend_box(box, size, generator=gen(s)), box) for s in range(200)])
    # Each side moves by floor(u · 0.4 · 40) with u < 1: from 0 up to 15 pixels, and the draws use that range.
    assert set(np.abs(moves).max(axis=0).tolist()) <= {14, 15}
    assert np.abs(moves).min(axis=0).tolist() == [0, 0, 0, 0]
    assert extend_box(box, size, 0.0, generator=gen(0)) == box


def test_extension_is_reproducible_and_never_uses_the_global_rng():
    torch.manual_seed(0)
    a = extend_box((10, 10, 20, 20), (100, 100), generator=gen(5))
    torch.manual_seed(1)
    b = extend_box((10, 10, 20, 20), (100, 100), generator=gen(5))
    assert a == b
    with pytest.raises(TypeError, match=r"torch.Generator"):
        extend_box((10, 10, 20, 20), (100, 100), generator=None)


@SETTINGS
@given(box_in_image(), seeds)
def test_square_crop_holds_box_inside_image_and_is_square_when_possible(case, seed):
    box, (width, height) = case
    crop = square_crop(box, (width, height), generator=gen(seed))
    assert contains((0, 0, width, height), crop) and contains(crop, box)
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    longer = max(box[2] - box[0], box[3] - box[1])
    if longer <= min(width, height):
        assert crop_w == crop_h
        assert longer <= crop_w <= min(width, height)
    else:
        # The documented fallback: the box's longer side by the image's whole shorter side.
        assert sorted((crop_w, crop_h)) == sorted((longer, min(width, height)))


def test_square_crop_varies_in_side_and_position():
    crops = {square_crop((45, 20, 55, 30), (200, 100), generator=gen(s)) for s in range(50)}
    sides = {c[2] - c[0] for c in crops}
    assert len(sides) > 10 and min(sides) >= 10 and max(sides) <= 100
    assert len({c[0] for c in crops}) > 10


@SETTINGS
@given(box_in_image(), seeds, st.floats(0.0, 1.0))
def test_square_crop_min_share_sets_the_smallest_side(case, seed, share):
    box, (width, height) = case
    crop = square_crop(box, (width, height), generator=gen(seed), min_share=share)
    assert contains((0, 0, width, height), crop) and contains(crop, box)
    longer, shorter = max(box[2] - box[0], box[3] - box[1]), min(width, height)
    if longer <= shorter:
        assert max(longer, math.ceil(share * shorter)) <= crop[2] - crop[0] <= shorter


def test_square_crop_min_share_one_never_zooms_and_zero_is_the_default():
    crops = [square_crop((45, 20, 55, 30), (200, 100), generator=gen(s), min_share=1.0) for s in range(20)]
    assert {(c[2] - c[0], c[3] - c[1]) for c in crops} == {(100, 100)}
    for s in range(10):
        assert square_crop((45, 20, 55, 30), (200, 100), generator=gen(s), min_share=0.0) == square_crop(
            (45, 20, 55, 30), (200, 100), generator=gen(s)
        )
    for bad in (-0.1, 1.5, "1", True, math.nan):
        with pytest.raises(ValueError, match="min_share"):
            square_crop((45, 20, 55, 30), (200, 100), generator=gen(0), min_share=bad)


def test_square_crop_of_a_wide_box_falls_back_to_the_full_height():
    assert square_crop((0, 10, 150, 20), (200, 100), generator=gen(0)) == (0, 0, 150, 100)
    assert square_crop((20, 10, 170, 20), (200, 100), generator=gen(3)) == (20, 0, 170, 100)
    assert square_crop((10, 0, 20, 150), (100, 200), generator=gen(3)) == (0, 0, 100, 150)


@SETTINGS
@given(box_in_image(), st.integers(0, 50))
def test_reference_box_grows_by_the_margin_where_there_is_room(case, margin):
    box, (width, height) = case
    ref = reference_box(box, (width, height), margin)
    assert contains((0, 0, width, height), ref) and contains(ref, box)
    assert ref == (
        max(0, box[0] - margin),
        max(0, box[1] - margin),
        min(width, box[2] + margin),
        min(height, box[3] + margin),
    )


def test_reference_box_default_margin_is_the_originals_ten_pixels():
    assert reference_box((50, 50, 60, 60), (200, 200)) == (40, 40, 70, 70)


@pytest.mark.parametrize(
    ("box", "error", "match"),
    [
        ((10, 10, 10, 20), ValueError, "empty"),
        ((10, 20, 30, 5), ValueError, "empty"),
        ((-1, 0, 5, 5), ValueError, "negative"),
        ((0, 0, 101, 5), ValueError, r"outside the 100×50 image"),
        ((0, 0, 5, 51), ValueError, "outside"),
        ((0, 0, math.nan, 5), ValueError, "finite"),
        ((0, 0, 5), TypeError, "four numbers"),
        ("0,0,5,5", TypeError, "four numbers"),
        ((0, 0, "5", 5), TypeError, "four numbers"),
        (None, TypeError, "four numbers"),
    ],
)
def test_invalid_boxes_raise_naming_the_box(box, error, match):
    for call in (
        lambda: check_box(box, (100, 50)),
        lambda: extend_box(box, (100, 50), generator=gen(0)),
        lambda: square_crop(box, (100, 50), generator=gen(0)),
        lambda: reference_box(box, (100, 50)),
    ):
        with pytest.raises(error, match=match):
            call()


def test_invalid_sizes_shares_and_margins_raise():
    with pytest.raises(ValueError, match=r"0×5"):
        check_size((0, 5))
    with pytest.raises(TypeError, match=r"integers"):
        check_size((10.5, 5))
    with pytest.raises(TypeError, match=r"pair"):
        check_size(10)
    with pytest.raises(ValueError, match=r"max_share 1.5"):
        extend_box((0, 0, 5, 5), (10, 10), 1.5, generator=gen(0))
    with pytest.raises(ValueError, match=r"margin -1"):
        reference_box((0, 0, 5, 5), (10, 10), -1)


def test_boxes_accept_floats_numpy_and_tensors_and_round():
    assert as_box([1.4, 2.6, 10.0, 20.2]) == (1, 3, 10, 20)
    assert as_box(np.array([1, 2, 3, 4])) == (1, 2, 3, 4)
    assert as_box(torch.tensor([1, 2, 3, 4])) == (1, 2, 3, 4)
    assert all(type(v) is int for v in as_box(np.array([1, 2, 3, 4])))
