"""Reading any photo, masks and boxes, reference preprocessing, paste-back, atomic writes."""

from __future__ import annotations

import contextlib
import io
import math
import signal
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFilter

from conftest import make_scene
from subject_inpainting import imaging
from subject_inpainting.imaging import InputError

RGB = make_scene((20, 12))


@pytest.mark.parametrize(
    ("mode", "expect_alpha"),
    [("RGB", False), ("RGBA", True), ("L", False), ("LA", True), ("P", False), ("CMYK", False), ("1", False)],
)
def test_to_rgb_any_mode(mode, expect_alpha):
    image = Image.fromarray(RGB).convert(mode)
    rgb, alpha = imaging.to_rgb(image)
    assert rgb.shape == (12, 20, 3) and rgb.dtype == np.uint8
    assert (alpha is not None) == expect_alpha
    if mode == "RGB":
        assert np.array_equal(rgb, RGB)
    if mode == "L":
        assert np.array_equal(rgb[..., 0], np.asarray(image)) and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_palette_with_transparency_keeps_alpha():
    image = Image.fromarray(RGB).convert("P")
    image.info["transparency"] = 0
    _, alpha = imaging.to_rgb(image)
    assert alpha is not None and (alpha == 0).any()


def test_sixteen_bit_png(tmp_path):
    values = (np.arange(12 * 20).reshape(12, 20) * 257).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    image = imaging.open_image(path, "scene")
    assert image.mode.startswith("I")
    rgb, alpha = imaging.to_rgb(image)
    assert alpha is None
    assert np.array_equal(rgb[..., 0], np.clip(np.arange(12 * 20).reshape(12, 20), 0, 255).astype(np.uint8))


def test_exif_orientation_is_honoured(tmp_path):
    image = Image.fromarray(make_scene((30, 10)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    opened = imaging.open_image(path, "scene")
    assert opened.size == (10, 30)


def test_open_image_errors(tmp_path):
    with pytest.raises(InputError, match=r"scene .*nope.png: no such file"):
        imaging.open_image(tmp_path / "nope.png", "scene")
    with pytest.raises(InputError, match="is a folder"):
        imaging.open_image(tmp_path, "scene")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        imaging.open_image(tmp_path / "notes.png", "mask")
    buf = io.BytesIO()
    Image.fromarray(make_scene((64, 64))).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        imaging.open_image(tmp_path / "cut.png", "reference")


def test_mask_threshold_and_modes():
    gray = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    assert imaging.mask_to_bool(Image.fromarray(gray)).tolist() == [[False, False, True, True]]
    assert imaging.mask_to_bool(Image.fromarray(gray).convert("RGBA")).tolist() == [[False, False, True, True]]
    deep = Image.fromarray(gray.astype(np.uint16) * 257)
    assert imaging.mask_to_bool(deep).tolist() == [[False, False, True, True]]
    assert imaging.mask_to_bool(Image.fromarray(gray).convert("1")).tolist() == [[False, False, True, True]]


def test_fit_mask_same_aspect_resizes_other_aspect_refuses():
    small = np.zeros((10, 16), dtype=bool)
    small[2:8, 4:12] = True
    big = imaging.fit_mask(small, (32, 20))
    assert big.shape == (20, 32) and big[4:16, 8:24].all() and not big[:4].any()
    with pytest.raises(InputError, match=r"mask is 16×10 .* scene is 32×32 .* same aspect ratio"):
        imaging.fit_mask(small, (32, 32))


def test_boxes():
    assert imaging.parse_box("1,2,30,40") == (1, 2, 30, 40)
    assert imaging.parse_box("1 2 30.4 40") == (1, 2, 30, 40)
    for bad, match in (("1,2,3", "four numbers"), ("a,b,c,d", "'a' is not a number"), ("", "four numbers")):
        with pytest.raises(InputError, match=match):
            imaging.parse_box(bad)
    m = imaging.box_to_mask((2, 3, 5, 7), (10, 10))
    assert m.sum() == 12 and m[3:7, 2:5].all()
    with pytest.raises(InputError, match="outside the 10×10 scene"):
        imaging.box_to_mask((2, 3, 11, 7), (10, 10))
    with pytest.raises(InputError, match="empty"):
        imaging.box_to_mask((5, 3, 5, 7), (10, 10))


def test_load_scene_and_mask_checks(tmp_path):
    Image.fromarray(make_scene((20, 12))).save(tmp_path / "s.png")
    Image.new("L", (20, 12), 0).save(tmp_path / "empty.png")
    with pytest.raises(InputError, match="exactly one of a mask or a box"):
        imaging.load_scene_and_mask(tmp_path / "s.png")
    with pytest.raises(InputError, match="exactly one of a mask or a box"):
        imaging.load_scene_and_mask(tmp_path / "s.png", tmp_path / "empty.png", (0, 0, 2, 2))
    with pytest.raises(InputError, match="mask is empty"):
        imaging.load_scene_and_mask(tmp_path / "s.png", tmp_path / "empty.png")
    rgb, alpha, mask = imaging.load_scene_and_mask(tmp_path / "s.png", box="0,0,4,4")
    assert rgb.shape == (12, 20, 3) and alpha is None and mask.sum() == 16


def test_resize_mask_keeps_slivers():
    sliver = np.zeros((64, 64), dtype=bool)
    sliver[:, 10] = True  # one pixel wide: less than half a pixel at 8×8
    small = imaging.resize_mask(sliver, (8, 8))
    assert small.any() and small[:, 1].all()
    assert not imaging.resize_mask(np.zeros((64, 64), bool), (8, 8)).any()


def test_reference_tensor():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    flat = Image.new("RGB", (40, 30), (51, 102, 204))
    x = imaging.reference_tensor(flat, 16, mean, std)
    assert x.shape == (1, 3, 16, 16)
    expected = (torch.tensor([51, 102, 204]) / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(x[0, :, 5, 5], expected, atol=1e-5)
    transparent = Image.new("RGBA", (10, 10), (0, 0, 0, 0))  # laid on white
    white = imaging.reference_tensor(transparent, 8, mean, std)
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))
    halves = np.zeros((10, 20, 3), np.uint8)
    halves[:, 10:] = 255
    cropped = imaging.reference_tensor(Image.fromarray(halves), 4, (0, 0, 0), (1, 1, 1), box=(10, 0, 20, 10))
    assert torch.allclose(cropped, torch.ones_like(cropped))


def test_composite_outside_is_exact_and_seam_is_inside():
    scene = make_scene((40, 30), seed=1)
    generated = make_scene((40, 30), seed=2)
    mask = np.zeros((30, 40), bool)
    mask[5:25, 8:32] = True
    out = imaging.composite(scene, generated, mask, radius=3)
    assert np.array_equal(out[~mask], scene[~mask])
    assert np.array_equal(out[12:18, 16:24], generated[12:18, 16:24])  # deep inside: all generated
    edge = out[5, 8:32].astype(int)
    assert not np.array_equal(edge, generated[5, 8:32].astype(int))  # the border row is blended
    hard = imaging.composite(scene, generated, mask, radius=0)
    assert np.array_equal(hard[mask], generated[mask])


def eroded_feather(mask, radius):
    """The feather as the successive erosions define it: ``ceil(radius)`` 3×3 minimum filters (Pillow pads by
    repeating the border), each adding ``1 / (steps + 1)`` to the weight where the mask survives."""
    hard = mask.astype(np.float32)
    steps = int(np.ceil(radius))
    if steps <= 0:
        return hard
    inner = Image.fromarray(mask.astype(np.uint8) * 255)
    alpha = hard / (steps + 1)
    for _ in range(steps):
        inner = inner.filter(ImageFilter.MinFilter(3))
        alpha += (np.asarray(inner) > 0).astype(np.float32) / (steps + 1)
    return alpha


@st.composite
def feather_masks(draw):
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["any", "full", "empty", "pixel", "all but a pixel", "line", "rectangle"]))
    y, x = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
    mask = np.zeros((height, width), bool)
    if kind == "any":
        mask = draw(arrays(bool, (height, width)))
    elif kind == "full":
        mask[:] = True
    elif kind == "pixel":
        mask[y, x] = True
    elif kind == "all but a pixel":
        mask[:] = True
        mask[y, x] = False
    elif kind == "line":
        direction = draw(st.sampled_from(["row", "column", "diagonal"]))
        if direction == "row":
            mask[y, :] = True
        elif direction == "column":
            mask[:, x] = True
        else:
            np.fill_diagonal(mask, True)
    elif kind == "rectangle":  # often touching the image's border
        mask[y : draw(st.integers(y + 1, height)), x : draw(st.integers(x + 1, width))] = True
    return mask


@settings(max_examples=300, deadline=None)
@given(feather_masks(), st.one_of(st.just(0.0), st.integers(0, 30).map(float), st.floats(0, 30)))
def test_feather_is_the_erosions_weight(mask, radius):
    alpha = imaging.feather_alpha(mask, radius)
    assert alpha.dtype == np.float32 and alpha.shape == mask.shape
    # the erosions add their shares one at a time in float32; the distance transform divides once
    np.testing.assert_allclose(alpha, eroded_feather(mask, radius), rtol=0, atol=1e-5)
    assert alpha.min() >= 0 and alpha.max() <= 1
    if radius == 0:
        assert np.array_equal(alpha, mask.astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.one_of(st.integers(0, 3000).map(float), st.floats(0, 1e300)))
def test_a_whole_image_mask_is_pasted_whole_for_any_radius(height, width, radius):
    # no pixel of the image is outside, so every pixel survives every erosion
    assert np.array_equal(imaging.feather_alpha(np.ones((height, width), bool), radius), np.ones((height, width)))


def test_feather_edge_radii():
    mask = np.zeros((6, 9), bool)
    mask[1:5, 2:8] = True
    assert np.array_equal(imaging.feather_alpha(mask, -1.0), mask.astype(np.float32))
    assert not imaging.feather_alpha(mask, math.inf).any()  # the limit of an ever wider, ever flatter ramp
    huge = imaging.feather_alpha(mask, 1e300)
    assert huge.dtype == np.float32 and huge.max() < 1e-290 + 1e-30
    with pytest.raises(ValueError, match=r"NaN"):
        imaging.feather_alpha(mask, math.nan)


@contextlib.contextmanager
def deadline(seconds):
    """Fail the test instead of waiting when the block runs longer than ``seconds`` (where there are timers)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        pytest.fail(f"still running after {seconds:.1f} s", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def best_time(work, runs=3):
    best = math.inf
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def test_feather_costs_the_same_whatever_the_radius():
    rows, columns = np.mgrid[:1024, :1024]
    disc = (rows - 512) ** 2 + (columns - 500) ** 2 < 450**2
    narrow = best_time(lambda: imaging.feather_alpha(disc, 10))
    budget = 3 * narrow + 0.25  # the slack absorbs a busy machine
    with deadline(10 * budget):
        wide = best_time(lambda: imaging.feather_alpha(disc, 10_000))
    assert wide <= budget, f"radius 10,000: {wide:.3f} s, radius 10: {narrow:.3f} s"
    scene_mask = np.zeros((96, 128), bool)
    scene_mask[10:90, 20:100] = True
    with deadline(10):
        huge = best_time(lambda: imaging.feather_alpha(scene_mask, 1e6))
    assert huge <= 0.5, f"radius 1e6 on 128×96: {huge:.3f} s"


def test_save_image_atomic(tmp_path):
    path = imaging.save_image_atomic(Image.fromarray(RGB), tmp_path / "sub" / "out.png")
    assert np.array_equal(np.asarray(Image.open(path)), RGB)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]
    imaging.save_image_atomic(Image.fromarray(RGB).convert("RGBA"), tmp_path / "out.jpg")
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"
    with pytest.raises(InputError, match=r"unknown image type '\.gif2'"):
        imaging.save_image_atomic(Image.fromarray(RGB), tmp_path / "out.gif2")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    path.write_bytes(b"old contents")

    class Broken(Image.Image):
        pass

    image = Image.fromarray(RGB)
    monkeypatch.setattr(image, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        imaging.save_image_atomic(image, path)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_cut_out_whitens_everything_but_the_mask():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:6] = True
    out = imaging.cut_out(rgb, mask)
    assert np.array_equal(out[mask], rgb[mask]) and (out[~mask] == 255).all() and out.dtype == np.uint8
    assert (imaging.cut_out(rgb, mask, fill=0)[~mask] == 0).all()
    with pytest.raises(ValueError, match=r"mask is 5×7 but the picture is 7×5"):
        imaging.cut_out(rgb, mask.T)
