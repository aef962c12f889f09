"""The web page's logic without a browser: reading the editor, the person's mistakes as one sentence each,
and Generate on the embedded model (the browser tests are in ``test_ui_browser.py``)."""

from __future__ import annotations

import json
import socket
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from subject_inpainting import imaging, weights
from subject_inpainting import settings as settings_lib
from subject_inpainting.ui import (
    DEFAULT_MAX_PIXELS,
    NO_SUBJECT,
    PAGE_OPTIONS,
    REGION_MODES,
    PageState,
    UIError,
    UISettings,
    build_app,
    editor_scene_and_mask,
    handle_generate,
    launch,
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
    assert parse_seed(" 2147483648 ") == 2**31 and parse_seed(str(2**63 - 1)) == 2**63 - 1  # as `--seed` takes


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width × height`` pixels and which holds almost no data: a decompression
    bomb as a reader sees it before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_a_reference_too_large_is_said_to_be_too_large(tmp_path):
    beyond_pillow = png_header(tmp_path / "bomb.png", 30000, 30000)  # past Pillow's hard limit: no size known
    over_limit = png_header(tmp_path / "poster.png", 10000, 10000)  # past the reader's limit, size in the header
    limit = f"{imaging.MAX_PIXELS:,}"
    for path, shown in ((beyond_pillow, "too large"), (over_limit, "10000×10000 pixels")):
        with pytest.raises(UIError) as caught:
            read_references([str(path)], None)
        assert str(caught.value) == (
            f"The reference {path.name} is {shown}; this page takes up to {limit} pixels. Resize it first."
        )
    # the scene, as the editor sends it (a file or its bytes), says the same against the page's limit
    for source in (beyond_pillow, beyond_pillow.read_bytes()):
        with pytest.raises(UIError) as caught:
            read_upload(source, "scene", DEFAULT_MAX_PIXELS)
        assert str(caught.value) == "The scene is too large; this page takes up to 16,777,216 pixels. Resize it first."


def test_a_picked_subject_whose_reference_cannot_be_read_is_a_sentence(tmp_path):
    subject = tmp_path / "bear"
    (subject / "references").mkdir(parents=True)
    (subject / "references" / "00.png").write_bytes(b"not a picture")
    with pytest.raises(UIError) as caught:
        read_references(None, str(subject))
    assert str(caught.value) == (
        "The reference of the subject bear is not an image this page can read; use a PNG, JPEG or WebP file."
    )


SEED_REFUSAL = "Seed must be a whole number from 0 to 9223372036854775807, or empty for a random one; got {}."
BAD_SEEDS = ["inf", "-inf", "nan", "1e400", "1.5", "-1", str(2**63), "abc", float("inf"), 1.5, -1, 2**63, True]


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_a_seed_outside_the_range_is_one_sentence_before_any_work(scene, painter, seed):
    settings, p = painter
    before = sorted(p.out_dir.iterdir())
    with pytest.raises(UIError) as caught:
        parse_seed(seed)
    assert str(caught.value) == SEED_REFUSAL.format(repr(seed))
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    reference = [str(FIXTURES / "reference.png")]
    with pytest.raises(UIError) as caught:
        handle_generate(settings, p, value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 2, "ddim", seed, 1)
    assert str(caught.value) == SEED_REFUSAL.format(repr(seed))
    assert sorted(p.out_dir.iterdir()) == before


def test_a_long_seed_is_shown_shortened():
    with pytest.raises(UIError) as caught:
        parse_seed("9" * 5000)
    assert str(caught.value) == SEED_REFUSAL.format("'" + "9" * 36 + "...")


@pytest.fixture(scope="module")
def painter(tmp_path_factory):
    settings = UISettings(model=str(weights.default_model()), out_dir=tmp_path_factory.mktemp("ui-out"))
    return settings, PageState(settings)


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
        handle_generate(
            missing, PageState(missing), value, reference, None, REGION_MODES[0], "", 5, 0.8, 2, "ddim", 0, 1
        )


# (field, value, its option): values a direct API call could send; the page's sliders allow none of them.
BAD_SETTINGS = [
    ("count", 1e9, "num_images"),
    ("count", 0, "num_images"),
    ("count", 2.5, "num_images"),
    ("count", float("nan"), "num_images"),
    ("count", True, "num_images"),
    ("steps", -1, "num_inference_steps"),
    ("steps", 5000, "num_inference_steps"),
    ("steps", float("nan"), "num_inference_steps"),
    ("steps", "many", "num_inference_steps"),
    ("guidance", float("nan"), "guidance_scale"),
    ("guidance", float("inf"), "guidance_scale"),
    ("guidance", -0.5, "guidance_scale"),
    ("guidance", None, "guidance_scale"),
    ("model_weight", -0.1, "model_weight"),
    ("model_weight", 1.5, "model_weight"),
    ("model_weight", float("nan"), "model_weight"),
    ("sampler", "euler-x", "sampler"),
    ("sampler", None, "sampler"),
    ("sampler", ["ddim"], "sampler"),
]


@pytest.mark.parametrize(("field", "value", "name"), BAD_SETTINGS)
def test_settings_outside_the_bounds_are_refused_before_any_work_as_everywhere(scene, painter, field, value, name):
    settings, p = painter
    good = {"guidance": 5.0, "model_weight": 0.8, "steps": 2, "sampler": "ddim", "count": 1}
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
            good["sampler"],
            "0",
            good["count"],
        )
    message = str(caught.value)
    # the control's label, then the sentence the API, the command line and a batch job say of the value
    with pytest.raises(settings_lib.SettingsError) as api:
        settings_lib.parse_value(name, value)
    assert message == f"{settings_lib.option(name).label} {api.value.tail}."
    assert "\n" not in message
    assert sorted(p.out_dir.iterdir()) == before


def test_the_page_builds_with_every_control(painter):
    settings, p = painter
    app = build_app(settings, p)
    blocks = {getattr(block, "elem_id", None): block for block in app.blocks.values()}
    assert {"scene-editor", "references", "subject", "guidance", "model-weight", "steps", "sampler", "seed"} <= {
        *blocks
    }
    assert {"generate", "results", "downloads", "status", "region-mode", "box", "num-images", "keep-known"} <= {*blocks}
    from subject_inpainting.presets import DEFAULT_PRESET, PRESETS
    from subject_inpainting.ui import control_id, preset_controls

    assert blocks["preset"].value == DEFAULT_PRESET and set(blocks["preset"].choices[i][0] for i in range(2)) == {
        *PRESETS
    }
    assert (blocks["sampler"].value, blocks["steps"].value) == preset_controls(DEFAULT_PRESET)
    assert preset_controls("original") == ("plms", 50)
    # Every control is its option's: the range of its field, its choices; a slider hands any number on to the
    # settings' check (which names the field) instead of refusing it with Gradio's message.
    for name in (*PAGE_OPTIONS, "keep_known", "preset"):
        option, block = settings_lib.option(name), blocks[control_id(name)]
        if option.kind in ("int", "float"):
            assert (block.minimum, block.maximum) == (option.low, option.high), name
            assert block.preprocess(1e9) == 1e9
        elif option.kind == "choice":
            assert [c[0] for c in block.choices] == list(option.choices), name
        else:
            assert block.value == settings_lib.default(name), name


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
        seen.append((kwargs["settings"].keep_known, kwargs["settings"].preset))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(SubjectInpaintPipeline, "__call__", spy)
    value = editor_value(scene, (slice(90, 170), slice(60, 160)))
    reference = [str(FIXTURES / "reference.png")]
    args = (value, reference, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 3, "ddim", 0, 1)
    pictures = [handle_generate(settings, p, *args, k, "original")[0] for k in (False, True)]
    assert seen == [(False, "original"), (True, "original")]  # the page's preset reaches the pipeline too
    with pytest.raises(UIError, match=r"^Preset must be one of original, fast, got 'turbo'\.$"):
        handle_generate(settings, p, *args, False, "turbo")
    assert not np.array_equal(*(np.asarray(g[0][0]) for g in pictures))


def test_a_picked_subject_uses_its_reference_and_modified_guidance(tiny_model_dir, tiny_lora_subject, scene, tmp_path):
    subject = tiny_lora_subject
    settings = UISettings(model=str(tiny_model_dir), subjects=[str(subject)], out_dir=tmp_path / "out")
    painter = PageState(settings)
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


# ---------------------------------------------------------------------------------------------------
# Through Gradio's API: what a client that calls the served page gets back
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(painter):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(UISettings(model=painter[0].model, out_dir=painter[0].out_dir), port=port, block=False)
    yield f"http://127.0.0.1:{port}/gradio_api"
    app.close()


def api_error(base: str, endpoint: str, data: list) -> str:
    """Call ``endpoint`` with ``data`` the way Gradio's HTTP API is called, and return its error message."""
    request = urllib.request.Request(
        f"{base}/call/{endpoint}", json.dumps({"data": data}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base}/call/{endpoint}/{event}", timeout=120) as response:
        lines = response.read().decode().splitlines()
    assert "event: error" in lines, lines
    return json.loads(lines[lines.index("event: error") + 1].removeprefix("data: "))["error"]


GENERATE_FIELDS = (
    "scene-editor, references, subject, region-mode, box, guidance, model-weight, steps, sampler, seed, num-images, "
    "keep-known, preset"
)


def test_a_request_with_too_few_values_is_one_sentence(served, capfd):
    assert api_error(served, "on_generate", []) == (
        f"The request to on_generate sent 0 values; it takes 13 values: {GENERATE_FIELDS}, in that order."
    )
    assert api_error(served, "on_generate", [None]) == (
        f"The request to on_generate sent 1 value; it takes 13 values: {GENERATE_FIELDS}, in that order."
    )
    assert (
        api_error(served, "preset_controls", [])
        == "The request to preset_controls sent 0 values; it takes 1 value: preset."
    )
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("seed", ["inf", "1e400", float("inf"), "-1"], ids=repr)
def test_a_bad_seed_through_the_api_is_one_sentence_without_a_traceback(served, capfd, seed):
    data = [None, None, NO_SUBJECT, REGION_MODES[0], "", 5, 0.8, 2, "ddim", seed, 1, False, "fast"]
    assert api_error(served, "on_generate", data) == SEED_REFUSAL.format(repr(str(seed)))  # the seed box's text
    assert "Traceback" not in capfd.readouterr().err
