"""A DreamBooth-style subject protocol (``subject-inpaint eval subjects``): subjects × scenes × masks, with and
without subject fine-tuning, scored by CLIP-I and DINO against the subject's held-out photos.

Each subject is a folder of photos (the DreamBooth dataset's layout: ``SUBJECTS/<name>/*.jpg``) with, where
the subject is not the whole photo, a boxes file (``SUBJECTS/<name>/boxes.json`` or
``SUBJECTS/<name>_boxes.json``: ``{"00.jpg": [x0, y0, x1, y1], ...}``). The first ``train_photos`` photos
(by name) are the subject's: the reference is cut from the first, and fine-tuning sees all of them; the
others are held out and only scored against. Scenes are a folder of ``X.png`` + ``X_mask.png`` pairs (white
= region), or a COCOEE folder.

Settings: ``pretrained`` (the base model given the reference) and ``finetuned`` (the subject fine-tuned on
its photos, modified guidance at ``model_weight``). Scores (Ruiz et al. 2023, sec. 4.1): CLIP-I and DINO,
the mean cosine over all (result cut to the mask's box, held-out photo cut to its box) pairs, averaged over
the subjects; DINO as DreamBooth reports it (ViT-S/16 class token) and as the subject paper did (DINOv2,
mean of the patch tokens).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .. import batch, imaging
from ..data.annotations import PHOTO_SUFFIXES, photo_files, read_photo_folder
from ..imaging import InputError
from ..session import PaintRequest, Session
from ..utils import write_text_atomic
from ..utils.files import mark_folder
from . import features as feats
from .cocoee import read_cocoee
from .metrics import mean_pairwise_cosine
from .report import Generation, write_report


@dataclass
class Subject:
    """A subject's photos (sorted by name) and where it is in each (``None``: the whole photo)."""

    name: str
    photos: list[Path]
    boxes: dict[str, list[int]] | None = None

    def box(self, photo: Path) -> tuple[int, int, int, int] | None:
        return tuple(self.boxes[photo.name]) if self.boxes else None

    def crop(self, photo: Path) -> Image.Image:
        image = imaging.open_image(photo, "subject photo").convert("RGB")
        box = self.box(photo)
        return image.crop(box) if box else image


@dataclass(frozen=True)
class Scene:
    name: str
    image: Path
    mask: Path


def read_subjects(folder: str | os.PathLike, train_photos: int) -> list[Subject]:
    """The subjects under ``folder`` (each sub-folder with photos), each with more than ``train_photos``
    photos so that some are held out."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--subjects {root}: no such folder")
    subjects = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = photo_files(sub)
        if not photos:
            continue
        if len(photos) <= train_photos:
            raise InputError(
                f"{sub}: {len(photos)} photos; the protocol needs more than --train-photos {train_photos} "
                "(the rest are held out for scoring)"
            )
        boxes = None
        for candidate in (sub / "boxes.json", root / f"{sub.name}_boxes.json"):
            if candidate.is_file():  # read and checked as `finetune --boxes` reads them
                boxes = {r.image.name: list(r.boxes[0]) for r in read_photo_folder(sub, candidate)}
                break
        subjects.append(Subject(sub.name, photos, boxes))
    if not subjects:
        raise InputError(f"--subjects {root}: no sub-folders with photos (expected SUBJECTS/<name>/*.jpg)")
    return subjects


def read_scenes(folder: str | os.PathLike, limit: int | None = None) -> list[Scene]:
    """Scene/mask pairs: ``X.<ext>`` with ``X_mask.png`` beside it, or a COCOEE folder's scenes and masks."""
    root = Path(folder)
    if (root / "GT_3500").is_dir():
        return [Scene(c.id, c.scene, c.mask) for c in read_cocoee(root, limit)]
    if not root.is_dir():
        raise InputError(f"--scenes {root}: no such folder")
    scenes = []
    for path in sorted(root.iterdir()):
        if path.suffix.lower() in PHOTO_SUFFIXES and not path.stem.endswith("_mask"):
            mask = path.with_name(f"{path.stem}_mask.png")
            if mask.is_file():
                scenes.append(Scene(path.stem, path, mask))
    if not scenes:
        raise InputError(f"--scenes {root}: no scene with a mask (expected X.png and X_mask.png)")
    return scenes[:limit] if limit else scenes


@dataclass
class SubjectsSettings:
    """What identifies a subject-protocol run (written into the report)."""

    subjects: str
    scenes: str
    generation: Generation
    train_photos: int = 3
    finetune: bool = True
    finetune_steps: int | None = None
    model_weight: float = 0.8
    scene_limit: int | None = None


def _finetune(subject: Subject, settings: SubjectsSettings, out: Path, device: str | None) -> Path:
    """Fine-tune ``subject`` on its first photos into ``OUT/subjects/<name>`` (kept; skipped when done)."""
    from ..training.config import TrainConfig
    from ..training.finetune import DEFAULT_EPOCHS, FinetuneSpec, finetune

    folder = out / "subjects" / subject.name
    if (folder / "subject_index.json").is_file():
        return folder
    photos = out / "photos" / subject.name
    photos.mkdir(parents=True, exist_ok=True)
    train = subject.photos[: settings.train_photos]
    boxes = {}
    for p in train:
        shutil.copy2(p, photos / p.name)
        if subject.boxes:
            boxes[p.name] = subject.boxes[p.name]
        else:
            w, h = imaging.open_image(p, "subject photo").size
            boxes[p.name] = [0, 0, w, h]
    write_text_atomic(photos.parent / f"{subject.name}_boxes.json", json.dumps(boxes))
    steps = settings.finetune_steps or None
    spec = FinetuneSpec(
        photos=photos,
        base=settings.generation.model,
        out=folder,
        boxes=photos.parent / f"{subject.name}_boxes.json",
        epochs=None if steps else DEFAULT_EPOCHS,
        config=TrainConfig.for_mode("subject", seed=settings.generation.seed, max_steps=steps),
        device=device or "auto",
        progress=False,
    )
    finetune(spec)
    return folder


def result_path(out: Path, setting: str, subject: Subject, scene: Scene) -> Path:
    return out / setting / subject.name / f"{scene.name}.png"


def run_subjects(
    settings: SubjectsSettings,
    out: str | os.PathLike,
    clip_model: str = feats.DEFAULT_CLIP,
    dino_model: str = feats.DEFAULT_DINO,
    dinov2_model: str | None = feats.DEFAULT_DINOV2,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune (if asked), paint every subject into every scene under each setting (this process's share
    under ``accelerate launch``; finished pictures are skipped), then score and report on the main process.
    Returns the report (also ``OUT/report.json`` and ``OUT/report.html``)."""
    out = Path(out)
    subjects = read_subjects(settings.subjects, settings.train_photos)
    scenes = read_scenes(settings.scenes, settings.scene_limit)
    out.mkdir(parents=True, exist_ok=True)
    mark_folder(out, "evaluation")
    state = batch.process_state()
    started = time.perf_counter()
    # the main process scores: load its models first, so that a missing one stops the run before the work
    extractors = subject_extractors(clip_model, dino_model, dinov2_model, device) if state.is_main else {}
    folders = {}
    if settings.finetune:  # every process takes part in each fine-tuning (several GPUs share one subject)
        for subject in tqdm(subjects, desc="fine-tuning subjects", disable=not progress or not state.is_main):
            folders[subject.name] = _finetune(subject, settings, out, device if state.count == 1 else None)
        state.wait()
    gen = settings.generation
    session = Session(gen.model, device=device or "auto", dtype="float32", int8="off")
    setting_names = ["pretrained"] + (["finetuned"] if settings.finetune else [])
    references = {subj.name: subj.crop(subj.photos[0]) for subj in subjects}
    paint_settings = gen.settings(model_weight=settings.model_weight)
    work = []
    for k, (s, subj, sc) in enumerate((s, subj, sc) for s in setting_names for subj in subjects for sc in scenes):
        request = PaintRequest(
            sc.image,
            references[subj.name],
            sc.mask,
            subject=folders[subj.name] if s == "finetuned" else None,
            seed=gen.seed + k,
            settings=paint_settings,
            id=f"{s}-{subj.name}-{sc.name}",
        )
        work.append(batch.Work(request.id, (result_path(out, s, subj, sc),), request, subj.name))
    batch.run_jobs(work, lambda job: session.paint_one(job.payload), out, state=state, failures=(), progress=progress)
    if not state.is_main:
        return {}
    return _score_and_report(settings, out, subjects, scenes, setting_names, extractors, started)


def subject_extractors(clip_model: str, dino_model: str, dinov2_model: str | None, device) -> dict[str, Any]:
    """CLIP-I, DINO and (unless ``dinov2_model`` is None) DINOv2 extractors, by score name."""
    extractors = {
        "clip_i": feats.ClipFeatures(clip_model, device or "cpu"),
        "dino": feats.VitFeatures(dino_model, "cls", device or "cpu"),
    }
    if dinov2_model:
        extractors["dinov2"] = feats.VitFeatures(dinov2_model, "mean", device or "cpu")
    return extractors


def _score_and_report(settings, out, subjects, scenes, setting_names, extractors, started):
    held_out = {s.name: [s.crop(p) for p in s.photos[settings.train_photos :]] for s in subjects}
    real = {name: {s: e.embed(crops) for s, crops in held_out.items()} for name, e in extractors.items()}
    per_subject: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    masks = {scene.name: imaging.mask_to_bool(imaging.open_image(scene.mask, "mask")) for scene in scenes}
    for setting in setting_names:
        per_subject[setting] = {}
        for subject in subjects:
            crops = []
            for scene in scenes:
                result = imaging.open_image(result_path(out, setting, subject, scene), "result").convert("RGB")
                mask = imaging.resize_mask(masks[scene.name], result.size)
                crops.append(result.crop(imaging.mask_bbox(mask)))
            scores = {
                name: mean_pairwise_cosine(e.embed(crops), real[name][subject.name]) for name, e in extractors.items()
            }
            per_subject[setting][subject.name] = scores
            rows.append(
                {
                    "id": f"{setting} / {subject.name}",
                    "images": {
                        "reference": subject.photos[0],
                        "held-out photo": subject.photos[settings.train_photos],
                        **{f"in {sc.name}": result_path(out, setting, subject, sc) for sc in scenes[:4]},
                    },
                    "scores": scores,
                }
            )
    metrics = {}
    for setting in setting_names:
        for name, e in extractors.items():
            values = [per_subject[setting][s.name][name] for s in subjects]
            metrics[f"{setting}/{name}"] = {
                "value": float(np.mean(values)),
                "variant": f"{name}: {e.variant}, mean over {len(subjects)} subjects",
            }
    report = {
        "benchmark": "subjects",
        "settings": asdict(settings),
        "subjects": [s.name for s in subjects],
        "scenes": [s.name for s in scenes],
        "seconds": round(time.perf_counter() - started, 1),
        "metrics": metrics,
        "per_subject": per_subject,
    }
    write_report(out, report, rows, title="Subject protocol (DreamBooth-style)")
    return report
