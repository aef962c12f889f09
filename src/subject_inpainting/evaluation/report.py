"""Reports of the benchmark runners: ``report.json`` (every number and its settings) and ``report.html`` (the
metric table and a grid of inputs and outputs, thumbnails embedded so the page travels alone)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..settings import PaintSettings
from ..utils import write_text_atomic

THUMB = 160  # pixels, longer side


@dataclass
class Generation:
    """How a runner paints (written into its report): the model, sampler, steps, guidance and seed (case
    ``k`` of a run is painted with ``seed + k``)."""

    model: str
    sampler: str = "plms"
    steps: int = 50
    guidance_scale: float = 5.0
    seed: int = 0

    def settings(self, **more: Any) -> PaintSettings:
        """The ``PaintSettings`` of this generation (``more``: other options): the named sampler and steps,
        every step in full (the ``original`` preset), as the papers' protocol paints."""
        return PaintSettings(
            preset="original",
            sampler=self.sampler,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            **more,
        )


def print_summary(report: dict[str, Any], out: str | os.PathLike) -> None:
    """Each metric of a report on a line, then where the page is (nothing on a process that did not score)."""
    for name, m in report.get("metrics", {}).items():
        print(f"{name}: {m['value']:.4f}  ({m['variant']})")
    if report:
        print(Path(out) / "report.html")


def _thumbnail(path: str | os.PathLike) -> str:
    """A data URI of a small JPEG of the image at ``path`` (an empty string if it cannot be read)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
    except OSError:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def render_html(report: dict[str, Any], rows: Sequence[dict[str, Any]], title: str, max_rows: int = 48) -> str:
    """The page: settings, the metric table (value and variant), then up to ``max_rows`` rows of images.

    ``rows``: ``{"id", "images": {column: path}, "scores": {name: value}}``."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "img{display:block;max-width:160px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>variant</th></tr>",
    ]
    for name, m in report.get("metrics", {}).items():
        cells = [html.escape(name), _number(m.get("value")), html.escape(str(m.get("variant", "")))]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table><h2>Settings</h2><table>")
    for key, value in report.get("settings", {}).items():
        parts.append(f"<tr><th>{html.escape(str(key))}</th><td>{_number(value)}</td></tr>")
    parts.append("</table>")
    if rows:
        columns = list(rows[0]["images"])
        scores = list(rows[0].get("scores", {}))
        shown = rows[:max_rows]
        parts.append(f"<h2>Cases ({len(shown)} of {len(rows)})</h2><table><tr><th>case</th>")
        parts += [f"<th>{html.escape(c)}</th>" for c in columns + scores]
        parts.append("</tr>")
        for row in shown:
            parts.append(f"<tr><td>{html.escape(str(row['id']))}</td>")
            for c in columns:
                uri = _thumbnail(row["images"][c])
                parts.append(f"<td><img alt='{html.escape(c)}' src='{uri}'></td>" if uri else "<td>—</td>")
            parts += [f"<td>{_number(row['scores'][s])}</td>" for s in scores]
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(
    out: str | os.PathLike, report: dict[str, Any], rows: Sequence[dict[str, Any]], title: str
) -> tuple[Path, Path]:
    """Write ``OUT/report.json`` and ``OUT/report.html`` (each atomically); returns their paths."""
    out = Path(out)
    js = write_text_atomic(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    page = write_text_atomic(out / "report.html", render_html(report, rows, title))
    return js, page
