"""Subject folders load onto the base they were fine-tuned from, in any precision, and onto no other."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import tiny_components
from subject_inpainting.loaders import CheckpointError, load_components
from subject_inpainting.loaders.subject import SUBJECT_INDEX, base_probe, same_base
from subject_inpainting.pipeline import SubjectInpaintPipeline


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_a_subject_loads_onto_its_base_in_any_precision(tiny_model_dir, tiny_lora_subject, dtype):
    pipe = SubjectInpaintPipeline(**load_components(tiny_model_dir)).to(dtype=dtype)
    subject = pipe.load_subject(tiny_lora_subject)
    assert subject.adapter is not None and pipe.unet.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_subject_is_refused_by_another_base_in_any_precision(tiny_lora_subject, dtype):
    pipe = SubjectInpaintPipeline(**tiny_components(seed=1)).to(dtype=dtype)
    with pytest.raises(CheckpointError, match="fine-tuned from another base model"):
        pipe.load_subject(tiny_lora_subject)


def test_a_folder_without_a_probe_is_checked_by_its_exact_hash(tiny_model_dir, tiny_lora_subject, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_lora_subject, old)
    index = json.loads((old / SUBJECT_INDEX).read_text())
    del index["base_probe"]
    (old / SUBJECT_INDEX).write_text(json.dumps(index))
    assert SubjectInpaintPipeline(**load_components(tiny_model_dir)).load_subject(old).adapter is not None
    half = SubjectInpaintPipeline(**load_components(tiny_model_dir)).to(dtype=torch.bfloat16)
    with pytest.raises(CheckpointError, match=r"load it in float32: .* not in bfloat16"):
        half.load_subject(old)


def test_the_probe_tells_a_rounded_base_from_another():
    base, other = tiny_components(seed=0), tiny_components(seed=1)
    probe = base_probe(base["unet"], base["reference_encoder"])
    for dtype in (torch.bfloat16, torch.float16):
        unet, encoder = base["unet"].to(dtype), base["reference_encoder"].to(dtype)
        assert same_base(probe, unet, encoder)
        base["unet"].float(), base["reference_encoder"].float()
    assert not same_base(probe, other["unet"], other["reference_encoder"])
    assert not same_base(probe[:-1], base["unet"], base["reference_encoder"])
