"""The web page's logic without a browser: reading the editor, the person's mistakes as one sentence each,
and Generate on the embedded model (the browser tests are in ``test_ui_browser.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from subject_inpainting import weights
from subject_inpainting.ui import (
    NO_SUBJECT,
    REGION_MODES,
    Painter,
    UIError,
    UISettings,
    build_app,
    editor_scene_and_mask,
    handle_generate,
    parse_seed,
    read_references,
    region_mask,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ui"


def editor_value(scene: np.ndarray, painted: tuple[slice, slice] | None) -> dict:
    layer = np.zeros((*scene.shape[:2], 4), np.uint8)
    if painted is not None:
        layer[painted] = (255, 0, 255, 255)
    background = np.dstack([scene, np.full(scene.shape[:2], 255, np.uint8)])
    return {"background": background, "layers": [layer], "composite": background}


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / "scene.png").convert("RGB"))


def test_the_painted_layer_is_the_mask(scene):
    got, mask = editor_scene_and_mask(editor_value(scene, (slice(100, 150), slice(90, 170))), 10**8)
    assert np.array_equal(got, scene)
    assert mask.sum() == 50 * 80 and mask[100:150, 90:170].all()
    # a layer at half the scene's size (the editor's canvas) is scaled to the scene
    small = editor_value(scene, None)
    small["layers"] = [np.zeros((128, 128, 4), np.uint8)]
    small["layers"][0][10:20, 30:40, 3] = 255
    _, mask = editor_scene_and_mask(small, 10**8)
    assert mask[20:40, 60:80].all() and mask.sum() == 400


@pytest.mark.parametrize(
    ("value", "limit", "message"),
    [
        (None, 10**8, "Upload a scene first"),
        ("unpainted", 10**8, "Paint the region"),
        ("painted", 1000, "256×256 pixels; this page takes up to 1,000 pixels"),
    ],
)
def test_editor_mistakes_are_one_sentence(scene, value, limit, message):
    if value is not None:
        value = editor_value(scene, (slice(0, 5), slice(0, 5)) if value == "painted" else None)
    with pytest.raises(UIError, match=message):
        editor_scene_and_mask(value, limit)


def test_region_modes_and_the_box_field():
    mask = np.zeros((40, 60), bool)
    mask[5:10, 5:10] = mask[20:30, 30:35] = True
    assert np.array_equal(region_mask(mask, REGION_MODES[0]), mask)
    boxed = region_mask(mask, REGION_MODES[1])
    assert boxed.sum() == 25 * 30 and boxed[5:30, 5:35].all()
    typed = region_mask(mask, REGION_MODES[0], " 1,2,11,12 ")
    assert typed.sum() == 100 and typed[2:12, 1:11].all()
    with pytest.raises(UIError, match="Box: box 0,0,100,10: outside the 60×40 scene"):
        region_mask(mask, REGION_MODES[0], "0,0,100,10")
    with pytest.raises(UIError, match="Region must be one of"):
        region_mask(mask, "lasso")


def test_references_and_seeds(tmp_path):
    broken = tmp_path / "photo.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(UIError, match=r"reference photo\.png is not an image"):
        read_references([str(broken)], None)
    with pytest.raises(UIError, match="Add a reference photo"):
        read_references([], None)
    ((name, image),) = read_references([str(FIXTURES / "reference.png")], None)
    assert name == "reference.png" and image.mode == "RGB"
    subject = tmp_path / "subject"
    (subject / "references").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(subject / "references" / "00.png")
    ((name, image),) = read_references(None, str(subject))
    assert name == "subject (subject)" and image.getpixel((0, 0)) == (1, 2, 3)
    assert parse_seed("") == -1 and parse_seed("42") == 42 and parse_seed(7) == 7
    for bad, message in (("abc", "whole number"), ("-5", "between 0 and"), (str(2**31), "between 0 and")):
        with pytest.raises(UIError, match=message):
            parse_seed(bad)


@pytest.fixture(scope="module")
def painter(tmp_path_factory):
    settings = UISettings(model=str(weights.default_model()), out_dir=tmp_path_factory.mktemp("ui-out"))
    return settings, Painter(settings)


def test_generate_paints_inside_the_mask_only_and_writes_the_files(scene, painter):
    settings, p = painter
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    steps = []
    gallery, files, status = handle_generate(
        settings,
        p,
        value,
        [str(FIXTURES / "reference.png")],
        NO_SUBJECT,
        REGION_MODES[0],
        "",
        5.0,
        0.8,
        3,
        "ddim",
        "11",
        2,
        report=lambda i, n: steps.append((i, n)),
    )
    assert status == "Done: 2 result(s), seed 11."
    assert steps[0] == (0, 3) and steps[-1] == (3, 3)
    assert len(gallery) == len(files) == 2 and all(Path(f).parent == settings.out_dir for f in files)
    mask = np.zeros(scene.shape[:2], bool)
    mask[90:170, 60:160] = True
    for (image, caption), path in zip(gallery, files, strict=True):
        result = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(result, np.asarray(image.convert("RGB")))
        assert np.array_equal(result[~mask], scene[~mask])  # outside the region: the scene, exactly
        assert np.abs(result[mask].astype(int) - scene[mask]).mean() > 5  # inside: painted
        assert "reference.png" in caption
    assert not np.array_equal(*(np.asarray(Image.open(f)) for f in files))  # two different samples


def test_generate_reports_bad_settings_and_model_as_sentences(scene, painter, tmp_path):
    settings, p = painter
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    reference = [str(FIXTURES / "reference.png")]
    with pytest.raises(UIError, match="Num_inference_steps must be between 1 and 1000, got 5000"):
        handle_generate(settings, p, value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 5000, "ddim", 0, 1)
    with pytest.raises(UIError, match="Sampler must be one of"):
        handle_generate(settings, p, value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 2, "euler-x", 0, 1)
    missing = UISettings(model=str(tmp_path / "nowhere"))
    with pytest.raises(UIError, match="Could not load the model"):
        handle_generate(missing, Painter(missing), value, reference, None, REGION_MODES[0], "", 5, 0.8, 2, "ddim", 0, 1)


def test_the_page_builds_with_every_control(painter):
    settings, p = painter
    app = build_app(settings, p)
    ids = {getattr(block, "elem_id", None) for block in app.blocks.values()}
    assert {"scene-editor", "references", "subject", "guidance", "model-weight", "steps", "sampler", "seed"} <= ids
    assert {"generate", "results", "downloads", "status", "region-mode", "box", "count", "keep-known"} <= ids


def test_keep_known_reaches_the_pipeline(scene, painter, monkeypatch):
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    settings, p = painter
    seen = []
    call = SubjectInpaintPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["keep_known"])
        return call(self, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "__call__", spy)
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    reference = [str(FIXTURES / "reference.png")]
    pictures = [
        handle_generate(settings, p, value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 3, "ddim", 0, 1, k)[0]
        for k in (False, True)
    ]
    assert seen == [False, True]
    assert not np.array_equal(*(np.asarray(g[0][0]) for g in pictures))


def test_a_picked_subject_uses_its_reference_and_modified_guidance(tiny_model_dir, scene, tmp_path, monkeypatch):
    import json
    import shutil

    from subject_inpainting.training import finetune

    monkeypatch.setenv("SI_NO_TENSORBOARD", "1")
    bear = Path(__file__).parent / "fixtures" / "dreambooth"
    (tmp_path / "photos").mkdir()
    shutil.copy(bear / "bear_plushie" / "00.jpg", tmp_path / "photos" / "00.jpg")
    boxes = json.loads((bear / "bear_plushie_boxes.json").read_text())
    (tmp_path / "boxes.json").write_text(json.dumps({"00.jpg": boxes["00.jpg"]}))
    subject = tmp_path / "subject"
    argv = ["--photos", str(tmp_path / "photos"), "--boxes", str(tmp_path / "boxes.json"), "--base"]
    argv += [str(tiny_model_dir), "--out", str(subject), "--max-steps", "2", "--lr", "1e-2", "--device", "cpu"]
    finetune.main(finetune.parse_args([*argv, "--quiet", "--warmup-steps", "0", "--lora-rank", "4"]))

    settings = UISettings(model=str(tiny_model_dir), subjects=[str(subject)], out_dir=tmp_path / "out")
    painter = Painter(settings)
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))

    def paint(chosen: str, weight: float) -> np.ndarray:
        gallery, _, _ = handle_generate(
            settings, painter, value, None, chosen, REGION_MODES[0], "", 5, weight, 2, "ddim", 3, 1
        )
        return np.asarray(gallery[0][0])

    with pytest.raises(UIError, match="Add a reference photo"):
        paint(NO_SUBJECT, 0.8)  # no file and no subject: nothing to paint
    with_subject = paint(str(subject), 0.8)
    weight_zero = paint(str(subject), 0.0)
    assert not np.array_equal(with_subject, weight_zero)  # the fine-tuned model takes part at w = 0.8
    # Back to the plain model (the page unloads the subject). At w = 0 modified guidance is the pretrained
    # model alone, so the plain model given the subject's reference crop paints the same picture.
    reference = str(sorted((subject / "references").glob("*.png"))[0])
    plain, _, _ = handle_generate(
        settings, painter, value, [reference], NO_SUBJECT, REGION_MODES[0], "", 5, 0.0, 2, "ddim", 3, 1
    )
    assert np.abs(np.asarray(plain[0][0]).astype(int) - weight_zero).max() <= 1
