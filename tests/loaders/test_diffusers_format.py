"""The diffusers-format Paint-by-Example folder (as published on the hub) loads into our components."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig

from conftest import TINY_SCHEDULE, TINY_VISION, tiny_components
from subject_inpainting.loaders import CheckpointError, load_components
from subject_inpainting.loaders.diffusers_format import to_diffusers_encoder


def _pbe_encoder_class():
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    return PaintByExampleImageEncoder


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    """A tiny Paint-by-Example pipeline saved by diffusers itself (its own encoder class and layout)."""
    from diffusers import PaintByExamplePipeline, PNDMScheduler
    from transformers import CLIPImageProcessor

    torch.manual_seed(0)
    parts = tiny_components(seed=5)
    # 4 tower layers → diffusers builds (4 + 1) // 5 = 1 mapper block
    encoder = _pbe_encoder_class()(CLIPVisionConfig(**{**TINY_VISION, "num_hidden_layers": 4}))
    with torch.no_grad():
        encoder.uncond_vector.normal_()
    schedule = {k: v for k, v in TINY_SCHEDULE.items() if not k.startswith("_")}
    processor = CLIPImageProcessor(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32})
    pipe = PaintByExamplePipeline(
        vae=parts["vae"],
        image_encoder=encoder,
        unet=parts["unet"],
        scheduler=PNDMScheduler(
            **{k: schedule[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")}
        ),
        safety_checker=None,
        feature_extractor=processor,
        requires_safety_checker=False,
    )
    folder = tmp_path_factory.mktemp("diffusers") / "pbe"
    pipe.save_pretrained(folder)
    return folder, pipe


def test_loads_and_computes_the_same(diffusers_folder):
    folder, pipe = diffusers_folder
    c = load_components(folder)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs, uncond = pipe.image_encoder(x, return_uncond_vector=True)
        ours = c["reference_encoder"](x)
    assert ours.shape == theirs.shape == (2, 1, 32)
    assert ((ours - theirs).norm() / theirs.norm()).item() < 1e-5
    assert torch.equal(c["reference_encoder"].unconditional(1), uncond)
    for name in ("unet", "vae"):
        theirs_sd, ours_sd = getattr(pipe, name).state_dict(), c[name].state_dict()
        assert all(torch.equal(theirs_sd[k], ours_sd[k]) for k in theirs_sd)
    assert c["scheduler"]["beta_end"] == pytest.approx(TINY_SCHEDULE["beta_end"])
    assert c["scheduler"]["steps_offset"] == 1


def test_export_round_trip(diffusers_folder):
    """``to_diffusers_encoder`` is the inverse: our weights run in diffusers' encoder unchanged."""
    folder, _ = diffusers_folder
    ours = load_components(folder)["reference_encoder"]
    vision, state = to_diffusers_encoder(ours)
    theirs = _pbe_encoder_class()(CLIPVisionConfig(**vision))
    theirs.load_state_dict(state)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert ((ours(x) - theirs(x)).norm() / theirs(x).norm()).item() < 1e-5


def test_detail_encoders_cannot_be_exported():
    with pytest.raises(ValueError, match="plain Paint-by-Example"):
        to_diffusers_encoder(tiny_components(detail_layers=1)["reference_encoder"])


def test_folder_missing_image_encoder(diffusers_folder, tmp_path):
    import shutil

    folder, _ = diffusers_folder
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "image_encoder")
    with pytest.raises(CheckpointError, match="missing its image_encoder part"):
        load_components(broken)
