"""``devices``: the memory layout convolutions are given."""

from __future__ import annotations

import pytest
import torch

from subject_inpainting.devices import conv_layout


def test_conv_layout_is_channels_last_on_the_cpu_with_the_same_values():
    images = torch.randn(2, 3, 8, 6)
    laid = conv_layout(images)
    assert laid.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(laid, images)
    flat = torch.randn(2, 5)
    assert conv_layout(flat) is flat  # only (B, C, H, W) images


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_conv_layout_leaves_other_devices_alone():
    images = torch.randn(1, 3, 4, 4, device="cuda")
    assert conv_layout(images) is images
