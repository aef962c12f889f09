"""Training holes: the box mask and the irregular Bézier mask around a box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from subject_inpainting.data import bezier_mask, box_mask, extend_box
from subject_inpainting.data.boxes import contains


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_box_mask_is_exact():
    mask = box_mask((2, 1, 5, 4), (7, 6))
    expected = np.zeros((6, 7), dtype=bool)
    expected[1:4, 2:5] = True
    assert mask.dtype == bool and np.array_equal(mask, expected)
    with pytest.raises(ValueError, match=r"outside"):
        box_mask((2, 1, 8, 4), (7, 6))


@st.composite
def boxes_and_extension(draw):
    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
    box = (x0, y0, draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height)))
    seed = draw(st.integers(0, 2**32 - 1))
    return box, extend_box(box, (width, height), draw(st.floats(0, 1)), generator=gen(seed)), (width, height), seed


@settings(max_examples=120, deadline=None)
@given(boxes_and_extension(), st.floats(0, 8))
def test_bezier_mask_covers_the_box_and_stays_inside_the_extended_box(case, jitter):
    box, extended, (width, height), seed = case
    mask = bezier_mask(box, extended, (width, height), generator=gen(seed + 1), jitter=jitter)
    assert mask.shape == (height, width) and mask.dtype == bool
    assert mask[box[1] : box[3], box[0] : box[2]].all()
    assert not (mask & ~box_mask(extended, (width, height))).any()


def test_bezier_mask_is_reproducible_and_differs_between_seeds():
    box, extended, size = (60, 50, 140, 110), (20, 10, 190, 150), (200, 160)
    masks = [bezier_mask(box, extended, size, generator=gen(s), jitter=5) for s in range(6)]
    again = bezier_mask(box, extended, size, generator=gen(3), jitter=5)
    assert np.array_equal(masks[3], again)
    assert len({m.tobytes() for m in masks}) == len(masks)
    # A real irregular shape: larger than the box, smaller than the extended box.
    for m in masks:
        assert box_mask(box, size).sum() < m.sum() < box_mask(extended, size).sum()


def test_bezier_mask_bulges_on_every_side():
    box, extended, size = (60, 50, 140, 110), (20, 10, 190, 150), (200, 160)
    union = np.zeros((160, 200), dtype=bool)
    for s in range(20):
        union |= bezier_mask(box, extended, size, generator=gen(s))
    assert union[30, 100] and union[130, 100] and union[80, 40] and union[80, 165]


def test_bezier_mask_with_no_room_is_the_box():
    box = (3, 3, 9, 7)
    assert np.array_equal(bezier_mask(box, box, (12, 10), generator=gen(0), jitter=4), box_mask(box, (12, 10)))


def test_bezier_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"does not hold"):
        bezier_mask((10, 10, 20, 20), (12, 5, 30, 30), (40, 40), generator=gen(0))
    with pytest.raises(ValueError, match=r"jitter"):
        bezier_mask((10, 10, 20, 20), (5, 5, 30, 30), (40, 40), generator=gen(0), jitter=-1)
    with pytest.raises(ValueError, match=r"points_per_side"):
        bezier_mask((10, 10, 20, 20), (5, 5, 30, 30), (40, 40), generator=gen(0), points_per_side=0)
    with pytest.raises(TypeError, match=r"torch.Generator"):
        bezier_mask((10, 10, 20, 20), (5, 5, 30, 30), (40, 40), generator=0)


def test_extended_box_contains_helper():
    assert contains((0, 0, 10, 10), (0, 0, 10, 10)) and not contains((1, 0, 10, 10), (0, 0, 10, 10))
