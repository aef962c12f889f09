"""``eval cocoee`` and ``eval prepare`` end to end on a tiny COCOEE-layout fixture with tiny models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import FIXTURES, accelerate_launch, run_launched, tiny_eval_args
from subject_inpainting import cli
from subject_inpainting.evaluation import cocoee, gmm
from subject_inpainting.evaluation import features as feats
from subject_inpainting.evaluation.metrics import frechet_distance_of_features
from subject_inpainting.imaging import InputError

pytest.importorskip("pytorch_fid")
COCOEE = FIXTURES / "cocoee"
PHOTOS = FIXTURES / "dreambooth" / "bear_plushie"


@pytest.fixture(scope="module")
def cocoee_run(tmp_path_factory, tiny_model_dir, tiny_extractor_dirs, fid_weights_file):
    tmp = tmp_path_factory.mktemp("cocoee")
    (tmp / "coco").mkdir()
    for name in ("00.jpg", "01.jpg"):  # two are enough for a covariance; the Inception network is slow on a CPU
        shutil.copy(PHOTOS / name, tmp / "coco" / name)
    prepare = ["eval", "prepare", "--coco-images", str(tmp / "coco"), "--out", str(tmp / "ref"), "--size", "48"]
    assert cli.main([*prepare, "--quiet"]) == 0
    clip = feats.ClipFeatures(tiny_extractor_dirs["clip"])
    rng = np.random.default_rng(0)
    mixture = gmm.GaussianMixture.from_covariances(
        np.array([0.5, 0.5]), rng.normal(size=(2, 16)) * 0.1, np.ones((2, 16)) * 0.05, "diag"
    )
    gmm.save_mixture(mixture, tmp / "qs.npz")
    argv = ["eval", "cocoee", "--data", str(COCOEE), "--out", str(tmp / "run"), "--fid-reference", str(tmp / "ref")]
    argv += ["--gmm", str(tmp / "qs.npz"), "--inception-weights", str(fid_weights_file)]
    argv += tiny_eval_args(tiny_model_dir, {"clip": tiny_extractor_dirs["clip"]})
    assert cli.main(argv) == 0
    return tmp, argv, clip, mixture


def test_every_case_is_painted_and_every_metric_matches_a_hand_computation(cocoee_run, fid_weights_file):
    tmp, _, clip, mixture = cocoee_run
    cases = cocoee.read_cocoee(COCOEE)
    assert [c.id for c in cases] == ["000000000001", "000000000002", "000000000003"]
    report = json.loads((tmp / "run" / "report.json").read_text())
    results = [cocoee.result_path(tmp / "run", c) for c in cases]
    images = [feats.Image.open(p).convert("RGB") for p in results]
    assert all(im.size == (64, 64) for im in images)

    crops, refs = [], []
    for case, image in zip(cases, images, strict=True):
        mask = np.asarray(feats.Image.open(case.mask).convert("L"))
        ys, xs = np.nonzero(mask == 255)
        pixels = feats.normalize(feats.to_tensor(image), feats.CLIP_MEAN, feats.CLIP_STD)
        crop = pixels[:, ys.min() : ys.max(), xs.min() : xs.max()]  # the original's cut: last row/column out
        crops.append(torch.nn.functional.interpolate(crop[None], size=(32, 32), mode="bilinear")[0])
        refs.append(feats.reference_for_clip(feats.Image.open(case.reference), 32))
    with torch.no_grad():
        a, b = clip(torch.stack(crops)), clip(torch.stack(refs))
    expected = float((100 * torch.nn.functional.cosine_similarity(a, b)).mean())
    assert report["metrics"]["clip_score"]["value"] == pytest.approx(expected, rel=1e-5)

    qs = gmm.quality_score(mixture.score_samples(clip.embed(images).numpy()))
    assert report["metrics"]["qs"]["value"] == pytest.approx(qs, rel=1e-6)
    assert "clip" in report["metrics"]["qs"]["variant"]

    inception = feats.InceptionFeatures(fid_weights_file)
    refs = [feats.Image.open(p) for p in sorted((tmp / "ref").glob("*.png"))]
    fid = frechet_distance_of_features(inception.embed(images), inception.embed(refs))
    assert report["metrics"]["fid"]["value"] == pytest.approx(fid, rel=1e-4)
    assert report["settings"]["generation"]["sampler"] == "ddim" and report["cases"] == 3
    page = (tmp / "run" / "report.html").read_text()
    assert "clip_score" in page and page.count("data:image/jpeg;base64,") == 3 * 4


def test_a_rerun_paints_nothing_again_and_scores_the_same(cocoee_run, capsys):
    tmp, argv, _, _ = cocoee_run
    before = json.loads((tmp / "run" / "report.json").read_text())
    stamp = cocoee.result_path(tmp / "run", cocoee.read_cocoee(COCOEE)[0]).stat().st_mtime_ns
    assert cli.main(argv) == 0
    after = json.loads((tmp / "run" / "report.json").read_text())
    assert after["painted_now"] == 0 and after["metrics"] == before["metrics"]
    assert cocoee.result_path(tmp / "run", cocoee.read_cocoee(COCOEE)[0]).stat().st_mtime_ns == stamp
    assert "clip_score:" in capsys.readouterr().out


def test_prepare_resizes_and_crops_as_the_original(cocoee_run):
    T = pytest.importorskip("torchvision.transforms")
    tmp = cocoee_run[0]
    original = T.Compose([T.Resize(48), T.CenterCrop(48)])(feats.Image.open(PHOTOS / "00.jpg"))
    ours = feats.Image.open(tmp / "ref" / "00.png")
    assert np.array_equal(np.asarray(ours), np.asarray(original))


def test_bad_cocoee_inputs_are_named(tmp_path, tiny_model_dir, capsys):
    with pytest.raises(InputError, match="not a COCOEE folder"):
        cocoee.read_cocoee(tmp_path)
    broken = tmp_path / "bench"
    shutil.copytree(COCOEE, broken)
    (broken / "Ref_3500" / "000000000002_ref.png").unlink()
    with pytest.raises(InputError, match="1 files of the listed cases are missing"):
        cocoee.read_cocoee(broken)
    assert (
        cli.main(
            [
                "eval",
                "cocoee",
                "--data",
                str(COCOEE),
                "--out",
                str(tmp_path / "o"),
                "--score-only",
                "--model",
                str(tiny_model_dir),
                "--quiet",
            ]
        )
        == 2
    )
    assert "/o: no such folder" in capsys.readouterr().err  # nothing to score
    # a scorer that cannot be loaded stops the run before any painting
    absent = ["--clip-model", "someone/absent-clip", "--device", "cpu", "--quiet", "--model", str(tiny_model_dir)]
    assert cli.main(["eval", "cocoee", "--data", str(COCOEE), "--out", str(tmp_path / "p"), *absent]) == 2
    assert "could not be loaded" in capsys.readouterr().err
    assert not (tmp_path / "p" / "results").exists()


@pytest.mark.slow
def test_two_processes_paint_the_same_pictures_as_one(cocoee_run, tiny_model_dir, tiny_extractor_dirs, tmp_path):
    """``accelerate launch``: each process paints its share (case k with seed + k), the main one reports."""
    single = cocoee_run[0] / "run"
    cmd = [*accelerate_launch(2), "eval", "cocoee", "--data", str(COCOEE), "--out", str(tmp_path / "two")]
    cmd += tiny_eval_args(tiny_model_dir, {"clip": tiny_extractor_dirs["clip"]})
    proc = run_launched([c for c in cmd if c not in ("--device", "cpu")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for case in cocoee.read_cocoee(COCOEE):
        two = np.asarray(feats.Image.open(cocoee.result_path(tmp_path / "two", case)))
        one = np.asarray(feats.Image.open(cocoee.result_path(single, case)))
        assert np.abs(two.astype(int) - one.astype(int)).max() <= 1, case.id
    assert json.loads((tmp_path / "two" / "report.json").read_text())["cases"] == 3
