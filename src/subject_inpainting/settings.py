"""``PaintSettings``: every option that says how to paint, defined once.

Each field carries its type, default, bounds and one line of help (``Option``), and the names it goes by:
the Python name (as diffusers spells it), the command-line flag and the batch job key. The pipeline's checks,
the flags of the commands, the keys of a batch job and the web page's controls are derived from these
fields, so an option has the same bounds everywhere. Nothing here imports torch: the command line checks
settings before anything heavy is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .presets import DECODES, DEFAULT_PRESET, PRESETS, describe
from .sampling.catalog import SAMPLERS

# The training schedule's length: no sampler takes more steps, and timesteps lie in [0, MAX_TIMESTEP].
MAX_STEPS = 1000
MAX_TIMESTEP = 1000
# Beyond these a value is a typo, not a request.
MAX_GUIDANCE = 100.0
MAX_NUM_IMAGES = 16  # one batch through the UNet; more pictures: paint again with other seeds
MAX_CONTEXT = 100.0
MAX_FEATHER = 10_000.0
MAX_DEEP_CACHE_BRANCH = 8
# Token merging keeps one destination token of each 2×2 tile, so at most 3 tokens in 4 can merge away.
MAX_TOKEN_MERGING = 0.75
REGIONS = ("full", "crop")

KINDS = ("int", "float", "choice", "switch", "interval")


class SettingsError(ValueError):
    """A painting option that cannot be used: ``"<option> <tail>"``, e.g. ``num_inference_steps must be a whole
    number between 1 and 1,000, got 0``. Every front end says the same ``tail`` after its own name of the
    option (its flag, its job key, its label: ``named``)."""

    def __init__(self, option: str, tail: str):
        super().__init__(f"{option} {tail}")
        self.option, self.tail = option, tail

    def named(self, name: str) -> str:
        """The sentence with ``name`` for the option."""
        return f"{name} {self.tail}"


class SettingsTypeError(SettingsError, TypeError):
    """A painting option of the wrong type (an ``int`` where a number of steps belongs ...)."""


@dataclass(frozen=True)
class Option:
    """What one field of ``PaintSettings`` is.

    Attributes:
        help: one line of help (the flag's, the page's, the docs table's).
        kind: ``int``, ``float`` (finite), ``choice`` (one of ``choices``), ``switch`` (a bool) or
            ``interval`` (two whole numbers ``low <= high``).
        low, high: bounds, inclusive (for an interval, of both ends).
        choices: the values of a ``choice``.
        flag: the command-line flag (default ``--`` + the name with dashes); for a switch whose default is
            on, the flag that turns it off (``--no-paste-back``).
        key: the batch job key (default the Python name).
        group: where the flag is listed: ``subject`` (modified guidance), ``speed`` (the preset's levers) or
            ``painting``.
        from_preset: None means the preset's value (``PaintSettings.resolved``).
        metavar: the flag's placeholder.
        aliases: other flags that mean the same (older spellings that keep working).
        none_means: what the value None stands for, where None is allowed (``the preset's``).
        off_help: for a switch that is on by default, the help of the flag that turns it off.
        label: the option's name where people read it (the web page's control, messages there).
    """

    help: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    flag: str = ""
    key: str = ""
    group: str = "painting"
    from_preset: bool = False
    metavar: str | None = None
    aliases: tuple[str, ...] = ()
    none_means: str = ""
    off_help: str = ""
    label: str = ""

    def __post_init__(self):
        assert self.kind in KINDS, self.kind
        assert self.kind != "choice" or self.choices, "a choice needs its choices"
        if self.from_preset and not self.none_means:
            object.__setattr__(self, "none_means", "the preset's")


def _option(default: Any, help: str, kind: str, **more: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, kind, **more)})


@dataclass(frozen=True)
class PaintSettings:
    """How to paint: the sampler and its speed levers, guidance, the region and the paste-back.

    Every field is checked when the settings are made (``SettingsError``, a ``ValueError``, naming the option,
    the value and its bounds; ``SettingsTypeError`` for a value of the wrong type). Fields whose default is
    None and whose ``Option.from_preset`` is set take the preset's value in ``resolved()``;
    ``PaintSettings.from_preset("fast", num_inference_steps=20)`` makes resolved settings in one step.
    """

    preset: str = _option(
        DEFAULT_PRESET,
        "; ".join(f"{name}: {describe(name)}" for name in PRESETS),
        "choice",
        choices=tuple(PRESETS),
        group="speed",
        label="Preset",
    )
    sampler: str | None = _option(
        None,
        "plms and ddim are the original samplers; the others are diffusers solvers (dpmsolver++ needs 15-20 steps)",
        "choice",
        choices=SAMPLERS,
        group="speed",
        from_preset=True,
        label="Sampler",
    )
    num_inference_steps: int | None = _option(
        None,
        "sampling steps",
        "int",
        low=1,
        high=MAX_STEPS,
        flag="--steps",
        key="steps",
        group="speed",
        from_preset=True,
        label="Steps",
    )
    deep_cache: int | None = _option(
        None,
        "reuse the UNet's deep features on N-1 calls out of N (DeepCache; 1 = off)",
        "int",
        low=1,
        high=MAX_STEPS,
        group="speed",
        from_preset=True,
        metavar="N",
        label="Deep cache",
    )
    deep_cache_branch: int | None = _option(
        None,
        "how many layers of the UNet's first block the reusing calls still run",
        "int",
        low=0,
        high=MAX_DEEP_CACHE_BRANCH,
        group="speed",
        from_preset=True,
        metavar="B",
        label="Deep cache branch",
    )
    guidance_interval: tuple[int, int] | None = _option(
        None,
        "guide only at timesteps LOW..HIGH, the conditional prediction alone elsewhere (0,1000 = every step)",
        "interval",
        low=0,
        high=MAX_TIMESTEP,
        group="speed",
        from_preset=True,
        metavar="LOW,HIGH",
        label="Guidance interval",
    )
    token_merging: float | None = _option(
        None,
        "merge this fraction of the tokens in the UNet's top-resolution self-attention (ToMe; 0 = off): faster "
        "sampling, slightly different pictures",
        "float",
        low=0.0,
        high=MAX_TOKEN_MERGING,
        group="speed",
        from_preset=True,
        metavar="RATIO",
        label="Token merging",
    )
    decode: str | None = _option(
        None,
        "full, or region: decode only the latents around the region when pasting back; faster, but the VAE's "
        "group norms then see only that window, so the region comes out a few levels off",
        "choice",
        choices=DECODES,
        group="speed",
        from_preset=True,
        label="Decode",
    )
    guidance_scale: float = _option(
        5.0,
        "classifier-free guidance scale; 1 turns guidance off",
        "float",
        low=0.0,
        high=MAX_GUIDANCE,
        flag="--guidance",
        key="guidance",
        aliases=("--guidance-scale",),
        label="Guidance scale",
    )
    eta: float = _option(0.0, "DDIM noise (ddim only)", "float", low=0.0, high=1.0, label="Eta")
    num_images: int = _option(
        1, "images to generate in one batch", "int", low=1, high=MAX_NUM_IMAGES, label="Images per reference"
    )
    model_weight: float = _option(
        0.8,
        "with a fine-tuned subject: weight w of the fine-tuned model against the pretrained one",
        "float",
        low=0.0,
        high=1.0,
        group="subject",
        label="Model weight",
    )
    guidance_threshold: int = _option(
        1000,
        "with a fine-tuned subject: modified guidance below this timestep, plain pretrained guidance above "
        "(1000 = always)",
        "int",
        low=0,
        high=MAX_TIMESTEP,
        group="subject",
        label="Guidance threshold",
    )
    region: str = _option(
        "full",
        "full: the whole scene goes to the model, stretched to its square (the original); crop: a square around "
        "the mask (better for large photos and small masks)",
        "choice",
        choices=REGIONS,
        label="Region",
    )
    context: float = _option(
        2.0,
        "with region crop: the crop's side over the mask's longer side",
        "float",
        low=1.0,
        high=MAX_CONTEXT,
        label="Context",
    )
    feather: float | None = _option(
        None,
        "seam width in pixels inside the mask (0 = a hard edge)",
        "float",
        low=0.0,
        high=MAX_FEATHER,
        none_means="about 1% of the scene's shorter side",
        label="Feather",
    )
    paste_back: bool = _option(
        True,
        "paste the result into the scene inside the mask, every other pixel the scene's",
        "switch",
        flag="--no-paste-back",
        off_help="return the model's whole output instead of pasting it into the scene inside the mask",
        label="Paste back",
    )
    keep_known: bool = _option(
        False,
        "hold the model's prediction outside the region to the scene at every step (not in the original; helps "
        "models that shift the scene's colours)",
        "switch",
        label="Keep the scene outside the region",
    )

    def __post_init__(self):
        for name, option in options():
            value = getattr(self, name)
            if value is None and option.none_means:
                continue
            object.__setattr__(self, name, check_value(name, option, value))
        sampler = self.sampler or PRESETS[self.preset]["sampler"]
        if self.eta and sampler != "ddim":
            raise SettingsError("eta", f"applies to sampler ddim only (got sampler {sampler}, eta {self.eta:g})")

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **overrides: Any) -> PaintSettings:
        """The settings of ``preset`` with ``overrides`` (None values are the preset's), resolved."""
        return cls(preset=preset, **overrides).resolved()

    def resolved(self) -> PaintSettings:
        """These settings with every option left to the preset (None) set to the preset's value."""
        chosen = PRESETS[self.preset]
        return self.replace(**{n: chosen[n] for n, o in options() if o.from_preset and getattr(self, n) is None})

    def replace(self, **changes: Any) -> PaintSettings:
        """A copy with ``changes`` (checked like any settings)."""
        return dataclasses.replace(self, **changes)


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(PaintSettings)}


def options() -> Iterator[tuple[str, Option]]:
    """Every option's Python name and ``Option``, in the order of ``PaintSettings``."""
    for f in dataclasses.fields(PaintSettings):
        yield f.name, f.metadata["option"]


def option(name: str) -> Option:
    """The ``Option`` of the field ``name``."""
    return _fields()[name].metadata["option"]


def default(name: str) -> Any:
    """The default value of the field ``name``."""
    return _fields()[name].default


def flag(name: str) -> str:
    """The command-line flag of the field ``name``."""
    return option(name).flag or "--" + name.replace("_", "-")


def key(name: str) -> str:
    """The batch job key of the field ``name``."""
    return option(name).key or name


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,g}"


def bounds_text(option: Option) -> str:
    """``between 1 and 1,000`` / ``one of full, crop`` / ``true or false``."""
    if option.kind == "choice":
        return "one of " + ", ".join(option.choices)
    if option.kind == "switch":
        return "true or false"
    low, high = option.low, option.high
    if option.kind in ("int", "interval"):
        low, high = (None if v is None else int(v) for v in (low, high))
    return f"between {_fmt(low)} and {_fmt(high)}"


def range_text(option: Option) -> str:
    """A number's range as help texts show it: ``1..1,000``."""
    low, high = option.low, option.high
    if option.kind in ("int", "interval"):
        low, high = int(low), int(high)
    return f"{_fmt(low)}..{_fmt(high)}"


def with_flags(message: str) -> str:
    """A settings message with the Python names of the options replaced by their command-line flags."""
    return _renamed(message, flag)


def with_keys(message: str) -> str:
    """A settings message with the Python names of the options replaced by their batch job keys."""
    return _renamed(message, key)


def _renamed(message: str, to) -> str:
    pattern = "|".join(sorted((n for n, _ in options()), key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({pattern})(?![\w-])", lambda m: to(m.group(1)), message)


def check_value(name: str, option: Option, value: Any, shown: str | None = None) -> Any:
    """``value`` as the option holds it (an ``int``, a finite ``float``, one of the choices, a bool, a pair of
    ints), or an error naming the option, the value and what it takes.

    ``shown`` is how the value came (the text of a flag or a form field), for messages.

    Raises:
        SettingsTypeError: a value of another type (a string for a number, a bool for a count ...).
        SettingsError: a value outside the bounds, or not finite.
    """
    kind = option.kind
    got = shown if shown is not None else repr(value)
    if kind == "switch":
        if not isinstance(value, bool):
            raise SettingsTypeError(name, f"must be True or False, got {got}")
        return value
    if kind == "choice":
        if not isinstance(value, str) or value not in option.choices:
            raise SettingsError(name, f"must be {bounds_text(option)}, got {got}")
        return value
    if kind == "interval":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
            raise SettingsTypeError(name, f"must be two timesteps LOW,HIGH, got {got}")
        low, high = (_whole(name, option, v, "must have whole timesteps", got) for v in value)
        if low > high:
            raise SettingsError(name, f"must have LOW <= HIGH, got {got}")
        return low, high
    if kind == "int":
        return _whole(name, option, value, "must be a whole number", shown)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsTypeError(name, f"must be a number, got {got}")
    number = float(value)
    if not math.isfinite(number) or not option.low <= number <= option.high:
        raise SettingsError(name, f"must be a finite number {bounds_text(option)}, got {got}")
    return number


def parse_value(name: str, value: Any) -> Any:
    """The value of option ``name`` from text (a flag's argument, a CSV cell, a form field) or from a JSON
    value (a batch job's), checked as ``check_value`` checks it: numbers may come as text, a switch as
    ``true``/``false``/``yes``/``no``/``1``/``0``, an interval as ``LOW,HIGH`` or a list of two.

    Raises:
        SettingsError: a value the option does not take (the same sentence as for the value itself).
    """
    opt, shown = option(name), None
    if isinstance(value, str):
        text = value.strip()
        shown = text if opt.kind in ("int", "float", "interval") else None  # a number as it was written
        value = _from_text(opt, text)
    elif opt.kind == "interval" and isinstance(value, list):
        value = tuple(value)
    return check_value(name, opt, value, shown)


def _from_text(opt: Option, text: str) -> Any:
    """``text`` as the option's kind reads it; what does not read stays text, for ``check_value`` to name."""
    if opt.kind == "switch":
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        return words.get(text.lower(), text)
    if opt.kind == "interval":
        ends = text.split(",")
        return tuple(_number(end.strip()) for end in ends) if len(ends) == 2 else text
    if opt.kind in ("int", "float"):
        return _number(text)
    return text


def _number(text: str) -> Any:
    """An int for whole-number text, a float for other numbers (``inf``, ``1e400`` included), else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _whole(name: str, option: Option, value: Any, what: str, shown: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 20.0 from a JSON file or a form is 20
        else:
            raise SettingsTypeError(name, f"{what}, got {shown if shown is not None else repr(value)}")
    number = int(value)
    if not option.low <= number <= option.high:
        raise SettingsError(name, f"{what} {bounds_text(option)}, got {shown if shown is not None else f'{number:,}'}")
    return number


def options_table() -> str:
    """Every option as a Markdown table (``docs/options.md`` holds it): Python name, flag, job key, default,
    what it takes, help."""
    rows = [
        "| Python (`PaintSettings`, pipeline call) | command line | batch job key | label (page, nodes) | default "
        "| accepted | what it does |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, opt in options():
        value = default(name)
        shown = opt.none_means if value is None else ",".join(map(str, value)) if isinstance(value, tuple) else value
        accepted = "LOW,HIGH, each " + range_text(opt) if opt.kind == "interval" else bounds_text(opt)
        if opt.kind in ("int", "float"):
            accepted = range_text(opt).replace("..", " – ") + (" (whole)" if opt.kind == "int" else "")
        flags = ", ".join(f"`{f}`" for f in (flag(name), *opt.aliases))
        text = f"{opt.help}" + (f" (the flag: {opt.off_help})" if opt.off_help else "")
        rows.append(f"| `{name}` | {flags} | `{key(name)}` | {opt.label} | {shown} | {accepted} | {text} |")
    return "\n".join(rows) + "\n"
