"""Finding the subject in its photos when no boxes or masks are given: a text-prompted detector (OWLv2)
proposes a box, a promptable segmenter (SAM) turns it into a mask, whose bounding box is kept.

Both models come from the hub through ``transformers`` (downloaded once, then cached). Offline, and not in
the cache, they cannot be had: ``find_subject`` says so in one line and asks for boxes or masks instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..imaging import InputError, mask_bbox, open_image, to_rgb
from ..utils import hub_offline
from .annotations import PHOTO_SUFFIXES, Record, photo_files

DETECTOR_ID = "google/owlv2-base-patch16-ensemble"
SEGMENTER_ID = "facebook/sam-vit-base"


class DetectorUnavailable(InputError):
    """The detector or segmenter cannot be loaded (offline and not cached, or no such model)."""


def best_box(boxes: torch.Tensor, scores: torch.Tensor, size: tuple[int, int], threshold: float):
    """The highest-scoring box ``(x0, y0, x1, y1)`` clipped to the image ``size = (W, H)``, or None when no
    score reaches ``threshold`` or the clipped box is empty.

    Args:
        boxes: ``(N, 4)`` in pixels; scores: ``(N,)``.
    """
    if boxes.numel() == 0:
        return None
    i = int(torch.argmax(scores))
    if float(scores[i]) < threshold:
        return None
    w, h = size
    x0, y0, x1, y1 = boxes[i].tolist()
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _load(kind: str, model_id: str):
    from transformers import AutoProcessor, Owlv2ForObjectDetection, SamModel

    offline = hub_offline()
    cls = Owlv2ForObjectDetection if kind == "detector" else SamModel
    try:
        processor = AutoProcessor.from_pretrained(model_id, local_files_only=offline)
        model = cls.from_pretrained(model_id, local_files_only=offline).eval()
    except (OSError, ValueError) as e:
        reason = (
            "the hub cannot be reached (HF_HUB_OFFLINE is set) and it is not in the local cache"
            if offline
            else str(e).splitlines()[0]
        )
        raise DetectorUnavailable(
            f"finding the subject needs the {kind} {model_id}, which could not be loaded: {reason}; "
            "give --boxes FILE or --masks DIR instead"
        ) from None
    return processor, model


@torch.no_grad()
def find_subject(
    folder: str | os.PathLike,
    prompt: str,
    detector: str = DETECTOR_ID,
    segmenter: str | None = SEGMENTER_ID,
    threshold: float = 0.1,
) -> list[Record]:
    """Locate ``prompt`` (e.g. ``"teddy bear"``) in every photo of ``folder``.

    Returns one ``Record`` per photo with the box of the segmented subject (the detector's box when
    ``segmenter`` is None).

    Raises:
        DetectorUnavailable: the models cannot be loaded (offline ...).
        InputError: no photos, an unreadable photo, or a photo where nothing matches the prompt.
    """
    if not prompt or not prompt.strip():
        raise InputError("--prompt is empty: say what the subject is, e.g. --prompt 'teddy bear'")
    folder = Path(folder)
    photos = photo_files(folder) if folder.is_dir() else []
    if not photos:
        raise InputError(f"no photos in {folder} (looked for {', '.join(PHOTO_SUFFIXES)})")
    det_processor, det_model = _load("detector", detector)
    seg = _load("segmenter", segmenter) if segmenter else None
    records = []
    for photo in photos:
        image = open_image(photo, "subject photo").convert("RGB")
        w, h = image.size
        inputs = det_processor(text=[[prompt]], images=image, return_tensors="pt")
        outputs = det_model(**inputs)
        side = max(w, h)  # OWLv2 pads the photo to a square before scaling it
        found = det_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(side, side)])[0]
        box = best_box(found["boxes"], found["scores"], (w, h), threshold)
        if box is None:
            raise InputError(
                f"subject photo {photo}: nothing looks like {prompt!r} (best score "
                f"{float(found['scores'].max()) if found['scores'].numel() else 0:.2f}); give --boxes or --masks"
            )
        if seg is not None:
            box = _segment(seg, image, box) or box
        records.append(Record(photo, [box], width=w, height=h))
    return records


def _segment(seg, image, box: Sequence[int]):
    """SAM's best mask for a box prompt → the mask's bounding box (None if the mask is empty)."""
    processor, model = seg
    inputs = processor(image, input_boxes=[[list(box)]], return_tensors="pt")
    out = model(**inputs, multimask_output=False)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    mask = masks[0][0, 0].numpy().astype(bool)
    rgb, _ = to_rgb(image)
    if mask.shape != rgb.shape[:2] or not mask.any():
        return None
    return mask_bbox(mask)
