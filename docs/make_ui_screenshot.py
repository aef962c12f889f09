#!/usr/bin/env python
"""Write ``docs/ui.png``: the web page as ``subject-inpaint ui`` serves it on the embedded toy model, photographed
in headless Chromium after a toy scene is uploaded, its subject's region painted with the brush, a reference
added and Generate pressed, with the result on the page.

    python docs/make_ui_screenshot.py                        # writes docs/ui.png
    python docs/make_ui_screenshot.py --out /tmp/ui.png      # elsewhere
    python docs/make_ui_screenshot.py --chromium /path/to/chromium

Needs the ``[ui]`` extra (Gradio), Playwright for Python (``pip install playwright``; its own browsers are not
needed) and a Chromium: ``--chromium``, else ``SI_CHROMIUM``, else ``chromium`` on the PATH (Debian:
``apt-get install chromium``).

The page is the one users get: the script runs ``subject-inpaint ui`` itself in a child process on a free port
and drives it as a person would. The scene and the reference come from the toy world the embedded model was
trained on (a held-out subject's case, enlarged so that the brush can paint on it); the brush paints the case's
region. The page's parts are found by the ids it sets (``#scene-editor``, ``#references``, ``#generate``,
``#results``, ``#downloads``) and the brush by its label, not by their position, so other controls may come
and go without touching this script.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

from subject_inpainting.utils.browser import CHROMIUM_FLAGS, find_chromium, free_port

DOCS = Path(__file__).resolve().parent
VIEWPORT = {"width": 1400, "height": 1100}
SCENE_SCALE = 4  # the toy scene is enlarged this many times (nearest neighbour) so that the brush can paint it
REFERENCE_SIDE = 128
CASE_SEED = 100  # the held-out case shown (tests/fixtures/ui's pictures are the same case)
STROKE_GAP = 8  # screen pixels between the brush's strokes across the region
SERVER_START_S = 180
GENERATE_S = 600


def toy_pictures(folder: Path) -> tuple[Path, Path, tuple[int, int, int, int]]:
    """A held-out toy case's scene (enlarged) and reference as PNG files in ``folder``, and the case's region
    as a box in the enlarged scene's pixels."""
    import numpy as np

    from subject_inpainting.toy import world
    from subject_inpainting.weights import default_model

    model = default_model()
    if model is None:
        raise SystemExit("this installation has no embedded toy model")
    ident = world.split_identities(world.trained_world(model), "heldout", 1)[0]
    case = world.make_case(ident, seed=CASE_SEED)
    side = case.scene.shape[0] * SCENE_SCALE
    scene, reference = folder / "scene.png", folder / "reference.png"
    Image.fromarray(case.scene).resize((side, side), Image.NEAREST).save(scene)
    Image.fromarray(case.reference).resize((REFERENCE_SIDE, REFERENCE_SIDE), Image.BICUBIC).save(reference)
    rows, cols = np.nonzero(case.mask)
    box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    return scene, reference, tuple(int(v) * SCENE_SCALE for v in box)


def serve(port: int, out_dir: Path, log: Path) -> subprocess.Popen:
    """``subject-inpaint ui`` on ``port`` in a child process; returns once the page answers."""
    command = [sys.executable, "-m", "subject_inpainting.cli", "ui", "--port", str(port), "--out-dir", str(out_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"subject-inpaint ui stopped (exit {server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return server
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    stop(server)
    raise SystemExit(f"subject-inpaint ui did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def upload_scene(page, expect, scene: Path) -> None:
    editor = page.locator("#scene-editor")
    # The editor takes a file only once it is running (its zoom shows); before that the upload is lost.
    expect(editor).to_contain_text("%", timeout=60_000)
    editor.locator("input[type=file]").set_input_files(str(scene))
    expect(editor.get_by_text("Upload an image")).to_have_count(0, timeout=60_000)
    page.wait_for_timeout(1000)  # the picture is drawn on the canvas


def paint_region(page, scene_side: int, box: tuple[int, int, int, int]) -> None:
    """Paint ``box`` (scene pixels) with the brush, in horizontal strokes; the scene is drawn at the centre of
    the editor's canvas at its zoom."""
    page.locator("#scene-editor button[aria-label=Brush]").click()
    canvas = page.locator("#scene-editor canvas").first.bounding_box()
    zoom_text = re.search(r"(\d+)%", page.locator("#scene-editor").inner_text())
    zoom = int(zoom_text.group(1)) / 100 if zoom_text else 1.0
    cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2

    def screen(x: float, y: float) -> tuple[float, float]:
        return cx + (x - scene_side / 2) * zoom, cy + (y - scene_side / 2) * zoom

    x0, y0, x1, y1 = box
    inset = (x1 - x0) * 0.15  # the brush reaches past the stroke's path
    left, top = screen(x0 + inset, y0 + inset)
    right, bottom = screen(x1 - inset, y1 - inset)
    y = top
    while y <= bottom:
        page.mouse.move(left, y)
        page.mouse.down()
        page.mouse.move(right, y, steps=10)
        page.mouse.up()
        y += STROKE_GAP


def screenshot(out: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="ui-screenshot-") as tmp:
        folder = Path(tmp)
        scene, reference, box = toy_pictures(folder)
        port = free_port()
        server = serve(port, folder / "results", folder / "server.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
                try:
                    page = browser.new_page(viewport=VIEWPORT)
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.locator("#scene-editor input[type=file]").wait_for(state="attached", timeout=60_000)
                    upload_scene(page, expect, scene)
                    paint_region(page, Image.open(scene).width, box)
                    page.locator("#references input[type=file]").set_input_files(str(reference))
                    page.get_by_text(reference.name).first.wait_for(timeout=60_000)
                    page.locator("#generate").click()
                    page.locator("#results img").first.wait_for(timeout=GENERATE_S * 1000)
                    page.locator("#downloads a").first.wait_for(timeout=60_000)
                    page.wait_for_timeout(1500)  # the progress display clears
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out), full_page=True)
                finally:
                    browser.close()
        finally:
            stop(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS / "ui.png", help="where the picture goes (docs/ui.png)")
    parser.add_argument("--chromium", help="the Chromium executable (default: SI_CHROMIUM, else chromium on the PATH)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        parser.error("no Chromium: install it (Debian: apt-get install chromium) or name it with --chromium")
    screenshot(args.out, chromium)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
