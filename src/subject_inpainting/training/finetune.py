"""Subject fine-tuning (``subject-inpaint finetune``): teach a base model one subject from 3–5 photos.

As subject inpainting does: the reference is cut from each photo around the subject (a box, a mask, or a
text-prompted detector finds it), the loss counts only the hole, and what trains is the UNet (whole, or a
LoRA through ``peft``) and the detail (VDP) module; the vision tower, class mapper, class projection and
unconditional vector stay frozen. The output folder holds only what was trained (safetensors + a config
naming its base), the reference crops, previews, TensorBoard logs and resumable checkpoints.

``finetune(FinetuneSpec(...))`` is the Python entry point; ``parse_args`` and ``main`` are the command
line's, which build a spec::

    finetune(FinetuneSpec("dog/", "pbe", Path("dog-subject"), boxes="boxes.json"))
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..utils.files import staged_publish
from ..utils.parse import float_option, int_option
from .common import MAX_STEPS, add_training_args, config_from_args, preview_function
from .config import TrainConfig, check_config

if TYPE_CHECKING:
    from ..data.annotations import Record

DEFAULT_EPOCHS = 200  # the original: 200 epochs of the subject's photos


@dataclass
class FinetuneSpec:
    """One fine-tuning run: teach the model ``base`` the subject of the photo folder ``photos``; write to ``out``.

    Attributes:
        boxes, masks, prompt: where the subject is in the photos: a boxes file, a masks folder, or a text
            prompt for a detector (used when the photos come with neither).
        epochs: passes over the photos, which sets the steps; None: ``config.max_steps`` steps.
        config: the loop's settings (``TrainConfig.for_mode("subject")`` and changes: LoRA, detail module ...).
        cut_reference: the references show the subject cut out onto white through its mask (needs ``masks``).
        device, overwrite, progress: as ``TrainSpec``'s.
        records: the photos with the subject located, when they were read already (``read_records``: the
            command line reads them while it checks its inputs, before torch is imported); None: read them.
    """

    photos: str | Path
    base: str
    out: Path
    boxes: str | Path | None = None
    masks: str | Path | None = None
    prompt: str | None = None
    epochs: int | None = DEFAULT_EPOCHS
    config: TrainConfig = field(default_factory=lambda: TrainConfig.for_mode("subject"))
    cut_reference: bool = False
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    records: list[Record] | None = field(default=None, repr=False, compare=False)

    def check(self) -> None:
        check_config(self.config, "subject")
        epochs = self.epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"epochs {self.epochs!r}: expected a whole number ≥ 1, or None")
        if self.cut_reference and not self.masks:
            raise ValueError("--cut-reference needs --masks DIR: the subject's outline in each photo, to cut it out by")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="subject-inpaint finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", required=True, metavar="DIR", help="folder of 3-5 photos of the subject")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--boxes", metavar="FILE", help='JSON {"photo.jpg": [x0, y0, x1, y1], ...}: where the subject is'
    )
    where.add_argument("--masks", metavar="DIR", help="one mask per photo (same file stem), white = subject")
    where.add_argument(
        "--prompt",
        metavar="TEXT",
        help="find the subject with a text-prompted detector + segmenter (hub weights; needs a connection "
        "the first time), e.g. --prompt 'teddy bear'",
    )
    p.add_argument(
        "--base", required=True, metavar="PATH_OR_ID", help="the pretrained Paint-by-Example model to start from"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="subject folder to write (use it with inpaint --subject)"
    )
    p.add_argument(
        "--epochs",
        type=int_option(1, 1_000_000),
        default=None,
        help=f"passes over the photos (default {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--max-steps", type=int_option(1, MAX_STEPS), default=None, help="optimiser steps in all (overrides --epochs)"
    )
    p.add_argument(
        "--lora-rank",
        type=int_option(0, 1024),
        default=None,
        help="train a rank-r LoRA of the UNet's attention instead of the whole UNet (default 0 = whole UNet)",
    )
    p.add_argument("--lora-alpha", type=float_option(1e-6, 1e6), default=None, help="LoRA alpha (default: the rank)")
    p.add_argument(
        "--detail-layers",
        type=int_option(0, 64),
        default=None,
        help="detail mapper blocks (default 5, the original; 0 = no detail module)",
    )
    p.add_argument(
        "--detail-heads", type=int_option(1, 64), default=None, help="detail mapper heads (default 8, the original)"
    )
    p.add_argument(
        "--detail-grid",
        type=int_option(1, 16),
        default=None,
        help="k: k×k pooled detail tokens (default 1: the original's single mean-pooled token)",
    )
    add_training_args(p, "subject")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """The options' combinations, checked before anything is loaded (the command line checks them first)."""
    spec_from_args(args).check()


def spec_from_args(args: argparse.Namespace) -> FinetuneSpec:
    """The run the options describe (``--max-steps`` wins over ``--epochs``)."""
    epochs = None if args.max_steps is not None else (args.epochs if args.epochs is not None else DEFAULT_EPOCHS)
    return FinetuneSpec(
        photos=args.photos,
        base=args.base,
        out=Path(args.out),
        boxes=args.boxes,
        masks=args.masks,
        prompt=args.prompt,
        epochs=epochs,
        config=config_from_args(
            args,
            "subject",
            max_steps=args.max_steps,
            lora_rank=args.lora_rank,
            lora_alpha=args.lora_alpha,
            detail_layers=args.detail_layers,
            detail_heads=args.detail_heads,
            detail_grid=args.detail_grid,
        ),
        cut_reference=args.cut_reference,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
        records=getattr(args, "records", None),
    )


def read_records(spec: FinetuneSpec) -> list[Record] | None:
    """The subject's photos with the boxes or masks that say where it is, read without torch; None when
    the photos come with neither and ``--prompt``'s detector is to find it (which needs torch)."""
    from ..data.annotations import OPTION_LABELS, NoSubjectLocation, read_photo_folder

    try:
        return read_photo_folder(spec.photos, spec.boxes, spec.masks, labels=OPTION_LABELS)
    except NoSubjectLocation as e:
        if not spec.prompt:
            raise NoSubjectLocation(
                f"{e}; give --boxes FILE, --masks DIR, or --prompt TEXT to find it with a detector"
            ) from None
    return None


def find_records(spec: FinetuneSpec) -> list[Record]:
    """The subject's photos and where the subject is in each: read (``spec.records`` if they were), or
    found by the detector ``spec.prompt`` names."""
    records = spec.records if spec.records is not None else read_records(spec)
    if records is not None:
        return records
    from ..data.detect import find_subject

    return find_subject(spec.photos, spec.prompt)


def load_base(spec: str) -> dict[str, Any]:
    """The base model, refusing what cannot be fine-tuned into a subject."""
    from ..loaders import load_components
    from ..loaders.checkpoint_io import CheckpointError
    from ..loaders.layout import refuse_subject

    refuse_subject(spec, f"--base {spec}")
    components = load_components(spec)
    if components["reference_encoder"].has_detail:
        raise CheckpointError(
            f"--base {spec}: already has a detail module (a subject model); fine-tune from the "
            "pretrained Paint-by-Example model"
        )
    return components


def subject_encoder(base_encoder, layers: int, heads: int, grid: int, seed: int):
    """The base encoder plus a freshly initialised detail module (the class path stays the base's)."""
    import torch

    from ..models.build import build_component

    if layers == 0:  # fine-tune the UNet alone, with the base's class token
        return base_encoder
    config = {k: v for k, v in dict(base_encoder.config).items() if not k.startswith("_")}
    config.update(detail_mapper_layers=layers, detail_mapper_heads=heads, detail_grid=grid)
    torch.manual_seed(seed)
    encoder = build_component("reference_encoder", config)
    missing, unexpected = encoder.load_state_dict(base_encoder.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("detail_") for k in missing), (missing, unexpected)
    return encoder.to(base_encoder.device, base_encoder.dtype)


def save_references(records, folder: Path, margin: int, cut: bool = False) -> None:
    """The un-augmented reference crops (subject cut with the margin; with ``cut``, on white through the
    record's mask), for ``inpaint --subject`` without ``--reference``."""
    from .. import imaging
    from ..data.annotations import read_mask
    from ..data.boxes import reference_box

    folder.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records):
        rgb, _ = imaging.to_rgb(imaging.open_image(record.image, "subject photo"))
        size = (rgb.shape[1], rgb.shape[0])
        if cut:
            rgb = imaging.cut_out(rgb, read_mask(record.mask, size))
        x0, y0, x1, y1 = reference_box(record.boxes[0], size, margin)
        imaging.save_image_atomic(imaging.Image.fromarray(rgb[y0:y1, x0:x1]), folder / f"{i:02d}.png")


def main(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's fine-tuning: ``finetune`` of the spec the options describe."""
    return finetune(spec_from_args(args))


def finetune(spec: FinetuneSpec) -> dict[str, Any]:
    """Fine-tune; returns the loop's summary (``step``, ``losses``, ``out``)."""
    from ..data.augment import AugmentConfig
    from ..data.datasets import InpaintingExamples
    from ..loaders.subject import base_fingerprint, base_probe, save_subject
    from ..models.lora import add_lora, lora_config
    from ..pipeline import SubjectInpaintPipeline
    from ..utils.files import replacing
    from . import loop

    spec.check()
    out = Path(spec.out)
    records = find_records(spec)
    components = load_base(spec.base)
    pipe = SubjectInpaintPipeline(**components)  # checks that the parts fit together
    base_encoder = pipe.reference_encoder
    fingerprint_value = base_fingerprint(pipe.unet, base_encoder)  # before the weights change
    probe = base_probe(pipe.unet, base_encoder)
    config = spec.config
    if spec.epochs is not None:
        steps_per_epoch = max(1, len(records) // config.batch_size)
        config = dataclasses.replace(config, max_steps=spec.epochs * steps_per_epoch)
    encoder = subject_encoder(base_encoder, config.detail_layers, config.detail_heads, config.detail_grid, config.seed)
    unet = pipe.unet
    lora = None
    if config.lora_rank:
        lora = {"rank": config.lora_rank, "alpha": config.lora_alpha}
        add_lora(unet, lora_config(config.lora_rank, config.lora_alpha))
    augment = AugmentConfig.subject()
    dataset = InpaintingExamples(
        records,
        pipe.resolution,
        encoder.image_size,
        encoder.image_mean,
        encoder.image_std,
        augment,
        seed=config.seed,
        cut_reference=spec.cut_reference,
    )
    fingerprint = {
        "base": fingerprint_value,
        "photos": [str(r.image) for r in records],
        "boxes": [list(r.boxes[0]) for r in records],
    }
    if spec.cut_reference:
        fingerprint["cut_reference"] = True
    accelerator = loop.make_accelerator(config, loop.work_folder(out, spec.overwrite), spec.device)
    work = loop.prepare_output(out, config, fingerprint, spec.overwrite, accelerator)
    trained = {**components, "reference_encoder": encoder, "unet": unet}

    def publish(c: dict[str, Any], folder: Path) -> None:
        def write(tmp: Path) -> None:
            save_subject(
                tmp,
                c["reference_encoder"],
                c["unet"],
                base=str(spec.base),
                fingerprint=fingerprint_value,
                lora=lora,
                extra={"photos": fingerprint["photos"], "train": config.to_dict()},
                probe=probe,
            )
            save_references(records, tmp / "references", augment.reference_margin, spec.cut_reference)

        staged_publish(folder, "subject_index.json", write)

    preview = preview_function(dataset, "subject", config.preview_steps) if config.preview_every else None
    run = loop.Run(trained, dataset, work, publish, fingerprint, preview, spec.progress)
    with replacing(work, out, accelerator.is_main_process, accelerator.wait_for_everyone):
        result = loop.train(config, run, accelerator)
    return {**result, "out": out}


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
