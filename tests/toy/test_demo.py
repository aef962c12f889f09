"""``subject-inpaint demo`` end to end on the embedded model, as a new user runs it."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from subject_inpainting import cli


def test_demo_writes_a_grid_and_prints_where(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["demo", "--out", str(out), "--cases", "2", "--steps", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "identity scores" in captured.err
    assert re.search(r"painted outlines read as: .*\(subject: \w+\).*; [0-2] of 2 right", captured.err)
    grid = np.asarray(Image.open(out))
    # two rows of five cells (scene | region | reference | result | truth), each 3 × 64 pixels, with margins
    assert grid.shape[0] >= 2 * 192 and grid.shape[1] >= 5 * 192
    assert cli.main(["demo", "--out", str(out)]) == 2  # never overwrites without --overwrite
    assert "exists" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_command_in_a_fresh_process(tmp_path):
    """The README's first command: the installed script, no model named, default settings."""
    proc = subprocess.run(
        [sys.executable, "-m", "subject_inpainting.cli", "demo"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / proc.stdout.strip().splitlines()[-1]
    assert path.name == "subject-inpaint-demo.png" and Image.open(path).size[0] > 0
