"""What the commands share: the parser class, options, their bounds, and the checks of paths.

Nothing here imports torch at import time: every command checks its inputs and outputs first, and pays for
torch and diffusers only when there is work to do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import settings
from ..devices import DTYPES, INT8_CHOICES
from ..utils import is_hub_id
from ..utils.files import SUBJECT_INDEX, InputPathError, check_input, folder_kind, read_index
from ..utils.parse import float_option, seed_option

EXIT_BAD_INPUT = 2

MAX_CASES = 1000

unit_option = float_option(0.0, 1.0)


class CommandError(ValueError):
    """A bad command-line input (the message is printed as is, exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def group(sub, name: str, help: str, title: str):
    """A command with commands of its own (``toy train``, ``eval cocoee`` ...): returns their subparsers."""
    p = sub.add_parser(name, help=help)
    return p.add_subparsers(title=title, metavar="NAME", required=True, parser_class=OneLineParser, help="which one")


# ---------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------
def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")


def add_dtype(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="weights' precision; auto = float16 on CUDA, bfloat16 on a CPU with native bfloat16 (AVX512-BF16, "
        "AMX), float32 elsewhere",
    )
    p.add_argument(
        "--int8",
        choices=INT8_CHOICES,
        default="auto",
        help="the UNet's convolutions and linear layers with 8-bit integer weights and activations (CPU only; "
        "faster, pictures differ slightly); auto = on for a large model on a CPU with 8-bit dot-product "
        "instructions (AVX512-VNNI, AVX-VNNI, AMX-INT8)",
    )


def add_quiet(p: argparse.ArgumentParser, what: str = "no progress bar or messages") -> None:
    p.add_argument("--quiet", action="store_true", help=what)


def add_seed(p: argparse.ArgumentParser, help: str, default: int | None = 0) -> None:
    p.add_argument("--seed", type=seed_option, default=default, help=help)


def add_original_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ldm-config",
        metavar="YAML",
        help="LDM model config of an original checkpoint that is not the released SD-v1 layout",
    )
    p.add_argument(
        "--vision-config",
        metavar="JSON",
        help="CLIPVisionConfig of an original checkpoint whose vision tower is not ViT-L/14",
    )


def add_model(p: argparse.ArgumentParser, required: bool = False, help: str | None = None) -> None:
    p.add_argument(
        "--model",
        required=required,
        metavar="PATH_OR_ID",
        help=help
        or "model to use: a project-format folder, a diffusers Paint-by-Example folder, an original model.ckpt (or "
        "a folder holding it), or a hub id such as Fantasy-Studio/Paint-by-Example (default: the base a --subject "
        "names, else the embedded toy model)",
    )


# ---------------------------------------------------------------------------------------------------
# Painting options: flags derived from ``PaintSettings``
# ---------------------------------------------------------------------------------------------------
_FIELD_DEFAULT = object()


def setting_type(name: str):
    """An argparse ``type`` for the option ``name`` of ``PaintSettings`` (its parser, its bounds)."""

    def convert(text: str):
        try:
            return settings.parse_value(name, text)
        except settings.SettingsError as e:
            raise argparse.ArgumentTypeError(e.tail) from None

    return convert


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_help(name: str, default=_FIELD_DEFAULT) -> str:
    """The help of the flag of option ``name``: its line, its range and its default."""
    option = settings.option(name)
    value = settings.default(name) if default is _FIELD_DEFAULT else default
    if option.kind == "switch":
        return option.off_help if value else option.help
    text = option.help
    if option.kind in ("int", "float", "interval"):
        text += f", {settings.range_text(option)}"
    return f"{text} (default {option.none_means if value is None else _shown(value)})"


def add_setting(container, name: str, default=_FIELD_DEFAULT, help: str | None = None) -> argparse.Action:
    """Add the flag of option ``name`` of ``PaintSettings`` (its aliases too) to a parser or argument group;
    ``default`` (the field's unless given) and ``help`` may differ per command. The value lands in
    ``args.<name>``."""
    option = settings.option(name)
    value = settings.default(name) if default is _FIELD_DEFAULT else default
    flags = [settings.flag(name), *option.aliases]
    help = (help or setting_help(name, value)).replace("%", "%%")  # argparse formats help with %
    if option.kind == "switch":
        return container.add_argument(*flags, dest=name, action="store_false" if value else "store_true", help=help)
    kind = {"choices": option.choices} if option.kind == "choice" else {"type": setting_type(name)}
    return container.add_argument(*flags, dest=name, default=value, metavar=option.metavar, help=help, **kind)


def add_settings(parser: argparse.ArgumentParser, groups: dict[str, object] | None = None) -> list[str]:
    """Add a flag for every option of ``PaintSettings``, each in its group's container (``groups``: group
    name → argument group; the parser for the others). Returns the options' names."""
    groups = groups or {}
    names = []
    for name, option in settings.options():
        add_setting(groups.get(option.group, parser), name)
        names.append(name)
    return names


def settings_from_args(args: argparse.Namespace, **changes) -> settings.PaintSettings:
    """The ``PaintSettings`` the flags of ``add_settings`` give, with ``changes``.

    Raises:
        CommandError: a combination the settings refuse (``--eta`` with another sampler than ddim ...),
            naming the flags.
    """
    values = {name: getattr(args, name) for name, _ in settings.options() if hasattr(args, name)}
    try:
        return settings.PaintSettings(**{**values, **changes})
    except settings.SettingsError as e:
        raise CommandError(settings.with_flags(str(e))) from None


# ---------------------------------------------------------------------------------------------------
# Checks before work
# ---------------------------------------------------------------------------------------------------
def require_file(path: str | None, flag: str) -> None:
    """``path`` (when given) is a readable regular file."""
    if path is not None:
        try:
            check_input(path, flag)
        except InputPathError as e:
            raise CommandError(str(e)) from None


def require_folder(path: str | None, flag: str) -> None:
    """``path`` (when given) is a readable folder."""
    if path is not None:
        try:
            check_input(path, flag, folder=True)
        except InputPathError as e:
            raise CommandError(str(e)) from None


def require_model(spec: str | None, flag: str = "--model") -> None:
    """A model given by path must exist; anything else must have the form of a hub id (fetched later)."""
    if spec is None:
        return
    path = Path(spec).expanduser()
    if path.exists():
        if not (path.is_dir() or path.is_file()):
            raise CommandError(f"{flag} {spec}: is not a file or folder")
        if not os.access(path, os.R_OK):
            raise CommandError(f"{flag} {spec}: cannot be read (permission denied)")
        return
    if not is_hub_id(spec):
        raise CommandError(f"{flag} {spec}: no such model file or folder (and not a hub id of the form owner/name)")


def subject_folder(spec: str | None, flag: str = "--subject") -> Path | None:
    """The fine-tuned subject folder ``spec`` names: None for none, or for an original subject checkpoint
    (a file, read when it is loaded)."""
    if spec is None:
        return None
    path = Path(spec).expanduser()
    if not path.exists():
        raise CommandError(f"{flag} {spec}: no such folder or file")
    if not path.is_dir():
        return None
    if folder_kind(path) not in ("subject", "subject-training") or read_index(path / SUBJECT_INDEX) is None:
        raise CommandError(f"{flag} {spec}: not a subject folder (from `subject-inpaint finetune`)")
    return path


def model_inputs(args: argparse.Namespace, *names: str) -> list[tuple[str, str | None]]:
    """``(--flag, value)`` pairs of the named path options, for the output guard."""
    return [(f"--{n.replace('_', '-')}", getattr(args, n, None)) for n in names]


def output_paths(out: str, n: int) -> list[Path]:
    """``--out result.png`` → that path, or ``result-0.png … result-{n-1}.png`` for several images."""
    path = Path(out)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(n)]


def image_output(path: str | Path, flag: str = "--out") -> None:
    """An output picture's type must be one the project writes (from its suffix)."""
    from ..imaging import IMAGE_SUFFIXES

    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise CommandError(
            f"{flag} {path}: unknown image type {suffix or '(none)'!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )


# ---------------------------------------------------------------------------------------------------
# After the checks: devices, the default model, messages
# ---------------------------------------------------------------------------------------------------
def resolve_device(name: str):
    """``devices.resolve_device``: the device ``--device`` names."""
    from ..devices import resolve_device as resolve

    return resolve(name, "--device")


def process_device(name: str):
    """``devices.process_device``: this process's device under ``accelerate launch``."""
    from ..devices import process_device as resolve

    return resolve(name, "--device")


def session(args: argparse.Namespace):
    """The ``Session`` a painting command's flags describe (``--model``, ``--device``, ``--dtype``, ``--int8``, the
    original checkpoint's configs, ``--max-pixels``)."""
    from ..session import Session

    return Session(
        args.model,
        device=process_device(args.device),
        dtype=args.dtype,
        int8=args.int8,
        ldm_config=args.ldm_config,
        vision_config=args.vision_config,
        max_pixels=args.max_pixels,
    )


def check_device_name(name: str) -> None:
    """The shape of a ``--device`` value, checked without torch (whether it exists is ``resolve_device``'s)."""
    kind, _, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise CommandError(f"--device {name!r}: not a device (use auto, cpu, cuda, cuda:N or mps)")


def default_model_or_error() -> str:
    from ..weights import default_model

    model = default_model()
    if model is None:
        raise CommandError("this installation has no embedded model; name one with --model")
    return str(model)


def say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)
