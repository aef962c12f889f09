"""Shared fixtures: tiny components built from configs under a fixed seed, fixture paths, images.

Nothing here reads ``../shared``: the recorded reference outputs are copied under
``tests/fixtures/reference`` (``SI_REFERENCE_DIR`` points the reference tests at another folder of the
same layout).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from subject_inpainting.models.build import build_component
from subject_inpainting.models.configs import reference_encoder_config
from subject_inpainting.pipeline import SubjectInpaintPipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_DIR = Path(os.environ.get("SI_REFERENCE_DIR") or FIXTURES / "reference")

TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
    "projection_dim": 32,
}
TINY_UNET = {
    "sample_size": 16,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": [32, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 2,
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}
TINY_SCHEDULE = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def tiny_components(seed: int = 0, detail_layers: int = 0, detail_grid: int = 1) -> dict:
    """Tiny UNet (9 channels), VAE (downsampling 2) and reference encoder, random under ``seed``."""
    torch.manual_seed(seed)
    enc_cfg = reference_encoder_config(
        TINY_VISION,
        context_dim=32,
        class_mapper_layers=2,
        detail_mapper_layers=detail_layers,
        detail_mapper_heads=4,
        detail_grid=detail_grid,
    )
    return {
        "unet": build_component("unet", TINY_UNET).eval(),
        "vae": build_component("vae", TINY_VAE).eval(),
        "reference_encoder": build_component("reference_encoder", enc_cfg).eval(),
        "scheduler": dict(TINY_SCHEDULE),
    }


@pytest.fixture
def tiny_pipeline() -> SubjectInpaintPipeline:
    return SubjectInpaintPipeline(**tiny_components())


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny components saved once as a project-format folder."""
    from subject_inpainting.convert import save_components

    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_components(tiny_components(), folder)
    return folder


def make_scene(size=(48, 40), seed: int = 0) -> np.ndarray:
    """A smooth random RGB scene ``(H, W, 3)`` uint8 (gradients plus noise, so resizing is not trivial)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def scene_files(tmp_path):
    """A scene PNG (48×40), a mask PNG (white rectangle) and a reference JPEG in ``tmp_path``."""
    scene = tmp_path / "scene.png"
    Image.fromarray(make_scene()).save(scene)
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[10:30, 12:36] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    ref = tmp_path / "reference.jpg"
    Image.fromarray(make_scene((30, 30), seed=1)).save(ref)
    return {"scene": scene, "mask": mask_path, "reference": ref, "mask_array": mask >= 128}
