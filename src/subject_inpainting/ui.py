"""``subject-inpaint ui``: a local web page for subject inpainting (Gradio; ``pip install 'subject-inpainting[ui]'``).

A person uploads a scene, paints the region with a brush (or drags one stroke across it and keeps its box),
gives one or more reference photos or picks a fine-tuned subject, sets guidance, model weight, steps,
sampler and seed, and presses Generate. Results appear in a gallery and as PNG files to download.

The page is glue: reading the editor's layers into a mask, checking what a person gave, and calling the
pipeline. Every mistake a person can make comes back as one sentence on the page (``UIError`` → Gradio's
error toast), and the server goes on serving.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import imaging
from . import settings as settings_lib
from .presets import DEFAULT_PRESET, PRESETS, describe
from .settings import PaintSettings
from .utils import free_path
from .utils import parse as parsing

# A scene of more than this many pixels is refused: the page sends it through the browser and the model
# works on a square of a few hundred pixels anyway (about 4096 × 4096).
DEFAULT_MAX_PIXELS = 4096 * 4096
REGION_MODES = ("painted strokes", "box around the strokes")
NO_SUBJECT = "(none: plain model)"
SCENE_EDITOR_ID = "scene-editor"


class UIError(ValueError):
    """A mistake the person at the page can fix; the message is shown as it is."""


# The painting options the page shows, each as a control derived from its ``PaintSettings`` field (range,
# default, label, help): the order of ``handle_generate``'s arguments after the region's.
PAGE_OPTIONS = ("guidance_scale", "model_weight", "num_inference_steps", "sampler", "num_images")
# The slider steps of the numeric ones.
SLIDER_STEPS = {"guidance_scale": 0.5, "model_weight": 0.05, "num_inference_steps": 1, "num_images": 1}


def control_id(name: str) -> str:
    """The page element of option ``name``: its batch key with dashes (``guidance``, ``model-weight``)."""
    return settings_lib.key(name).replace("_", "-")


def page_settings(values: dict[str, Any]) -> PaintSettings:
    """The ``PaintSettings`` of the page's controls (``values`` by option name), each value read as a flag's
    text or a number is (``settings.parse_value``): a call through Gradio's API can send anything.

    Raises:
        UIError: one sentence: the control's label, then what every front end says of such a value.
    """
    parsed = {}
    for name, value in values.items():
        try:
            parsed[name] = settings_lib.parse_value(name, value)
        except settings_lib.SettingsError as e:
            raise UIError(f"{e.named(settings_lib.option(name).label)}.") from None
    try:
        return PaintSettings(**parsed)
    except settings_lib.SettingsError as e:
        raise UIError(f"{e.named(settings_lib.option(e.option).label)}.") from None


def unreadable(what: str) -> str:
    """The sentence for a file that is not a picture (or one the reader cannot decode)."""
    return f"The {what} is not an image this page can read; use a PNG, JPEG or WebP file."


def too_large(what: str, size: tuple[int, int] | None, max_pixels: int) -> str:
    """The sentence for a picture over the page's pixel limit (``size`` None: too large to say)."""
    shown = "too large" if size is None else f"{size[0]}×{size[1]} pixels"
    return f"The {what} is {shown}; this page takes up to {max_pixels:,} pixels. Resize it first."


@dataclass
class UISettings:
    """What ``subject-inpaint ui`` serves.

    Attributes:
        model: model folder or hub id (the embedded toy model when the command names none).
        subjects: fine-tuned subject folders offered in the page's subject menu.
        device, dtype: where and in what precision the pipeline runs (``Session``'s: names such as ``auto``
            or torch objects).
        int8: ``Session``'s ``int8`` (``auto``, ``on`` or ``off``).
        max_pixels: the largest scene accepted.
        out_dir: where results are written for download (a fresh temporary folder by default).
    """

    model: str
    subjects: Sequence[str] = ()
    device: Any = "auto"
    dtype: Any = "auto"
    int8: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    out_dir: Path | None = None


# ---------------------------------------------------------------------------------------------------
# Reading what the page sends
# ---------------------------------------------------------------------------------------------------
def read_upload(source: str | os.PathLike | bytes, what: str, max_pixels: int) -> np.ndarray:
    """A picture the page was sent, as a file or its bytes, read by ``imaging.open_image`` (decoded in full,
    EXIF orientation applied, decompression bombs refused).

    Returns:
        ``(H, W, 4)`` uint8 RGBA (opaque when the file has no alpha).

    Raises:
        UIError: not an image the reader can decode, or more than ``max_pixels`` pixels.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        # The browser sends the editor's images as bytes; the reader takes a file.
        with tempfile.TemporaryDirectory(prefix="subject-inpaint-upload-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(source)
            return read_upload(path, what, max_pixels)
    try:
        image = imaging.open_image(source, what, max_pixels)  # the size is read from the header first
    except imaging.ImageTooLarge as e:
        raise UIError(too_large(what, e.size, max_pixels)) from None
    except imaging.InputError:
        raise UIError(unreadable(what)) from None
    rgb, alpha = imaging.to_rgb(image)
    if alpha is None:
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
    return np.dstack([rgb, alpha])


def _as_array(image: Any, what: str, max_pixels: int) -> np.ndarray | None:
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        return read_upload(image, what, max_pixels)
    return np.asarray(image)


def editor_scene_and_mask(value: dict[str, Any] | None, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The scene and the painted region from a Gradio ``ImageEditor`` value.

    Args:
        value: ``{"background": (H, W, 3|4), "layers": [(H, W, 4) ...], "composite": ...}`` (numpy arrays,
            PIL images, file paths or file bytes); a pixel is painted where any layer's alpha is above zero.
        max_pixels: the largest scene accepted.

    Returns:
        ``(scene (H, W, 3) uint8, mask (H, W) bool)``.

    Raises:
        UIError: no scene, a scene that is not an image or too large, or nothing painted.
    """
    background = _as_array(value.get("background"), "scene", max_pixels) if value else None
    if background is None or background.size == 0:
        raise UIError("Upload a scene first (the picture to paint into).")
    h, w = background.shape[:2]
    if h * w > max_pixels:
        raise UIError(too_large("scene", (w, h), max_pixels))
    scene = background[..., :3] if background.ndim == 3 else np.repeat(background[..., None], 3, axis=2)
    mask = np.zeros((h, w), bool)
    for layer in value.get("layers") or []:
        layer = _as_array(layer, "painted layer", max_pixels)
        if layer is None or layer.ndim != 3 or layer.shape[2] != 4:
            continue
        painted = layer[..., 3] > 0
        if painted.shape != mask.shape:  # a layer kept at the editor's canvas size
            painted = imaging.fit_mask(painted, (w, h), "painted layer")
        mask |= painted
    if not mask.any():
        raise UIError("Paint the region to fill with the brush (nothing is painted on the scene yet).")
    return np.ascontiguousarray(scene.astype(np.uint8)), mask


def region_mask(mask: np.ndarray, mode: str, box_text: str = "") -> np.ndarray:
    """The region to edit: the painted strokes, the box around them, or a box typed as ``x0,y0,x1,y1``
    (which wins when given)."""
    h, w = mask.shape
    if box_text and box_text.strip():
        try:
            return imaging.box_to_mask(imaging.parse_box(box_text), (w, h))
        except imaging.InputError as e:
            raise UIError(f"Box: {e}") from None
    if mode not in REGION_MODES:
        raise UIError(f"Region must be one of {', '.join(REGION_MODES)}; got {mode!r}.")
    if mode == REGION_MODES[1]:
        x0, y0, x1, y1 = imaging.mask_bbox(mask)
        boxed = np.zeros_like(mask)
        boxed[y0:y1, x0:x1] = True
        return boxed
    return mask


def _file_path(item: Any) -> str:
    return str(getattr(item, "name", None) or getattr(item, "path", None) or item)


def read_references(files: Sequence[Any] | None, subject: str | None) -> list[tuple[str, Image.Image]]:
    """The reference photos: the uploaded files, else the picked subject's first reference crop.

    Returns ``[(name, RGB image)]``. Raises ``UIError`` for no reference, or a file that is unreadable or
    too large."""
    references = []
    for item in files or []:
        path = _file_path(item)
        image = _open_reference(path, f"reference {Path(path).name}")
        references.append((Path(path).name, image.convert("RGB")))
    if not references and subject:
        from .loaders.layout import subject_reference_crops

        crops = subject_reference_crops(Path(subject))
        if crops:
            image = _open_reference(crops[0], f"reference of the subject {Path(subject).name}")
            references.append((f"{Path(subject).name} (subject)", image))
    if not references:
        raise UIError("Add a reference photo of the subject (or pick a fine-tuned subject).")
    return references


def _open_reference(path: str | os.PathLike, what: str) -> Image.Image:
    """One reference, read within the reader's own pixel limit (references are not held to the scene's
    ``max_pixels``); ``UIError`` for a file too large (a decompression bomb included) or unreadable."""
    try:
        return imaging.open_image(path, "reference")
    except imaging.ImageTooLarge as e:
        raise UIError(too_large(what, e.size, e.limit)) from None
    except imaging.InputError:
        raise UIError(unreadable(what)) from None


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: a refusal repeats what was sent, which may be long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_seed(text: Any) -> int:
    """The seed box: a whole number from 0 to 2**63 - 1, as the commands' ``--seed`` takes it
    (``utils.parse.parse_seed``), or -1 when the box is empty (a fresh random seed).

    Raises:
        UIError: anything else (a fraction, a negative number, inf, nan, a number past the range, words),
            as one sentence naming the value and the range.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return -1
    try:
        return parsing.parse_seed(text.strip() if isinstance(text, str) else text)
    except parsing.ParseError:
        raise UIError(
            f"Seed must be a whole number from 0 to {parsing.MAX_SEED}, or empty for a random one; got {_shown(text)}."
        ) from None


# ---------------------------------------------------------------------------------------------------
# Running the model
# ---------------------------------------------------------------------------------------------------
class PageState:
    """The page's ``Session`` (the model loaded on first use) and the folder of its pictures; one request at a
    time."""

    def __init__(self, settings: UISettings):
        from .session import Session

        self.settings = settings
        self.session = Session(settings.model, device=settings.device, dtype=settings.dtype, int8=settings.int8)
        self._lock = threading.Lock()
        self.out_dir = Path(settings.out_dir or tempfile.mkdtemp(prefix="subject-inpaint-ui-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def generate(
        self,
        scene: np.ndarray,
        mask: np.ndarray,
        references: list[tuple[str, Image.Image]],
        subject: str | None,
        paint: PaintSettings,
        seed: int,
        on_step: Callable[[int, int], None] | None = None,
    ) -> tuple[list[tuple[Image.Image, str]], list[str], int]:
        """Paint every reference's subject with ``paint`` (reference *k* with seed ``seed + k``; a negative seed:
        a fresh random one).

        Returns ``(gallery [(image, caption)], written PNG paths, seed used)``.

        Raises:
            UIError: the model or the subject does not load, or the model refuses the settings.
        """
        import secrets

        from .session import ModelLoadError, PaintRequest, SubjectError

        if seed < 0:
            seed = secrets.randbelow(2**31)
        steps = paint.resolved().num_inference_steps
        total = len(references) * steps
        gallery, files = [], []
        with self._lock:
            try:
                self.session.pipeline.check_inputs(paint)
                self.session.use_subject(subject)
            except (ModelLoadError, SubjectError) as e:
                raise UIError(f"Could not load the {e}.") from None
            except ValueError as e:
                raise UIError(str(e)[:1].upper() + str(e)[1:] + ".") from None
            for k, (name, reference) in enumerate(references):
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:40] or "reference"

                def step(pipe, i: int, t: int, tensors: dict[str, Any], done: int = k * steps) -> dict[str, Any]:
                    if on_step is not None:
                        on_step(done + i + 1, total)
                    return tensors

                request = PaintRequest(scene, reference, mask, subject=subject, seed=seed + k, settings=paint)
                images = self.session.paint_one(request, callback_on_step_end=step, progress=False)
                for j, image in enumerate(images):
                    path = imaging.save_image_atomic(image, free_path(self.out_dir / f"seed{seed + k}-{stem}-{j}.png"))
                    gallery.append((image, f"{name} · seed {seed + k} · #{j + 1}"))
                    files.append(str(path))
        return gallery, files, seed


def handle_generate(
    settings: UISettings,
    painter: PageState,
    editor: dict[str, Any] | None,
    files: Sequence[Any] | None,
    subject: str | None,
    region: str,
    box: str,
    guidance: Any,
    model_weight: Any,
    steps: Any,
    sampler: Any,
    seed: Any,
    count: Any,
    keep_known: Any = False,
    preset: Any = DEFAULT_PRESET,
    report: Callable[[int, int], None] | None = None,
) -> tuple[list[tuple[Image.Image, str]], list[str], str]:
    """What Generate does: read and check the page's inputs, paint, and return ``(gallery, files, status)``.
    ``guidance`` ... ``count``, ``keep_known`` and ``preset`` are the controls of ``PAGE_OPTIONS`` and of
    those two options.

    Raises:
        UIError: one sentence for anything the person can fix (also for a model or file that fails to load).
    """
    # The settings first: they are cheap to check, and nothing is read or written for a request they refuse.
    values = dict(zip(PAGE_OPTIONS, (guidance, model_weight, steps, sampler, count), strict=True))
    paint = page_settings({**values, "keep_known": keep_known, "preset": preset})
    seed = parse_seed(seed)
    scene, painted = editor_scene_and_mask(editor, settings.max_pixels)
    mask = region_mask(painted, region, box)
    chosen = None if subject in (None, "", NO_SUBJECT) else subject
    references = read_references(files, chosen)
    if report is not None:
        report(0, paint.resolved().num_inference_steps)
    try:
        gallery, paths, used = painter.generate(scene, mask, references, chosen, paint, seed, report)
    except (imaging.InputError, OSError) as e:
        raise UIError(f"Could not paint: {e}") from None
    return gallery, paths, f"Done: {len(gallery)} result(s), seed {used}."


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------
# The editor decodes a picked or dropped file in the browser; one it cannot decode leaves it empty without a
# word, and the file never reaches the server. This check, run once in the page, triggers the scene-check
# element's upload event for such a file, whose handler shows the same sentence the server gives.
_SCENE_CHECK_JS = """
const editor = "#EDITOR_ID";
async function readable(file) {
  const url = URL.createObjectURL(file);
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    return true;
  } catch {
    return false;
  } finally {
    URL.revokeObjectURL(url);
  }
}
async function check(files) {
  for (const file of files) {
    if (!(await readable(file))) {
      trigger("upload");
      return;
    }
  }
}
// Capture: the editor handles the event first otherwise; the files are copied while the event lasts.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.type === "file" && input.closest(editor)) {
    check(Array.from(input.files || []));
  }
}, true);
document.addEventListener("drop", (event) => {
  if (event.target instanceof Element && event.target.closest(editor) && event.dataTransfer) {
    check(Array.from(event.dataTransfer.files));
  }
}, true);
""".replace("EDITOR_ID", SCENE_EDITOR_ID)


def _read_editor_image(max_pixels: int, file: Any, flatten_on_white: bool = False) -> np.ndarray | None:
    """Stands in for the editor's ``convert_and_format_image``, which turns each of its images into an array
    with Pillow before a handler runs: a file that is not an image would fail there with Pillow's message and
    the server's temporary path, and a huge one would be decoded before any limit."""
    import gradio as gr

    if file is None:
        return None
    # Gradio flattens the background and the composite (the scene), not the painted layers.
    what = "scene" if flatten_on_white else "painted layer"
    try:
        return read_upload(getattr(file, "path", file), what, max_pixels)
    except UIError as e:
        raise gr.Error(str(e), print_exception=False) from None


def preset_controls(name: str) -> tuple[str, int]:
    """The sampler and steps the page shows for preset ``name``."""
    return PRESETS[name]["sampler"], PRESETS[name]["num_inference_steps"]


def _unchecked(payload: Any) -> Any:
    """Stands in for a slider's ``preprocess``, which refuses a number out of range without naming the field
    (and lets NaN through): ``handle_generate`` checks it against the option's bounds instead."""
    return payload


def _check_value_count(block_fn: Any, inputs: Sequence[Any]) -> None:
    """Stands in for the app's ``validate_inputs``: a request (a call through Gradio's API) that sends fewer
    values than an event takes is refused there with a message listing the components' Python reprs; here
    it is one sentence naming the event and its fields in order. Extra values are ignored, as Gradio does."""
    import gradio as gr

    fields = block_fn.inputs
    if len(inputs) >= len(fields):
        return
    name = block_fn.api_name if isinstance(block_fn.api_name, str) else block_fn.name
    names = ", ".join(getattr(field, "elem_id", None) or field.get_block_name() for field in fields)
    takes = f"{len(fields)} value{'s' if len(fields) != 1 else ''}"
    sent = f"{len(inputs)} value{'s' if len(inputs) != 1 else ''}"
    order = "" if len(fields) == 1 else ", in that order"
    raise gr.Error(f"The request to {name} sent {sent}; it takes {takes}: {names}{order}.", print_exception=False)


def build_app(settings: UISettings, painter: PageState | None = None):
    """The Gradio ``Blocks`` of the page (not launched)."""
    import gradio as gr

    painter = painter or PageState(settings)
    subjects = [NO_SUBJECT, *[str(s) for s in settings.subjects]]

    # The editor's images and the controls' values reach handle_generate as the page sent them, which checks
    # them against the options' bounds. Per instance: Gradio writes a type stub next to the module of any
    # subclass of its components.
    def control(name: str, value: Any = None, label: str | None = None, info: str | None = None):
        """The page's control of option ``name``: its range, default, label and help from ``PaintSettings``."""
        option = settings_lib.option(name)
        value = settings_lib.default(name) if value is None else value
        common = {"label": label or option.label, "elem_id": control_id(name)}
        if option.kind == "choice":
            return gr.Dropdown(list(option.choices), value=value, info=info, **common)
        if option.kind == "switch":
            return gr.Checkbox(value=value, info=info or option.help, **common)
        field = gr.Slider(option.low, option.high, value=value, step=SLIDER_STEPS[name], info=info, **common)
        field.preprocess = _unchecked
        return field

    # The inputs arrive in the order of `run.click`'s list below, which is handle_generate's. Gradio finds the
    # progress tracker by its default value, hence the call in the signature.
    def on_generate(*inputs, progress=gr.Progress()):  # noqa: B008
        def report(i: int, n: int) -> None:
            progress((i, n), desc="painting" if i else "loading the model", unit="steps")

        try:
            return handle_generate(settings, painter, *inputs, report=report)
        except UIError as e:
            raise gr.Error(str(e), print_exception=False) from None

    def refuse_scene() -> None:
        raise gr.Error(unreadable("scene"), print_exception=False)

    # No telemetry: the page is local, and offline machines would wait on the calls.
    with gr.Blocks(title="subject-inpaint", analytics_enabled=False) as app:
        gr.Markdown(
            "## Subject inpainting\n"
            "Upload a **scene**, paint the **region** to fill, add a **reference** photo of the subject, and "
            f"press **Generate**. Model: {_model_name(settings.model)}."
        )
        with gr.Row():
            with gr.Column(scale=3):
                editor = gr.ImageEditor(
                    label="Scene — paint the region with the brush",
                    type="numpy",
                    image_mode="RGBA",
                    sources=("upload", "clipboard"),
                    transforms=(),
                    layers=False,
                    brush=gr.Brush(default_size=24, colors=[("#ff00ff", 0.6)], color_mode="fixed"),  # see-through
                    elem_id=SCENE_EDITOR_ID,
                )
                editor.convert_and_format_image = functools.partial(_read_editor_image, settings.max_pixels)
                scene_check = gr.HTML("", visible="hidden", js_on_load=_SCENE_CHECK_JS, elem_id="scene-check")
                region = gr.Radio(
                    list(REGION_MODES),
                    value=REGION_MODES[0],
                    label="Region",
                    elem_id="region-mode",
                    info="the painted strokes as they are, or the box around them (drag one stroke corner to corner)",
                )
                box = gr.Textbox(
                    label="Box (optional): x0,y0,x1,y1 in scene pixels; replaces the strokes", elem_id="box"
                )
            with gr.Column(scale=2):
                references = gr.File(
                    label="Reference photo(s) of the subject — each gives its own results",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="references",
                )
                subject = gr.Dropdown(subjects, value=NO_SUBJECT, label="Fine-tuned subject", elem_id="subject")
                with gr.Row():
                    guidance = control("guidance_scale")
                    weight = control("model_weight", label="Model weight (with a subject)")
                default = PRESETS[DEFAULT_PRESET]
                preset = gr.Radio(
                    list(PRESETS),
                    value=DEFAULT_PRESET,
                    label=settings_lib.option("preset").label,
                    info="; ".join(f"{name}: {describe(name)}" for name in PRESETS),
                    elem_id=control_id("preset"),
                )
                with gr.Row():
                    steps = control("num_inference_steps", default["num_inference_steps"])
                    sampler = control("sampler", default["sampler"])
                with gr.Row():
                    seed = gr.Textbox(value="0", label="Seed (empty = random)", elem_id="seed")
                    count = control("num_images", label="Images per reference")
                keep_known = control(
                    "keep_known",
                    info="hold the model's picture outside the region to the scene at every step: steadier "
                    "colours around the subject from a model that shifts them (the original does not)",
                )
                run = gr.Button("Generate", variant="primary", elem_id="generate")
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(
            label="Results",
            columns=4,
            fit_columns=False,
            height=360,
            object_fit="contain",
            preview=False,
            elem_id="results",
            format="png",
            buttons=["download", "fullscreen"],
        )
        downloads = gr.File(label="Download", file_count="multiple", elem_id="downloads")
        inputs = [editor, references, subject, region, box, guidance, weight, steps, sampler, seed, count]
        run.click(
            on_generate,
            [*inputs, keep_known, preset],
            [gallery, downloads, status],
            concurrency_limit=1,
        )
        # A preset sets the sampler and steps shown; changed by hand afterwards, they win over the preset's.
        preset.change(preset_controls, [preset], [sampler, steps])
        scene_check.upload(refuse_scene, None, None, api_visibility="private", show_progress="hidden")
    app.validate_inputs = _check_value_count
    app.painter = painter
    return app


def _model_name(model: str) -> str:
    from .weights import default_model

    default = default_model()
    if default is not None and Path(model).resolve() == Path(default).resolve():
        return "the embedded toy model (64 × 64 toy scenes; name a real one with `--model`)"
    return f"`{model}`"


def launch(settings: UISettings, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve the page; returns the app (and keeps serving in a thread when ``block`` is False)."""
    app = build_app(settings)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        allowed_paths=[str(app.painter.out_dir)],
        max_file_size="50mb",
        footer_links=[],
        show_error=True,
        quiet=not block,
    )
    return app
