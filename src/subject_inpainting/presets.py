"""The pipeline's presets: named settings of the sampler and of the speed levers (no torch here, so the
command line can show and check them before anything heavy is loaded).

- ``original``: the original recipe, every step in full (the path the recorded reference outputs pin down).
- ``fast``: the speed levers that keep the toy benchmark's quality (benchmarks/README.md has the numbers).

A value given explicitly to the pipeline call (or on the command line) wins over its preset's.
"""

from __future__ import annotations

from typing import Any

DECODES = ("full", "region")
# Latent cells decoded around the region with ``decode="region"``, on each side.
DECODE_MARGIN = 8

DEFAULT_PRESET = "fast"
PRESETS: dict[str, dict[str, Any]] = {
    "original": {
        "sampler": "plms",
        "num_inference_steps": 50,
        "deep_cache": 1,
        "deep_cache_branch": 0,
        "guidance_interval": None,
        "token_merging": 0.0,
        "decode": "full",
    },
    "fast": {
        "sampler": "dpmsolver++",
        "num_inference_steps": 15,
        "deep_cache": 4,
        "deep_cache_branch": 0,
        "guidance_interval": (100, 800),
        "token_merging": 0.5,
        "decode": "full",
    },
}


def describe(preset: str) -> str:
    """What ``preset`` sets, in words (for help texts)."""
    p = PRESETS[preset]
    cache = f"deep cache every {p['deep_cache']} calls" if p["deep_cache"] > 1 else "no deep cache"
    interval = p["guidance_interval"]
    guided = "guidance at every step" if interval is None else f"guidance at timesteps {interval[0]}-{interval[1]}"
    merging = f", token merging {p['token_merging']:g}" if p["token_merging"] else ""
    return f"{p['sampler']} {p['num_inference_steps']} steps, {cache}, {guided}{merging}, {p['decode']} decode"


def preset_settings(preset: str, **given: Any) -> dict[str, Any]:
    """The settings of ``preset`` (a key of ``PRESETS``), with the ``given`` values that are not None."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    unknown = set(given) - set(PRESETS[preset])
    assert not unknown, unknown
    return {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
