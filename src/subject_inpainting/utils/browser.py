"""Headless Chromium for driving the web page (its browser tests, the screenshot in ``docs/``): where it is,
the flags it needs here, and a free port to serve the page on."""

from __future__ import annotations

import os
import shutil
import socket

# No sandbox (root in a container), no GPU, and no calls home: offline they are refused, slowly.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


def find_chromium(explicit: str | None = None) -> str | None:
    """``explicit``, else ``SI_CHROMIUM``, else ``chromium`` (or ``chromium-browser``) on the PATH; None if none."""
    return explicit or os.environ.get("SI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
