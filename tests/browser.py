"""Debian's Chromium, driven by Playwright for Python: for the page's tests and its
screenshot.

Playwright's own browser download is not used (nor reachable everywhere): it drives the
Chromium the system has, by path. The flags keep it headless and quiet: no sandbox (CI
runs as root), no GPU, and none of the background connections (updates, sync, QUIC
probes) that a closed network would refuse.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

#: Where Debian's chromium package puts it; HERDEXEC_CHROMIUM says where else to look.
CHROMIUM: Final = os.environ.get("HERDEXEC_CHROMIUM", "/usr/bin/chromium")
FLAGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def missing() -> str | None:
    """Why the browser cannot run here, or None if it can."""
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set HERDEXEC_CHROMIUM)"
    return None


def launch(playwright: Playwright) -> Browser:
    """A headless Chromium; the caller closes it."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(FLAGS))
