"""The number and box parsers behind every option: finite, bounded, and only ever one ``ParseError``."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subject_inpainting.utils.parse import (
    MAX_COORDINATE,
    MAX_SEED,
    ParseError,
    box_option,
    float_option,
    int_option,
    parse_box,
    parse_float,
    parse_int,
    parse_seed,
)

coordinates = st.floats(min_value=-MAX_COORDINATE, max_value=MAX_COORDINATE, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_box_or_one_parse_error(text):
    try:
        box = parse_box(text)
    except ParseError as e:
        assert "box" in str(e) and "\n" not in str(e)
    else:
        assert len(box) == 4 and all(isinstance(v, int) and abs(v) <= MAX_COORDINATE + 1 for v in box)


@settings(max_examples=200, deadline=None)
@given(st.lists(coordinates, min_size=4, max_size=4), st.sampled_from([",", " ", ", "]))
def test_four_finite_numbers_round_to_whole_pixels(values, separator):
    text = separator.join(repr(v) for v in values)
    assert parse_box(text) == tuple(round(v) for v in values)
    assert parse_box(values) == tuple(round(v) for v in values)  # the API's sequences alike
    assert parse_box(np.array(values)) == tuple(round(v) for v in values)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(coordinates, min_size=4, max_size=4),
    st.integers(0, 3),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e400, 2.0**40]),
)
def test_a_non_finite_or_absurd_coordinate_is_named(values, index, bad):
    values[index] = bad
    with pytest.raises(ParseError) as e:
        parse_box(",".join(repr(v) for v in values))
    assert str(e.value).startswith("box ") and ("finite" in str(e.value) or "beyond any image" in str(e.value))


@pytest.mark.parametrize("value", [(1, 2, 3), [1, 2, 3, 4, 5], {"x0": 1}, 7, None, ("a", 1, 2, 3), (True, 1, 2, 3)])
def test_other_shapes_and_types_are_refused(value):
    with pytest.raises(ParseError, match="box"):
        parse_box(value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.integers(-5, 5), st.integers(6, 10**9))
def test_whole_numbers_are_in_bounds_or_refused(text, low, high):
    try:
        value = parse_int(text, "--steps", low, high)
    except ParseError as e:
        assert str(e).startswith("--steps: expected a whole number")
    else:
        assert low <= value <= high and value == int(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.floats(), st.integers()))
def test_numbers_are_finite_and_in_bounds_or_refused(value):
    try:
        number = parse_float(value, "--guidance", 0.0, 100.0)
    except ParseError as e:
        assert str(e).startswith("--guidance: expected")
    else:
        assert math.isfinite(number) and 0.0 <= number <= 100.0


@pytest.mark.parametrize("text", ["1e300", "inf", "-inf", "nan", "-1", "1e400", "five", ""])
def test_absurd_guidance_is_refused(text):
    with pytest.raises(ParseError):
        parse_float(text, "--guidance", 0.0, 100.0)


def test_seeds_span_what_a_generator_takes():
    assert parse_seed("0") == 0 and parse_seed(str(MAX_SEED)) == MAX_SEED
    for bad in ("-1", str(MAX_SEED + 1), "1.5", True):
        with pytest.raises(ParseError, match="seed"):
            parse_seed(bad)


def test_argparse_types_give_argparse_errors_without_the_value_name():
    for convert, text in ((int_option(1, 10), "0"), (float_option(0, 1), "nan"), (box_option, "1,2,3")):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            convert(text)
        assert not str(e.value).startswith("value") and "\n" not in str(e.value)
    assert int_option(1, 10)("7") == 7 and box_option("1 2 3 4") == (1, 2, 3, 4)
