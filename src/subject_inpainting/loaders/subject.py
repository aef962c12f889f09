"""Fine-tuned subjects: saving what subject fine-tuning trained, and loading a subject onto a base model.

A subject is what modified guidance mixes with the pretrained model: a reference encoder with the detail
(VDP) module, and a fine-tuned UNet — full, or a LoRA adapter over the base UNet (then one UNet is held in
memory, not two). It comes from either

- a project **subject folder**, written by ``subject-inpaint finetune``: only the trained parts::

      subject_index.json     {"_format": "subject-inpainting-subject", "base": ..., "base_fingerprint": ...,
                              "base_probe": [...], "unet": "full" | "lora", "lora": {...}}
      reference_encoder/config.json             the whole encoder's config (with the detail module)
      reference_encoder/detail.safetensors      detail_mapper.*, detail_norm.*, detail_proj.*
      unet/diffusion_pytorch_model.safetensors  (full) or  lora/adapter.safetensors  (LoRA)

- or a complete model with a detail module: the original subject ``model.ckpt`` (``mapper2`` …) or a
  project folder of one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..models.build import build_component, fill_component, move
from ..models.lora import ADAPTER_NAME, DEFAULT_LORA_TARGETS, add_lora, lora_config, lora_state_dict
from ..models.reference_encoder import ReferenceEncoder
from ..utils.files import SUBJECT_INDEX, atomic_folder
from .checkpoint_io import CheckpointError, read_json, read_state_dict
from .layout import is_subject_folder
from .project import WEIGHTS_NAME, _write_json

SUBJECT_FORMAT = "subject-inpainting-subject"
SUBJECT_FORMAT_VERSION = 1
DETAIL_WEIGHTS = "detail.safetensors"
LORA_WEIGHTS = "adapter.safetensors"
DETAIL_PREFIXES = ("detail_mapper.", "detail_norm.", "detail_proj.")


@dataclass
class Subject:
    """A subject ready for modified guidance.

    Attributes:
        encoder: reference encoder, normally with the detail module (its class path is the base's when
            fine-tuned by this project; without a detail module the subject is a fine-tuned UNet alone).
        unet: the fine-tuned UNet, or None when the subject is the LoRA ``adapter`` of the base UNet.
        adapter: name of the LoRA adapter injected into the base UNet.
        source: where it was loaded from.
        info: the subject index (base, training settings) when there is one.
    """

    encoder: ReferenceEncoder
    unet: torch.nn.Module | None
    adapter: str | None
    source: str
    info: dict[str, Any] = field(default_factory=dict)


def _identifying_tensors(unet: torch.nn.Module, encoder: ReferenceEncoder) -> list[torch.Tensor]:
    """The weights that identify a base model: the UNet's first and last layers and the encoder's projection
    and unconditional vector, all frozen by subject fine-tuning."""
    state = unet.state_dict()
    return [state["conv_in.weight"], state["conv_out.weight"], encoder.class_proj.weight, encoder.uncond_vector]


def base_fingerprint(unet: torch.nn.Module, encoder: ReferenceEncoder) -> str:
    """A short hash of the base model's frozen parts a subject depends on (weights, not paths, so that the
    same base in another format matches; exact, so only in the precision it was taken in)."""
    h = hashlib.sha256()
    for t in _identifying_tensors(unet, encoder):
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


PROBE_VALUES = 8  # leading values of each tensor kept in a probe


def base_probe(unet: torch.nn.Module, encoder: ReferenceEncoder) -> list[float]:
    """A few numbers that identify the base model whatever precision it is loaded in (float32, bfloat16,
    float16), unlike ``base_fingerprint``'s exact hash: for each identifying tensor its mean absolute value
    and its first ``PROBE_VALUES`` values, in float32."""
    probe: list[float] = []
    for t in _identifying_tensors(unet, encoder):
        flat = t.detach().float().cpu().flatten()
        probe += [flat.abs().mean().item(), *flat[:PROBE_VALUES].tolist()]
    return probe


def same_base(recorded: list[float], unet: torch.nn.Module, encoder: ReferenceEncoder) -> bool:
    """Whether ``recorded`` (a ``base_probe``) is this base's, to half-precision rounding: a relative
    difference of 2⁻⁶ allows bfloat16's 2⁻⁸ and float16's 2⁻¹¹ rounding of each value."""
    now = torch.tensor(base_probe(unet, encoder))
    then = torch.tensor(recorded, dtype=now.dtype)
    return then.shape == now.shape and torch.allclose(now, then, rtol=2**-6, atol=1e-6)


def save_subject(
    folder: str | Path,
    encoder: ReferenceEncoder,
    unet: torch.nn.Module,
    base: str,
    fingerprint: str,
    lora: dict[str, Any] | None = None,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    probe: list[float] | None = None,
) -> Path:
    """Write a subject folder holding only what fine-tuning trained (see the module docstring).

    Args:
        encoder: the reference encoder with its detail module (only the ``detail_*`` weights are saved).
        unet: the fine-tuned UNet (full), or the base UNet carrying the LoRA adapter ``ADAPTER_NAME``.
        base: how to find the base model again (path or hub id).
        fingerprint: ``base_fingerprint`` of the base.
        probe: ``base_probe`` of the base, which lets the subject load onto the base in another precision.
        lora: ``{"rank", "alpha", "targets"}`` for a LoRA subject, None for a full UNet.
    """
    folder = Path(folder)
    with atomic_folder(folder, overwrite) as tmp:
        index = {
            "_format": SUBJECT_FORMAT,
            "_format_version": SUBJECT_FORMAT_VERSION,
            "base": base,
            "base_fingerprint": fingerprint,
            **({"base_probe": probe} if probe is not None else {}),
            "unet": "lora" if lora else "full",
            "lora": lora,
            **(extra or {}),
        }
        _write_json(tmp / SUBJECT_INDEX, index)
        enc_dir = tmp / "reference_encoder"
        enc_dir.mkdir()
        config = {k: v for k, v in dict(encoder.config).items() if not k.startswith("_")}
        _write_json(enc_dir / "config.json", {"_class_name": "ReferenceEncoder", **config})
        detail = {
            k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items() if k.startswith(DETAIL_PREFIXES)
        }
        if detail:  # a subject fine-tuned without the detail module has none
            save_file(detail, str(enc_dir / DETAIL_WEIGHTS))
        if lora:
            (tmp / "lora").mkdir()
            state = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(unet).items()}
            save_file(state, str(tmp / "lora" / LORA_WEIGHTS))
        else:
            (tmp / "unet").mkdir()
            config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
            _write_json(tmp / "unet" / "config.json", {"_class_name": type(unet).__name__, **config})
            state = {k: v.detach().contiguous().cpu() for k, v in unet.state_dict().items()}
            save_file(state, str(tmp / "unet" / WEIGHTS_NAME))
    return folder


def read_subject_index(folder: Path) -> dict[str, Any]:
    index = read_json(folder / SUBJECT_INDEX, "subject index")
    if index.get("_format") != SUBJECT_FORMAT:
        raise CheckpointError(f"{folder}: not a subject folder ({SUBJECT_INDEX} has another _format)")
    if index.get("_format_version", 0) > SUBJECT_FORMAT_VERSION:
        raise CheckpointError(f"{folder}: written by a newer subject-inpainting; upgrade the package")
    return index


def load_subject(spec: str | os.PathLike, base: dict[str, Any], check_base: bool = True) -> Subject:
    """Load subject ``spec`` for use with the ``base`` components (``unet``, ``reference_encoder``).

    A LoRA subject is injected into ``base["unet"]`` as adapter ``ADAPTER_NAME``.

    Raises:
        CheckpointError: not a subject, incomplete, or fine-tuned from another base.
    """
    path = Path(spec).expanduser()
    if path.is_dir() and is_subject_folder(path):
        return _load_subject_folder(path, base, check_base)
    from . import load_components

    components = load_components(spec)
    if not components["reference_encoder"].has_detail:
        raise CheckpointError(
            f"{spec}: not a subject model (its reference encoder has no detail module); give a folder "
            "written by `subject-inpaint finetune` or an original subject-inpainting checkpoint"
        )
    return Subject(components["reference_encoder"], components["unet"], None, str(spec))


def _fits_base(index: dict[str, Any], unet: torch.nn.Module, encoder: ReferenceEncoder) -> bool:
    if index.get("base_fingerprint") == base_fingerprint(unet, encoder):
        return True
    probe = index.get("base_probe")  # folders written before the probe have only the exact hash
    return isinstance(probe, list) and same_base(probe, unet, encoder)


def _load_subject_folder(folder: Path, base: dict[str, Any], check_base: bool) -> Subject:
    index = read_subject_index(folder)
    base_unet, base_encoder = base["unet"], base["reference_encoder"]
    if check_base and not _fits_base(index, base_unet, base_encoder):
        hint = ""
        if "base_probe" not in index and base_unet.dtype != torch.float32:
            dtype = str(base_unet.dtype).removeprefix("torch.")
            hint = (
                f" (or, if it is that model, load it in float32: this folder can be checked only there, not in {dtype})"
            )
        raise CheckpointError(
            f"{folder}: this subject was fine-tuned from another base model ({index.get('base')}); "
            f"load it with that model{hint}"
        )
    enc_config = read_json(folder / "reference_encoder" / "config.json", "subject encoder config")
    encoder = build_component("reference_encoder", enc_config, empty=True)
    state = {k: v for k, v in base_encoder.state_dict().items() if not k.startswith(DETAIL_PREFIXES)}
    if encoder.has_detail:
        state.update(read_state_dict(folder / "reference_encoder" / DETAIL_WEIGHTS))
    try:
        fill_component(encoder, state, f"{folder / 'reference_encoder'}")
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    move(encoder, base_encoder.device, base_encoder.dtype)
    if index.get("unet") == "lora":
        from peft import set_peft_model_state_dict

        spec = index.get("lora") or {}
        add_lora(
            base_unet, lora_config(int(spec["rank"]), spec.get("alpha"), spec.get("targets", DEFAULT_LORA_TARGETS))
        )
        weights = read_state_dict(folder / "lora" / LORA_WEIGHTS)
        result = set_peft_model_state_dict(base_unet, weights, adapter_name=ADAPTER_NAME)
        if getattr(result, "unexpected_keys", None):
            raise CheckpointError(
                f"{folder / 'lora'}: adapter weights that fit no LoRA layer: {result.unexpected_keys[:3]}"
            )
        return Subject(encoder, None, ADAPTER_NAME, str(folder), index)
    from .project import load_module

    if not (folder / "unet").is_dir():
        raise CheckpointError(f"{folder}: the subject folder is missing its unet part")
    unet = move(load_module("unet", folder / "unet", str(folder / "unet")), base_unet.device, base_unet.dtype)
    return Subject(encoder, unet, None, str(folder), index)
