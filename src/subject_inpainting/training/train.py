"""Base training (``subject-inpaint train``): the Paint-by-Example objective on images with boxes.

Starts from a project-format model — typically an SD-v1.x checkpoint converted with
``subject-inpaint convert --from-sd`` (5 zero-initialised input channels) — and trains the UNet, the class
mapper, its LayerNorm, the projection and the unconditional vector, with the original's data pipeline
(``subject_inpainting.data``). Run it on several GPUs or nodes with ``accelerate launch``.

``train(TrainSpec(...))`` is the Python entry point; the data is any ``TrainingData`` (``Annotations``
here: a manifest, Open Images or COCO; the toy world's lives in ``subject_inpainting.toy.dataset``).
``parse_args`` and ``main`` are the command line's, which build a spec::

    config = TrainConfig.for_mode("base", max_steps=2)
    train(TrainSpec("init/", Annotations(manifest="data.jsonl"), Path("run"), config))
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..utils.files import staged_publish
from ..utils.parse import float_option, int_option
from .common import MAX_STEPS, add_training_args, config_from_args, preview_function
from .config import TrainConfig, check_config

if TYPE_CHECKING:
    import torch

    from ..data.annotations import Record
    from ..models.reference_encoder import ReferenceEncoder

MAX_CACHE = 10_000_000


class TrainingData(Protocol):
    """Where base training's examples come from. The dataset is made once the model is loaded, at its sizes."""

    def check(self) -> None:
        """Check the settings and read what must be read before the model loads (ValueError, InputError)."""

    def examples(
        self, resolution: int, encoder: ReferenceEncoder, config: TrainConfig, cut_reference: bool
    ) -> torch.utils.data.Dataset:
        """The training examples at the model's ``resolution`` and its ``encoder``'s reference size."""

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data in the run's record (a resumed run must see the same)."""

    def model_index(self) -> dict[str, Any]:
        """What the published model records about its data (in its model_index.json)."""


@dataclass
class Annotations:
    """Annotated images: a JSON Lines ``manifest``, or ``openimages`` (CSV) / ``coco`` (JSON) box annotations
    of the image folder ``images`` keeping boxes that cover ``min_area``..``max_area`` of their image."""

    manifest: str | None = None
    openimages: str | None = None
    coco: str | None = None
    images: str | None = None
    min_area: float = 0.02
    max_area: float = 0.8
    records: list[Record] | None = field(default=None, repr=False, compare=False)

    def check(self, read: bool = True) -> None:
        """The settings' combinations; with ``read``, the annotations are read too (``records``: the command
        line reads them while it checks its inputs, before torch is imported, and trains on what it read)."""
        if (self.openimages or self.coco) and not self.images:
            raise ValueError("--images is needed with --openimages / --coco (the folder of the images)")
        if self.min_area > self.max_area:
            raise ValueError(f"--min-area {self.min_area:g} must not exceed --max-area {self.max_area:g}")
        if read and self.records is None:
            self.records = self._read()

    def _read(self) -> list[Record]:
        from ..data import annotations

        given = [name for name in ("manifest", "openimages", "coco") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(f"annotations: give one of manifest, openimages or coco, got {given or 'none'}")
        labels = annotations.OPTION_LABELS
        if self.manifest:
            return annotations.read_manifest(self.manifest, labels=labels)
        if self.openimages:
            return annotations.read_openimages(
                self.openimages, self.images, self.min_area, self.max_area, labels=labels
            )
        return annotations.read_coco(self.coco, self.images, self.min_area, self.max_area, labels=labels)

    def examples(
        self, resolution: int, encoder: ReferenceEncoder, config: TrainConfig, cut_reference: bool
    ) -> torch.utils.data.Dataset:
        from ..data.augment import AugmentConfig
        from ..data.datasets import InpaintingExamples

        self.check()
        return InpaintingExamples(
            self.records,
            resolution,
            encoder.image_size,
            encoder.image_mean,
            encoder.image_std,
            AugmentConfig.base(),
            seed=config.seed,
            cut_reference=cut_reference,
        )

    def fingerprint(self) -> dict[str, Any]:
        self.check()
        return {"data": [str(r.image) for r in self.records[:1000]], "examples": len(self.records)}

    def model_index(self) -> dict[str, Any]:
        return {}


@dataclass
class TrainSpec:
    """One base-training run: start from ``model``, train on ``data``, write the run and the model to ``out``.

    Attributes:
        config: the loop's settings (``TrainConfig.for_mode("base")`` and changes).
        latent_cache: encode the first N examples with the VAE once and train on that fixed pool (None: off).
        cut_reference: the references show the subject cut out onto white (needs a mask for every image).
        device: single-process device (``auto``, ``cpu``, ``cuda``); several GPUs come from ``accelerate launch``.
        overwrite: start over, replacing ``out`` when the new run finishes (else a run there is resumed).
        progress: show a progress bar.
    """

    model: str
    data: TrainingData
    out: Path
    config: TrainConfig = field(default_factory=lambda: TrainConfig.for_mode("base"))
    latent_cache: int | None = None
    cut_reference: bool = False
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True

    def check(self) -> None:
        check_config(self.config, "base")
        cache = self.latent_cache
        if cache is not None and (isinstance(cache, bool) or not isinstance(cache, int)):
            raise TypeError(f"latent_cache {self.latent_cache!r}: expected a whole number of examples or None")
        self.data.check()


def build_parser(
    parser: argparse.ArgumentParser | None = None,
    more_sources: Callable[[argparse._ArgumentGroup, argparse._MutuallyExclusiveGroup], None] | None = None,
) -> argparse.ArgumentParser:
    """The options of base training; ``more_sources(data_group, source_group)`` adds further data sources
    (the command line's ``--toy-world``) among the annotation files, one of which is required."""
    p = parser or argparse.ArgumentParser(prog="subject-inpaint train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH_OR_ID",
        help="model to start from: a project folder (e.g. `convert --from-sd` output) or any model --model accepts",
    )
    data = p.add_argument_group("data (one of)")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--manifest", metavar="JSONL", help='JSON Lines: {"image": path, "boxes": [[x0,y0,x1,y1], ...]}'
    )
    source.add_argument("--openimages", metavar="CSV", help="Open Images box annotations (with --images)")
    source.add_argument("--coco", metavar="JSON", help="COCO instances annotations (with --images)")
    if more_sources is not None:
        more_sources(data, source)
    data.add_argument("--images", metavar="DIR", help="image folder of --openimages / --coco")
    data.add_argument(
        "--min-area", type=float_option(0.0, 1.0), default=0.02, help="keep boxes covering at least this share (0.02)"
    )
    data.add_argument(
        "--max-area", type=float_option(0.0, 1.0), default=0.8, help="and at most this share of the image (0.8)"
    )
    data.add_argument(
        "--latent-cache",
        type=int_option(1, MAX_CACHE),
        metavar="N",
        help="encode the first N examples with the VAE once (OUT/latent-cache.safetensors) and train on that fixed "
        "pool in epochs: no VAE work per step, but each example's augmentation is fixed (default: off)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="run folder: the trained model (project format), checkpoints/, previews/, logs/",
    )
    p.add_argument(
        "--max-steps", type=int_option(1, MAX_STEPS), default=None, help="optimiser steps in all (default 1000)"
    )
    add_training_args(p, "base")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """The options' combinations, checked before anything is loaded (the command line checks them first)."""
    annotations_from_args(args).check(read=False)


def annotations_from_args(args: argparse.Namespace) -> Annotations:
    return Annotations(args.manifest, args.openimages, args.coco, args.images, args.min_area, args.max_area)


def spec_from_args(args: argparse.Namespace, data: TrainingData | None = None) -> TrainSpec:
    """The run the options describe; ``data`` replaces the annotation files they name (read already when
    the command line's check left them in ``args.annotations``)."""
    if data is None:
        data = getattr(args, "annotations", None) or annotations_from_args(args)
    return TrainSpec(
        model=args.model,
        data=data,
        out=Path(args.out),
        config=config_from_args(args, "base", max_steps=args.max_steps),
        latent_cache=args.latent_cache,
        cut_reference=args.cut_reference,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def main(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's base training: ``train`` of the spec the options describe."""
    return train(spec_from_args(args))


def train(spec: TrainSpec) -> dict[str, Any]:
    """Train; returns the loop's summary (``step``, ``losses``, ``out``)."""
    from ..loaders import load_components, save_components
    from ..pipeline import SubjectInpaintPipeline
    from ..utils.files import replacing
    from . import loop

    spec.check()
    out, config = Path(spec.out), spec.config
    components = load_components(spec.model)
    pipe = SubjectInpaintPipeline(**components)  # checks that the parts fit together
    enc = pipe.reference_encoder
    if enc.has_detail:
        raise ValueError(
            f"--model {spec.model}: has a detail module (a subject model); base training trains Paint-by-Example models"
        )
    dataset = spec.data.examples(pipe.resolution, enc, config, spec.cut_reference)
    fingerprint = {"model": str(spec.model), **spec.data.fingerprint()}
    if spec.cut_reference:
        fingerprint["cut_reference"] = True
    if spec.latent_cache is not None:
        check_latent_cache(spec.latent_cache, len(dataset))
        fingerprint["latent_cache"] = spec.latent_cache
    accelerator = loop.make_accelerator(config, loop.work_folder(out, spec.overwrite), spec.device)
    work = loop.prepare_output(out, config, fingerprint, spec.overwrite, accelerator)
    with replacing(work, out, accelerator.is_main_process, accelerator.wait_for_everyone):
        examples = dataset
        if spec.latent_cache is not None:
            dataset = cached_latents(
                work / "latent-cache.safetensors",
                dataset,
                components["vae"],
                spec.latent_cache,
                accelerator,
                spec.progress,
                config.num_workers,
            )

        extra = {"trained_from": str(spec.model), **spec.data.model_index()}

        def publish(c: dict[str, Any], folder: Path) -> None:
            staged_publish(folder, "model_index.json", lambda tmp: save_components(c, tmp, extra=extra))

        preview = preview_function(examples, "base", config.preview_steps) if config.preview_every else None
        run = loop.Run(components, dataset, work, publish, fingerprint, preview, progress=spec.progress)
        result = loop.train(config, run, accelerator)
    return {**result, "out": out}


def check_latent_cache(count: int | None, examples: int) -> None:
    """``--latent-cache`` encodes at most every example once."""
    if count is not None and not 1 <= count <= examples:
        raise ValueError(f"--latent-cache {count}: expected 1 to {examples:,} (the number of examples)")


def cached_latents(path: Path, dataset, vae, count: int, accelerator, progress: bool, num_workers: int = 0):
    """The run's latent cache: read from ``path`` when an earlier (interrupted) run wrote it, else encoded
    by the main process (its examples made by ``num_workers`` processes) and written there."""
    from .latents import LatentCache

    if accelerator.is_main_process and not path.is_file():
        vae.to(accelerator.device)
        LatentCache.build(dataset, vae, count, progress=progress, num_workers=num_workers).save(path)
    accelerator.wait_for_everyone()
    cache = LatentCache.load(path)
    if len(cache) != count:
        raise ValueError(f"{path}: holds {len(cache)} examples, not --latent-cache {count}; delete it to rebuild")
    return cache


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
