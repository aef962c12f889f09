"""The reference encoder's options: class-token source, detail module, detail grid, input checks."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_VISION
from subject_inpainting.models.configs import reference_encoder_config
from subject_inpainting.models.reference_encoder import CLIP_IMAGE_MEAN, ReferenceEncoder


def make(image_mean=None, **kwargs) -> ReferenceEncoder:
    torch.manual_seed(0)
    config = reference_encoder_config(TINY_VISION, 24, class_mapper_layers=1, **kwargs)
    return ReferenceEncoder(**config, image_mean=image_mean).eval()


def pixels(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_paint_by_example_context_is_one_token():
    enc = make()
    with torch.no_grad():
        out = enc(pixels())
    assert out.shape == (2, 1, 24)
    assert enc.num_tokens == 1
    assert enc.unconditional(3).shape == (3, 1, 24)


def test_class_token_sources_differ_by_the_final_layernorm():
    pooled, hidden = make(class_token="pooled"), make(class_token="hidden")
    hidden.load_state_dict(pooled.state_dict())
    x = pixels()
    with torch.no_grad():
        cp, _ = pooled.tower_states(x)
        ch, _ = hidden.tower_states(x)
        tower = pooled.vision_model(pixel_values=x)
    assert torch.allclose(ch, tower.last_hidden_state[:, 0])
    assert torch.allclose(cp, tower.pooler_output)
    assert not torch.allclose(cp, ch)


@pytest.mark.parametrize("grid", [1, 2, 4])
def test_detail_tokens(grid):
    enc = make(detail_mapper_layers=1, detail_mapper_heads=4, detail_grid=grid)
    with torch.no_grad():
        out = enc(pixels())
        _, patches = enc.tower_states(pixels())
        details = enc.detail_features(patches)
    assert out.shape == (2, 1 + grid * grid, 24)
    assert enc.num_tokens == 1 + grid * grid
    if grid == 1:  # the original's mean over all patch tokens
        full = enc.detail_norm(enc.detail_mapper(patches))
        assert torch.allclose(details, full.mean(1, keepdim=True), atol=1e-6)
    if grid == 4:  # the tower's own patch grid: pooling is the identity
        full = enc.detail_norm(enc.detail_mapper(patches))
        assert torch.allclose(details, full, atol=1e-6)


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="class_token"):
        make(class_token="cls")
    with pytest.raises(ValueError, match="detail_grid 5 exceeds"):
        make(detail_mapper_layers=1, detail_mapper_heads=4, detail_grid=5)
    with pytest.raises(ValueError, match=r"shape \(B, 3, 32, 32\), got \(1, 3, 64, 64\)"):
        make()(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="no detail module"):
        make().detail_features(torch.zeros(1, 16, 32))


def test_pixel_statistics_default_to_clip():
    enc = make()
    assert enc.image_mean == CLIP_IMAGE_MEAN
    assert enc.config.image_mean is None
    assert make(image_mean=[0.5, 0.5, 0.5]).image_mean == (0.5, 0.5, 0.5)
