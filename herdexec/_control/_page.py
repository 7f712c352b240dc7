"""The operator's page: a few files shipped in the package, served as they are.

``GET /`` is ``static/index.html``, which loads ``/app.js``, ``/style.css`` and its icon
from the same server and then reads ``GET /herd`` once a second. Nothing comes from anywhere else
(no CDN, no web font), so the page works on a host with no way out, and no build step
stands between the files in the repository and what the browser runs.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

__all__ = ["ASSETS", "read_asset"]

#: Each path the page uses: the file in ``static/`` and its Content-Type.
ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    # Browsers ask for an icon: without one, each page load logs a 404 on the console.
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}


@functools.cache
def read_asset(name: str) -> bytes:
    """A file of the page, read once per process (they are a few kilobytes)."""
    return (resources.files("herdexec._control") / "static" / name).read_bytes()
