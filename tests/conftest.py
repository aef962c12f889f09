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
from PIL import Image

from subject_inpainting.models.tiny import (  # noqa: F401  (re-exported for the tests)
    TINY_SCHEDULE,
    TINY_UNET,
    TINY_VAE,
    TINY_VISION,
    tiny_components,
)
from subject_inpainting.pipeline import SubjectInpaintPipeline

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_DIR = Path(os.environ.get("SI_REFERENCE_DIR") or FIXTURES / "reference")


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
