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


def test_int8_auto_is_on_for_a_large_unet_on_a_cpu_with_int8_instructions(monkeypatch):
    from conftest import tiny_components
    from subject_inpainting import utils
    from subject_inpainting.devices import SMALL_UNET, int8_for, unet_work
    from subject_inpainting.models import int8

    unet = tiny_components()["unet"]
    assert unet_work(unet) < SMALL_UNET
    assert int8_for(unet, "on") and not int8_for(unet, "off")
    monkeypatch.setattr(utils, "native_int8", lambda: True)
    monkeypatch.setattr(int8, "int8_unavailable", lambda: None)
    assert not int8_for(unet)  # too small for the int8 kernels to pay
    unet.register_to_config(sample_size=int((SMALL_UNET / unet_work(unet)) ** 0.5 + 1) * unet.config.sample_size)
    assert int8_for(unet)
    assert not int8_for(unet.to(torch.float64))  # a dtype the int8 layers do not compute in
    unet.to(torch.float32)
    monkeypatch.setattr(utils, "native_int8", lambda: False)
    assert not int8_for(unet)  # no 8-bit dot-product instructions
    monkeypatch.setattr(utils, "native_int8", lambda: True)
    monkeypatch.setattr(int8, "int8_unavailable", lambda: "no oneDNN")
    assert not int8_for(unet)
    with pytest.raises(ValueError, match="int8 must be one of auto, on, off, got True"):
        int8_for(unet, True)
