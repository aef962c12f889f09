"""The web page in a real browser: headless Chromium driven by Playwright against the page served by the
test, on the embedded model. Skipped when Chromium (``SI_CHROMIUM`` or ``chromium`` on the PATH), Playwright
or Gradio is missing; included in the default run otherwise. Screenshots go to ``SI_SCREENSHOTS`` (default:
the test's temporary folder)."""

from __future__ import annotations

import io
import os
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")
from subject_inpainting.utils.browser import CHROMIUM_FLAGS, find_chromium, free_port  # noqa: E402

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (install Debian's chromium, or set SI_CHROMIUM)"),
]

from subject_inpainting import weights  # noqa: E402
from subject_inpainting.ui import UISettings, launch, unreadable  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "ui"
FLAGS = list(CHROMIUM_FLAGS)
STROKE = 40  # half-side, in screen pixels, of the square the test paints at the scene's centre


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("ui-results")
    port = free_port()
    app = launch(UISettings(model=str(weights.default_model()), out_dir=out), port=port, block=False)
    yield f"http://127.0.0.1:{port}/", out
    app.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(server[0])
    page.locator("#scene-editor input[type=file]").wait_for(state="attached", timeout=30_000)
    yield page
    page.close()


def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def upload_scene(page) -> None:
    editor = page.locator("#scene-editor")
    # The editor takes a file only once it is running (its zoom shows); before that the upload is lost.
    sync_api.expect(editor).to_contain_text("%", timeout=30_000)
    editor.locator("input[type=file]").set_input_files(str(FIXTURES / "scene.png"))
    sync_api.expect(editor.get_by_text("Upload an image")).to_have_count(0, timeout=30_000)
    page.wait_for_timeout(500)  # the picture is drawn on the canvas


def paint_centre(page) -> float:
    """Paint a filled square at the centre of the scene with the brush; returns the editor's zoom."""
    page.locator("#scene-editor button[aria-label=Brush]").click()
    box = page.locator("#scene-editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for dy in range(-STROKE, STROKE + 1, 8):
        page.mouse.move(cx - STROKE, cy + dy)
        page.mouse.down()
        page.mouse.move(cx + STROKE, cy + dy, steps=8)
        page.mouse.up()
    zoom = re.search(r"(\d+)%", page.locator("#scene-editor").inner_text())
    return int(zoom.group(1)) / 100 if zoom else 1.0


def upload_reference(page) -> None:
    page.locator("#references input[type=file]").set_input_files(str(FIXTURES / "reference.png"))
    page.get_by_text("reference.png").first.wait_for(timeout=30_000)  # slow on a busy machine


def test_paint_a_subject_in_the_browser(page, server, tmp_path):
    upload_scene(page)
    zoom = paint_centre(page)
    upload_reference(page)
    page.locator("#generate").click()
    page.locator("#results img").first.wait_for(timeout=120_000)
    page.get_by_text("Done: 1 result(s)").wait_for(timeout=10_000)
    page.screenshot(path=str(screenshots(tmp_path) / "ui.png"), full_page=True)

    link = page.locator("#downloads a").first.get_attribute("href")
    with urllib.request.urlopen(link, timeout=30) as response:
        result = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB")).astype(int)
    scene = np.asarray(Image.open(FIXTURES / "scene.png").convert("RGB")).astype(int)
    assert result.shape == scene.shape
    # The painted square in scene pixels: STROKE / zoom around the centre, plus the brush's radius.
    h, w = scene.shape[:2]
    reach = STROKE / zoom
    core = (
        slice(int(h / 2 - reach / 2), int(h / 2 + reach / 2)),
        slice(int(w / 2 - reach / 2), int(w / 2 + reach / 2)),
    )
    assert np.abs(result[core] - scene[core]).mean() > 5, "nothing painted inside the mask"
    outside = np.ones((h, w), bool)
    margin = reach + 32  # the brush reaches 24-25 scene pixels past the stroke's path (measured)
    outside[int(h / 2 - margin) : int(h / 2 + margin), int(w / 2 - margin) : int(w / 2 + margin)] = False
    changed = np.argwhere((result != scene).any(-1))
    assert np.array_equal(result[outside], scene[outside]), (
        f"pixels changed outside the mask: rows {changed[:, 0].min()}-{changed[:, 0].max()}, columns "
        f"{changed[:, 1].min()}-{changed[:, 1].max()}; zoom {zoom}"
    )
    assert any(server[1].glob("*.png"))  # the download is the file the server wrote


def test_no_mask_is_a_message_and_the_page_keeps_working(page, tmp_path):
    upload_scene(page)
    upload_reference(page)
    page.locator("#generate").click()
    message = page.get_by_text("Paint the region to fill with the brush")
    message.first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots(tmp_path) / "ui-no-mask.png"), full_page=True)
    assert page.get_by_text("Traceback").count() == 0
    paint_centre(page)  # the server keeps serving: the same page now paints
    page.locator("#generate").click()
    page.get_by_text("Done: 1 result(s)").wait_for(timeout=120_000)


def test_a_scene_that_is_not_an_image_is_one_sentence_and_the_page_keeps_working(page, tmp_path):
    not_a_picture = tmp_path / "holiday.png"
    not_a_picture.write_text("a shopping list, named like a picture")
    editor = page.locator("#scene-editor")
    sync_api.expect(editor).to_contain_text("%", timeout=30_000)
    editor.locator("input[type=file]").set_input_files(str(not_a_picture))
    # The page shows the sentence and nothing else: exact=True matches an element holding only that text.
    page.get_by_text(unreadable("scene"), exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots(tmp_path) / "ui-not-an-image.png"), full_page=True)
    shown = page.locator("body").inner_text()
    assert "holiday" not in shown and str(tmp_path) not in shown and "/tmp/" not in shown
    assert "Traceback" not in shown and "Error:" not in shown
    upload_scene(page)  # the server keeps serving: a picture now paints
    paint_centre(page)
    upload_reference(page)
    page.locator("#generate").click()
    page.get_by_text("Done: 1 result(s)").wait_for(timeout=120_000)
