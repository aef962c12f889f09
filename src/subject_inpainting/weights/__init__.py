"""The embedded default model: small weights trained by the project on its toy world (``toy/``).

``subject-inpaint toy train`` reproduces them; ``default_model()`` is what every command uses when no
model is named.
"""

from __future__ import annotations

from pathlib import Path

EMBEDDED = Path(__file__).parent / "toy"


def default_model() -> Path | None:
    """The embedded model's folder, or None if this installation has none."""
    folder = EMBEDDED / "model"
    return folder if (folder / "model_index.json").is_file() else None


def default_evaluator() -> Path | None:
    """The embedded evaluator identity encoder's folder (for the toy benchmark and the demo's scores)."""
    folder = EMBEDDED / "evaluator"
    return folder if (folder / "config.json").is_file() else None
