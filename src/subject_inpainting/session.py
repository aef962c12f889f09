"""``Session``: load a model once, switch subjects, make generators from seeds, and paint requests.

Every front end paints through a session — ``inpaint``, ``batch``, ``demo``, the web page, ``eval cocoee``,
``eval subjects`` and the ComfyUI nodes — so that loading, subject switching, seeding and the grouping of
requests into batched UNet calls are written once. A ``PaintRequest`` says what to paint (scene, region,
reference or subject, seed, ``PaintSettings``); ``Session.paint`` returns, per request, its pictures or the
error that stopped it.

    from subject_inpainting import PaintRequest, PaintSettings, Session

    session = Session("Fantasy-Studio/Paint-by-Example", device="cuda")
    (result,) = session.paint([PaintRequest("scene.jpg", "bear.jpg", box=(120, 80, 360, 300), seed=7)])
    result.images[0].save("result.png")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .sampling.catalog import is_stochastic
from .settings import PaintSettings
from .utils.parse import parse_seed

__all__ = ["ModelLoadError", "PaintRequest", "PaintResult", "Session", "SubjectError"]


class ModelLoadError(ValueError):
    """The session's model could not be loaded (one line naming it)."""


class SubjectError(ValueError):
    """A fine-tuned subject could not be loaded, or gives no reference (one line naming it)."""


@dataclass(frozen=True)
class PaintRequest:
    """One picture request (``num_images`` pictures with ``settings``).

    Attributes:
        scene: a path, PIL image or numpy array (as ``SubjectInpaintPipeline.__call__`` takes it).
        reference: the subject's photo; None with a ``subject``: its first reference crop.
        mask: white = the region to paint; or ``box``: ``(x0, y0, x1, y1)`` in scene pixels.
        reference_box: crop the reference to this box first.
        subject: a fine-tuned subject (folder or original checkpoint) for modified guidance; None: the model
            alone.
        seed: the seed of the request's noise (0 .. 2**63 - 1): the same seed paints the same pictures, alone
            or batched with other requests (to float rounding; a stochastic sampler draws its step noise from
            the batch's first seed).
        settings: how to paint.
        id: a name for the request, for the caller's records.
    """

    scene: Any
    reference: Any = None
    mask: Any = None
    box: Any = None
    reference_box: Any = None
    subject: str | os.PathLike | None = None
    seed: int = 0
    settings: PaintSettings = field(default_factory=PaintSettings)
    id: str = ""

    def __post_init__(self):
        object.__setattr__(self, "seed", parse_seed(self.seed, "seed"))
        if not isinstance(self.settings, PaintSettings):
            raise TypeError(f"settings must be a PaintSettings, got {type(self.settings).__name__}")

    def group(self) -> str:
        """Requests of one group share a subject (loaded once) and, unless their sampler draws noise at every
        step, their settings, so that they can be sampled in one batch."""
        chosen = self.settings.resolved()
        alone = is_stochastic(chosen.sampler, chosen.eta)
        return f"{self.subject or ''}\n{f'alone {self.id} {id(self)}' if alone else repr(self.settings)}"


@dataclass
class PaintResult:
    """What a request gave: its pictures, or the error that stopped it (then ``images`` is empty)."""

    request: PaintRequest
    images: list = field(default_factory=list)
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Session:
    """A model loaded once and the requests painted with it.

    Args:
        model: a model path or hub id (``SubjectInpaintPipeline.from_pretrained``); None: the embedded toy
            model.
        device: ``auto`` (CUDA, else MPS, else the CPU; under ``accelerate launch`` the process's own GPU),
            ``cpu``, ``cuda:N`` ... or a ``torch.device``.
        dtype: ``auto`` (float16 on CUDA, bfloat16 on a CPU that computes it natively, else float32),
            ``float32``, ``float16``, ``bfloat16`` or a ``torch.dtype``.
        ldm_config, vision_config: for an original checkpoint of another size.
        max_pixels: the largest scene, mask or reference read from a file (``imaging.MAX_PIXELS`` by default).
        pipeline: an already built ``SubjectInpaintPipeline`` to paint with (the model arguments are then unused).
        threads: PyTorch's intra-op threads while painting: ``"auto"`` (one for a small model on the CPU, whose
            short operations stall on a second thread whenever another process holds a core; PyTorch's own
            otherwise: ``devices.threads_for``), a number, or None (PyTorch's own).
        int8: the loaded model's UNet convolutions and linear layers in int8 (``enable_int8``): ``"auto"`` (on a
            CPU with 8-bit dot-product instructions, for a large model: ``devices.int8_for``), ``"on"`` or
            ``"off"``.

    The model is loaded at the first request that needs it (``pipeline``), so a session whose requests all fail
    their checks loads nothing.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: Any = "auto",
        dtype: Any = "auto",
        ldm_config: str | os.PathLike | None = None,
        vision_config: str | os.PathLike | None = None,
        max_pixels: int | None = None,
        pipeline: Any = None,
        threads: int | str | None = "auto",
        int8: str = "auto",
    ):
        self.model = model
        self.device, self.dtype = device, dtype
        self.ldm_config, self.vision_config = ldm_config, vision_config
        self.max_pixels = max_pixels
        self._pipe = pipeline
        from .devices import check_int8, check_threads

        check_threads(threads)  # applied when painting
        check_int8(int8)  # applied when the model is loaded
        self.threads, self.int8 = threads, int8
        self._painting_threads: int | None = None  # threads_for of the loaded model, once it is loaded
        self._load_error: ModelLoadError | None = None
        self._subject: str | None = None  # the subject loaded into the pipeline
        self._subject_errors: dict[str, SubjectError] = {}

    @property
    def pipeline(self):
        """The ``SubjectInpaintPipeline``, loaded on first use.

        Raises:
            ModelLoadError: the model cannot be loaded (a missing or foreign file, no connection for a hub id).
        """
        if self._load_error is not None:
            raise self._load_error
        if self._pipe is None:
            from .devices import int8_for, process_device, resolve_dtype
            from .pipeline import SubjectInpaintPipeline

            model = self.model
            if model is None:
                from .weights import default_model

                model = default_model()
                if model is None:
                    raise ModelLoadError("this installation has no embedded model; name a model")
            device = process_device(self.device)
            dtype = resolve_dtype(self.dtype, device)
            try:
                pipe = SubjectInpaintPipeline.from_pretrained(
                    model, device=device, dtype=dtype, ldm_config=self.ldm_config, vision_config=self.vision_config
                )
            except (OSError, ValueError) as e:  # CheckpointError is a ValueError
                self._load_error = ModelLoadError(f"model {model}: {_first_line(e)}")
                raise self._load_error from None
            if int8_for(pipe.unet, self.int8):
                try:
                    pipe.enable_int8()
                except ValueError as e:
                    self._load_error = ModelLoadError(f"int8 {self.int8}: {_first_line(e)}")
                    raise self._load_error from None
            self._pipe = pipe
            self.model = model
        return self._pipe

    def use_subject(self, subject: str | os.PathLike | None) -> None:
        """Load ``subject`` into the pipeline (None: back to the model alone); nothing when it is loaded
        already. A subject that failed to load fails again with the same error, without loading it again.

        Raises:
            SubjectError: not a subject, or one fine-tuned from another base.
        """
        key = None if subject is None else str(subject)
        if key == self._subject:
            return
        if key in self._subject_errors:
            raise self._subject_errors[key]
        pipe = self.pipeline
        pipe.unload_subject()
        self._subject = None
        if key is not None:
            try:
                pipe.load_subject(subject)
            except (OSError, ValueError) as e:
                error = SubjectError(f"subject {subject}: {_first_line(e)}")
                self._subject_errors[key] = error
                raise error from None
            self._subject = key

    @staticmethod
    def generator(seed: int):
        """A CPU ``torch.Generator`` seeded with ``seed``: the noise, drawn on the CPU, is the same on every
        device."""
        import torch

        return torch.Generator().manual_seed(parse_seed(seed, "seed"))

    def read(self, request: PaintRequest) -> dict[str, Any]:
        """The request's pictures, read (files up to ``max_pixels``) and prepared by the pipeline's image
        processor before any model work: the keyword arguments of a pipeline call for one scene (its
        ``PreparedInputs`` as the scene, so the call does not read them again).

        Raises:
            InputError, ValueError, TypeError: one line naming the input.
            SubjectError: the subject does not load, or gives no reference.
        """
        from .imaging import open_image

        def opened(value, what):
            if value is None or not isinstance(value, (str, os.PathLike)):
                return value
            return open_image(value, what, self.max_pixels)

        reference = request.reference
        if reference is None:
            reference = subject_reference(request.subject)
        self.use_subject(request.subject)
        prepared = self.pipeline.image_processor.prepare(
            opened(request.scene, "scene"),
            opened(reference, "reference"),
            opened(request.mask, "mask"),
            request.box,
            request.reference_box,
        )
        return {"scene": prepared, "reference": None}

    def paint(
        self,
        requests: Sequence[PaintRequest],
        *,
        batch_size: int = 1,
        progress: bool | None = False,
        callback_on_step_end=None,
    ) -> list[PaintResult]:
        """Paint every request, in order: consecutive requests of one group (``PaintRequest.group``), up to
        ``batch_size`` of them, in one batched pipeline call. A request whose inputs fail their checks fails
        alone; when a batched call fails, its requests are painted again one by one, so that the one at fault
        fails alone. ``progress`` and ``callback_on_step_end`` are the pipeline call's.

        Returns:
            Per request, a ``PaintResult``: its pictures or the error (any ``Exception``; an interruption such
            as ``KeyboardInterrupt`` is raised, and so is an exception raised by ``callback_on_step_end``: the
            caller's own stop, such as a Cancel button, ends the whole call rather than failing a request).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        callback = None if callback_on_step_end is None else _CallerCallback(callback_on_step_end)
        results: list[PaintResult] = []
        for chunk in _chunks(list(requests), batch_size):
            results += self._paint_chunk(chunk, progress, callback)
        return results

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """PyTorch's thread count set for the block (``threads``), and as it was after."""
        import torch

        from .devices import threads_for

        if self._painting_threads is None:
            self._painting_threads = threads_for(self.pipeline.unet, self.threads) or 0  # 0: PyTorch's own
        wanted = self._painting_threads or None
        before = torch.get_num_threads()
        if wanted is not None and wanted != before:
            torch.set_num_threads(wanted)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    def paint_one(self, request: PaintRequest, **kwargs: Any) -> list:
        """The pictures of one request (``paint``'s keyword arguments).

        Raises:
            Exception: what stopped it.
        """
        (result,) = self.paint([request], **kwargs)
        if result.error is not None:
            raise result.error
        return result.images

    def _paint_chunk(self, chunk: list[PaintRequest], progress, callback) -> list[PaintResult]:
        results = [PaintResult(r) for r in chunk]
        good, inputs = [], []
        for result in results:
            try:
                inputs.append(self.read(result.request))
            except Exception as e:  # recorded for this request; the others are painted
                result.error = e
            else:
                good.append(result)
        if not good:
            return results
        try:
            images = self._call([r.request for r in good], inputs, progress, callback)
        except Exception as e:
            if callback is not None and callback.raised is e:
                raise
            if len(good) == 1:
                good[0].error = e
                return results
            for result in good:  # again one by one: the error is pinned on its request
                (alone,) = self._paint_chunk([result.request], progress, callback)
                result.images, result.error = alone.images, alone.error
            return results
        n = good[0].request.settings.num_images
        for k, result in enumerate(good):
            result.images = images[k * n : (k + 1) * n]
        return results

    def _call(self, requests: list[PaintRequest], inputs: list[dict], progress, callback) -> list:
        self.use_subject(requests[0].subject)
        generators = [self.generator(r.seed) for r in requests]
        several = len(requests) > 1
        columns = {name: [i[name] for i in inputs] if several else inputs[0][name] for name in inputs[0]}
        with self._threads():
            return self.pipeline(
                **columns,
                settings=requests[0].settings,
                generator=generators if several else generators[0],
                progress=progress,
                callback_on_step_end=callback,
            ).images


class _CallerCallback:
    """The caller's ``callback_on_step_end``, remembering an exception it raises: that one is the caller's stop
    and leaves ``Session.paint`` as it is, rather than being recorded as a request's failure."""

    def __init__(self, function):
        self.function = function
        self.raised: BaseException | None = None

    def __call__(self, *args: Any) -> Any:
        try:
            return self.function(*args)
        except BaseException as e:
            self.raised = e
            raise


def subject_reference(subject: str | os.PathLike | None) -> str:
    """A subject folder's first reference crop (``references/*.png``), the default reference of its pictures.

    Raises:
        SubjectError: no subject, or a subject without reference crops.
    """
    from .loaders.layout import subject_reference_crops

    crops = subject_reference_crops(subject) if subject is not None else []
    if not crops:
        what = f"the subject {subject} has no reference crops" if subject is not None else "no subject to take one from"
        raise SubjectError(f"reference: missing, and {what}; give a reference photo")
    return str(crops[0])


def _chunks(requests: list[PaintRequest], size: int) -> list[list[PaintRequest]]:
    """Runs of consecutive requests of one group, at most ``size`` long."""
    chunks: list[list[PaintRequest]] = []
    for request in requests:
        if chunks and len(chunks[-1]) < size and chunks[-1][0].group() == request.group():
            chunks[-1].append(request)
        else:
            chunks.append([request])
    return chunks


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
