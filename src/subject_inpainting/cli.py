"""The ``subject-inpaint`` command line: the parser and the mapping of errors to exit codes.

The commands live in ``subject_inpainting.commands``, one module each. Every command first checks its
inputs and outputs without importing torch, then works. Exit codes: 0 done; 2 a bad input (one line on
stderr, nothing written, reported before any work); 130 interrupted (Ctrl-C: one line, no partial file);
1 an unexpected failure (one line; ``SI_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
INTERRUPTED = "subject-inpaint: interrupted; nothing was written for the unfinished work"


def build_parser() -> argparse.ArgumentParser:
    """The whole parser; building it imports no torch."""
    from . import __version__
    from .commands import COMMANDS
    from .commands.options import OneLineParser

    parser = OneLineParser(
        prog="subject-inpaint",
        description="Subject inpainting: paint a subject, given by photos, into a region of a scene.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=OneLineParser, help="what to do"
    )
    for command in COMMANDS:
        command.register(sub)
    return parser


def _quiet_libraries() -> None:
    # The libraries' advisory warnings (deprecations, dtype notes) are not the user's business here.
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # What is left (the package's own: a precision this CPU emulates, DeepCache that cannot apply) is one line.
    warnings.showwarning = lambda message, *_: print(f"subject-inpaint: warning: {message}", file=sys.stderr)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 2 bad input, 130 interrupted, 1 failed)."""
    try:
        args = build_parser().parse_args(argv)
        args.command_check(args)
        _quiet_libraries()
        return args.command_run(args)
    except SystemExit as e:  # argparse: --help, --version (0) or a usage error, already printed (2)
        return e.code if isinstance(e.code, int) else EXIT_OK if e.code is None else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _report(INTERRUPTED)
        return EXIT_INTERRUPTED
    except Exception as e:
        if os.environ.get("SI_DEBUG"):
            raise
        if isinstance(e, (ValueError, TypeError, OSError)):  # every input error of the package is a ValueError
            _report(f"subject-inpaint: error: {_one_line(e)}")
            return EXIT_BAD_INPUT
        # a failure of ours or of the hardware (out of memory): still one line
        _report(f"subject-inpaint: failed: {type(e).__name__}: {_one_line(e)} (SI_DEBUG=1 shows the traceback)")
        return EXIT_FAILED


def _report(line: str) -> None:
    # A second Ctrl-C, or a closed stderr, must not turn the message into a traceback: the exit code says it.
    with contextlib.suppress(KeyboardInterrupt, OSError):
        _end_progress_bars()
        print(line, file=sys.stderr, flush=True)


def _end_progress_bars() -> None:
    """Close the progress bars an error or Ctrl-C left open, so that the message gets a line of its own
    (and no bar is drawn again after it when the process exits)."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
