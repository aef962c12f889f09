"""The web page's logic without a browser: reading the editor, the person's mistakes as one sentence each,
and Generate on the embedded model (the browser tests are in ``test_ui_browser.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from subject_inpainting import imaging, weights
from subject_inpainting.ui import (
    COUNT,
    GUIDANCE,
    MODEL_WEIGHT,
    NO_SUBJECT,
    REGION_MODES,
    STEPS,
    Painter,
    UIError,
    UISettings,
    build_app,
    editor_scene_and_mask,
    handle_generate,
    parse_seed,
    read_references,
    read_upload,
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


def test_a_file_that_is_not_an_image_is_one_sentence_without_its_path(scene, tmp_path):
    text = tmp_path / "holiday.png"
    text.write_bytes(b"these are words, not pixels")
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
    painted = editor_value(scene, (slice(0, 5), slice(0, 5)))
    for source in (text, pdf, str(text), text.read_bytes()):
        with pytest.raises(UIError) as caught:
            editor_scene_and_mask({**painted, "background": source}, 10**8)
        message = str(caught.value)
        assert message == "The scene is not an image this page can read; use a PNG, JPEG or WebP file."
        assert str(tmp_path) not in message and "holiday" not in message
    with pytest.raises(UIError, match=r"^The painted layer is not an image"):
        editor_scene_and_mask({**painted, "layers": [text]}, 10**8)


def test_uploads_go_through_the_project_reader(scene, tmp_path, monkeypatch):
    png = (FIXTURES / "scene.png").read_bytes()
    got = read_upload(png, "scene", 10**8)  # the bytes the browser's editor sends
    assert got.shape == (*scene.shape[:2], 4) and np.array_equal(got[..., :3], scene) and (got[..., 3] == 255).all()
    seen = []
    real = imaging.open_image
    monkeypatch.setattr(
        imaging, "open_image", lambda source, what, limit: seen.append((what, limit)) or real(source, what)
    )
    read_upload(FIXTURES / "scene.png", "scene", 10**8)
    assert seen == [("scene", 10**8)]
    monkeypatch.setattr(imaging, "open_image", real)
    # Over the limit: refused from the header, before anything is decoded.
    from PIL import ImageFile

    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    with pytest.raises(UIError, match=r"^The scene is 256×256 pixels; this page takes up to 60,000 pixels\."):
        read_upload(png, "scene", 60_000)
    assert decoded == []
    # A layer with transparency keeps its alpha (the painted pixels).
    layer = np.zeros((6, 8, 4), np.uint8)
    layer[2:4, 3:5] = (255, 0, 255, 153)
    Image.fromarray(layer).save(tmp_path / "layer.png")
    assert np.array_equal(read_upload(tmp_path / "layer.png", "painted layer", 100)[..., 3] > 0, layer[..., 3] > 0)


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
    with pytest.raises(UIError, match=r"^The reference photo\.png is not an image this page can read; use a PNG"):
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


def test_a_model_that_fails_to_load_is_a_sentence(scene, tmp_path):
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    reference = [str(FIXTURES / "reference.png")]
    missing = UISettings(model=str(tmp_path / "nowhere"))
    with pytest.raises(UIError, match="Could not load the model"):
        handle_generate(missing, Painter(missing), value, reference, None, REGION_MODES[0], "", 5, 0.8, 2, "ddim", 0, 1)


# (field, value, its bounds): values a direct API call could send; the page's sliders allow none of them.
BAD_SETTINGS = [
    ("count", 1e9, COUNT),
    ("count", 0, COUNT),
    ("count", 2.5, COUNT),
    ("count", float("nan"), COUNT),
    ("count", True, COUNT),
    ("steps", -1, STEPS),
    ("steps", 5000, STEPS),
    ("steps", float("nan"), STEPS),
    ("steps", "many", STEPS),
    ("guidance", float("nan"), GUIDANCE),
    ("guidance", float("inf"), GUIDANCE),
    ("guidance", 0.5, GUIDANCE),
    ("guidance", None, GUIDANCE),
    ("model_weight", -0.1, MODEL_WEIGHT),
    ("model_weight", 1.5, MODEL_WEIGHT),
    ("model_weight", float("nan"), MODEL_WEIGHT),
]


@pytest.mark.parametrize(("field", "value", "bounds"), BAD_SETTINGS)
def test_settings_outside_the_sliders_are_refused_before_any_work(scene, painter, field, value, bounds):
    settings, p = painter
    good = {"guidance": 5.0, "model_weight": 0.8, "steps": 2, "count": 1}
    good[field] = value
    before = sorted(p.out_dir.iterdir())
    with pytest.raises(UIError) as caught:
        handle_generate(
            settings,
            p,
            editor_value(scene, (slice(90, 170), slice(60, 160))),
            [str(FIXTURES / "reference.png")],
            NO_SUBJECT,
            REGION_MODES[0],
            "",
            good["guidance"],
            good["model_weight"],
            good["steps"],
            "ddim",
            "0",
            good["count"],
        )
    message = str(caught.value)
    assert message.startswith(f"{bounds.name} must be ") and f"from {bounds.low:g} to {bounds.high:g}; got " in message
    assert message.endswith(".") and ". " not in message and "\n" not in message  # one sentence
    assert sorted(p.out_dir.iterdir()) == before


def test_the_sampler_must_be_one_offered(scene, painter):
    settings, p = painter
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    before = sorted(p.out_dir.iterdir())
    reference = [str(FIXTURES / "reference.png")]
    for bad in ("euler-x", "", None, ["ddim"]):
        with pytest.raises(UIError, match=r"^Sampler must be one of plms, ddim, .*; got "):
            handle_generate(settings, p, value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 2, bad, 0, 1)
    assert sorted(p.out_dir.iterdir()) == before


def test_the_page_builds_with_every_control(painter):
    settings, p = painter
    app = build_app(settings, p)
    blocks = {getattr(block, "elem_id", None): block for block in app.blocks.values()}
    assert {"scene-editor", "references", "subject", "guidance", "model-weight", "steps", "sampler", "seed"} <= {
        *blocks
    }
    assert {"generate", "results", "downloads", "status", "region-mode", "box", "count", "keep-known"} <= {*blocks}
    from subject_inpainting.presets import DEFAULT_PRESET, PRESETS
    from subject_inpainting.ui import preset_controls

    assert blocks["preset"].value == DEFAULT_PRESET and set(blocks["preset"].choices[i][0] for i in range(2)) == {
        *PRESETS
    }
    assert (blocks["sampler"].value, blocks["steps"].value) == preset_controls(DEFAULT_PRESET)
    assert preset_controls("original") == ("plms", 50)
    # The sliders offer exactly what handle_generate accepts, and hand any number on to its check (which names
    # the field) instead of refusing it with Gradio's message.
    for elem_id, bounds in (("guidance", GUIDANCE), ("model-weight", MODEL_WEIGHT), ("steps", STEPS), ("count", COUNT)):
        slider = blocks[elem_id]
        assert (slider.minimum, slider.maximum) == (bounds.low, bounds.high)
        assert slider.preprocess(1e9) == 1e9


def test_the_page_reads_the_editor_with_the_project_reader(painter, scene, tmp_path):
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    def page_editor(settings: UISettings):
        app = build_app(settings, painter[1])
        return next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "scene-editor")

    editor = page_editor(painter[0])
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(gr.Error) as caught:
        editor.preprocess(EditorData(background=FileData(path=str(text), orig_name="notes.png")))
    assert caught.value.message == "The scene is not an image this page can read; use a PNG, JPEG or WebP file."
    got = editor.preprocess(EditorData(background=FileData(path=str(FIXTURES / "scene.png"))))
    assert np.array_equal(got["background"][..., :3], scene)
    small = page_editor(UISettings(model=painter[0].model, max_pixels=1000, out_dir=tmp_path / "out"))
    with pytest.raises(gr.Error, match="256×256 pixels; this page takes up to 1,000 pixels"):
        small.preprocess(EditorData(background=FileData(path=str(FIXTURES / "scene.png"))))


def test_keep_known_reaches_the_pipeline(scene, painter, monkeypatch):
    from subject_inpainting.pipeline import SubjectInpaintPipeline

    settings, p = painter
    seen = []
    call = SubjectInpaintPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append((kwargs["keep_known"], kwargs["preset"]))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "__call__", spy)
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    reference = [str(FIXTURES / "reference.png")]
    args = (value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 3, "ddim", 0, 1)
    pictures = [handle_generate(settings, p, *args, k, "original")[0] for k in (False, True)]
    assert seen == [(False, "original"), (True, "original")]  # the page's preset reaches the pipeline too
    with pytest.raises(UIError, match="Preset must be one of original, fast"):
        handle_generate(settings, p, *args, False, "turbo")
    assert not np.array_equal(*(np.asarray(g[0][0]) for g in pictures))


def test_a_picked_subject_uses_its_reference_and_modified_guidance(tiny_model_dir, tiny_lora_subject, scene, tmp_path):
    subject = tiny_lora_subject
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
