"""The toy world written to disk in the project's data formats (``subject-inpaint toy world``): training
renders with a manifest, subject photo folders, held-out test cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..data.annotations import Record, write_manifest
from ..utils import human_bytes
from ..utils.files import atomic_folder, check_output_folder, mark_folder, nearest_existing
from .world import (
    SPLITS,
    Identity,
    check_heldout_count,
    make_case,
    render_scene,
    seed_from,
    split_identities,
    subject_mask,
    subject_photos,
)


def write_subject_photos(ident: Identity, folder, count: int, seed: int, size: int = 64) -> None:
    """Write ``subject_photos`` in the photo-folder format (``read_photo_folder``): ``folder/photos/NN.png``,
    their masks ``folder/masks/NN.png`` (white = subject, the pixels ``Render.cut_out`` keeps) and
    ``folder/boxes.json``."""
    folder = Path(folder)
    for sub in ("photos", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    boxes = {}
    for k, render in enumerate(subject_photos(ident, count, seed=seed, size=size)):
        name = f"{k:02d}.png"
        Image.fromarray(render.image).save(folder / "photos" / name)
        Image.fromarray(subject_mask(render)).save(folder / "masks" / name)
        boxes[name] = list(render.box)
    (folder / "boxes.json").write_text(json.dumps(boxes, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------
# Datasets on disk
# ---------------------------------------------------------------------------------------------------
def check_dataset(
    out, train_images: int, subjects: int, photos: int, cases: int, size: int, *, options: bool = False
) -> None:
    """Refuse a toy world ``write_dataset`` cannot write, before anything is rendered: counts that are not
    whole numbers or below their least, more subjects than the world's held-out identities, pictures larger
    than the disk's free space. ``options``: name the values by the command line's options (``--subjects``).
    """

    def name(key: str) -> str:
        return "--" + key.replace("_", "-") if options else key

    for key, value, low in (
        ("train_images", train_images, 0),
        ("subjects", subjects, 0),
        ("photos", photos, 1),
        ("cases", cases, 0),
        ("size", size, 32),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name(key)} must be an integer ≥ {low}, got {value!r}")
    check_heldout_count(subjects, name("subjects"))
    # Uncompressed bytes: RGB + mask per training render and photo; scene, mask, reference, truth per case.
    need = size * size * (4 * train_images + subjects * (4 * photos + 10 * cases))
    free = shutil.disk_usage(nearest_existing(Path(out))).free
    if need > free:
        raise ValueError(
            f"{name('out')} {out}: the world's pictures take up to {human_bytes(need)} and the disk has "
            f"{human_bytes(free)} free; write fewer or smaller pictures"
        )


def write_dataset(
    out,
    world_seed: int = 0,
    train_images: int = 1000,
    subjects: int = 8,
    photos: int = 4,
    cases: int = 4,
    size: int = 64,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Write the toy world to disk in the project's data formats (``subject-inpaint toy world``).

    Layout of ``out`` (which must be new or empty, or with ``overwrite`` a toy world written before; the
    folder appears complete or not at all, and is refused at once when the pictures' uncompressed size
    exceeds the free disk space)::

        world.json                      the seed and counts
        train/manifest.jsonl            base training: ``read_manifest`` format, meta = identity
        train/images/000000.png ...     renders of the ``train`` identities (occlusion as in training)
        train/masks/000000.png ...      the subject in each (white; for ``train --cut-reference``)
        subjects/<id>/photos/00.png ..  ``photos`` renders of a ``heldout`` identity (fine-tuning data)
        subjects/<id>/masks/00.png ..   the subject in each photo (white; for ``finetune --cut-reference``)
        subjects/<id>/boxes.json        where the subject is in each photo (``read_photo_folder``)
        test/cases.jsonl                one line per case: scene, mask, reference, truth, box, identity,
                                        subject (its photo folder)
        test/<id>-<k>/*.png             the case's scene, mask (white = region), reference and truth

    The base-training images show only ``train`` identities; subjects and test cases only ``heldout``
    ones (``SPLITS``). Returns ``{"out", "train_images", "subjects", "cases"}``.
    """
    check_dataset(out, train_images, subjects, photos, cases, size)
    out = Path(out)
    mode = check_output_folder(out, kinds=("toy-world",), flag="out", overwrite=overwrite)
    total = train_images + subjects * (photos + cases)
    with (
        atomic_folder(out, overwrite=mode == "replace") as tmp,
        tqdm(total=total, desc="toy world", disable=not progress) as bar,
    ):
        train_ids = split_identities(world_seed, "train")
        records = []
        for sub in ("images", "masks"):
            (tmp / "train" / sub).mkdir(parents=True)
        for i in range(train_images):
            ident = train_ids[i % len(train_ids)]
            render = render_scene(ident, size, seed=seed_from(world_seed, 30, i))
            path, mask = (tmp / "train" / sub / f"{i:06d}.png" for sub in ("images", "masks"))
            Image.fromarray(render.image).save(path)
            Image.fromarray(subject_mask(render)).save(mask)
            meta = {"identity": ident.index, "description": ident.describe()}
            records.append(Record(path, [render.box], mask=mask, width=size, height=size, meta=meta))
            bar.update(1)
        write_manifest(records, tmp / "train" / "manifest.jsonl")

        lines = []
        (tmp / "test").mkdir()
        for ident in split_identities(world_seed, "heldout", subjects) if subjects else []:
            folder = tmp / "subjects" / str(ident.index)
            write_subject_photos(ident, folder, photos, seed=seed_from(world_seed, 31, ident.index), size=size)
            bar.update(photos)
            (folder / "identity.json").write_text(json.dumps({**vars(ident), "description": ident.describe()}) + "\n")
            for k in range(cases):
                case = make_case(ident, seed=seed_from(world_seed, 32, ident.index, k), size=size)
                name = f"{ident.index}-{k}"
                (tmp / "test" / name).mkdir()
                pictures = {
                    "scene": case.scene,
                    "mask": case.mask.astype(np.uint8) * 255,
                    "reference": case.reference,
                    "truth": case.truth,
                }
                entry = {}
                for key, array in pictures.items():
                    Image.fromarray(array).save(tmp / "test" / name / f"{key}.png")
                    entry[key] = f"{name}/{key}.png"
                entry.update(box=list(case.box), identity=ident.index, subject=f"../subjects/{ident.index}")
                lines.append(json.dumps(entry) + "\n")
                bar.update(1)
        (tmp / "test" / "cases.jsonl").write_text("".join(lines))
        info = {
            "world_seed": world_seed,
            "size": size,
            "train_images": train_images,
            "subjects": subjects,
            "photos_per_subject": photos,
            "cases_per_subject": cases,
            "splits": {k: list(v) for k, v in SPLITS.items()},
        }
        (tmp / "world.json").write_text(json.dumps(info, indent=2) + "\n")
        mark_folder(tmp, "toy-world")
    return {"out": out, "train_images": train_images, "subjects": subjects, "cases": subjects * cases}
