"""``eval subjects`` end to end: a DreamBooth subject fine-tuned and painted into the COCOEE fixture's scenes."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES, tiny_eval_args
from subject_inpainting import cli
from subject_inpainting.evaluation import features as feats
from subject_inpainting.evaluation import subjects
from subject_inpainting.evaluation.metrics import mean_pairwise_cosine
from subject_inpainting.imaging import InputError, mask_bbox, mask_to_bool

DREAMBOOTH = FIXTURES / "dreambooth"


@pytest.fixture(scope="module")
def subject_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("subjects") / "subjects"
    shutil.copytree(DREAMBOOTH / "bear_plushie", root / "bear_plushie")
    shutil.copy(DREAMBOOTH / "bear_plushie_boxes.json", root / "bear_plushie_boxes.json")
    return root


def test_protocol_scores_each_setting_against_the_held_out_photo(
    subject_folder, tiny_model_dir, tiny_extractor_dirs, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["eval", "subjects", "--subjects", str(subject_folder), "--scenes", str(FIXTURES / "cocoee")]
    argv += ["--out", str(out), "--finetune-steps", "2", "--scene-limit", "2"]
    argv += tiny_eval_args(tiny_model_dir, tiny_extractor_dirs)
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {
        f"{s}/{m}" for s in ("pretrained", "finetuned") for m in ("clip_i", "dino", "dinov2")
    }
    assert (out / "subjects" / "bear_plushie" / "subject_index.json").is_file()

    # By hand: DINO of the fine-tuned results (cut to the mask's box) against the held-out photo 03.jpg cut to its box.
    subject = subjects.read_subjects(subject_folder, 3)[0]
    scenes = subjects.read_scenes(FIXTURES / "cocoee", 2)
    crops = []
    for scene in scenes:
        image = feats.Image.open(subjects.result_path(out, "finetuned", subject, scene)).convert("RGB")
        crops.append(image.crop(mask_bbox(mask_to_bool(feats.Image.open(scene.mask)))))
    dino = feats.VitFeatures(tiny_extractor_dirs["dino"], "cls")
    held_out = [subject.crop(subject.photos[3])]
    expected = mean_pairwise_cosine(dino.embed(crops), dino.embed(held_out))
    assert report["metrics"]["finetuned/dino"]["value"] == pytest.approx(expected, rel=1e-5)
    pretrained = [subjects.result_path(out, "pretrained", subject, s) for s in scenes]
    finetuned = [subjects.result_path(out, "finetuned", subject, s) for s in scenes]
    assert all(p.is_file() for p in pretrained + finetuned)
    assert any(a.read_bytes() != b.read_bytes() for a, b in zip(pretrained, finetuned, strict=True))
    assert "finetuned/dinov2:" in capsys.readouterr().out


def test_too_few_photos_are_named(tmp_path):
    shutil.copytree(DREAMBOOTH / "colorful_sneaker", tmp_path / "s" / "colorful_sneaker")
    with pytest.raises(InputError, match="1 photos; the protocol needs more than --train-photos 3"):
        subjects.read_subjects(tmp_path / "s", 3)
    with pytest.raises(InputError, match="no scene with a mask"):
        subjects.read_scenes(tmp_path / "s")
