"""The toy world as base-training data: Paint-by-Example examples rendered on the fly
(``ToyWorldExamples``), and ``ToyWorldData``, the example source base training takes for ``train
--toy-world``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.augment import AugmentConfig
from ..data.examples import make_example, make_reference
from .world import (
    TILT_RANGE,
    Identity,
    Render,
    check_tilt,
    pose_labels,
    render_scene,
    rng_from,
    seed_from,
    split_identities,
    trained_world,
)

if TYPE_CHECKING:
    from ..models.reference_encoder import ReferenceEncoder
    from ..training.config import TrainConfig


def toy_augment():
    """The original's data settings scaled to 64-pixel scenes: the reference margin and the Bézier jitter
    are in source pixels (10 and 5 for photos of about 500 pixels). The crops zoom in and the references
    are flipped and rotated, as the original's: never zooming in (``crop_min_share`` 1) or rendering the
    references in the scene's pose (``ToyWorldExamples(same_pose=True)``) did not make the painted outlines
    more readable (docs/toy.md).
    """
    return dataclasses.replace(AugmentConfig.base(), reference_margin=2, bezier_jitter=1.0)


class ToyWorldExamples(torch.utils.data.Dataset):
    """Paint-by-Example training examples rendered on the fly; item ``i`` is a pure function of
    ``(world_seed, seed, i)``, so no two items repeat and a resumed run sees the same items.

    Each item shows identity ``identities[i % n]`` in a random scene; the reference is cut from ANOTHER
    render of the same identity (another scene, size, position and lighting), as a user's reference photo
    is — not from the same image as the original's self-supervised data. With ``same_pose`` that render
    shows the subject in the scene's pose (rotation and mirroring), as the original's same-image references
    mostly do: the model then learns to paint the subject in the reference's pose, which the vision tower
    reads (``POSE_ATTRIBUTES``), instead of drawing a pose at random from a pose-free embedding — a small
    model averages the poses it cannot tell apart into a blob. Without it the pose is drawn independently.
    Items carry ``identity`` (its position in ``identities``) for identity-encoder training and
    ``reference_pose`` ``(2,)`` int64, the ``pose_labels`` (tilt, flip) of the render the reference was cut
    from (its pose as seen, unless the augmentation flips or rotates it).

    Args:
        identities: the identities to show (e.g. ``split_identities(seed, "train")``).
        scene_size: side of the rendered scenes; resolution / reference_size: the model's input sides.
        image_mean, image_std: the vision tower's normalisation; augment: the data pipeline's settings.
        length: the number of items (the loop's steps × batch).
        cut_reference: the reference shows the subject on white (True) or its crop with the other
            render's background (False: the evaluator's training data, which scores painted regions).
        same_pose: the reference's render shows the subject in the scene's pose (True) or in its own.
        tilt: the rotation range of both renders, in degrees either way (default the world's ``TILT_RANGE``;
            0: upright, as the objects of the original's photos mostly stand; the augmentation still rotates
            the reference). A small model may average the tilts it cannot predict from the reference into a
            blob; the embedded model is trained upright (whether that helps is within the spread of single
            training runs: docs/toy.md).
    """

    procedural = True  # every index is a new example: the training loop reads them in order

    def __init__(
        self,
        identities: list[Identity],
        scene_size: int,
        resolution: int,
        reference_size: int,
        image_mean,
        image_std,
        augment,
        seed: int = 0,
        length: int = 10**9,
        cut_reference: bool = False,
        same_pose: bool = False,
        tilt: float = TILT_RANGE,
    ):
        if not identities:
            raise ValueError("identities: empty")
        self.identities = list(identities)
        self.scene_size, self.resolution, self.reference_size = scene_size, resolution, reference_size
        self.image_mean, self.image_std, self.augment = image_mean, image_std, augment
        self.seed, self.length, self.epoch = seed, length, 0
        self.cut_reference = bool(cut_reference)
        self.same_pose = bool(same_pose)
        self.tilt = float(check_tilt(tilt))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _pose(self, index: int) -> dict:
        """The pose both renders of item ``index`` share with ``same_pose`` (else none is imposed)."""
        if not self.same_pose:
            return {}
        r = rng_from(self.seed, self.epoch, index, 3)
        return {"angle": float(r.uniform(-self.tilt, self.tilt)), "flip": bool(r.random() < 0.5)}

    def scene(self, index: int) -> Render:
        """The render item ``index`` paints into (its scene, with the subject)."""
        ident = self.identities[index % len(self.identities)]
        seed = seed_from(self.seed, self.epoch, index, 0)
        return render_scene(ident, self.scene_size, seed=seed, tilt=self.tilt, **self._pose(index))

    def _other(self, index: int) -> Render:
        ident = self.identities[index % len(self.identities)]
        seed = seed_from(self.seed, self.epoch, index, 1)
        return render_scene(ident, self.scene_size, seed=seed, occlusion_p=0.0, tilt=self.tilt, **self._pose(index))

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed_from(self.seed, self.epoch, index, 2))

    def _labels(self, index: int, other: Render) -> dict[str, torch.Tensor]:
        pose = list(pose_labels(other.pose.angle, other.pose.flip).values())
        return {"identity": torch.tensor(index % len(self.identities)), "reference_pose": torch.tensor(pose)}

    def reference_item(self, index: int) -> dict[str, torch.Tensor]:
        """Only the reference of item ``index`` (``reference``, ``identity``, ``reference_pose``), at half the
        rendering cost: for the encoders, which never see the scene. Equal to the whole item's when the
        augmentation draws nothing for the reference (no flip, rotation, blur or deformation); otherwise an
        equally distributed one."""
        other = self._other(index)
        picture = other.cut_out() if self.cut_reference else other.image
        size, mean, std = self.reference_size, self.image_mean, self.image_std
        ref = make_reference(picture, other.box, size, mean, std, self.augment, self._generator(index))
        return {"reference": ref, **self._labels(index, other)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, other = self.scene(index), self._other(index)
        example = make_example(
            scene.image,
            scene.box,
            resolution=self.resolution,
            reference_size=self.reference_size,
            image_mean=self.image_mean,
            image_std=self.image_std,
            augment=self.augment,
            generator=self._generator(index),
            reference_from=(other.cut_out() if self.cut_reference else other.image, other.box),
        )
        example.update(self._labels(index, other))
        return example


@dataclass
class ToyWorldData:
    """Base-training data from the toy world (``train --toy-world``): the ``train`` split of world ``world``,
    rendered on the fly with subjects rotated within ±``tilt`` degrees. A ``training.train.TrainingData``."""

    world: int
    tilt: float = TILT_RANGE

    def __post_init__(self) -> None:
        if isinstance(self.world, bool) or not isinstance(self.world, int) or self.world < 0:
            raise ValueError(f"world {self.world!r}: expected a world seed (a whole number ≥ 0)")
        self.tilt = float(check_tilt(self.tilt))

    @classmethod
    def for_model(
        cls, model: str | Path, world: int | None = None, tilt: float | None = None, default: int = 0
    ) -> ToyWorldData:
        """The data of a run from ``model``: world ``world``, else the one the model records
        (``trained_world``), else ``default``; tilt ``tilt``, else the world's own. Training a world-0 model
        on another world's split would show it that world's held-out identities, which its benchmark then
        scores as unseen."""
        return cls(
            world if world is not None else trained_world(model, default=default),
            TILT_RANGE if tilt is None else tilt,
        )

    def check(self) -> None:
        """Nothing to read: the examples are rendered as training asks for them."""

    def examples(
        self, resolution: int, encoder: ReferenceEncoder, config: TrainConfig, cut_reference: bool
    ) -> ToyWorldExamples:
        """The training split's examples, as many as the run can draw (room for 64 processes)."""
        return ToyWorldExamples(
            split_identities(self.world, "train"),
            resolution,
            resolution,
            encoder.image_size,
            encoder.image_mean,
            encoder.image_std,
            toy_augment(),
            seed=config.seed,
            length=config.max_steps * config.batch_size * config.grad_accum * 64,
            cut_reference=cut_reference,
            tilt=self.tilt,
        )

    def fingerprint(self) -> dict[str, Any]:
        found = {"data": "toy-world", "identities": len(split_identities(self.world, "train")), "world": self.world}
        if self.tilt != TILT_RANGE:  # the world's own range keeps the fingerprint of runs made before it
            found["tilt"] = self.tilt
        return found

    def model_index(self) -> dict[str, Any]:
        return {"toy_world_seed": self.world}
