"""``PaintSettings``: one definition of every painting option, the same bounds in the API, on the command line
and in a batch job."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import pytest

from subject_inpainting import cli, settings
from subject_inpainting.commands import options
from subject_inpainting.settings import PaintSettings, SettingsError, SettingsTypeError

NUMBERS = [name for name, option in settings.options() if option.kind in ("int", "float")]
INPAINT = ["inpaint", "--scene", "s.png", "--box", "0,0,1,1", "--out", "o.png", "--sampler", "ddim"]


def probes(option: settings.Option) -> list:
    low, high = option.low, option.high
    values = [low, high, low - 1, high + 1, (low + high) / 2, math.nan, math.inf, -math.inf, 1e300]
    if option.kind == "int":
        values += [low + 0.5]
    return values


def cli_takes(name: str, value) -> bool:
    text = repr(value) if isinstance(value, float) and not value.is_integer() else str(value)
    if isinstance(value, float) and value.is_integer() and settings.option(name).kind == "int":
        text = str(int(value))
    try:
        cli.build_parser().parse_args([*INPAINT, settings.flag(name), text])
    except SystemExit:
        return False
    return True


def api_takes(name: str, value) -> bool:
    if settings.option(name).kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        PaintSettings(sampler="ddim", **{name: value})
    except SettingsError:
        return False
    return True


def job_takes(name: str, value) -> bool:
    try:
        settings.parse_value(name, int(value) if isinstance(value, float) and value.is_integer() else value)
    except (SettingsError, OverflowError) as e:
        assert isinstance(e, SettingsError), e
        return False
    return True


@pytest.mark.parametrize("name", NUMBERS)
def test_the_api_the_command_line_and_a_job_take_the_same_values(name, capsys):
    option = settings.option(name)
    for value in probes(option):
        api = api_takes(name, value)
        assert cli_takes(name, value) == api, (name, value)
        assert job_takes(name, value) == api, (name, value)
        inside = math.isfinite(value) and option.low <= value <= option.high
        assert api == (inside and (option.kind == "float" or float(value).is_integer())), (name, value)
    capsys.readouterr()


def test_every_option_has_help_a_flag_a_key_and_a_default_within_its_bounds():
    flags, keys = set(), set()
    for name, option in settings.options():
        assert option.help and settings.flag(name).startswith("--")
        flags.add(settings.flag(name))
        keys.add(settings.key(name))
        value = settings.default(name)
        assert (value is None and option.none_means) or settings.check_value(name, option, value) == value
    assert len(flags) == len(keys) == len(dataclasses.fields(PaintSettings))


def test_a_preset_is_resolved_once_and_explicit_values_win():
    fast = PaintSettings.from_preset("fast", num_inference_steps=20)
    assert (fast.sampler, fast.num_inference_steps, fast.deep_cache, fast.guidance_interval) == (
        "dpmsolver++",
        20,
        4,
        (100, 800),
    )
    original = PaintSettings(preset="original").resolved()
    assert (original.sampler, original.num_inference_steps, original.deep_cache) == ("plms", 50, 1)
    assert PaintSettings(preset="original").sampler is None  # unresolved: the preset's


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"num_inference_steps": True}, SettingsTypeError, "num_inference_steps must be a whole number, got True"),
        ({"num_images": 100_000}, SettingsError, "num_images must be a whole number between 1 and 16, got 100,000"),
        ({"guidance_scale": 1e300}, SettingsError, "guidance_scale must be a finite number between 0 and 100"),
        ({"feather": math.inf}, SettingsError, "feather must be a finite number between 0 and 10,000, got inf"),
        ({"context": math.inf}, SettingsError, "context must be a finite number between 1 and 100, got inf"),
        ({"guidance_interval": (800, 100)}, SettingsError, "guidance_interval must have LOW <= HIGH"),
        ({"guidance_interval": "100,800"}, SettingsTypeError, "two timesteps"),
        ({"eta": 0.5}, SettingsError, "eta applies to sampler ddim only (got sampler dpmsolver++"),
        ({"paste_back": "no"}, SettingsTypeError, "paste_back must be True or False"),
        ({"preset": "turbo"}, SettingsError, "preset must be one of original, fast, got 'turbo'"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_option_the_value_and_the_bound(changes, error, match):
    with pytest.raises(error) as e:
        PaintSettings(**changes)
    assert match in str(e.value)
    assert isinstance(e.value, ValueError) and e.value.option in changes


def test_messages_name_the_flags_or_the_keys_of_each_front_end():
    message = "num_inference_steps must be a whole number between 1 and 1,000; eta and guidance_scale too"
    flagged = "--steps must be a whole number between 1 and 1,000; --eta and --guidance too"
    assert settings.with_flags(message) == flagged
    assert settings.with_keys(message) == "steps must be a whole number between 1 and 1,000; eta and guidance too"
    with pytest.raises(options.CommandError, match=r"^--eta applies to --sampler ddim only"):
        options.settings_from_args(cli.build_parser().parse_args([*INPAINT[:-2], "--eta", "0.5"]))


def test_text_values_parse_as_their_option_takes_them():
    assert settings.parse_value("guidance_interval", "100, 800") == (100, 800)
    assert settings.parse_value("guidance_interval", [0, 1000]) == (0, 1000)
    assert settings.parse_value("paste_back", "No") is False and settings.parse_value("keep_known", True) is True
    assert settings.parse_value("num_inference_steps", "20") == 20
    assert settings.parse_value("num_inference_steps", 20.0) == 20  # a JSON or form number
    with pytest.raises(SettingsError, match=r"^num_inference_steps must be a whole number, got 20.5$"):
        settings.parse_value("num_inference_steps", "20.5")
    with pytest.raises(SettingsError, match=r"^guidance_interval must have LOW <= HIGH, got 800,100$"):
        settings.parse_value("guidance_interval", "800,100")
    with pytest.raises(SettingsError, match=r"^guidance_scale must be a finite number between 0 and 100, got 1e400$"):
        settings.parse_value("guidance_scale", "1e400")


# (option, a bad value as text): each front end names the option its own way, then says the same thing.
SAME_SENTENCE = [
    ("num_inference_steps", "0"),
    ("num_inference_steps", "2.5"),
    ("guidance_scale", "1e300"),
    ("num_images", "17"),
    ("feather", "inf"),
    ("context", "0.5"),
    ("model_weight", "nan"),
    ("guidance_interval", "800,100"),
    ("deep_cache", "0"),
]


@pytest.mark.parametrize(("name", "text"), SAME_SENTENCE)
def test_a_bad_value_gets_the_same_sentence_from_every_front_end(name, text, tmp_path, capsys):
    from subject_inpainting.commands.batch import read_jobs
    from subject_inpainting.ui import UIError, page_settings

    with pytest.raises(SettingsError) as api:  # Python: PaintSettings(...) with the value
        settings.parse_value(name, text)
    tail = api.value.tail
    # the command line: argparse names the flag, then the tail
    err = _cli_error(name, text, capsys)
    assert err.endswith(f": {tail} (see subject-inpaint inpaint --help)"), err
    # a batch job: its key, then the tail
    job = {"scene": "s.png", "box": [0, 0, 1, 1], "reference": "r.png", settings.key(name): text}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    args = cli.build_parser().parse_args(["batch", str(tmp_path / "jobs.jsonl"), "--out-dir", str(tmp_path / "o")])
    args.settings = options.settings_from_args(args)
    (job,) = read_jobs(str(tmp_path / "jobs.jsonl"), args)
    assert job.error == f"{settings.key(name)} {tail}"
    # the page: its label, then the tail
    with pytest.raises(UIError) as page:
        page_settings({name: text})
    assert str(page.value) == f"{settings.option(name).label} {tail}."


def _cli_error(name: str, text: str, capsys) -> str:
    assert cli.main([*INPAINT, settings.flag(name), text]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert f"argument {settings.flag(name)}" in line
    return line


def test_the_docs_table_is_the_dataclass():
    page = (Path(__file__).parents[1] / "docs" / "options.md").read_text(encoding="utf-8")
    assert page.endswith(settings.options_table()), "docs/options.md is stale: regenerate its table"


def _subcommand(name: str):
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices[name]


@pytest.mark.parametrize("command", ["inpaint", "batch"])
def test_every_flag_and_job_key_is_derived_from_the_settings(command):
    actions = {a.dest: a for a in _subcommand(command)._actions}
    for name, option in settings.options():
        action = actions[name]
        assert settings.flag(name) in action.option_strings and set(option.aliases) <= set(action.option_strings)
        if option.kind == "switch":  # the flag sets the opposite of the default
            assert action.const is (not settings.default(name)), name
        else:
            assert action.default == settings.default(name), name
        if option.kind == "choice":
            assert tuple(action.choices) == option.choices, name
    if command == "batch":
        keys = _subcommand("batch").get_default("job_options")
        assert keys == {settings.key(n): n for n, _ in settings.options()} | {n: n for n, _ in settings.options()}
