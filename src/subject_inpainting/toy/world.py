"""The toy world: procedural scenes and procedural subjects with an identity, deterministic by seed.

Real weights cannot be downloaded on every machine, and a new user should see the system work at once. So
the project renders its own small world, trains small versions of every component on it, and measures the
method on it offline (docs/toy.md).

A **subject identity** combines a body shape, a body colour, a surface pattern in a second colour and a
small marking in a third — detail fine enough that a single pooled class token cannot carry all of it. A
**render** shows one identity with a random pose (rotation, scale, flip), position, partial occlusion and
scene lighting. A **scene** is a wall and a floor with textures, gradients and clutter.

Identities are split by index so that the sets never mix (``SPLITS``): the base model trains on ``train``;
fine-tuning and the benchmark use ``heldout``; the evaluator identity encoder trains on ``evaluator``.
Everything is a pure function of the world seed and the indices.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..imaging import cut_out

PALETTE: tuple[tuple[int, int, int], ...] = (
    (214, 39, 40),  # red
    (255, 127, 14),  # orange
    (240, 210, 40),  # yellow
    (44, 160, 44),  # green
    (23, 190, 207),  # cyan
    (31, 90, 200),  # blue
    (148, 63, 189),  # purple
    (240, 110, 180),  # pink
    (245, 245, 245),  # white
    (30, 30, 30),  # black
    (140, 86, 45),  # brown
)
SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "star", "cross", "pill")
PATTERNS = ("plain", "hstripes", "vstripes", "dots", "checks", "ring")
MARKINGS = ("none", "eye", "band", "spot", "x")
# Identity index ranges of each split (disjoint by construction).
# The training split is large so that models learn what identities are made of rather than memorise a few
# hundred of them by their colours (a tower trained on a few hundred barely reads the shape of new subjects);
# it leaves out any identity that looks exactly like a held-out or evaluator one.
SPLITS = {"train": (10_000, 30_000), "heldout": (400, 500), "evaluator": (1000, 1400)}
HELDOUT_IDENTITIES = SPLITS["heldout"][1] - SPLITS["heldout"][0]  # the held-out split keeps its whole range
SUPERSAMPLE = 4  # shapes are drawn this many times larger, then reduced: smooth edges


@dataclass(frozen=True)
class Identity:
    """One subject: what stays the same in all its renders."""

    index: int
    shape: str
    body: int  # PALETTE index
    pattern: str
    pattern_color: int
    marking: str
    marking_color: int

    def describe(self) -> str:
        names = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "white", "black", "brown")
        return (
            f"{names[self.body]} {self.shape}, {names[self.pattern_color]} {self.pattern}, "
            f"{names[self.marking_color]} {self.marking}"
        )


# What an identity is made of, and how many values each part takes (the vision tower learns to read them,
# as CLIP's caption training taught it to name what it sees).
ATTRIBUTES: dict[str, int] = {
    "shape": len(SHAPES),
    "body": len(PALETTE),
    "pattern": len(PATTERNS),
    "pattern_color": len(PALETTE),
    "marking": len(MARKINGS),
    "marking_color": len(PALETTE),
}


# How a render shows the subject, named as a caption would ("tilted left", "mirrored"): the vision tower
# learns to read these too, so that its embedding carries the reference's pose as CLIP's does. ``tilt`` bins
# the rotation (``TILT_RANGE`` degrees either way) into equal parts, from clockwise to counter-clockwise.
TILT_RANGE = 25.0  # every render's rotation is uniform in ±this many degrees (``random_pose``)
POSE_ATTRIBUTES: dict[str, int] = {"tilt": 5, "flip": 2}


def pose_labels(angle: float, flip: bool) -> dict[str, int]:
    """A pose as class indices (``POSE_ATTRIBUTES`` order): the tilt bin of ``angle`` (degrees, clipped to
    ±``TILT_RANGE``) and whether the sprite is mirrored."""
    bins = POSE_ATTRIBUTES["tilt"]
    share = (min(max(float(angle), -TILT_RANGE), TILT_RANGE) + TILT_RANGE) / (2 * TILT_RANGE)
    return {"tilt": min(int(share * bins), bins - 1), "flip": int(bool(flip))}


def attribute_labels(ident: Identity) -> dict[str, int]:
    """The identity's parts as class indices (``ATTRIBUTES`` order); a colour that cannot be seen (the pattern
    colour of a plain subject, the marking colour of an unmarked one) is ``-1``, i.e. not to be learnt."""
    return {
        "shape": SHAPES.index(ident.shape),
        "body": ident.body,
        "pattern": PATTERNS.index(ident.pattern),
        "pattern_color": ident.pattern_color if ident.pattern != "plain" else -1,
        "marking": MARKINGS.index(ident.marking),
        "marking_color": ident.marking_color if ident.marking != "none" else -1,
    }


def rng_from(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def identity(world_seed: int, index: int) -> Identity:
    """Identity ``index`` of the world ``world_seed``: three different colours, and a pattern colour that
    is not the body's (so the pattern is always visible unless the pattern is ``plain``)."""
    r = rng_from(world_seed, 1, index)
    body, pattern_color, marking_color = (int(c) for c in r.choice(len(PALETTE), 3, replace=False))
    return Identity(
        index=index,
        shape=SHAPES[int(r.integers(len(SHAPES)))],
        body=body,
        pattern=PATTERNS[int(r.integers(len(PATTERNS)))],
        pattern_color=pattern_color,
        marking=MARKINGS[int(r.integers(len(MARKINGS)))],
        marking_color=marking_color,
    )


def split_identities(world_seed: int, split: str, count: int | None = None) -> list[Identity]:
    """The identities of a split (all of them, or the first ``count``). The training split leaves out the
    identities that look exactly like a held-out or evaluator one, so it holds a few fewer than its range."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    identities = _split(world_seed, split)
    n = len(identities) if count is None else count
    if not 0 < n <= len(identities):
        raise ValueError(f"split {split!r} holds {len(identities)} identities; asked for {n}")
    return list(identities[:n])


def check_heldout_count(count: int, name: str, spare: int = 0, why: str = "") -> None:
    """Refuse ``count`` held-out subjects when the world's held-out split cannot give them and ``spare``
    identities more (taken for ``why``); ``name`` names the count in the message. Nothing is rendered."""
    most = HELDOUT_IDENTITIES - spare
    if count > most:
        note = f" ({why})" if why else ""
        raise ValueError(
            f"{name} {count}: the toy world has {HELDOUT_IDENTITIES} held-out identities{note}; expected at most {most}"
        )


def _looks(ident: Identity) -> tuple[int, ...]:
    return tuple(attribute_labels(ident).values())


@functools.lru_cache(maxsize=8)
def _split(world_seed: int, split: str) -> tuple[Identity, ...]:
    lo, hi = SPLITS[split]
    identities = tuple(identity(world_seed, i) for i in range(lo, hi))
    if split == "train":
        kept = {_looks(i) for name in SPLITS if name != "train" for i in _split(world_seed, name)}
        identities = tuple(i for i in identities if _looks(i) not in kept)
    return identities


# ---------------------------------------------------------------------------------------------------
# Subjects
# ---------------------------------------------------------------------------------------------------
def _shape_polygon(shape: str, s: float) -> list[tuple[float, float]] | None:
    """The outline of ``shape`` in an ``s × s`` square (None for the circle and the pill, drawn as such)."""
    c, r = s / 2, s * 0.46
    if shape == "square":
        return [(c - r, c - r), (c + r, c - r), (c + r, c + r), (c - r, c + r)]
    if shape == "triangle":
        return [(c, c - r), (c + r, c + r * 0.8), (c - r, c + r * 0.8)]
    if shape == "diamond":
        return [(c, c - r), (c + r * 0.8, c), (c, c + r), (c - r * 0.8, c)]
    if shape == "hexagon":
        return [(c + r * math.cos(a), c + r * math.sin(a)) for a in (math.pi / 3 * k for k in range(6))]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.5
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((c + rad * math.cos(a), c + rad * math.sin(a)))
        return pts
    if shape == "cross":
        t = r * 0.42
        return [
            (c - t, c - r),
            (c + t, c - r),
            (c + t, c - t),
            (c + r, c - t),
            (c + r, c + t),
            (c + t, c + t),
            (c + t, c + r),
            (c - t, c + r),
            (c - t, c + t),
            (c - r, c + t),
            (c - r, c - t),
            (c - t, c - t),
        ]
    return None


def shape_mask(shape: str, s: int) -> Image.Image:
    """An ``L`` mask of the shape at ``s × s`` (drawn supersampled)."""
    big = s * SUPERSAMPLE
    m = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(m)
    c, r = big / 2, big * 0.46
    poly = _shape_polygon(shape, big)
    if poly is not None:
        d.polygon(poly, fill=255)
    elif shape == "circle":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
    else:  # pill
        d.rounded_rectangle([c - r, c - r * 0.6, c + r, c + r * 0.6], radius=r * 0.6, fill=255)
    return m.resize((s, s), Image.Resampling.LANCZOS)


def _pattern_layer(pattern: str, s: int) -> Image.Image:
    """Where the pattern colour goes, an ``L`` mask at ``s × s`` (period about a tenth of the subject)."""
    big = s * SUPERSAMPLE
    m = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(m)
    period = big / 6
    if pattern == "hstripes":
        for y in np.arange(0, big, period):
            d.rectangle([0, y, big, y + period / 2], fill=255)
    elif pattern == "vstripes":
        for x in np.arange(0, big, period):
            d.rectangle([x, 0, x + period / 2, big], fill=255)
    elif pattern == "dots":
        for y in np.arange(period / 2, big, period):
            for x in np.arange(period / 2, big, period):
                d.ellipse([x - period / 4, y - period / 4, x + period / 4, y + period / 4], fill=255)
    elif pattern == "checks":
        for i, y in enumerate(np.arange(0, big, period)):
            for j, x in enumerate(np.arange(0, big, period)):
                if (i + j) % 2 == 0:
                    d.rectangle([x, y, x + period, y + period], fill=255)
    elif pattern == "ring":
        c = big / 2
        for rad, fill in ((big * 0.34, 255), (big * 0.24, 0)):
            d.ellipse([c - rad, c - rad, c + rad, c + rad], fill=fill)
    return m.resize((s, s), Image.Resampling.LANCZOS)


def _marking_layer(marking: str, s: int) -> tuple[Image.Image, Image.Image | None]:
    """The marking's mask (its own colour) and, for the eye, the pupil's mask (black)."""
    big = s * SUPERSAMPLE
    m = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(m)
    pupil = None
    if marking == "eye":  # off-centre: makes the subject's orientation visible
        cx, cy, r = big * 0.36, big * 0.36, big * 0.11
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        pupil = Image.new("L", (big, big), 0)
        ImageDraw.Draw(pupil).ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=255)
        pupil = pupil.resize((s, s), Image.Resampling.LANCZOS)
    elif marking == "band":
        d.rectangle([0, big * 0.56, big, big * 0.68], fill=255)
    elif marking == "spot":
        c, r = big * 0.6, big * 0.1
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
    elif marking == "x":
        w = big * 0.05
        d.line([(big * 0.3, big * 0.3), (big * 0.7, big * 0.7)], fill=255, width=int(w))
        d.line([(big * 0.7, big * 0.3), (big * 0.3, big * 0.7)], fill=255, width=int(w))
    return m.resize((s, s), Image.Resampling.LANCZOS), pupil


def render_subject(ident: Identity, size: int) -> Image.Image:
    """The identity, upright and unlit, as an ``RGBA`` sprite of ``size × size`` (transparent outside)."""
    shape = shape_mask(ident.shape, size)
    rgb = Image.new("RGB", (size, size), PALETTE[ident.body])
    rgb.paste(Image.new("RGB", (size, size), PALETTE[ident.pattern_color]), mask=_pattern_layer(ident.pattern, size))
    marking, pupil = _marking_layer(ident.marking, size)
    rgb.paste(Image.new("RGB", (size, size), PALETTE[ident.marking_color]), mask=marking)
    if pupil is not None:
        rgb.paste(Image.new("RGB", (size, size), (0, 0, 0)), mask=pupil)
    # A thin dark outline separates the subject from any background colour.
    edge = shape.filter(ImageFilter.MaxFilter(3))
    outline = Image.fromarray(
        np.clip(np.asarray(edge, np.int16) - np.asarray(shape, np.int16), 0, 255).astype(np.uint8)
    )
    rgb.paste(Image.new("RGB", (size, size), (20, 20, 20)), mask=outline)
    alpha = Image.fromarray(np.maximum(np.asarray(shape), np.asarray(outline)))
    sprite = rgb.convert("RGBA")
    sprite.putalpha(alpha)
    return sprite


@dataclass(frozen=True)
class Pose:
    """How a render shows a subject: rotation (degrees), horizontal flip, side in pixels, top-left corner."""

    angle: float
    flip: bool
    side: int
    x: int
    y: int


def posed_sprite(ident: Identity, pose: Pose) -> Image.Image:
    sprite = render_subject(ident, pose.side)
    if pose.flip:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return sprite.rotate(pose.angle, resample=Image.Resampling.BICUBIC, expand=False)


# ---------------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------------
def _muted(r: np.random.Generator) -> tuple[int, int, int]:
    """A background colour: desaturated, so that subjects stand out as they do in photos."""
    base = r.uniform(60, 200)
    return tuple(int(np.clip(base + r.normal(0, 25), 0, 255)) for _ in range(3))


def render_background(size: int, r: np.random.Generator) -> tuple[np.ndarray, int]:
    """A scene without a subject: wall above a floor at a random horizon, textured and shaded, with clutter.
    Returns ``(rgb (size, size, 3) uint8, horizon row)``."""
    horizon = int(size * r.uniform(0.3, 0.6))
    wall, floor = _muted(r), _muted(r)
    img = Image.new("RGB", (size, size), wall)
    d = ImageDraw.Draw(img)
    d.rectangle([0, horizon, size, size], fill=floor)
    texture = r.integers(4)
    step = max(2, int(size * r.uniform(0.06, 0.15)))
    darker = tuple(max(0, c - 25) for c in floor)
    if texture == 1:  # floor boards
        for y in range(horizon, size, step):
            d.line([(0, y), (size, y)], fill=darker, width=1)
    elif texture == 2:  # tiles
        for y in range(horizon, size, step):
            for x in range(0, size, step):
                if ((x // step) + (y // step)) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=darker)
    elif texture == 3:  # wall stripes
        lighter = tuple(min(255, c + 20) for c in wall)
        for x in range(0, size, 2 * step):
            d.rectangle([x, 0, x + step - 1, horizon], fill=lighter)
    for _ in range(int(r.integers(0, 4))):  # clutter: plain muted boxes and discs
        w, h = (int(size * v) for v in r.uniform(0.06, 0.2, 2))
        x, y = int(r.integers(0, size - w)), int(r.integers(max(0, horizon - h), size - h))
        box = [x, y, x + w, y + h]
        (d.rectangle if r.random() < 0.5 else d.ellipse)(box, fill=_muted(r), outline=(40, 40, 40))
    arr = np.asarray(img).astype(np.float32)
    arr += r.normal(0, 4, arr.shape)  # sensor-like noise
    yy = np.linspace(0, 1, size)[:, None, None]
    arr *= 1 + r.uniform(-0.15, 0.15) * (yy - 0.5)  # vertical light gradient
    return np.clip(arr, 0, 255).astype(np.uint8), horizon


def random_pose(size: int, horizon: int, r: np.random.Generator, scale: tuple[float, float] = (0.35, 0.6)) -> Pose:
    """A pose standing on the floor: the sprite's bottom below the horizon, inside the scene."""
    side = int(size * r.uniform(*scale))
    x = int(r.integers(0, size - side + 1))
    low = max(0, min(size - side, horizon - side // 2))
    y = int(r.integers(low, size - side + 1))
    return Pose(angle=float(r.uniform(-TILT_RANGE, TILT_RANGE)), flip=bool(r.random() < 0.5), side=side, x=x, y=y)


def _lighting(r: np.random.Generator) -> np.ndarray:
    """A global brightness and colour cast, the same on the scene and the subject."""
    return r.uniform(0.75, 1.15) * r.uniform(0.92, 1.08, 3)


@dataclass
class Render:
    """A scene with one subject.

    Attributes:
        image: ``(H, W, 3)`` uint8, the scene with the subject (lit and possibly occluded).
        background: the same scene, same lighting, without the subject.
        box: the subject's box ``(x0, y0, x1, y1)``; mask: its visible pixels ``(H, W)`` bool.
        identity: who it is; pose: how it is shown.
        alpha: ``(H, W)`` float in [0, 1], how much of each pixel is the visible subject.
    """

    image: np.ndarray
    background: np.ndarray
    box: tuple[int, int, int, int]
    mask: np.ndarray
    identity: Identity
    pose: Pose
    alpha: np.ndarray

    @property
    def solid(self) -> np.ndarray:
        """``(H, W)`` bool, the pixels at least half subject: ``mask`` also holds the faint fringe the
        rotation's resampling leaves, which is mostly background."""
        return self.alpha >= 0.5

    def cut_out(self) -> np.ndarray:
        """The render with everything but the subject (``solid``) white (``imaging.cut_out``)."""
        return cut_out(self.image, self.solid)


def check_tilt(tilt: float, name: str = "tilt") -> float:
    """``tilt`` if it is a rotation range of 0-180 degrees, else a ``ValueError`` naming ``name`` (the
    parameter, or the command-line flag that gave it)."""
    if not 0 <= tilt <= 180:
        raise ValueError(f"{name} {tilt:g}: expected a rotation range of 0-180 degrees")
    return tilt


def render_scene(
    ident: Identity,
    size: int,
    seed: int,
    occlusion_p: float = 0.3,
    scale=(0.35, 0.6),
    angle: float | None = None,
    flip: bool | None = None,
    tilt: float = TILT_RANGE,
) -> Render:
    """Identity ``ident`` in a random scene drawn from ``seed``; ``angle`` and ``flip``, when given, replace
    the drawn rotation and mirroring (everything else is drawn as without them). ``tilt`` narrows or widens
    the range of the drawn rotation to ±``tilt`` degrees (0: upright) by scaling it, so that every other
    draw of the scene stays the same."""
    check_tilt(tilt)
    r = rng_from(seed, 2, ident.index)
    background, horizon = render_background(size, r)
    pose = random_pose(size, horizon, r, scale)
    if angle is None and tilt != TILT_RANGE:
        angle = 0.0 if tilt == 0 else pose.angle * tilt / TILT_RANGE
    if angle is not None or flip is not None:
        pose = dataclasses.replace(
            pose,
            angle=pose.angle if angle is None else float(angle),
            flip=pose.flip if flip is None else bool(flip),
        )
    sprite = posed_sprite(ident, pose)
    canvas = Image.fromarray(background)
    canvas.paste(sprite, (pose.x, pose.y), sprite)
    alpha = np.zeros((size, size), np.float32)
    alpha[pose.y : pose.y + pose.side, pose.x : pose.x + pose.side] = np.asarray(sprite)[..., 3] / 255.0
    if r.random() < occlusion_p:  # a scene object in front, hiding at most about a fifth of the subject
        w = max(2, int(pose.side * r.uniform(0.25, 0.45)))
        left = r.random() < 0.5
        ox = (
            pose.x - w // 2 + int(r.integers(0, w // 2 + 1))
            if left
            else pose.x + pose.side - w // 2 - int(r.integers(0, w // 2 + 1))
        )
        oy = pose.y + pose.side - int(w * r.uniform(0.5, 1.0))
        occluder, fill = [ox, oy, ox + w - 1, oy + w - 1], _muted(r)
        bg = Image.fromarray(background)
        for picture in (canvas, bg):  # the occluder belongs to the scene: in both pictures
            ImageDraw.Draw(picture).rectangle(occluder, fill=fill, outline=(40, 40, 40))
        background = np.asarray(bg)
        alpha[max(0, oy) : oy + w, max(0, ox) : ox + w] = 0
    light = _lighting(r)
    image = np.clip(np.asarray(canvas).astype(np.float32) * light, 0, 255).astype(np.uint8)
    background = np.clip(background.astype(np.float32) * light, 0, 255).astype(np.uint8)
    mask = alpha > 0  # every pixel the subject touches, its soft edge included
    ys, xs = np.nonzero(mask)
    box = (
        (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        if len(xs)
        else (pose.x, pose.y, pose.x + pose.side, pose.y + pose.side)
    )
    return Render(image, background, box, mask, ident, pose, alpha)


def seed_from(*key: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ---------------------------------------------------------------------------------------------------
# Held-out test cases and photo sets
# ---------------------------------------------------------------------------------------------------
@dataclass
class InpaintCase:
    """An inpainting task with its answer.

    Attributes:
        scene: ``(H, W, 3)`` uint8, the scene without the subject.
        mask: ``(H, W)`` bool, the region to paint (the subject's box, grown by a margin).
        reference: ``(h, w, 3)`` uint8, a photo of the subject from another render (cut around it).
        truth: the scene with the subject painted in the region (what a perfect result shows).
        box: the subject's box in ``truth``; identity: who it is.
    """

    scene: np.ndarray
    mask: np.ndarray
    reference: np.ndarray
    truth: np.ndarray
    box: tuple[int, int, int, int]
    identity: Identity


def grow_box(box, size: int, share: float) -> tuple[int, int, int, int]:
    """``box`` grown by ``share`` of its side on every side, clipped to a ``size × size`` image."""
    x0, y0, x1, y1 = box
    dx, dy = round((x1 - x0) * share), round((y1 - y0) * share)
    return max(0, x0 - dx), max(0, y0 - dy), min(size, x1 + dx), min(size, y1 + dy)


def reference_crop(render: Render, margin: float = 0.1, cut: bool = True) -> np.ndarray:
    """The subject of a render cropped with a margin (a user's reference photo); with ``cut``, on white
    (``imaging.cut_out``: its background removed, as the toy model's references are)."""
    x0, y0, x1, y1 = grow_box(render.box, render.image.shape[0], margin)
    picture = render.cut_out() if cut else render.image
    return picture[y0:y1, x0:x1].copy()


def make_case(ident: Identity, seed: int, size: int = 64) -> InpaintCase:
    """A test case for ``ident`` drawn from ``seed``: an unoccluded truth render, its background as the
    scene, the grown box as the region, and a reference from another render, cut out onto white."""
    truth = render_scene(ident, size, seed=seed_from(seed, 10), occlusion_p=0.0)
    other = render_scene(ident, size, seed=seed_from(seed, 11), occlusion_p=0.0)
    x0, y0, x1, y1 = grow_box(truth.box, size, 0.1)
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return InpaintCase(truth.background, mask, reference_crop(other), truth.image, truth.box, ident)


def subject_photos(ident: Identity, count: int, seed: int, size: int = 64) -> list[Render]:
    """``count`` photos of one subject (fine-tuning data): varied scenes, poses and light, no occlusion."""
    return [render_scene(ident, size, seed=seed_from(seed, 20, k), occlusion_p=0.0) for k in range(count)]


def subject_mask(render: Render) -> np.ndarray:
    """The pixels ``Render.cut_out`` keeps as a mask picture ``(H, W)`` uint8, 255 = subject."""
    return render.solid.astype(np.uint8) * 255


def trained_world(model: Path | str, default: int = 0) -> int:
    """The toy world a model was trained on (``toy_world_seed`` in its model_index.json; ``default`` if it
    does not say, or is not a readable folder)."""
    index = Path(model) / "model_index.json"
    try:
        recorded = json.loads(index.read_text()).get("toy_world_seed")
    except (OSError, ValueError):
        return default
    return default if recorded is None else int(recorded)
