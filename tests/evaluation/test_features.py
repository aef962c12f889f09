"""Feature extractors: the original evaluations' preprocessing (checked against torchvision), and each
extractor against its network's output pooled by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from subject_inpainting.evaluation import features as feats

T = pytest.importorskip("torchvision.transforms")


def photo(size=(90, 61), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def torchvision_transform(resize: int, crop: int, mean, std):
    """The reference pipelines (OpenAI CLIP's preprocess; DINO's evaluation transform) in torchvision."""
    bicubic = T.InterpolationMode.BICUBIC
    return T.Compose(
        [T.Resize(resize, interpolation=bicubic), T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)]
    )


@pytest.mark.parametrize("size", [(90, 61), (50, 120), (224, 224)])
def test_clip_and_dino_preprocessing_equal_torchvision(size):
    image = photo(size)
    clip = torchvision_transform(224, 224, feats.CLIP_MEAN, feats.CLIP_STD)
    torch.testing.assert_close(feats.clip_preprocess(image), clip(image))
    dino = torchvision_transform(256, 224, feats.IMAGENET_MEAN, feats.IMAGENET_STD)
    torch.testing.assert_close(feats.imagenet_preprocess(image), dino(image))


def test_region_crop_is_the_originals():
    # The original cuts rows/columns from the first to the last white pixel, the last ones excluded, then
    # resizes the tensor bilinearly without antialiasing (torchvision 0.12's tensor Resize).
    result = photo((64, 48), seed=1)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:21, 5:31] = 255
    expected = T.Normalize(feats.CLIP_MEAN, feats.CLIP_STD)(T.ToTensor()(result))[:, 10:20, 5:30]
    expected = T.Resize([32, 32], antialias=False)(expected)
    torch.testing.assert_close(feats.region_crop_for_clip(result, mask == 255, 32), expected)
    reference = photo((40, 70), seed=2)
    by_hand = T.Normalize(feats.CLIP_MEAN, feats.CLIP_STD)(T.ToTensor()(reference.resize((32, 32), Image.BICUBIC)))
    torch.testing.assert_close(feats.reference_for_clip(reference, 32), by_hand)


def test_extractors_pool_as_documented(tiny_extractor_dirs):
    images = [photo((70, 50), seed=s) for s in range(3)]
    clip = feats.ClipFeatures(tiny_extractor_dirs["clip"])
    pixels = torch.stack([feats.clip_preprocess(im, 32) for im in images])
    torch.testing.assert_close(clip.embed(images, batch_size=2), clip.net(pixel_values=pixels).image_embeds)
    assert clip.embed(images).shape == (3, 16)
    for name, pooling in (("dino", "cls"), ("dinov2", "mean")):
        vit = feats.VitFeatures(tiny_extractor_dirs[name], pooling)
        pixels = torch.stack([feats.imagenet_preprocess(im) for im in images])
        tokens = vit.net(pixel_values=pixels).last_hidden_state
        expected = tokens[:, 0] if pooling == "cls" else tokens[:, 1:].mean(1)
        torch.testing.assert_close(vit.embed(images), expected)
        assert vit.variant.startswith(f"{pooling}:")


def test_inception_features_load_a_local_weights_file_safely(fid_weights_file):
    inception = feats.InceptionFeatures(fid_weights_file)
    f = inception.embed([photo((64, 64)), photo((80, 40), seed=3)])
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    assert not torch.equal(f[0], f[1])


def test_missing_extractors_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(feats.ExtractorUnavailable, match="downloads are off"):
        feats.InceptionFeatures()
    with pytest.raises(FileNotFoundError, match="no such Inception weights file"):
        feats.InceptionFeatures(tmp_path / "nope.pth")
    with pytest.raises(feats.ExtractorUnavailable, match="HF_HUB_OFFLINE is set"):
        feats.ClipFeatures("someone/not-cached-clip")
    with pytest.raises(ValueError, match="pooling 'max'"):
        feats.VitFeatures("x", "max")
