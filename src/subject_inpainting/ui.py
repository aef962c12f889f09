"""``subject-inpaint ui``: a local web page for subject inpainting (Gradio; ``pip install 'subject-inpainting[ui]'``).

A person uploads a scene, paints the region with a brush (or drags one stroke across it and keeps its box),
gives one or more reference photos or picks a fine-tuned subject, sets guidance, model weight, steps,
sampler and seed, and presses Generate. Results appear in a gallery and as PNG files to download.

The page is glue: reading the editor's layers into a mask, checking what a person gave, and calling the
pipeline. Every mistake a person can make comes back as one sentence on the page (``UIError`` → Gradio's
error toast), and the server goes on serving.
"""

from __future__ import annotations

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
from .utils import free_path

# A scene of more than this many pixels is refused: the page sends it through the browser and the model
# works on a square of a few hundred pixels anyway (about 4096 × 4096).
DEFAULT_MAX_PIXELS = 4096 * 4096
REGION_MODES = ("painted strokes", "box around the strokes")
NO_SUBJECT = "(none: plain model)"


class UIError(ValueError):
    """A mistake the person at the page can fix; the message is shown as it is."""


@dataclass
class UISettings:
    """What ``subject-inpaint ui`` serves.

    Attributes:
        model: model folder or hub id (the embedded toy model when the command names none).
        subjects: fine-tuned subject folders offered in the page's subject menu.
        device, dtype: where and in what precision the pipeline runs (``torch`` objects).
        max_pixels: the largest scene accepted.
        out_dir: where results are written for download (a fresh temporary folder by default).
    """

    model: str
    subjects: Sequence[str] = ()
    device: Any = None
    dtype: Any = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    out_dir: Path | None = None


# ---------------------------------------------------------------------------------------------------
# Reading what the page sends
# ---------------------------------------------------------------------------------------------------
def _as_array(image: Any) -> np.ndarray | None:
    if image is None:
        return None
    if isinstance(image, (str, Path)):
        image = imaging.open_image(image, "scene")
    return np.asarray(image)


def editor_scene_and_mask(value: dict[str, Any] | None, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The scene and the painted region from a Gradio ``ImageEditor`` value.

    Args:
        value: ``{"background": (H, W, 3|4), "layers": [(H, W, 4) ...], "composite": ...}`` (numpy arrays,
            PIL images or file paths); a pixel is painted where any layer's alpha is above zero.
        max_pixels: the largest scene accepted.

    Returns:
        ``(scene (H, W, 3) uint8, mask (H, W) bool)``.

    Raises:
        UIError: no scene, a scene too large, or nothing painted.
    """
    background = _as_array(value.get("background")) if value else None
    if background is None or background.size == 0:
        raise UIError("Upload a scene first (the picture to paint into).")
    h, w = background.shape[:2]
    if h * w > max_pixels:
        raise UIError(f"The scene is {w}×{h} pixels; this page takes up to {max_pixels:,} pixels. Resize it first.")
    scene = background[..., :3] if background.ndim == 3 else np.repeat(background[..., None], 3, axis=2)
    mask = np.zeros((h, w), bool)
    for layer in value.get("layers") or []:
        layer = _as_array(layer)
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

    Returns ``[(name, RGB image)]``. Raises ``UIError`` for no reference or an unreadable file."""
    references = []
    for item in files or []:
        path = _file_path(item)
        try:
            image = imaging.open_image(path, "reference")
        except imaging.InputError:
            raise UIError(f"The reference {Path(path).name} is not an image this page can read.") from None
        references.append((Path(path).name, image.convert("RGB")))
    if not references and subject:
        from .convert.subject import subject_reference_crops

        crops = subject_reference_crops(Path(subject))
        if crops:
            references.append((f"{Path(subject).name} (subject)", imaging.open_image(crops[0], "reference")))
    if not references:
        raise UIError("Add a reference photo of the subject (or pick a fine-tuned subject).")
    return references


def parse_seed(text: Any) -> int:
    """The seed box: an integer in [0, 2³¹), or empty/-1 for a fresh random one."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return -1
    try:
        seed = int(float(text)) if not isinstance(text, int) else text
    except (TypeError, ValueError):
        raise UIError(f"Seed must be a whole number (or empty for a random one); got {text!r}.") from None
    if seed < -1 or seed >= 2**31:
        raise UIError(f"Seed must be between 0 and 2147483647 (or -1 for a random one); got {seed}.")
    return seed


# ---------------------------------------------------------------------------------------------------
# Running the model
# ---------------------------------------------------------------------------------------------------
class Painter:
    """Holds the pipeline (loaded on first use) and runs one request at a time."""

    def __init__(self, settings: UISettings):
        self.settings = settings
        self._pipe = None
        self._subject: str | None = None  # the subject loaded into the pipeline
        self._lock = threading.Lock()
        self.out_dir = Path(settings.out_dir or tempfile.mkdtemp(prefix="subject-inpaint-ui-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def pipeline(self):
        if self._pipe is None:
            from .pipeline import SubjectInpaintPipeline

            try:
                self._pipe = SubjectInpaintPipeline.from_pretrained(
                    self.settings.model, device=self.settings.device, dtype=self.settings.dtype
                )
            except (OSError, ValueError) as e:  # CheckpointError is a ValueError
                raise UIError(f"Could not load the model {self.settings.model}: {e}") from None
        return self._pipe

    def _use_subject(self, pipe, subject: str | None) -> None:
        if subject == self._subject:
            return
        if subject:
            from .convert.checkpoint_io import CheckpointError

            try:
                pipe.load_subject(subject)
            except CheckpointError as e:
                raise UIError(f"Subject {Path(subject).name}: {e}") from None
        else:
            pipe.unload_subject()
        self._subject = subject

    def generate(
        self,
        scene: np.ndarray,
        mask: np.ndarray,
        references: list[tuple[str, Image.Image]],
        subject: str | None,
        guidance: float,
        model_weight: float,
        steps: int,
        sampler: str,
        seed: int,
        num_images: int,
        on_step: Callable[[int, int], None] | None = None,
        keep_known: bool = False,
    ) -> tuple[list[tuple[Image.Image, str]], list[str], int]:
        """Paint every reference's subject ``num_images`` times (``keep_known``: the pipeline's option).

        Returns ``(gallery [(image, caption)], written PNG paths, seed used)``."""
        import secrets

        import torch

        if seed < 0:
            seed = secrets.randbelow(2**31)
        with self._lock:
            pipe = self.pipeline()
            self._use_subject(pipe, subject)
            try:
                pipe.check_inputs(
                    int(steps),
                    float(guidance),
                    sampler,
                    0.0,
                    int(num_images),
                    "full",
                    2.0,
                    None,
                    None,
                    float(model_weight),
                    keep_known=keep_known,
                )
            except (ValueError, TypeError) as e:
                raise UIError(str(e)[:1].upper() + str(e)[1:] + ".") from None
            gallery, files = [], []
            total = len(references) * int(steps)
            scene_image, mask_image = Image.fromarray(scene), Image.fromarray(mask.astype(np.uint8) * 255)
            for k, (name, reference) in enumerate(references):
                done = k * int(steps)
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:40] or "reference"

                def step(info: dict[str, Any], done: int = done) -> None:
                    if on_step is not None:
                        on_step(done + int(info["i"]) + 1, total)

                result = pipe(
                    scene_image,
                    reference,
                    mask=mask_image,
                    num_inference_steps=int(steps),
                    guidance_scale=float(guidance),
                    sampler=sampler,
                    num_images=int(num_images),
                    generator=torch.Generator().manual_seed(seed + k),
                    model_weight=float(model_weight),
                    progress=False,
                    callback=step,
                    keep_known=keep_known,
                )
                for j, image in enumerate(result.images):
                    path = imaging.save_image_atomic(image, free_path(self.out_dir / f"seed{seed + k}-{stem}-{j}.png"))
                    gallery.append((image, f"{name} · seed {seed + k} · #{j + 1}"))
                    files.append(str(path))
        return gallery, files, seed


def handle_generate(
    settings: UISettings,
    painter: Painter,
    editor: dict[str, Any] | None,
    files: Sequence[Any] | None,
    subject: str | None,
    region: str,
    box: str,
    guidance: float,
    model_weight: float,
    steps: float,
    sampler: str,
    seed: Any,
    count: float,
    keep_known: bool = False,
    report: Callable[[int, int], None] | None = None,
) -> tuple[list[tuple[Image.Image, str]], list[str], str]:
    """What Generate does: read and check the page's inputs, paint, and return ``(gallery, files, status)``.

    Raises:
        UIError: one sentence for anything the person can fix (also for a model or file that fails to load).
    """
    scene, painted = editor_scene_and_mask(editor, settings.max_pixels)
    mask = region_mask(painted, region, box)
    chosen = None if subject in (None, "", NO_SUBJECT) else subject
    references = read_references(files, chosen)
    seed = parse_seed(seed)
    if report is not None:
        report(0, int(steps))
    try:
        gallery, paths, used = painter.generate(
            scene,
            mask,
            references,
            chosen,
            guidance,
            model_weight,
            int(steps),
            sampler,
            seed,
            int(count),
            report,
            keep_known=bool(keep_known),
        )
    except (imaging.InputError, OSError) as e:
        raise UIError(f"Could not paint: {e}") from None
    return gallery, paths, f"Done: {len(gallery)} result(s), seed {used}."


# ---------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------
def build_app(settings: UISettings, painter: Painter | None = None):
    """The Gradio ``Blocks`` of the page (not launched)."""
    import gradio as gr

    from .sampling.samplers import SAMPLERS

    painter = painter or Painter(settings)
    subjects = [NO_SUBJECT, *[str(s) for s in settings.subjects]]

    # The inputs arrive in the order of `run.click`'s list below, which is handle_generate's. Gradio finds the
    # progress tracker by its default value, hence the call in the signature.
    def on_generate(*inputs, progress=gr.Progress()):  # noqa: B008
        def report(i: int, n: int) -> None:
            progress((i, n), desc="painting" if i else "loading the model", unit="steps")

        try:
            return handle_generate(settings, painter, *inputs, report=report)
        except UIError as e:
            raise gr.Error(str(e), print_exception=False) from None

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
                    elem_id="scene-editor",
                )
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
                    guidance = gr.Slider(1, 15, value=5, step=0.5, label="Guidance scale", elem_id="guidance")
                    weight = gr.Slider(
                        0, 1, value=0.8, step=0.05, label="Model weight (with a subject)", elem_id="model-weight"
                    )
                with gr.Row():
                    steps = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id="steps")
                    sampler = gr.Dropdown(list(SAMPLERS), value="dpmsolver++", label="Sampler", elem_id="sampler")
                with gr.Row():
                    seed = gr.Textbox(value="0", label="Seed (empty = random)", elem_id="seed")
                    count = gr.Slider(1, 4, value=1, step=1, label="Images per reference", elem_id="count")
                keep_known = gr.Checkbox(
                    value=False,
                    label="Keep the scene outside the region",
                    info="hold the model's picture outside the region to the scene at every step: steadier "
                    "colours around the subject from a model that shifts them (the original does not)",
                    elem_id="keep-known",
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
        run.click(
            on_generate,
            [editor, references, subject, region, box, guidance, weight, steps, sampler, seed, count, keep_known],
            [gallery, downloads, status],
            concurrency_limit=1,
        )
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
