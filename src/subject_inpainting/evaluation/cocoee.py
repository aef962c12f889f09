"""COCOEE, Paint-by-Example's exemplar-editing benchmark (``subject-inpaint eval cocoee``).

The folder as its authors publish it (``test_bench``): ``GT_3500/<id>_GT.png`` (the scenes, 512 × 512),
``Mask_bbox_3500/<id>_mask.png`` (white box = region), ``Ref_3500/<id>_ref.png`` (the exemplars) and
``id_list.npy`` (the 3,500 ids, zero-padded to 12 digits in the file names).

The protocol follows the original scripts:

* ``inference_test_bench.py`` paints every case and saves the model's whole decoded image (no paste-back)
  as ``results/<id>.png``; here each case gets its own generator, seeded ``seed + position in the id list``,
  so a run split over processes, or resumed, paints exactly the same pictures;
* FID (pytorch-fid's Inception and weights) of the results against COCO test2017 with the shorter side
  resized to 512 and centre-cropped to 512 (``create_square_gt_for_fid.py``; ``prepare_fid_reference``);
* QS (``eval_tool/gmm``): the mixture's log-likelihood of each result's CLIP ViT-B/32 embedding (that file's
  ``InceptionV3`` builds an Inception network but returns ``clip_model.encode_image``), scaled as
  ``gmm.quality_score``; a mixture of 2048-d features is scored on Inception pool3 features instead
  (GIQA's own recipe), and the result names which;
* region CLIP score (``eval_tool/clip_score``): 100 × cosine of the CLIP embeddings of the result cut to
  the mask's box and of the reference.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import batch, imaging
from ..imaging import IMAGE_SUFFIXES, InputError
from ..session import PaintRequest, Session
from ..settings import PaintSettings
from ..utils import atomic_file
from ..utils.files import mark_folder
from . import features as feats
from . import gmm as gmm_lib
from .metrics import feature_statistics, frechet_distance, paired_cosine
from .report import Generation, write_report


@dataclass(frozen=True)
class Case:
    """One COCOEE triple."""

    id: str
    scene: Path
    mask: Path
    reference: Path


def read_cocoee(folder: str | os.PathLike, limit: int | None = None) -> list[Case]:
    """The cases of a COCOEE folder, in ``id_list.npy`` order (or sorted ids when there is no list).

    Raises ``InputError`` naming what is missing."""
    root = Path(folder)
    parts = {
        "scene": ("GT_3500", "_GT.png"),
        "mask": ("Mask_bbox_3500", "_mask.png"),
        "reference": ("Ref_3500", "_ref.png"),
    }
    missing = [sub for sub, _ in parts.values() if not (root / sub).is_dir()]
    if missing:
        raise InputError(
            f"{root}: not a COCOEE folder (lacks {', '.join(missing)}/); give the test_bench folder as published"
        )
    id_list = root / "id_list.npy"
    if id_list.is_file():
        try:
            ids = [str(int(i)).zfill(12) for i in np.load(id_list, allow_pickle=False).ravel()]
        except ValueError as e:
            raise InputError(f"{id_list}: not a list of integer ids ({e})") from None
    else:
        ids = sorted(p.name[: -len("_GT.png")] for p in (root / "GT_3500").glob("*_GT.png"))
    if not ids:
        raise InputError(f"{root}: no cases (GT_3500/ is empty)")
    ids = ids[:limit] if limit else ids
    cases = [Case(i, *(root / sub / f"{i}{end}" for sub, end in parts.values())) for i in ids]
    absent = [str(p) for c in cases for p in (c.scene, c.mask, c.reference) if not p.is_file()]
    if absent:
        raise InputError(f"{root}: {len(absent)} files of the listed cases are missing, e.g. {absent[0]}")
    return cases


def prepare_fid_reference(
    coco_images: str | os.PathLike, out: str | os.PathLike, size: int = 512, progress: bool = True
) -> int:
    """Build the FID reference set from COCO test2017: each image's shorter side resized to ``size``
    (bilinear), centre-cropped to ``size × size``, saved as ``OUT/<stem>.png`` — as the original's
    ``create_square_gt_for_fid.py`` (torchvision ``Resize(512)`` + ``CenterCrop(512)``). Finished images are
    skipped, so an interrupted run resumes. Returns the number of images in ``out``."""
    src, dst = Path(coco_images), Path(out)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder of COCO images")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{src}: holds no images")
    dst.mkdir(parents=True, exist_ok=True)
    mark_folder(dst, "fid-reference")
    for path in tqdm(files, desc="preparing the FID reference set", unit="image", disable=not progress):
        target = dst / f"{path.stem}.png"
        if target.exists():
            continue
        image = imaging.open_image(path, "COCO image")
        image = feats.center_crop(feats.resize_shorter_side(image, size, Image.BILINEAR), size)
        imaging.save_image_atomic(image, target)
    return len(list(dst.glob("*.png")))


def reference_statistics(
    reference: Path, inception: feats.InceptionFeatures, cache: Path, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Mean, covariance and count (None when a statistics file does not say) of the Inception features of
    the FID reference set: a folder of images (its statistics are kept in ``cache`` and reused while the
    folder's file list is the same) or an ``.npz`` of ``mu`` and ``sigma`` (pytorch-fid's statistics files;
    read without pickle)."""
    if reference.is_file() and reference.suffix == ".npz":
        with np.load(reference, allow_pickle=False) as f:
            return f["mu"], f["sigma"], int(f["count"]) if "count" in f.files else None
    files = sorted(p for p in reference.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if reference.is_dir() else []
    if len(files) < 2:
        raise InputError(f"--fid-reference {reference}: needs at least 2 images or an .npz of mu and sigma")
    listing = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}" for p in files).encode()).hexdigest()
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            if str(f["listing"]) == listing and str(f["variant"]) == inception.variant:
                return f["mu"], f["sigma"], int(f["count"])
    mu, sigma = feature_statistics(inception.embed(files, progress=progress))
    with atomic_file(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma, count=len(files), listing=listing, variant=inception.variant)
    return mu, sigma, len(files)


def result_path(out: Path, case: Case) -> Path:
    return Path(out) / "results" / f"{case.id}.png"


def generate(
    cases: list[Case],
    session: Session,
    out: str | os.PathLike,
    settings: PaintSettings,
    seed: int = 0,
    state: batch.ProcessState | None = None,
    progress: bool = True,
) -> int:
    """Paint this process's share of ``cases`` into ``OUT/results`` (case *k* with seed ``seed + k``, with
    ``settings``); cases whose result exists are skipped, any error ends the run. Returns the number painted
    now by every process."""
    jobs = [
        batch.Work(
            c.id,
            (result_path(Path(out), c),),
            PaintRequest(c.scene, c.reference, c.mask, seed=seed + k, settings=settings, id=c.id),
        )
        for k, c in enumerate(cases)
    ]
    tally = batch.run_jobs(
        jobs,
        lambda work: session.paint_one(work.payload),
        out,
        state=state,
        failures=(),
        progress=progress,
        desc="painting COCOEE",
    )
    return tally.painted


def results_or_error(cases: list[Case], out: Path) -> list[Path]:
    """The result of every case, or an ``InputError`` saying how many are missing."""
    paths = [result_path(out, c) for c in cases]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise InputError(f"{len(absent)} of {len(paths)} results are missing (e.g. {absent[0]}); generate them first")
    return paths


def scorers(
    fid_reference: str | os.PathLike | None,
    mixture: str | os.PathLike | None,
    clip_model: str,
    inception_weights: str | None,
    device: str | torch.device,
) -> dict[str, Any]:
    """Load what scoring needs (CLIP; the mixture; Inception when FID or a 2048-d mixture asks for it), so that
    a missing model or file stops a run before hours of painting rather than after."""
    if fid_reference is not None and not Path(fid_reference).exists():
        raise InputError(f"--fid-reference {fid_reference}: no such folder or file")
    loaded: dict[str, Any] = {"clip": feats.ClipFeatures(clip_model, device)}
    loaded["mixture"] = gmm_lib.load_mixture(mixture) if mixture is not None else None
    if fid_reference is not None or (loaded["mixture"] is not None and loaded["mixture"].dim == 2048):
        loaded["inception"] = feats.InceptionFeatures(inception_weights, device)
    return loaded


def score(
    cases: list[Case],
    out: str | os.PathLike,
    fid_reference: str | os.PathLike | None = None,
    mixture: str | os.PathLike | None = None,
    clip_model: str = feats.DEFAULT_CLIP,
    inception_weights: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    loaded: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics of the painted results: ``{metric: {"value", "variant", ...}}``. FID needs
    ``fid_reference`` (``prepare_fid_reference``), QS a mixture file; region CLIP score is always computed."""
    out = Path(out)
    paths = results_or_error(cases, out)
    metrics: dict[str, Any] = {}
    loaded = loaded or scorers(fid_reference, mixture, clip_model, inception_weights, device)
    clip = loaded["clip"]
    crop_features, ref_features, crops, refs = [], [], [], []
    pairs = list(zip(cases, paths, strict=True))
    for k, (case, path) in enumerate(tqdm(pairs, desc="region CLIP", disable=not progress)):
        # The original finds the box from the pixels equal to 255 (cv2.IMREAD_GRAYSCALE), not from a threshold.
        mask = np.asarray(imaging.open_image(case.mask, "mask").convert("L")) == 255
        result = imaging.open_image(path, "result")
        if result.size != (mask.shape[1], mask.shape[0]):
            mask = imaging.resize_mask(mask, result.size)
        crops.append(feats.region_crop_for_clip(result, mask, clip.image_size))
        refs.append(feats.reference_for_clip(imaging.open_image(case.reference, "reference"), clip.image_size))
        if len(crops) == 32 or k == len(pairs) - 1:  # embed a batch at a time: 3,500 crops would not fit
            with torch.no_grad():
                crop_features.append(clip(torch.stack(crops).to(clip.device)).float().cpu())
                ref_features.append(clip(torch.stack(refs).to(clip.device)).float().cpu())
            crops, refs = [], []
    per_case = 100.0 * paired_cosine(torch.cat(crop_features), torch.cat(ref_features))
    metrics["clip_score"] = {
        "value": float(per_case.mean()),
        "variant": f"region CLIP score, {clip.variant}: 100 × cosine(result cut to the mask's box, reference)",
    }
    if mixture is not None:
        gm = loaded["mixture"]
        extractor = loaded["inception"] if gm.dim == 2048 else clip
        f = extractor.embed(paths)
        if f.shape[1] != gm.dim:
            raise InputError(f"{mixture}: a mixture of {gm.dim}-d features; {extractor.variant} gives {f.shape[1]}")
        metrics["qs"] = {
            "value": gmm_lib.quality_score(gm.score_samples(f.numpy())),
            "variant": f"GMM quality score on {extractor.variant} features ({Path(mixture).name})",
        }
    if fid_reference is not None:
        inception = loaded["inception"]
        mu, sigma, count = reference_statistics(
            Path(fid_reference), inception, out / "fid-reference-stats.npz", progress
        )
        fake_mu, fake_sigma = feature_statistics(inception.embed(paths, progress=progress))
        metrics["fid"] = {
            "value": frechet_distance(fake_mu, fake_sigma, mu, sigma),
            "variant": f"FID, {inception.variant}, {len(paths)} results vs "
            + (f"{count} reference images" if count is not None else f"the statistics in {fid_reference}"),
        }
    metrics["per_case_clip_score"] = {c.id: float(s) for c, s in zip(cases, per_case, strict=True)}
    return metrics


@dataclass
class CocoeeSettings:
    """What identifies a COCOEE run (written into the report)."""

    data: str
    generation: Generation
    paste_back: bool = False
    limit: int | None = None


def run_cocoee(
    settings: CocoeeSettings,
    out: str | os.PathLike,
    session: Session | None = None,
    fid_reference: str | None = None,
    mixture: str | None = None,
    clip_model: str = feats.DEFAULT_CLIP,
    inception_weights: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Generate (when ``session`` is given; in this process's share under ``accelerate launch``), then score
    and report on the main process. Returns the report (also ``OUT/report.json`` and ``OUT/report.html``)."""
    out = Path(out)
    cases = read_cocoee(settings.data, settings.limit)
    state = batch.process_state()
    if session is None:  # scoring only: the pictures must be there
        results_or_error(cases, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        mark_folder(out, "evaluation")
    # the main process scores: load its models first, so that a missing one stops the run before the painting
    loaded = scorers(fid_reference, mixture, clip_model, inception_weights, device) if state.is_main else None
    started = time.perf_counter()
    painted = 0
    if session is not None:
        gen = settings.generation
        paint_settings = gen.settings(paste_back=settings.paste_back)
        painted = generate(cases, session, out, paint_settings, gen.seed, state, progress)
    state.wait()
    if not state.is_main:
        return {}
    metrics = score(cases, out, fid_reference, mixture, clip_model, inception_weights, device, progress, loaded)
    per_case = metrics.pop("per_case_clip_score")
    report = {
        "benchmark": "cocoee",
        "settings": asdict(settings),
        "cases": len(cases),
        "painted_now": painted,
        "seconds": round(time.perf_counter() - started, 1),
        "metrics": metrics,
        "per_case": {"clip_score": per_case},
    }
    rows = [
        {
            "id": c.id,
            "images": {"scene": c.scene, "mask": c.mask, "reference": c.reference, "result": result_path(out, c)},
            "scores": {"clip_score": per_case[c.id]},
        }
        for c in cases
    ]
    write_report(out, report, rows, title=f"COCOEE — {Path(settings.generation.model).name}")
    return report
