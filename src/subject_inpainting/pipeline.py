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
mask with a feathered seam, so that every pixel outside the mask is exactly the input's
(``image_processor``). How to paint is a ``PaintSettings``; the denoiser is assembled from it by
``sampling.stack.build_denoiser``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from . import imaging
from .devices import conv_layout
from .image_processor import FramedScene, ImageInput, InpaintImageProcessor, PreparedInputs
from .models.build import move
from .models.compiled import compile_unet
from .models.int8 import Int8Config, dequantize_int8, int8_layers, quantize_int8
from .models.token_merging import TokenMergingConfig, merged_tokens
from .presets import DECODE_MARGIN
from .sampling.guidance import check_interval
from .sampling.samplers import num_denoiser_steps, sample
from .sampling.schedule import prediction_type
from .sampling.stack import build_denoiser
from .settings import PaintSettings

__all__ = ["InpaintOutput", "PreparedInputs", "SubjectInpaintPipeline"]

# What ``callback_on_step_end`` may ask for (``callback_on_step_end_tensor_inputs``).
CALLBACK_TENSOR_INPUTS = ("latents", "pred_x0")
StepEndCallback = Callable[[Any, int, int, dict[str, Any]], dict[str, Any] | None]


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
        enc = self.reference_encoder
        self.image_processor = InpaintImageProcessor(self.resolution, enc.image_size, enc.image_mean, enc.image_std)
        self._progress_bar_config: dict[str, Any] = {}
        self._offload_device: torch.device | None = None
        self._hooked: set[int] = set()  # the modules offloaded layer by layer
        self._int8: Int8Config | None = None  # enable_int8's layers, applied to a subject's UNet on loading

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
            if self._int8 is not None:
                quantize_int8(self.subject.unet, self._int8)
        move(self.subject.encoder, self.reference_encoder.device, self.reference_encoder.dtype).eval()
        if self._hooked and self.subject.unet is not None:
            self._offload_sequentially(self.subject.unet)
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
                cannot express run eager, with a warning: with a LoRA subject loaded or with an attention mask;
                DeepCache's calls and token merging run inside graphs of their own; see
                ``subject_inpainting.models.compiled``.
            cache_dir: where inductor keeps compiled artefacts between runs (default
                ``~/.cache/subject-inpainting/inductor``), so a second run skips most of the compilation.

        Raises:
            ValueError: an unknown backend, or one whose package is not installed or that cannot run this UNet.
        """
        if int8_layers(self.unet):
            raise ValueError("the UNet runs int8 layers, which do not compile; call disable_int8() first")
        compile_unet(self.unet, backend, cache_dir)
        return self

    def enable_int8(self, config: Int8Config | None = None) -> SubjectInpaintPipeline:
        """Run the UNet's convolutions and linear layers with 8-bit integer weights and activations on the CPU
        (``subject_inpainting.models.int8``), a fully fine-tuned subject's UNet too, now and when one is loaded.
        Faster on CPUs with 8-bit dot-product instructions; pictures differ slightly from float ones. ``Session``
        and the commands turn it on where it pays (``devices.int8_for``); a pipeline built directly has float
        layers until this is called.

        Args:
            config: which layers (``Int8Config``; default: every convolution and linear layer with at least 32
                channels).

        Raises:
            ValueError: the UNet is not on the CPU, is compiled, or this PyTorch lacks oneDNN's int8 kernels.
        """
        if "forward" in self.unet.__dict__:
            raise ValueError("the UNet is compiled; int8 layers run in an eager UNet only")
        self._int8 = config or Int8Config()
        for unet in self._unets():
            quantize_int8(unet, self._int8)
        return self

    def disable_int8(self) -> SubjectInpaintPipeline:
        """Back to float layers (undoes ``enable_int8``)."""
        self._int8 = None
        for unet in self._unets():
            dequantize_int8(unet)
        return self

    def _unets(self) -> list[torch.nn.Module]:
        """The UNet and, with a fully fine-tuned subject loaded, the subject's."""
        subject_unet = self.subject.unet if self.subject is not None else None
        return [self.unet] + ([subject_unet] if subject_unet is not None else [])

    @property
    def device(self) -> torch.device:
        """Where the UNet's weights are (the CPU under offloading; ``execution_device`` is where it runs)."""
        return self.unet.device

    @property
    def execution_device(self) -> torch.device:
        """Where the models run and the tensors of a call live: the offload device when offloading is on."""
        return self._offload_device or self.unet.device

    # -- diffusers' habits: progress bar, offloading -----------------------------------------------------
    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Keyword arguments of the sampling progress bar (``tqdm``), e.g. ``disable=True`` or ``leave=True``."""
        self._progress_bar_config = dict(kwargs)

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> SubjectInpaintPipeline:
        """Keep every model on the CPU and move each to ``device`` only while it runs: the reference encoder,
        then the VAE, then the UNet (with a fully fine-tuned subject, its UNet beside it) while sampling, then
        the VAE again. A GPU then holds the UNets and never the rest with them. Pictures are the same."""
        self._hooked.clear()
        self._offload_device = torch.device(device)
        return self.to("cpu")

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> SubjectInpaintPipeline:
        """Keep the weights of the UNet(s) and the VAE on the CPU and move each layer to ``device`` only for its
        own forward (accelerate's ``cpu_offload``), the reference encoder as ``enable_model_cpu_offload`` does:
        the least memory on ``device``, the slowest. Pictures are the same."""
        self.enable_model_cpu_offload(device)
        for module in (self.vae, self.unet):
            self._offload_sequentially(module)
        if self.subject is not None and self.subject.unet is not None:
            self._offload_sequentially(self.subject.unet)
        return self

    def _offload_sequentially(self, module: torch.nn.Module) -> None:
        from accelerate import cpu_offload

        cpu_offload(module, execution_device=self._offload_device)
        self._hooked.add(id(module))

    @contextlib.contextmanager
    def _running(self, *modules: torch.nn.Module | None) -> Iterator[None]:
        """With offloading, ``modules`` on the execution device for the block and back on the CPU after (those
        offloaded layer by layer move themselves)."""
        moving = [m for m in modules if m is not None and id(m) not in self._hooked]
        if self._offload_device is None:
            yield
            return
        for module in moving:
            move(module, self._offload_device)
        try:
            yield
        finally:
            for module in moving:
                move(module, torch.device("cpu"))

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

    def work_box(self, mask: np.ndarray, region: str, context: float) -> tuple[int, int, int, int]:
        """The part of the scene the model sees (``InpaintImageProcessor.work_box``)."""
        return self.image_processor.work_box(mask, region, context)

    # -- model steps -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_reference(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` → (conditional context ``(B, T, C)``, unconditional ``(B, 1, C)``)."""
        enc = self.reference_encoder
        with self._running(enc):
            cond = enc(pixel_values.to(self.execution_device, enc.dtype))
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
        with self._running(enc, self.reference_encoder):
            class_state, patches = enc.tower_states(pixel_values.to(self.execution_device, enc.dtype))
            class_ctx = self.reference_encoder.class_proj(
                enc.class_features(class_state).to(self.reference_encoder.dtype)
            )
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
        masked = (scene * keep).to(self.execution_device, vae.dtype)
        with self._running(vae):
            z = vae.encode(conv_layout(masked)).latent_dist.mean.contiguous() * vae.config.scaling_factor
        keep_latent = F.interpolate(
            keep.to(z.device, torch.float32), size=z.shape[-2:], mode="bilinear", align_corners=False
        )
        return z.float(), keep_latent

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``(B, 4, h, w)`` → images ``(B, 3, H, W)`` in [0, 1]."""
        vae = self.vae
        with self._running(vae):
            z = (latents / vae.config.scaling_factor).to(self.execution_device, vae.dtype)
            x = vae.decode(conv_layout(z)).sample.contiguous()
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
            compares the two).
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
        return noise.to(self.execution_device, torch.float32)

    # -- the call ----------------------------------------------------------------------------------

    # -- the call ----------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        scene: ImageInput | list[ImageInput],
        reference: ImageInput | torch.Tensor | list[ImageInput | torch.Tensor],
        mask: ImageInput | list[ImageInput | None] | None = None,
        box: Sequence[float] | str | list[Sequence[float] | str | None] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: str | None = None,
        eta: float | None = None,
        num_images: int | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        paste_back: bool | None = None,
        feather: float | None = None,
        region: str | None = None,
        context: float | None = None,
        reference_box: Sequence[float] | str | list[Sequence[float] | str | None] | None = None,
        model_weight: float | None = None,
        guidance_threshold: int | None = None,
        latents: torch.Tensor | None = None,
        progress: bool | None = None,
        keep_known: bool | None = None,
        preset: str | None = None,
        deep_cache: int | None = None,
        deep_cache_branch: int | None = None,
        guidance_interval: tuple[int, int] | None = None,
        token_merging: float | None = None,
        decode: str | None = None,
        settings: PaintSettings | None = None,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> InpaintOutput:
        """Paint the reference's subject into the masked region of the scene.

        How to paint is ``settings`` (a ``PaintSettings``; default ``PaintSettings()``, the ``fast`` preset);
        each keyword named after one of its options (``num_inference_steps``, ``guidance_scale``, ``preset``
        ... ``decode``) sets that option over ``settings`` — None leaves it — and means what the option means
        (``docs/options.md``). A list of scenes paints several at once: ``reference``, and ``mask``, ``box`` and
        ``reference_box`` when given, are then lists of the same length (an entry may be None), sampled in
        one UNet batch with the same settings; each scene's pictures are those of a call with that scene alone
        and its generator, to float rounding, unless the sampler is stochastic
        (``sampling.catalog.is_stochastic``: its step noise comes from the first generator).

        Args:
            scene: path or PIL image, any size and mode (RGB, RGBA, L, P, CMYK, 16-bit; EXIF orientation
                is honoured), or a numpy ``uint8`` array ``(H, W, 3)``, ``(H, W, 4)`` or ``(H, W)``; or the
                ``PreparedInputs`` of ``image_processor.prepare``, which holds the region and the reference
                (then ``reference`` is None, and so are ``mask``, ``box`` and ``reference_box``).
            reference: path, PIL image or numpy array (as the scene) of the subject, resized (bicubic) to
                the tower's input; or its normalised pixels, a finite float tensor ``(1, 3, S, S)``.
            mask: path or PIL image, white (>= 128) = region to edit, or a numpy ``(H, W)`` array (``bool``,
                or ``uint8`` >= 128 = edit); same aspect ratio as the scene.
            box: instead of a mask, ``(x0, y0, x1, y1)`` in scene pixels (or ``"x0,y0,x1,y1"``).
            generator: a ``torch.Generator`` for the initial noise, or a list: one per image (one scene) or
                one per scene (several scenes).
            reference_box: crop the reference picture to ``(x0, y0, x1, y1)`` first (not for a tensor).
            latents: initial noise ``(scenes · num_images, 4, h, w)``, finite, instead of drawing it.
            progress: False hides this call's progress bar (``set_progress_bar_config`` for every call).
            settings: how to paint; the keywords above set its options.
            callback_on_step_end: ``f(pipe, step, timestep, callback_kwargs) -> dict`` after every step, as in
                diffusers: ``callback_kwargs`` holds the tensors ``callback_on_step_end_tensor_inputs`` names
                (``"latents"``, ``"pred_x0"``); a ``"latents"`` it returns replaces the latent. Raising from it
                stops the call (e.g. a Cancel button).

        Returns:
            ``InpaintOutput`` with ``images`` (PIL, the scene's size; RGBA if the scene had alpha).
        """
        # 1. Settings: the given ones with the keywords over them, checked against this model, resolved.
        options = {k: v for k, v in locals().items() if k in PaintSettings.__dataclass_fields__ and v is not None}
        settings = self._settings(settings, options)
        requests = self.image_processor.requests(scene, reference, mask, box, reference_box)
        chosen = self.check_inputs(settings, generator, len(requests), latents)
        tensor_inputs = tuple(callback_on_step_end_tensor_inputs)
        if not set(tensor_inputs) <= set(CALLBACK_TENSOR_INPUTS):
            raise ValueError(
                f"callback_on_step_end_tensor_inputs must name some of {CALLBACK_TENSOR_INPUTS}, got {tensor_inputs}"
            )
        n = chosen.num_images
        # 2. The pictures: read and checked, then framed at the model's resolution.
        processor = self.image_processor
        scenes = [processor.frame(processor.prepare(*r), chosen.region, chosen.context) for r in requests]
        # 3. Conditioning: the masked scene's latent and the reference's contexts, each scene's for its n images.
        z_masked, keep_latent, contexts, known = self._conditioning(scenes, n, chosen.keep_known)
        # 4. The denoiser: guidance (modified with a subject), DeepCache, the known region.
        denoiser = build_denoiser(
            chosen, self.unet, self.scheduler, z_masked, keep_latent, contexts, self.subject, known
        )
        # 5. Sampling from the noise.
        if latents is None:
            latents = self.prepare_latents(n, generator, len(requests))
        step_generator = generator[0] if isinstance(generator, (list, tuple)) else generator
        unets = (self.unet, self.subject.unet if self.subject is not None else None)
        merging = TokenMergingConfig(chosen.token_merging)
        pattern = merging.pattern_generator()
        with self._running(*unets), merged_tokens(unets, merging, latents.shape[-2:], pattern):
            x = latents.to(self.execution_device, torch.float32)
            x = self._sample(denoiser, x, chosen, step_generator, progress, callback_on_step_end, tensor_inputs)
        # 6. Decoding and pasting back into each scene.
        images = []
        for framed, x_scene in zip(scenes, x.split(n), strict=True):
            if chosen.decode == "region" and chosen.paste_back:
                generated = self.decode_window(x_scene, framed.mask, framed.rgb)
            else:
                generated = imaging.tensor_to_rgb(self.decode(x_scene))
            images += [processor.paste_back(g, framed, chosen.paste_back, chosen.feather) for g in generated]
        return InpaintOutput(images=images, latents=x.cpu(), work_boxes=[f.box for f in scenes])

    @staticmethod
    def _settings(settings: PaintSettings | None, options: dict[str, Any]) -> PaintSettings:
        """``settings`` (default ``PaintSettings()``) with ``options`` over them, checked."""
        if settings is None:
            return PaintSettings(**options)
        if not isinstance(settings, PaintSettings):
            raise TypeError(f"settings must be a PaintSettings, got {type(settings).__name__}")
        return settings.replace(**options)

    def _conditioning(
        self, scenes: list[FramedScene], n: int, keep_known: bool
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
        """``(z_masked, keep_latent, contexts, known_scene)`` of the framed scenes, each scene's tensors
        repeated for its ``n`` images, the scenes one after another (``sampling.stack.build_denoiser``'s
        inputs)."""

        def rows(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([t.expand(n, *t.shape[1:]) for t in tensors])

        encoded = [self.encode_scene(imaging.rgb_to_tensor(f.rgb), imaging.keep_mask_tensor(f.mask)) for f in scenes]
        z_masked, keep_latent = rows([z for z, _ in encoded]), rows([k for _, k in encoded])
        encode = self.encode_reference if self.subject is None else self.encode_subject_reference
        refs = [encode(f.inputs.reference) for f in scenes]
        contexts = tuple(rows([r[i] for r in refs]) for i in range(len(refs[0])))
        known = None
        if keep_known:
            whole = []
            for f in scenes:
                scene_tensor = imaging.rgb_to_tensor(f.rgb)
                whole.append(self.encode_scene(scene_tensor, torch.ones_like(scene_tensor[:, :1]))[0])
            known = rows(whole)
        return z_masked, keep_latent, contexts, known

    def _sample(
        self,
        denoiser,
        x: torch.Tensor,
        chosen: PaintSettings,
        generator: torch.Generator | None,
        progress: bool | None,
        callback_on_step_end: StepEndCallback | None,
        tensor_inputs: tuple[str, ...],
    ) -> torch.Tensor:
        """Run the settings' sampler from ``x`` with a progress bar, calling ``callback_on_step_end`` after
        every step."""
        total = num_denoiser_steps(chosen.sampler, chosen.num_inference_steps, self.scheduler)
        config = {"desc": "sampling", "unit": "step", "leave": False, **self._progress_bar_config}
        if progress is False:
            config["disable"] = True
        with tqdm(total=total, **config) as bar:

            def on_step(info: dict[str, Any]) -> torch.Tensor | None:
                bar.update(1)
                if callback_on_step_end is None:
                    return None
                given = {"latents": info["x"], "pred_x0": info["pred_x0"]}
                returned = callback_on_step_end(self, info["i"], info["t"], {k: given[k] for k in tensor_inputs})
                return (returned or {}).get("latents")

            steps, eta = chosen.num_inference_steps, chosen.eta
            return sample(chosen.sampler, denoiser, x, self.scheduler, steps, eta, generator, on_step)


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")
