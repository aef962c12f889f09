"""Parsers of numbers and boxes for command-line options, job files and the Python API.

Every value is finite and inside documented bounds, and every refusal is one sentence naming the value
received and what was expected: ``--box 0,0,1e400,10`` must not end in an ``OverflowError``.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable, Sequence

# Box coordinates are pixels; beyond this no image the project reads can reach.
MAX_COORDINATE = 2**31 - 1
MAX_SEED = 2**63 - 1


class ParseError(ValueError):
    """A number or box that cannot be used (one sentence)."""


def _fmt(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {_fmt(low)} and {_fmt(high)}"
    return f">= {_fmt(low)}" if low is not None else f"<= {_fmt(high)}"


def parse_int(value: object, what: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number in ``[low, high]`` from text or an int (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Integral)):
        raise ParseError(f"{what}: expected a whole number, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ParseError(f"{what}: expected a whole number, got {value!r}") from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise ParseError(f"{what}: expected a whole number {_bounds(low, high)}, got {number:,}")
    return number


def parse_float(value: object, what: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number in ``[low, high]`` from text or a real number."""
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise ParseError(f"{what}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ParseError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ParseError(f"{what}: expected a finite number, got {value!r}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise ParseError(f"{what}: expected a number {_bounds(low, high)}, got {number:g}")
    return number


def parse_seed(value: object, what: str = "seed") -> int:
    """A seed: a whole number from 0 to 2**63 - 1 (what ``torch.Generator.manual_seed`` takes)."""
    return parse_int(value, what, 0, MAX_SEED)


def parse_box(value: object, what: str = "box") -> tuple[int, int, int, int]:
    """A box ``x0,y0,x1,y1`` in pixels (x1, y1 exclusive) from text (commas or spaces) or four real numbers
    (a sequence, a 1-D numpy array or tensor); each finite and within ±2**31, rounded to whole pixels.
    Emptiness and fitting inside an image are checked where the image is known (``imaging.box_to_mask``).

    Raises:
        ParseError: one sentence naming the box and what is wrong with it.
    """
    if isinstance(value, str):
        parts: list[object] = [p.strip() for p in value.replace(" ", ",").split(",") if p.strip()]
    elif hasattr(value, "tolist") and getattr(value, "ndim", None) == 1:
        parts = list(value.tolist())
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        parts = [v.item() if hasattr(v, "item") and getattr(v, "ndim", None) == 0 else v for v in value]
    else:
        raise ParseError(f"{what} {_show(value)}: expected four numbers x0,y0,x1,y1")
    if len(parts) != 4:
        raise ParseError(f"{what} {_show(value)}: expected four numbers x0,y0,x1,y1, got {len(parts)}")
    numbers_: list[int] = []
    for part in parts:
        if (
            isinstance(part, bool)
            or not isinstance(part, (str, numbers.Real))
            or (isinstance(part, str) and not isinstance(value, str))
        ):
            raise ParseError(f"{what} {_show(value)}: {part!r} is not a number")
        try:
            number = float(part)
        except (ValueError, OverflowError):
            raise ParseError(f"{what} {_show(value)}: {part!r} is not a number") from None
        if not math.isfinite(number):
            raise ParseError(f"{what} {_show(value)}: {part!r} is not a finite number")
        if abs(number) > MAX_COORDINATE:
            raise ParseError(f"{what} {_show(value)}: {part!r} is beyond any image (at most {MAX_COORDINATE:,})")
        numbers_.append(round(number))
    return numbers_[0], numbers_[1], numbers_[2], numbers_[3]


def _show(value: object, limit: int = 60) -> str:
    """The value on one line, shortened (a box may come as any object through the API)."""
    text = " ".join(repr(tuple(value) if isinstance(value, list) else value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------
# argparse types: the same parsers, with argparse's one-line error
# ---------------------------------------------------------------------------------------------------
def _option(parse: Callable[[str], object]) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ParseError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    return convert


def int_option(low: int | None = 1, high: int | None = None) -> Callable[[str], object]:
    """An argparse ``type``: a whole number in ``[low, high]``."""
    return _option(lambda text: parse_int(text, "value", low, high))


def float_option(low: float | None = None, high: float | None = None) -> Callable[[str], object]:
    """An argparse ``type``: a finite number in ``[low, high]``."""
    return _option(lambda text: parse_float(text, "value", low, high))


seed_option = _option(parse_seed)
box_option = _option(lambda text: parse_box(text, "box"))
