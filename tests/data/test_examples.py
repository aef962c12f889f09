"""One training example: the hole covers the box and stays inside the extended box."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from subject_inpainting.data import (
    AugmentConfig,
    make_example,
)
from subject_inpainting.models.reference_encoder import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD


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
        image_mean=CLIP_IMAGE_MEAN,
        image_std=CLIP_IMAGE_STD,
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
