"""The ``subject-inpaint`` commands, one module each.

Each module's ``register(subparsers)`` adds its parser and sets two functions on the parsed arguments:
``command_check(args)``, which reads every input and tries every output without importing torch (a mistake
is reported in well under two seconds, before any work), and ``command_run(args)``, which does the work.
"""

from __future__ import annotations

from . import batch, bench, convert, demo, evaluate, inpaint, toy, train, ui

# In the order ``subject-inpaint --help`` lists them.
COMMANDS = (inpaint, batch, demo, convert, train, toy, bench, evaluate, ui)

__all__ = ["COMMANDS"]
