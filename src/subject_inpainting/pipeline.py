"""``SubjectInpaintPipeline``: preprocess → encode → sample → decode → paste back. Glue only.

The computation is Paint-by-Example's (Yang et al., 2022), as its original code runs it:

1. the reference photo is resized to the vision tower's input and CLIP-normalised, then encoded into the
   cross-attention context (and the learned unconditional vector);
2. the scene, in [-1, 1], is multiplied by the keep-mask (1 = keep, 0 = hole) and encoded by the VAE
   (posterior mean × scaling factor); the keep-mask is resized to the latent (bilinear);
3. the UNet denoises ``[x_t, z_masked, keep_mask]`` from Gaussian noise with classifier-free guidance
   (PLMS/DDIM as the original, or a diffusers solver);
4. the latent is decoded, ``(x + 1) / 2`` clamped to [0, 1].

Then, beyond the original, the result is resized back to the input's size and pasted into it inside the
mask with a feathered seam, so that every pixel outside the mask is exactly the input's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from . import imaging
from .models.build import move
from .models.compiled import compile_unet
from .presets import DECODE_MARGIN, DEFAULT_PRESET
from .sampling.deepcache import DeepCacheUNet
from .sampling.guidance import (
    InpaintDenoiser,
    KnownRegionDenoiser,
    ModifiedGuidanceDenoiser,
    VelocityDenoiser,
    check_interval,
)
from .sampling.samplers import num_denoiser_steps, sample
from .sampling.schedule import alphas_cumprod, prediction_type
from .settings import PaintSettings

ImageInput = str | os.PathLike | Image.Image | np.ndarray


_IMAGE_TYPES = "a path (str or os.PathLike), a PIL.Image or a numpy array"


@dataclass
class InpaintOutput:
    """Result of a pipeline call.

    Attributes:
        images: the results at the scene's size (pasted back unless ``paste_back=False``); for a list of
            scenes, every scene's ``num_images`` in the scenes' order.
        latents: the final latents ``(N, 4, h, w)``.
        work_boxes: per scene, the part of it the model saw ``(x0, y0, x1, y1)``.
    """

    images: list[Image.Image]
    latents: torch.Tensor
    work_boxes: list[tuple[int, int, int, int]]

    @property
    def work_box(self) -> tuple[int, int, int, int]:
        """The (first) scene's ``work_boxes`` entry."""
        return self.work_boxes[0]


@dataclass
class PreparedInputs:
    """Validated, decoded inputs (see ``SubjectInpaintPipeline.prepare_inputs``)."""

    scene: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8 of an RGBA scene
    mask: np.ndarray  # (H, W) bool, True = edit
    reference: torch.Tensor  # (1, 3, S, S) normalised


@dataclass
class _Scene:
    """One scene of a call, prepared: its inputs, the box the model sees, and that box at the model's
    resolution (``rgb`` ``(res, res, 3)`` uint8, ``mask`` ``(res, res)`` bool)."""

    inputs: PreparedInputs
    box: tuple[int, int, int, int]
    rgb: np.ndarray
    mask: np.ndarray


class SubjectInpaintPipeline:
    """Exemplar-based inpainting with a Paint-by-Example-style model.

    Args:
        unet: ``UNet2DConditionModel`` with ``4 + 4 + 1`` input channels (noisy latent, masked-scene latent,
            keep-mask).
        vae: ``AutoencoderKL``; its ``config.scaling_factor`` scales latents.
        reference_encoder: ``ReferenceEncoder``.
        scheduler: the training noise schedule (a diffusers scheduler config dict).
    """

    def __init__(self, unet, vae, reference_encoder, scheduler: dict[str, Any]):
        self.unet = unet.eval()
        self.vae = vae.eval()
        self.reference_encoder = reference_encoder.eval()
        self.scheduler = dict(scheduler)
        self.subject = None
        self._check_components()

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        ldm_config: str | os.PathLike | dict | None = None,
        vision_config: str | os.PathLike | dict | None = None,
    ) -> SubjectInpaintPipeline:
        """Load from a project folder, a diffusers Paint-by-Example folder, an original checkpoint, or a
        hub id (see ``subject_inpainting.loaders.load_components``), on ``device`` in ``dtype`` (default
        float32)."""
        from .loaders import load_components

        components = load_components(model, ldm_config=ldm_config, vision_config=vision_config)
        # Weights may be stored in half precision (the embedded model is); compute in float32 unless asked.
        return cls(**components).to(device, dtype or torch.float32)

    def save_pretrained(self, folder: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the project's format (safetensors + JSON configs), atomically."""
        from .loaders import save_components

        return save_components(self.components, folder, overwrite=overwrite)

    @property
    def components(self) -> dict[str, Any]:
        return {
            "unet": self.unet,
            "vae": self.vae,
            "reference_encoder": self.reference_encoder,
            "scheduler": self.scheduler,
        }

    def load_subject(self, subject: str | os.PathLike, check_base: bool = True):
        """Use a fine-tuned subject (a ``subject-inpaint finetune`` folder or an original subject
        checkpoint) with modified guidance. A LoRA subject becomes an adapter of this pipeline's UNet.

        Raises:
            CheckpointError: not a subject, or fine-tuned from another base (unless ``check_base=False``).
        """
        from .loaders.subject import load_subject

        self.unload_subject()
        self.subject = load_subject(subject, self.components, check_base=check_base)
        if self.subject.unet is not None:
            move(self.subject.unet, self.device, self.dtype).eval()
        move(self.subject.encoder, self.reference_encoder.device, self.reference_encoder.dtype).eval()
        return self.subject

    def unload_subject(self) -> None:
        """Back to the plain pretrained model (removes a LoRA adapter from the UNet)."""
        from .models.lora import remove_lora

        if self.subject is not None and self.subject.adapter is not None:
            remove_lora(self.unet, self.subject.adapter)
        self.subject = None

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        """Move to ``device`` and cast to ``dtype``. The VAE stays in float32 under float16 (its
        activations overflow float16, the known SD-VAE problem)."""
        vae_dtype = torch.float32 if dtype == torch.float16 else dtype
        for module, dt in ((self.unet, dtype), (self.reference_encoder, dtype), (self.vae, vae_dtype)):
            move(module, device, dt)
        if self.subject is not None:
            move(self.subject.encoder, device, dtype)
            if self.subject.unet is not None:
                move(self.subject.unet, device, dtype)
        return self

    def compile(self, backend: str = "inductor", cache_dir: str | os.PathLike | None = None) -> SubjectInpaintPipeline:
        """Compile the UNet (opt-in; the first call of each input layout pays the compilation).

        Args:
            backend: ``"inductor"`` (``torch.compile``, PyTorch's own; needs a C++ compiler on the CPU) or
                ``"openvino"`` (OpenVINO's CPU engine, ``pip install 'subject-inpainting[openvino]'``). Calls it
                cannot express run eager, with a warning: under DeepCache (the ``fast`` preset; pass
                ``deep_cache=1`` to use OpenVINO), with a LoRA subject loaded, or with an attention mask; see
                ``subject_inpainting.models.compiled``.
            cache_dir: where inductor keeps compiled artefacts between runs (default
                ``~/.cache/subject-inpainting/inductor``), so a second run skips most of the compilation.

        Raises:
            ValueError: an unknown backend, or one whose package is not installed or that cannot run this UNet.
        """
        compile_unet(self.unet, backend, cache_dir)
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        """The model's native square resolution in pixels (512 for the released weights)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def _check_components(self) -> None:
        latent = self.vae.config.latent_channels
        expected = 2 * latent + 1
        if self.unet.config.in_channels != expected:
            raise ValueError(
                f"the UNet takes {self.unet.config.in_channels} input channels but an inpainting UNet over "
                f"this VAE needs {expected} (latent {latent} + masked-scene latent {latent} + mask 1)"
            )
        if self.unet.config.cross_attention_dim != self.reference_encoder.config.context_dim:
            raise ValueError(
                f"the reference encoder gives {self.reference_encoder.config.context_dim}-wide context but "
                f"the UNet attends to {self.unet.config.cross_attention_dim}"
            )
        prediction_type(self.scheduler)  # a model predicting something else is named here, not mid-sampling

    # -- inputs ------------------------------------------------------------------------------------
    def check_inputs(
        self,
        settings: PaintSettings,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        num_scenes: int = 1,
        latents: torch.Tensor | None = None,
    ) -> PaintSettings:
        """Check what the settings (each option already within its bounds, ``PaintSettings``) ask of this
        model, and the generators and latents, before any work; return the settings resolved against their
        preset. ``generator`` may be a list: one per image for one scene, one per scene for ``num_scenes`` > 1.

        Raises:
            ValueError: steps or timesteps past this model's schedule, generators that do not match the
                images, latents of the wrong shape or not finite.
            TypeError: a generator that is not a ``torch.Generator``.
        """
        chosen = settings.resolved()
        limit = int(self.scheduler["num_train_timesteps"])
        if chosen.num_inference_steps > limit:
            raise ValueError(
                f"num_inference_steps must be at most {limit} (this model's schedule), got {chosen.num_inference_steps}"
            )
        if chosen.guidance_threshold > limit:
            raise ValueError(f"guidance_threshold must be at most {limit}, got {chosen.guidance_threshold}")
        check_interval(chosen.guidance_interval, limit)
        num_images = chosen.num_images
        if isinstance(generator, (list, tuple)):
            if num_scenes > 1 and len(generator) != num_scenes:
                raise ValueError(f"got {len(generator)} generators for {num_scenes} scenes; give one per scene")
            if num_scenes == 1 and len(generator) != num_images:
                raise ValueError(f"got {len(generator)} generators for {num_images} images; give one per image")
            if not all(isinstance(g, torch.Generator) for g in generator):
                raise TypeError("generator must be a torch.Generator or a list of them")
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if latents is not None:
            side = int(self.unet.config.sample_size)
            expected = (num_scenes * num_images, self.vae.config.latent_channels, side, side)
            if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
                got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise ValueError(f"latents must have shape {expected}, got {got}")
            if not torch.isfinite(latents).all():
                raise ValueError("latents hold NaN or infinite values; the initial noise must be finite")
        return chosen

    def prepare_inputs(
        self,
        scene: ImageInput,
        reference: ImageInput | torch.Tensor,
        mask: ImageInput | None = None,
        box: Sequence[float] | str | None = None,
        reference_box: Sequence[float] | str | None = None,
    ) -> PreparedInputs:
        """Read and validate the images: scene in any mode, a mask (white = edit) or a box, a reference.

        Images are paths, PIL images or numpy arrays (``uint8`` ``(H, W, 3)``, ``(H, W, 4)`` or ``(H, W)``;
        a mask array is ``bool`` or ``uint8`` ``(H, W)``, True or >= 128 = edit). The reference may also be
        its normalised pixels as a tensor. Everything is checked here, before any model runs.

        Raises:
            TypeError: an input of a type (or array dtype) the pipeline does not take.
            ValueError: a reference tensor of the wrong shape or holding NaN or infinite values.
            InputError: one line naming the input and what is wrong with it (unreadable file, array of the
                wrong shape, empty mask, a box that is not four finite numbers or lies outside its image ...).
        """
        scene = _as_image(scene, "scene")
        mask = None if mask is None else _as_image(mask, "mask", is_mask=True)
        box = None if box is None else imaging.parse_box(box, "box")
        reference_box = None if reference_box is None else imaging.parse_box(reference_box, "reference_box")
        if isinstance(reference, torch.Tensor):
            if reference_box is not None:
                raise ValueError(
                    "reference_box crops a reference picture, but the reference is a tensor of normalised "
                    "pixels; crop the picture before making the tensor, or give the picture"
                )
            ref = self.check_reference_tensor(reference)
        else:
            enc = self.reference_encoder
            ref = imaging.reference_tensor(
                imaging.open_image(_as_image(reference, "reference", tensor_too=True), "reference"),
                enc.image_size,
                enc.image_mean,
                enc.image_std,
                reference_box,
            )
        rgb, alpha, edit = imaging.load_scene_and_mask(scene, mask, box)
        return PreparedInputs(rgb, alpha, edit, ref)

    def check_reference_tensor(self, reference: torch.Tensor) -> torch.Tensor:
        """A reference given as normalised pixels ``(3, S, S)`` or ``(1, 3, S, S)`` → ``(1, 3, S, S)``.

        Checked before any model work, so that a NaN or a stray integer tensor is named here rather than
        silently painted as noise.

        Raises:
            TypeError: not a floating-point tensor.
            ValueError: the wrong shape, or NaN or infinite values.
        """
        enc = self.reference_encoder
        expected = (1, 3, enc.image_size, enc.image_size)
        if not reference.is_floating_point():
            raise TypeError(
                "a reference tensor must be floating point (normalised pixels, e.g. torch.float32), "
                f"got {reference.dtype}"
            )
        ref = reference[None] if reference.ndim == 3 else reference
        if tuple(ref.shape) != expected:
            raise ValueError(
                f"a reference tensor must be normalised pixels of shape {expected}, got {tuple(reference.shape)}"
            )
        finite = torch.isfinite(ref)
        if not finite.all():
            bad = int((~finite).sum())
            raise ValueError(
                f"reference tensor holds NaN or infinite values ({bad} of {ref.numel()}); "
                "it must be finite normalised pixels"
            )
        return ref

    def work_box(self, mask: np.ndarray, region: str, context: float) -> tuple[int, int, int, int]:
        """The part of the scene the model sees: all of it (``"full"``, the original: stretched to the
        model's square) or a square around the mask whose side is ``context`` × the mask's longer side
        (``"crop"``: no distortion, more pixels on the subject). A mask that no square inside the image
        can hold falls back to the full scene."""
        h, w = mask.shape
        if region == "full":
            return 0, 0, w, h
        x0, y0, x1, y1 = imaging.mask_bbox(mask)
        need = max(x1 - x0, y1 - y0)
        side = min(max(round(need * context), 1), min(w, h))
        if side < need:
            return 0, 0, w, h
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = int(min(max(round(cx - side / 2), 0), w - side))
        top = int(min(max(round(cy - side / 2), 0), h - side))
        return left, top, left + side, top + side

    # -- model steps -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` → (conditional context ``(B, T, C)``, unconditional ``(B, 1, C)``)."""
        enc = self.reference_encoder
        cond = enc(pixel_values.to(enc.device, enc.dtype))
        return cond, enc.unconditional(cond.shape[0])

    @torch.no_grad()
    def encode_subject_reference(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three contexts of modified guidance for ``(B, 3, S, S)`` reference pixels.

        Returns ``(subject (B, 1 + k, C), class (B, 1, C), uncond (B, 1, C))``. The class token comes from the
        subject encoder's class path (the base's, frozen, in a fine-tuned subject) projected by the
        PRETRAINED projection; the detail tokens from the subject's detail module; the unconditional vector
        is the subject's (fine-tuning never changes it). This is the original's choice, which its recorded
        outputs pin down.
        """
        enc = self.subject.encoder
        class_state, patches = enc.tower_states(pixel_values.to(enc.device, enc.dtype))
        class_ctx = self.reference_encoder.class_proj(enc.class_features(class_state).to(self.reference_encoder.dtype))
        uncond = enc.unconditional(class_ctx.shape[0])
        if not enc.has_detail:  # a subject fine-tuned without the detail module
            return class_ctx, class_ctx, uncond
        detail_ctx = enc.detail_proj(enc.detail_features(patches))
        return torch.cat([class_ctx, detail_ctx.to(class_ctx.dtype)], dim=1), class_ctx, uncond

    @torch.no_grad()
    def encode_scene(self, scene: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scene ``(B, 3, H, W)`` in [-1, 1] and keep-mask ``(B, 1, H, W)`` → (scaled latent of
        ``scene · keep`` from the posterior mean ``(B, 4, h, w)``, keep-mask at latent size ``(B, 1, h, w)``)."""
        vae = self.vae
        masked = (scene * keep).to(vae.device, vae.dtype)
        z = vae.encode(masked).latent_dist.mean * vae.config.scaling_factor
        keep_latent = F.interpolate(
            keep.to(z.device, torch.float32), size=z.shape[-2:], mode="bilinear", align_corners=False
        )
        return z.float(), keep_latent

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, 4, h, w)`` → images ``(B, 3, H, W)`` in [0, 1]."""
        vae = self.vae
        x = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    def latent_window(self, mask: np.ndarray) -> tuple[int, int, int, int]:
        """The latent cells ``(x0, y0, x1, y1)`` that ``decode_window`` decodes for ``mask`` ``(H, W)`` at the
        model's resolution: the region's box with ``DECODE_MARGIN`` cells on each side, within the latent."""
        f, side = self.vae_scale_factor, int(self.unet.config.sample_size)
        x0, y0, x1, y1 = imaging.mask_bbox(mask)
        m = DECODE_MARGIN
        return max(x0 // f - m, 0), max(y0 // f - m, 0), min(-(-x1 // f) + m, side), min(-(-y1 // f) + m, side)

    @torch.no_grad()
    def decode_window(self, latents: torch.Tensor, mask: np.ndarray, scene: np.ndarray) -> list[np.ndarray]:
        """Decode only the latent window around ``mask`` (``DECODE_MARGIN`` cells on each side).

        Args:
            latents: ``(B, C, h, w)`` scaled latents.
            mask: ``(H, W)`` bool, the region at the model's resolution.
            scene: ``(H, W, 3)`` uint8 at the model's resolution, which fills the pictures outside the window.

        Returns:
            ``B`` pictures ``(H, W, 3)`` uint8: decoded inside the window, the scene outside it. Inside the
            region they differ from the whole decode by a few levels whatever the margin, since the decoder's
            group norms (and its middle attention) see only the window (``benchmarks/toy/region_decode.py``
            measures it).
        """
        f = self.vae_scale_factor
        lx0, ly0, lx1, ly1 = self.latent_window(mask)
        window = imaging.tensor_to_rgb(self.decode(latents[..., ly0:ly1, lx0:lx1]))
        pictures = []
        for part in window:
            full = scene.copy()
            full[ly0 * f : ly1 * f, lx0 * f : lx1 * f] = part
            pictures.append(full)
        return pictures

    @staticmethod
    def _unet_for_sampling(unet, chosen: PaintSettings, asked: bool):
        """``unet``, or a ``DeepCacheUNet`` around it (a fresh cache for this call) when the settings say so.
        A UNet DeepCache cannot wrap runs every call in full when only the preset chose DeepCache, and is an
        error when the caller ``asked`` for it."""
        if chosen.deep_cache == 1 or (not asked and DeepCacheUNet.unsupported(unet)):
            return unet
        return DeepCacheUNet(unet, chosen.deep_cache, chosen.deep_cache_branch)

    def prepare_latents(
        self,
        num_images: int,
        generator: torch.Generator | Sequence[torch.Generator] | None,
        num_scenes: int = 1,
    ) -> torch.Tensor:
        """Initial noise ``(num_scenes · num_images, 4, h, w)``, drawn on each generator's device (CPU by
        default), so a seed gives the same picture on every device. A list of generators is one per image for
        one scene, one per scene (each drawing that scene's images) for several: either way a scene's noise
        is what a call with that scene alone and its generator draws."""
        side = int(self.unet.config.sample_size)
        shape = (self.vae.config.latent_channels, side, side)
        if isinstance(generator, torch.Generator) or generator is None:
            draws = [(num_scenes * num_images, generator)]
        elif num_scenes == 1:
            draws = [(1, g) for g in generator]
        else:
            draws = [(num_images, g) for g in generator]
        noise = torch.cat([torch.randn((k, *shape), generator=g, device=_gen_device(g)) for k, g in draws])
        return noise.to(self.device, torch.float32)

    # -- the call ----------------------------------------------------------------------------------
    def __call__(
        self,
        scene: ImageInput | list[ImageInput],
        reference: ImageInput | torch.Tensor | list[ImageInput | torch.Tensor],
        mask: ImageInput | list[ImageInput | None] | None = None,
        box: Sequence[float] | str | list[Sequence[float] | str | None] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = 5.0,
        sampler: str | None = None,
        eta: float = 0.0,
        num_images: int = 1,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        paste_back: bool = True,
        feather: float | None = None,
        region: str = "full",
        context: float = 2.0,
        reference_box: Sequence[float] | str | list[Sequence[float] | str | None] | None = None,
        model_weight: float = 0.8,
        guidance_threshold: int = 1000,
        latents: torch.Tensor | None = None,
        progress: bool = True,
        callback: Callable[[dict[str, Any]], None] | None = None,
        keep_known: bool = False,
        preset: str = DEFAULT_PRESET,
        deep_cache: int | None = None,
        deep_cache_branch: int | None = None,
        guidance_interval: tuple[int, int] | None = None,
        decode: str | None = None,
    ) -> InpaintOutput:
        """Paint the reference's subject into the masked region of the scene.

        A list of scenes paints several at once: ``reference``, and ``mask``, ``box`` and ``reference_box`` when
        given, are then lists of the same length (an entry may be None), and the scenes are sampled in one
        UNet batch with the same options. Each scene's pictures are those of a call with that scene alone and
        its generator, to float rounding in the batched UNet, unless the sampler is stochastic
        (``sampling.catalog.is_stochastic``: its step noise comes from the first generator).

        Args:
            scene: path or PIL image, any size and mode (RGB, RGBA, L, P, CMYK, 16-bit; EXIF orientation
                is honoured), or a numpy ``uint8`` array ``(H, W, 3)``, ``(H, W, 4)`` or ``(H, W)``.
            reference: path, PIL image or numpy array (as the scene) of the subject, resized (bicubic) to
                the tower's input; or its normalised pixels, a finite float tensor ``(1, 3, S, S)``.
            mask: path or PIL image, white (>= 128) = region to edit, or a numpy ``(H, W)`` array (``bool``,
                or ``uint8`` >= 128 = edit); same aspect ratio as the scene.
            box: instead of a mask, ``(x0, y0, x1, y1)`` in scene pixels (or ``"x0,y0,x1,y1"``).
            num_inference_steps: sampling steps (the original's rounding for PLMS/DDIM); default: the preset's.
            guidance_scale: classifier-free guidance scale ``s`` (5 in the paper; 1 = no guidance).
            sampler: ``plms`` (the original's), ``ddim``, or a diffusers solver (``dpmsolver++`` ...); default:
                the preset's.
            eta: DDIM noise (0 = deterministic).
            num_images: results per scene, sampled as one batch.
            generator: a ``torch.Generator`` for the initial noise, or a list: one per image (one scene) or
                one per scene (several scenes).
            paste_back: paste the result into the scene inside the mask (outside pixels exact); if False,
                return the model's whole output resized to the scene.
            feather: seam width in pixels (default about 1% of the shorter side; 0 = hard edge).
            region: ``"full"`` (the original: whole scene stretched to the model's square) or ``"crop"``
                (a square around the mask, ``context`` × its size).
            context: crop side over the mask's longer side, for ``region="crop"``.
            reference_box: crop the reference picture to ``(x0, y0, x1, y1)`` first (not for a tensor).
            model_weight: with a subject loaded (``load_subject``), the weight ``w`` of the fine-tuned model
                in modified guidance (0.8 in the paper; 0 = the pretrained model alone).
            guidance_threshold: with a subject, modified guidance applies at timesteps below this ``T``;
                above, plain guidance with the pretrained model (1000 = every step, the paper's setting).
            latents: initial noise ``(scenes · num_images, 4, h, w)`` instead of drawing it.
            progress: show a progress bar.
            callback: called after every step with ``{"i", "t", "x", "pred_x0"}``.
            keep_known: at every step, hold the predicted clean latent outside the region to the scene's
                (``KnownRegionDenoiser``); off by default, as the original. Helps a model that reconstructs
                the scene poorly.
            preset: ``"original"`` (the original recipe: PLMS 50, every step in full, full decode) or
                ``"fast"`` (the default); ``PRESETS`` says what each sets. The five options below, the
                sampler and the steps, when given, win over the preset's.
            deep_cache: reuse the UNet's deep features on ``deep_cache - 1`` steps out of ``deep_cache``
                (``DeepCacheUNet``, Ma et al. 2024); 1 = every step in full.
            deep_cache_branch: how much of the UNet the reusing steps still run (``DeepCacheUNet``'s branch).
            guidance_interval: ``(low, high)`` timesteps: guidance only there, the conditional prediction
                alone elsewhere (Kynkäänniemi et al. 2024; one UNet row fewer on those steps); ``(0, T)``
                for every step.
            decode: ``"full"``, or ``"region"``: with ``paste_back``, decode only the latent window around
                the region (``DECODE_MARGIN`` cells on each side), the rest being the scene's anyway.

        Returns:
            ``InpaintOutput`` with ``images`` (PIL, the scene's size; RGBA if the scene had alpha).
        """
        settings = PaintSettings(
            preset=preset,
            sampler=sampler,
            num_inference_steps=num_inference_steps,
            deep_cache=deep_cache,
            deep_cache_branch=deep_cache_branch,
            guidance_interval=guidance_interval,
            decode=decode,
            guidance_scale=guidance_scale,
            eta=eta,
            num_images=num_images,
            model_weight=model_weight,
            guidance_threshold=guidance_threshold,
            region=region,
            context=context,
            feather=feather,
            paste_back=paste_back,
            keep_known=keep_known,
        )
        requests = self._requests(scene, reference, mask, box, reference_box)
        chosen = self.check_inputs(settings, generator, len(requests), latents)
        b, n = len(requests), chosen.num_images
        sampler, num_inference_steps, interval = chosen.sampler, chosen.num_inference_steps, chosen.guidance_interval
        guidance_scale, feather = chosen.guidance_scale, chosen.feather
        unet = self._unet_for_sampling(self.unet, chosen, settings.deep_cache is not None)
        scenes = [self._prepare_scene(self.prepare_inputs(*r), region, context) for r in requests]

        def rows(tensors: list[torch.Tensor]) -> torch.Tensor:
            """Each scene's tensor ``(1, ...)`` repeated for its ``n`` images, the scenes one after another."""
            return torch.cat([t.expand(n, *t.shape[1:]) for t in tensors])

        encoded = [self.encode_scene(imaging.rgb_to_tensor(p.rgb), imaging.keep_mask_tensor(p.mask)) for p in scenes]
        z_masked, keep_latent = rows([z for z, _ in encoded]), rows([k for _, k in encoded])
        if self.subject is None:
            refs = [self.encode_reference(p.inputs.reference) for p in scenes]
            cond, uncond = rows([c for c, _ in refs]), rows([u for _, u in refs])
            denoiser = InpaintDenoiser(unet, cond, uncond, guidance_scale, z_masked, keep_latent, interval)
        else:
            refs = [self.encode_subject_reference(p.inputs.reference) for p in scenes]
            subject_ctx, class_ctx, uncond = (rows([r[i] for r in refs]) for i in range(3))
            denoiser = ModifiedGuidanceDenoiser(
                unet,
                self._unet_for_sampling(self.subject.unet, chosen, settings.deep_cache is not None)
                if self.subject.unet is not None
                else unet,
                subject_ctx,
                class_ctx,
                uncond,
                guidance_scale,
                model_weight,
                guidance_threshold,
                z_masked,
                keep_latent,
                subject_adapter=self.subject.adapter,
                interval=interval,
            )
        alphas = alphas_cumprod(self.scheduler)
        if prediction_type(self.scheduler) == "v_prediction":
            denoiser = VelocityDenoiser(denoiser, alphas)
        if keep_known:
            known_scene = []
            for p in scenes:
                scene_tensor = imaging.rgb_to_tensor(p.rgb)
                known_scene.append(self.encode_scene(scene_tensor, torch.ones_like(scene_tensor[:, :1]))[0])
            known = (keep_latent >= 1).float()  # latent cells wholly outside the region
            denoiser = KnownRegionDenoiser(denoiser, alphas, rows(known_scene), known)
        x = latents.to(self.device, torch.float32) if latents is not None else self.prepare_latents(n, generator, b)
        total = num_denoiser_steps(sampler, num_inference_steps, self.scheduler)
        step_generator = generator[0] if isinstance(generator, (list, tuple)) else generator
        with tqdm(total=total, desc="sampling", unit="step", disable=not progress, leave=False) as bar:

            def on_step(info: dict[str, Any]) -> None:
                bar.update(1)
                if callback is not None:
                    callback(info)

            x = sample(sampler, denoiser, x, self.scheduler, num_inference_steps, eta, step_generator, on_step)
        images = []
        for p, x_scene in zip(scenes, x.split(n), strict=True):
            if chosen.decode == "region" and paste_back:
                generated = self.decode_window(x_scene, p.mask, p.rgb)
            else:
                generated = imaging.tensor_to_rgb(self.decode(x_scene))
            images += [self._finish(picture, p, paste_back, feather) for picture in generated]
        return InpaintOutput(images=images, latents=x.cpu(), work_boxes=[p.box for p in scenes])

    @staticmethod
    def _requests(scene, reference, mask, box, reference_box) -> list[tuple[Any, ...]]:
        """One ``(scene, reference, mask, box, reference_box)`` per scene: the call's values, or for a list of
        scenes the lists' entries (``mask``, ``box``, ``reference_box`` may be None for all)."""
        if not isinstance(scene, list):
            return [(scene, reference, mask, box, reference_box)]
        if not scene:
            raise ValueError("scene is an empty list; give a scene or a list of scenes")
        for i, entry in enumerate(scene):
            if isinstance(entry, (list, tuple)):
                raise TypeError(f"scene[{i}] must be {_IMAGE_TYPES}; got {type(entry).__name__}")
        columns = {"reference": reference, "mask": mask, "box": box, "reference_box": reference_box}
        for name, value in columns.items():
            if value is None and name != "reference":
                columns[name] = [None] * len(scene)
            elif not isinstance(value, list) or len(value) != len(scene):
                got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
                raise ValueError(f"with a list of {len(scene)} scenes, {name} must be a list of as many; got {got}")
        return list(zip(scene, *columns.values(), strict=True))

    def _prepare_scene(self, inputs: PreparedInputs, region: str, context: float) -> _Scene:
        """The part of the scene the model works on, at the model's resolution."""
        box = self.work_box(inputs.mask, region, context)
        x0, y0, x1, y1 = box
        res = self.resolution
        rgb = imaging.resize_rgb(inputs.scene[y0:y1, x0:x1], (res, res))
        return _Scene(inputs, box, rgb, imaging.resize_mask(inputs.mask[y0:y1, x0:x1], (res, res)))

    def _finish(self, generated: np.ndarray, scene: _Scene, paste_back: bool, feather: float | None) -> Image.Image:
        """A decoded picture ``(res, res, 3)`` back at the scene's size, pasted into it inside the mask."""
        inputs = scene.inputs
        x0, y0, x1, y1 = scene.box
        H, W = inputs.mask.shape
        radius = imaging.default_feather((W, H)) if feather is None else feather
        full = inputs.scene.copy()
        full[y0:y1, x0:x1] = imaging.resize_rgb(generated, (x1 - x0, y1 - y0))
        if paste_back:
            full = imaging.composite(inputs.scene, full, inputs.mask, radius)
        return self._to_image(full, inputs, paste_back, radius)

    @staticmethod
    def _to_image(rgb: np.ndarray, inputs: PreparedInputs, paste_back: bool, radius: float) -> Image.Image:
        if inputs.alpha is None:
            return Image.fromarray(rgb, "RGB")
        alpha = inputs.alpha.copy()
        if paste_back:
            # The painted subject is opaque: raise the alpha inside the mask with the same seam.
            window, weight = imaging.feather_window(inputs.mask, radius)
            inside = inputs.mask[window]
            raised = np.round(alpha[window] * (1 - weight) + 255 * weight).astype(np.uint8)
            alpha[window][inside] = raised[inside]
        else:
            alpha[:] = 255
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _as_image(
    value: Any, what: str, is_mask: bool = False, tensor_too: bool = False
) -> str | os.PathLike | Image.Image:
    """An image input as ``imaging`` takes it: paths and PIL images unchanged, numpy arrays as PIL images.

    Scene and reference arrays are ``uint8`` ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey;
    mask arrays are ``bool`` or ``uint8`` ``(H, W)`` (True or >= 128 = edit, as a mask file's white).

    Raises:
        TypeError: another type, or an array of another dtype.
        InputError: an array of another shape, or an empty one.
    """
    if isinstance(value, (str, os.PathLike, Image.Image)):
        return value
    if not isinstance(value, np.ndarray):
        accepted = _IMAGE_TYPES + (", or a torch.Tensor of normalised pixels" if tensor_too else "")
        raise TypeError(f"{what} must be {accepted}; got {type(value).__name__}")
    if is_mask:
        if value.dtype not in (np.bool_, np.uint8):
            raise TypeError(f"a {what} array must be bool or uint8 (True or >= 128 = edit), got {value.dtype}")
        if value.ndim != 2:
            raise imaging.InputError(f"a {what} array must have shape (H, W), got {value.shape}")
        if value.dtype == np.bool_:
            value = value.astype(np.uint8) * 255
    else:
        if value.dtype != np.uint8:
            raise TypeError(f"a {what} array must be uint8 (0-255), got {value.dtype}")
        if not (value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (3, 4))):
            raise imaging.InputError(
                f"a {what} array must have shape (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, got {value.shape}"
            )
    if value.shape[0] < 1 or value.shape[1] < 1:
        raise imaging.InputError(f"{what} array is empty (shape {value.shape})")
    return Image.fromarray(np.ascontiguousarray(value))
