"""Feature extractors of the evaluation (modules with a device; the metrics themselves are pure functions in
``metrics``), each with the preprocessing of the evaluation it serves, and a ``variant`` naming both.

* ``InceptionFeatures`` — FID's Inception-v3 pool3 features (2048), with the weights pytorch-fid uses (the
  TensorFlow FID graph ported to PyTorch) through pytorch-fid's own network definition.
* ``ClipFeatures`` — CLIP image embeddings (ViT-B/32 by default): region CLIP score, CLIP-I, and the features
  the original's QS code actually scores (its ``InceptionV3.forward`` returns ``clip_model.encode_image``).
* ``VitFeatures`` — DINO ViT-S/16 class token (DreamBooth's DINO score) or DINOv2 mean-pooled patch tokens
  (the subject paper's variant).

Hub models load from the local cache when ``HF_HUB_OFFLINE`` is set, and any of them from a local folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..utils import hub_offline

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_DINO = "facebook/dino-vits16"
DEFAULT_DINOV2 = "facebook/dinov2-base"


class ExtractorUnavailable(OSError):
    """A feature extractor's weights cannot be had (offline and not cached, or not installed)."""


# ---------------------------------------------------------------------------------------------------
# Preprocessing (PIL in, tensors out), as the original evaluations do it
# ---------------------------------------------------------------------------------------------------
def to_tensor(image: Image.Image) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1] from an image (converted to RGB), as torchvision's ``ToTensor``."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def normalize(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=pixels.dtype)[:, None, None]
    s = torch.tensor(std, dtype=pixels.dtype)[:, None, None]
    return (pixels - m) / s


def resize_shorter_side(image: Image.Image, size: int, resample: int) -> Image.Image:
    """Shorter side to ``size``, the longer one scaled and truncated (torchvision's ``Resize(int)``)."""
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return image.resize(new, resample)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """A centred ``size × size`` crop (torchvision's ``CenterCrop`` rounding)."""
    w, h = image.size
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def clip_preprocess(image: Image.Image, size: int = 224) -> torch.Tensor:
    """OpenAI CLIP's ``preprocess``: bicubic resize of the shorter side, centre crop, CLIP normalisation."""
    image = center_crop(resize_shorter_side(image.convert("RGB"), size, Image.BICUBIC), size)
    return normalize(to_tensor(image), CLIP_MEAN, CLIP_STD)


def imagenet_preprocess(image: Image.Image, size: int = 224, resize: int = 256) -> torch.Tensor:
    """Bicubic resize of the shorter side to ``resize``, centre crop ``size``, ImageNet normalisation (the usual
    DINO evaluation transform)."""
    image = center_crop(resize_shorter_side(image.convert("RGB"), resize, Image.BICUBIC), size)
    return normalize(to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


# ---------------------------------------------------------------------------------------------------
# Extractors
# ---------------------------------------------------------------------------------------------------
def _load_hub(cls, model: str | os.PathLike, what: str):
    offline = hub_offline()
    try:
        return cls.from_pretrained(str(model), local_files_only=offline or Path(model).is_dir()).eval()
    except (OSError, ValueError) as e:
        reason = (
            "the hub cannot be reached (HF_HUB_OFFLINE is set) and it is not in the local cache"
            if offline
            else str(e).splitlines()[0]
        )
        raise ExtractorUnavailable(f"{what} {model} could not be loaded: {reason}") from None


def _open(image: Image.Image | str | os.PathLike) -> Image.Image:
    from ..imaging import open_image

    return image if isinstance(image, Image.Image) else open_image(image, "image")


class _Extractor(nn.Module):
    variant: str = ""
    max_batch = 1 << 30  # images per forward pass at most (1: inputs of several sizes that cannot be stacked)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def embed(
        self, images: Sequence[Image.Image | str | os.PathLike], batch_size: int = 32, progress: bool = False
    ) -> torch.Tensor:
        """Features ``(N, D)`` (float32, CPU) of PIL images or image files (opened a batch at a time, so that
        tens of thousands of reference images fit in memory), preprocessed as the extractor's evaluation does."""
        out = []
        batch_size = min(batch_size, self.max_batch)
        for start in tqdm(range(0, len(images), batch_size), desc=self.variant, disable=not progress, unit="batch"):
            pixels = torch.stack([self.preprocess(_open(im)) for im in images[start : start + batch_size]])
            out.append(self(pixels.to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, 0)


class ClipFeatures(_Extractor):
    """CLIP image embeddings ``(B, projection_dim)`` (``encode_image`` of OpenAI's CLIP: projected, not
    normalised).

    Args:
        model: hub id or folder of a ``CLIPVisionModelWithProjection`` (default ViT-B/32).
        device: where it runs.
    """

    def __init__(self, model: str | os.PathLike = DEFAULT_CLIP, device: str | torch.device = "cpu"):
        super().__init__()
        from transformers import CLIPVisionModelWithProjection

        self.net = _load_hub(CLIPVisionModelWithProjection, model, "the CLIP image encoder").to(device)
        self.image_size = int(self.net.config.image_size)
        self.variant = f"clip:{Path(str(model)).name if Path(str(model)).is_dir() else model}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return clip_preprocess(image, self.image_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels ``(B, 3, S, S)`` CLIP-normalised → ``(B, D)``."""
        return self.net(pixel_values=pixels).image_embeds


class VitFeatures(_Extractor):
    """DINO-family ViT features: the class token (``pooling="cls"``, DreamBooth's DINO ViT-S/16) or the mean
    of the patch tokens (``"mean"``, the subject paper's DINOv2), both after the final LayerNorm.

    Args:
        model: hub id or folder of a ViT / DINOv2 model (``transformers.AutoModel``).
        pooling: ``"cls"`` or ``"mean"``. device: where it runs.
        image_size: the crop fed to the model (224, resized from 256 as in DINO's evaluation).
    """

    def __init__(
        self, model: str | os.PathLike = DEFAULT_DINO, pooling: str = "cls", device="cpu", image_size: int = 224
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling {pooling!r}: expected 'cls' or 'mean'")
        from transformers import AutoModel

        self.net = _load_hub(AutoModel, model, "the DINO image encoder").to(device)
        self.pooling = pooling
        self.image_size = image_size
        self.registers = int(getattr(self.net.config, "num_register_tokens", 0) or 0)
        self.variant = f"{pooling}:{Path(str(model)).name if Path(str(model)).is_dir() else model}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return imagenet_preprocess(image, self.image_size, round(self.image_size * 256 / 224))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels ``(B, 3, 224, 224)`` ImageNet-normalised → ``(B, D)``."""
        tokens = self.net(pixel_values=pixels).last_hidden_state  # (B, 1 + registers + patches, D)
        return tokens[:, 0] if self.pooling == "cls" else tokens[:, 1 + self.registers :].mean(dim=1)


def fid_inception_state(weights: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The FID Inception weights: from ``weights`` (a file), else from torch's hub cache, else downloaded
    there (online only). Read with ``weights_only=True``: no objects are unpickled."""
    name = FID_WEIGHTS_URL.rsplit("/", 1)[1]
    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        if weights:
            raise FileNotFoundError(f"{path}: no such Inception weights file")
        if hub_offline():
            raise ExtractorUnavailable(
                f"the FID Inception weights are not at {path} and downloads are off; fetch {FID_WEIGHTS_URL} "
                "there (or pass --inception-weights FILE)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(path), progress=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class InceptionFeatures(_Extractor):
    """FID Inception-v3 pool3 features ``(B, 2048)``: pytorch-fid's network with the TensorFlow FID weights;
    inputs are resized to 299 × 299 (bilinear) and scaled to [-1, 1] inside, as pytorch-fid does.

    Args:
        weights: a local copy of ``pt_inception-2015-12-05-6726825d.pth`` (default: torch's hub cache, downloaded
            there when online). device: where it runs.
    """

    variant = "inception-v3-fid:pool3"
    max_batch = 1  # images of several sizes cannot share a batch; pytorch-fid resizes each to 299 inside

    def __init__(self, weights: str | os.PathLike | None = None, device="cpu"):
        super().__init__()
        try:
            from pytorch_fid import inception as fid_inception
        except ImportError as e:
            raise ExtractorUnavailable(
                "FID needs pytorch-fid (and torchvision): pip install 'subject-inpainting[eval]'"
            ) from e
        state = fid_inception_state(weights)
        # pytorch-fid builds the network and then fetches the weights by URL (unpickling them in full); give it
        # the tensors read safely above instead.
        with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state):
            self.net = fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval().to(device)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return to_tensor(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels ``(B, 3, H, W)`` in [0, 1] → ``(B, 2048)``."""
        return self.net(pixels)[0][:, :, 0, 0]


def region_crop_for_clip(result: Image.Image, mask: np.ndarray, size: int = 224) -> torch.Tensor:
    """The original region CLIP score's view of a result: the result as a CLIP-normalised tensor, cut to the
    mask's box and resized to ``size × size`` (bilinear, no antialiasing: torchvision 0.12's tensor ``Resize``).

    The box is the original's: rows and columns from the first to the last white pixel in raster order,
    the last row and column excluded (``tensor[:, y0:y1, x0:x1]``)."""
    from ..imaging import InputError

    flat = np.flatnonzero(np.asarray(mask).ravel())
    if flat.size == 0:
        raise InputError("the mask is empty: no region to score")
    (y0, y1), (x0, x1) = np.unravel_index([flat.min(), flat.max()], np.asarray(mask).shape)
    pixels = normalize(to_tensor(result), CLIP_MEAN, CLIP_STD)[:, y0:y1, x0:x1]
    if pixels.shape[1] == 0 or pixels.shape[2] == 0:
        raise InputError(f"the mask's box is empty after the original's cut ({x0},{y0})–({x1},{y1})")
    return F.interpolate(pixels[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]


def reference_for_clip(reference: Image.Image, size: int = 224) -> torch.Tensor:
    """The original region CLIP score's view of a reference: resized to ``size × size`` by PIL's default
    filter (bicubic) before the RGB conversion, then CLIP-normalised."""
    return normalize(to_tensor(reference.resize((size, size)).convert("RGB")), CLIP_MEAN, CLIP_STD)
