"""The ComfyUI nodes of subject-inpainting: a front end over ``Session`` and ``PaintSettings``, as the command line
and the web page are.

- ``SubjectInpaintModelLoader`` loads a model once into a ``Session`` (kept across runs) and passes it on.
- ``SubjectInpaintSubjectLoader`` names a fine-tuned subject folder (checked here, loaded by the session).
- ``SubjectInpaint`` turns ComfyUI's tensors into ``PaintRequest``s, its widgets into ``PaintSettings``, paints
  them in one batched call and gives the pictures back as an ``IMAGE``.

ComfyUI's conventions: an ``IMAGE`` is a float tensor ``[B, H, W, C]`` in 0..1 and a ``MASK`` ``[B, H, W]`` with
1 = the region to paint (what ``LoadImage`` makes of a picture's transparent pixels, and what the mask editor
paints). The widgets' ranges, defaults and tooltips come from ``PaintSettings``, so that they cannot drift from
the command line's. Nothing here imports ComfyUI: where its modules are there (``folder_paths``,
``comfy.utils``, ``comfy.model_management``) the nodes use them for the models folder, the progress bar, the
Cancel button, and the device and precision; elsewhere (tests, plain Python) they do without.

A bad input stops the node with one sentence (a ``ValueError``), which ComfyUI shows on the node.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from subject_inpainting import PaintRequest, PaintSettings, Session
from subject_inpainting import settings as settings_lib
from subject_inpainting.devices import DTYPES
from subject_inpainting.loaders.layout import (
    ORIGINAL_FOLDER_FILES,
    ORIGINAL_SUFFIXES,
    check_model,
    is_diffusers_pbe_folder,
    is_project_folder,
    is_subject_folder,
)
from subject_inpainting.session import ModelLoadError
from subject_inpainting.utils import is_hub_id
from subject_inpainting.utils.parse import MAX_SEED, parse_seed

MODEL_TYPE = "SUBJECT_INPAINT_MODEL"
SUBJECT_TYPE = "SUBJECT_INPAINT_SUBJECT"
CATEGORY = "subject inpainting"
# ComfyUI's models folder of this pack: ComfyUI/models/subject_inpainting/ (and any extra_model_paths entry).
MODELS_FOLDER = "subject_inpainting"
EMBEDDED = "embedded toy model"
NO_PICK = "(path)"  # the subject menu's entry for "the path below says which"
PRESETS_OWN = "preset's"  # a menu's entry for "the preset's value"
# How deep the models folder is searched: ``bear/`` and ``subjects/bear/``.
SEARCH_DEPTH = 2
# Sessions (loaded models) kept across runs, the most recently used last.
MAX_SESSIONS = 2

# The painting options the SubjectInpaint node shows: its widget's name (the input's key in a workflow) → the
# ``PaintSettings`` field. The node shows each by the option's label, and names it so in its messages.
WIDGETS = {
    "preset": "preset",
    "steps": "num_inference_steps",
    "sampler": "sampler",
    "guidance_scale": "guidance_scale",
    "model_weight": "model_weight",
    "region": "region",
    "keep_known": "keep_known",
}
# The widget step of the numbers that are not whole.
FLOAT_STEPS = {"guidance_scale": 0.1, "model_weight": 0.05}


# ---------------------------------------------------------------------------------------------------
# ComfyUI's modules, where they are
# ---------------------------------------------------------------------------------------------------
def comfy_module(name: str) -> Any:
    """ComfyUI's module ``name`` (``folder_paths``, ``comfy.utils``, ``comfy.model_management``), or None
    outside ComfyUI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def register_models_folder() -> None:
    """Make ``models/subject_inpainting/`` one of ComfyUI's model folders (beside any that
    ``extra_model_paths.yaml`` names), so that the loaders list what it holds."""
    folder_paths = comfy_module("folder_paths")
    if folder_paths is None or not hasattr(folder_paths, "add_model_folder_path"):
        return
    folder_paths.add_model_folder_path(MODELS_FOLDER, os.path.join(folder_paths.models_dir, MODELS_FOLDER))


def model_roots() -> list[Path]:
    """The folders ComfyUI keeps this pack's models and subjects in (none outside ComfyUI)."""
    folder_paths = comfy_module("folder_paths")
    if folder_paths is None:
        return []
    try:
        return [Path(p) for p in folder_paths.get_folder_paths(MODELS_FOLDER)]
    except (KeyError, AttributeError):
        return []


def _is_model(path: Path) -> bool:
    if path.is_file():
        return path.suffix in ORIGINAL_SUFFIXES
    return is_project_folder(path) or is_diffusers_pbe_folder(path) or (path / ORIGINAL_FOLDER_FILES[0]).is_file()


def found(kind: str) -> list[str]:
    """The models (``kind`` ``model``: model folders and checkpoint files) or fine-tuned subjects (``subject``:
    subject folders) in the models folders, by their paths relative to their folder."""
    wanted = _is_model if kind == "model" else lambda p: p.is_dir() and is_subject_folder(p)
    names: list[str] = []

    def walk(folder: Path, root: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if wanted(entry):
                name = entry.relative_to(root).as_posix()
                if name not in names:
                    names.append(name)
            elif entry.is_dir() and depth < SEARCH_DEPTH and not is_subject_folder(entry) and not _is_model(entry):
                walk(entry, root, depth + 1)

    for root in model_roots():
        walk(root, root, 1)
    return names


def resolve_path(text: str, what: str, hub_too: bool = False) -> str:
    """A path typed into a loader: absolute, else relative to a models folder, else to ComfyUI's working
    folder; with ``hub_too``, a hub id (``owner/name``) that names no local path is kept as it is."""
    path = Path(text).expanduser()
    if path.is_absolute():
        if path.exists():
            return str(path)
    else:
        for root in model_roots():
            if (root / path).exists():
                return str(root / path)
        if path.exists():
            return str(path.resolve())
        if hub_too and is_hub_id(text):
            return text
    where = ", ".join(str(r) for r in model_roots())
    looked = f" (looked in {where} and the working folder)" if where and not path.is_absolute() else ""
    raise ValueError(f"{what} {text}: no such file or folder{looked}")


# ---------------------------------------------------------------------------------------------------
# What flows on the links
# ---------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class SubjectInpaintModel:
    """A ``SUBJECT_INPAINT_MODEL``: a ``Session`` with its model loaded, and the model's name."""

    session: Session
    name: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __repr__(self) -> str:
        pipe = self.session.pipeline
        return f"SubjectInpaintModel({self.name}, {pipe.execution_device}, {str(pipe.dtype).removeprefix('torch.')})"


@dataclass(frozen=True)
class SubjectInpaintSubject:
    """A ``SUBJECT_INPAINT_SUBJECT``: a fine-tuned subject folder (or original subject checkpoint), checked."""

    path: str
    name: str


_SESSIONS: OrderedDict[tuple, SubjectInpaintModel] = OrderedDict()
_SESSIONS_LOCK = threading.Lock()


def comfy_device_and_dtype(dtype: str) -> tuple[Any, Any, bool]:
    """Where and in what precision to load, and whether to offload to the CPU between uses: ComfyUI's model
    management's choice where it is there (its device; for ``auto``, the precision it gives a diffusion model;
    offloading under ``--lowvram`` and ``--novram``), else the ``Session``'s own (``auto``)."""
    management = comfy_module("comfy.model_management")
    if management is None:
        return "auto", dtype, False
    device = management.get_torch_device()
    chosen: Any = dtype
    if dtype == "auto":
        supported = [torch.float16, torch.bfloat16, torch.float32]
        try:
            picked = management.unet_dtype(device=device, supported_dtypes=supported)
        except TypeError:  # an older signature
            picked = management.unet_dtype()
        chosen = picked if picked in supported else "auto"
    state, states = getattr(management, "vram_state", None), getattr(management, "VRAMState", None)
    low = states is not None and state in (getattr(states, "LOW_VRAM", None), getattr(states, "NO_VRAM", None))
    return device, chosen, low and torch.device(device).type != "cpu"


def load_model(spec: str, dtype: str, name: str) -> SubjectInpaintModel:
    """The model ``spec`` in ``dtype`` (``DTYPES``), loaded now into a session; the same one again for the same
    model, device and precision (the model is loaded once and kept across runs).

    Raises:
        ValueError: one line: a model that cannot be loaded, or a dtype that is not one of ``DTYPES``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    try:
        check_model(spec, "model")  # a file or folder that holds no model: named without loading anything
    except ValueError as e:
        raise ValueError(_one_line(e)) from None
    device, chosen, offload = comfy_device_and_dtype(dtype)
    key = (spec, str(device), str(chosen), offload)
    with _SESSIONS_LOCK:
        model = _SESSIONS.pop(key, None)
        if model is None:
            session = Session(spec, device="cpu" if offload else device, dtype=chosen)
            try:
                pipe = session.pipeline
            except (ModelLoadError, ValueError) as e:  # not kept: the next run tries again (a file may be fixed)
                raise ValueError(_one_line(e)) from None
            if offload:
                pipe.enable_model_cpu_offload(device)
            model = SubjectInpaintModel(session, name)
        model.name = name
        _SESSIONS[key] = model
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return model


# ---------------------------------------------------------------------------------------------------
# Widgets and their values
# ---------------------------------------------------------------------------------------------------
def widget(name: str) -> tuple:
    """The ComfyUI input of the SubjectInpaint widget ``name``: its kind, range, default, label (``display_name``)
    and tooltip from the ``PaintSettings`` field it sets. An option the preset sets by default gets ``0`` (a
    number) or ``preset's`` (a menu) for the preset's value."""
    field_name = WIDGETS[name]
    option = settings_lib.option(field_name)
    value = settings_lib.default(field_name)
    shown = {"display_name": option.label, "tooltip": option.help}
    if value is None and option.from_preset:
        shown["tooltip"] += f"; {'0' if option.kind == 'int' else PRESETS_OWN} = {option.none_means}"
    if option.kind == "choice":
        choices = list(option.choices)
        if value is None:
            choices, value = [PRESETS_OWN, *choices], PRESETS_OWN
        return (choices, {"default": value, **shown})
    if option.kind == "switch":
        return ("BOOLEAN", {"default": value, **shown})
    if option.kind == "int":
        low = 0 if value is None else int(option.low)
        return ("INT", {"default": value or 0, "min": low, "max": int(option.high), "step": 1, **shown})
    assert option.kind == "float", option.kind
    limits = {"min": option.low, "max": option.high, "step": FLOAT_STEPS[name]}
    return ("FLOAT", {"default": value, **limits, **shown})


def paint_settings(values: dict[str, Any]) -> PaintSettings:
    """The ``PaintSettings`` of the SubjectInpaint widgets' ``values`` (by widget name), each read as
    ``settings.parse_value`` reads a flag's text or a number (a prompt sent to ComfyUI's API may hold text).

    Raises:
        ValueError: one sentence: the option's label (the widget's, on the node), then what every front end says
            of such a value.
    """
    parsed = {}
    for name, value in values.items():
        field_name = WIDGETS[name]
        option = settings_lib.option(field_name)
        shown = value.strip() if isinstance(value, str) else value
        if option.from_preset and (shown == PRESETS_OWN or (type(shown) is not bool and shown in (0, "0"))):
            continue  # the preset's
        try:
            parsed[field_name] = settings_lib.parse_value(field_name, value)
        except settings_lib.SettingsError as e:
            hint = f"; 0 takes {option.none_means}" if option.from_preset and option.kind == "int" else ""
            raise ValueError(e.named(option.label) + hint) from None
    try:
        return PaintSettings(**parsed)
    except settings_lib.SettingsError as e:
        raise ValueError(e.named(settings_lib.option(e.option).label)) from None


def pictures(image: Any, what: str) -> np.ndarray:
    """An ``IMAGE`` (``[B, H, W, C]`` floats in 0..1; C 1, 3 or 4, the alpha dropped) → ``[B, H, W, 3]`` uint8,
    rounded as an 8-bit picture is.

    Raises:
        ValueError: not an IMAGE tensor, an empty one, or one holding NaN or infinite values.
    """
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{what} must be an IMAGE (a tensor [B, H, W, C] in 0..1), got {type(image).__name__}")
    x = image[None] if image.ndim == 3 else image
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or 0 in x.shape:
        raise ValueError(f"{what} must be an IMAGE [B, H, W, C] with 1, 3 or 4 channels, got shape {list(image.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must hold floats in 0..1 (an IMAGE), got {str(x.dtype).removeprefix('torch.')}")
    x = x.detach().to("cpu", torch.float32)
    _finite(x, what)
    x = x[..., :3] if x.shape[-1] >= 3 else x.expand(*x.shape[:3], 3)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def regions(mask: Any) -> np.ndarray:
    """A ``MASK`` (``[B, H, W]``, or ``[H, W]``; 1 = the region to paint) → ``[B, H, W]`` bool, a pixel in the
    region where it is 0.5 or more.

    Raises:
        ValueError: not a MASK tensor, an empty one, or one holding NaN or infinite values.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(
            f"mask must be a MASK (a tensor [B, H, W], 1 = the region to paint), got {type(mask).__name__}"
        )
    m = mask[None] if mask.ndim == 2 else mask
    if m.ndim != 3 or 0 in m.shape:
        raise ValueError(f"mask must be a MASK [B, H, W] (1 = the region to paint), got shape {list(mask.shape)}")
    m = m.detach().to("cpu")
    if m.dtype == torch.bool:
        return m.numpy()
    m = m.to(torch.float32)
    _finite(m, "mask")
    return (m >= 0.5).numpy()


def _finite(x: torch.Tensor, what: str) -> None:
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{what} holds NaN or infinite values ({bad:,} of {x.numel():,}); it must be finite")


def _per_scene(count: int, scenes: int, what: str) -> None:
    if count not in (1, scenes):
        several = f"{scenes} scenes" if scenes > 1 else "1 scene"
        raise ValueError(f"{what} has a batch of {count} for {several}; give 1 (for every scene) or one per scene")


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _Steps:
    """``callback_on_step_end`` of a node's painting: moves ComfyUI's progress bar a step and stops at the next
    step once Cancel is pressed (outside ComfyUI, neither is there and it only counts)."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        utils = comfy_module("comfy.utils")
        self.bar = utils.ProgressBar(total) if utils is not None and hasattr(utils, "ProgressBar") else None
        management = comfy_module("comfy.model_management")
        self.check = getattr(management, "throw_exception_if_processing_interrupted", None)

    def __call__(self, pipe: Any, step: int, timestep: int, tensors: dict[str, Any]) -> dict[str, Any]:
        self.done = min(self.done + 1, self.total)
        if self.bar is not None:
            self.bar.update_absolute(self.done, self.total)
        if self.check is not None:
            self.check()  # raises ComfyUI's InterruptProcessingException: the session lets it through
        return tensors


# ---------------------------------------------------------------------------------------------------
# The nodes
# ---------------------------------------------------------------------------------------------------
class SubjectInpaintModelLoader:
    """Loads a Paint-by-Example-style model once and keeps it for later runs."""

    DESCRIPTION = (
        "Loads a subject-inpainting model: the embedded toy model (no download), a model in "
        "models/subject_inpainting/, or a path or hub id. Loaded once and kept across runs."
    )
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("the loaded model, for SubjectInpaint",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (
                    [EMBEDDED, *found("model")],
                    {
                        "default": EMBEDDED,
                        "tooltip": "the embedded toy model (small, shipped with the package), or a model folder or "
                        "checkpoint in models/subject_inpainting/",
                    },
                ),
                "path": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "instead of the menu: a model folder, an original model.ckpt or a hub id such as "
                        "Fantasy-Studio/Paint-by-Example (relative paths: in models/subject_inpainting/ first)",
                    },
                ),
                "dtype": (
                    list(DTYPES),
                    {
                        "default": "auto",
                        "tooltip": "the weights' precision; auto: what ComfyUI's model management chooses for a "
                        "diffusion model on its device",
                    },
                ),
            }
        }

    def load(self, model: str = EMBEDDED, path: str = "", dtype: str = "auto") -> tuple[SubjectInpaintModel]:
        text = (path or "").strip()
        if text:
            spec, name = resolve_path(text, "path", hub_too=True), text
        elif model == EMBEDDED:
            from subject_inpainting.weights import default_model

            embedded = default_model()
            if embedded is None:
                raise ValueError("this installation of subject-inpainting has no embedded model; pick or type a model")
            spec, name = str(embedded), EMBEDDED
        else:
            spec, name = resolve_path(model, "model"), model
        return (load_model(spec, dtype, name),)


class SubjectInpaintSubjectLoader:
    """Names a fine-tuned subject for SubjectInpaint's modified guidance."""

    DESCRIPTION = (
        "A subject fine-tuned with `subject-inpaint finetune` (a folder in models/subject_inpainting/, or a path). "
        "Use it with the model it was fine-tuned from."
    )
    RETURN_TYPES = (SUBJECT_TYPE,)
    RETURN_NAMES = ("subject",)
    OUTPUT_TOOLTIPS = ("the fine-tuned subject, for SubjectInpaint",)
    FUNCTION = "load"
    CATEGORY = f"{CATEGORY}/loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "subject": (
                    [NO_PICK, *found("subject")],
                    {"default": NO_PICK, "tooltip": "a subject folder in models/subject_inpainting/"},
                ),
                "path": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "instead of the menu: a subject folder or an original subject checkpoint (relative "
                        "paths: in models/subject_inpainting/ first)",
                    },
                ),
            }
        }

    def load(self, subject: str = NO_PICK, path: str = "") -> tuple[SubjectInpaintSubject]:
        text = (path or "").strip()
        if not text and subject == NO_PICK:
            raise ValueError("subject: pick a subject folder, or type its path")
        given = text or subject
        resolved = Path(resolve_path(given, "subject"))
        if resolved.is_dir():
            if not is_subject_folder(resolved):
                raise ValueError(
                    f"subject {given}: not a fine-tuned subject folder (`subject-inpaint finetune` writes one, with "
                    "subject_index.json)"
                )
        elif resolved.suffix not in ORIGINAL_SUFFIXES:
            raise ValueError(
                f"subject {given}: not a subject (a folder from `subject-inpaint finetune`, or an original subject "
                f"checkpoint: {', '.join(ORIGINAL_SUFFIXES)})"
            )
        return (SubjectInpaintSubject(str(resolved), given),)


class SubjectInpaint:
    """Paints the reference's subject (or a fine-tuned subject) into the masked region of each scene."""

    DESCRIPTION = (
        "Paints the subject of the reference (or of a fine-tuned subject) into the region of the scene that the "
        "mask marks (1 = paint here). Outside the region every pixel stays the scene's. A batch of scenes paints "
        "in one batched call, scene k with seed + k."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the painted scenes, one per scene, at the scenes' size",)
    FUNCTION = "paint"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        required: dict[str, Any] = {
            "model": (MODEL_TYPE, {"tooltip": "from SubjectInpaintModelLoader"}),
            "scene": ("IMAGE", {"tooltip": "the pictures to paint into"}),
            "mask": ("MASK", {"tooltip": "the region to paint: 1 (or at least 0.5) = paint here"}),
            "seed": (
                "INT",
                {
                    "default": 0,
                    "min": 0,
                    "max": MAX_SEED,
                    "control_after_generate": True,
                    "tooltip": "the noise's seed; scene k of a batch takes seed + k",
                },
            ),
        }
        required.update({name: widget(name) for name in WIDGETS})
        return {
            "required": required,
            "optional": {
                "reference": ("IMAGE", {"tooltip": "a photo of the subject; one for every scene, or one per scene"}),
                "subject": (
                    SUBJECT_TYPE,
                    {
                        "tooltip": "a fine-tuned subject (modified guidance, weighted by model_weight); without a "
                        "reference, its first reference crop"
                    },
                ),
            },
        }

    def paint(
        self,
        model: SubjectInpaintModel,
        scene: Any,
        mask: Any,
        seed: int = 0,
        reference: Any = None,
        subject: SubjectInpaintSubject | None = None,
        **values: Any,
    ) -> tuple[torch.Tensor]:
        """Paint every scene of the batch; ``values``: the widgets of ``WIDGETS`` (their defaults when left out).

        Raises:
            ValueError: one sentence naming the input (a wrong shape, an empty mask, NaN, a value out of range,
                a subject that does not fit the model ...).
        """
        unknown = sorted(set(values) - set(WIDGETS))
        if unknown:
            raise ValueError(f"SubjectInpaint has no input {unknown[0]}; its inputs: {', '.join(_input_names())}")
        if not isinstance(model, SubjectInpaintModel):
            raise ValueError(f"model must come from SubjectInpaintModelLoader, got {type(model).__name__}")
        if subject is not None and not isinstance(subject, SubjectInpaintSubject):
            raise ValueError(f"subject must come from SubjectInpaintSubjectLoader, got {type(subject).__name__}")
        defaults = {name: widget(name)[1]["default"] for name in WIDGETS}
        paint = paint_settings({**defaults, **values})
        first_seed = parse_seed(seed, "seed")
        scenes = pictures(scene, "scene")
        masks = regions(mask)
        _per_scene(len(masks), len(scenes), "mask")
        for k, region in enumerate(masks):
            if not region.any():
                which = f" {k + 1} of {len(masks)}" if len(masks) > 1 else ""
                raise ValueError(
                    f"mask{which} is empty: no pixel is 0.5 or more; paint the region to fill (1 = paint here)"
                )
        references = None
        if reference is not None:
            references = pictures(reference, "reference")
            _per_scene(len(references), len(scenes), "reference")
        elif subject is None:
            raise ValueError("reference: connect a photo of the subject, or a fine-tuned subject")
        requests = [
            PaintRequest(
                scenes[k],
                None if references is None else references[k if len(references) > 1 else 0],
                mask=masks[k if len(masks) > 1 else 0],
                subject=None if subject is None else subject.path,
                seed=(first_seed + k) % (MAX_SEED + 1),
                settings=paint,
            )
            for k in range(len(scenes))
        ]
        with model.lock:
            steps = _Steps(self._total_steps(model.session, requests))
            results = model.session.paint(requests, batch_size=len(requests), callback_on_step_end=steps)
        for k, result in enumerate(results):
            if result.error is None:
                continue
            if not isinstance(result.error, (ValueError, TypeError, OSError)):
                raise result.error  # a failure of ours or of the hardware (out of memory), as it came
            which = f"scene {k + 1} of {len(results)}: " if len(results) > 1 else ""
            raise ValueError(which + _one_line(result.error)) from None
        painted = [np.asarray(image.convert("RGB")) for result in results for image in result.images]
        return (torch.from_numpy(np.stack(painted)).to(torch.float32) / 255.0,)

    @staticmethod
    def _total_steps(session: Session, requests: list[PaintRequest]) -> int:
        """The sampler steps of the session's calls for ``requests``: one call per run of requests of one group
        (``PaintRequest.group``), each of the sampler's steps."""
        from subject_inpainting.sampling.samplers import num_denoiser_steps

        chosen = requests[0].settings.resolved()
        try:
            per_call = num_denoiser_steps(chosen.sampler, chosen.num_inference_steps, session.pipeline.scheduler)
        except ValueError:
            per_call = chosen.num_inference_steps  # the pipeline names the problem when it paints
        calls = sum(1 for k, r in enumerate(requests) if k == 0 or r.group() != requests[k - 1].group())
        return per_call * calls


def _input_names() -> list[str]:
    types = SubjectInpaint.INPUT_TYPES()
    return [*types["required"], *types["optional"]]


NODE_CLASS_MAPPINGS = {
    "SubjectInpaintModelLoader": SubjectInpaintModelLoader,
    "SubjectInpaintSubjectLoader": SubjectInpaintSubjectLoader,
    "SubjectInpaint": SubjectInpaint,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SubjectInpaintModelLoader": "Subject inpainting: load model",
    "SubjectInpaintSubjectLoader": "Subject inpainting: load fine-tuned subject",
    "SubjectInpaint": "Subject inpainting: paint",
}
