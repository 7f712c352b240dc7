"""``herdexec ctl``: a client for a running herd's control server, on urllib.

It does what the README does with curl (``GET /herd``, ``PATCH /herd {"num": N}``,
``GET /metrics``) and says plainly what went wrong when it cannot: no server there, a
server that refuses (its JSON ``msg`` shown), or something that is not a herd's server.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from typing import TYPE_CHECKING, Final, NamedTuple, TextIO

if TYPE_CHECKING:
    import urllib.error

__all__ = ["CtlError", "CtlOptions", "ctl", "normalize_url"]

#: Seconds to wait for the server to answer.
_TIMEOUT: Final = 10.0
#: Exit statuses: the server refused the request, or could not be reached at all.
REFUSED: Final = 1
UNREACHABLE: Final = 3


class CtlOptions(NamedTuple):
    """``herdexec ctl``'s command line."""

    action: str  # "get", "set", "adapt" or "metrics"
    url: str  # the server's base URL, as normalize_url() gives it
    token: str | None = None
    size: int | None = None  # for "set"


class CtlError(Exception):
    """A request that did not go through; ``status`` is the exit status to end with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def normalize_url(url: str) -> str:
    """The server's base URL: ``host:port`` gets ``http://``; a trailing path to one of
    the server's own endpoints, or a slash, is dropped.

    Raises:
        ValueError: The URL's scheme is not http: a herd's control server speaks plain
            HTTP only, and urllib would otherwise try ftp:// for seconds, or fail
            https:// in a TLS handshake that says nothing of the real mistake.
    """
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme.lower() != "http":
        raise ValueError("not an http:// URL; a herd's control server speaks plain HTTP")
    url = url.rstrip("/")
    for suffix in ("/herd", "/metrics"):
        url = url.removesuffix(suffix)
    return url.rstrip("/")


def ctl(options: CtlOptions, stdout: TextIO = sys.stdout) -> int:
    """Run the request; print what the server said; return 0.

    Raises:
        CtlError: The server is not there, or refused; its message says which.
    """
    base = options.url
    if options.action == "metrics":
        stdout.write(_request(base, "GET", "/metrics", options.token))
    elif options.action == "get":
        document = json.loads(_request(base, "GET", "/herd", options.token))
        stdout.write(json.dumps(document, indent=2) + "\n")
    elif options.action == "adapt":
        body = json.dumps({"adapt": True}).encode()
        document = json.loads(_request(base, "PATCH", "/herd", options.token, body))
        stdout.write(f"herd adapting again, from size {document.get('num')}\n")
    else:
        body = json.dumps({"num": options.size}).encode()
        document = json.loads(_request(base, "PATCH", "/herd", options.token, body))
        msg = document.get("msg")
        num = document.get("num")
        stdout.write(f"herd size set to {num}\n" if msg == "success" else f"{msg}\n")
        if document.get("adapting") is False:
            stdout.write("adaptation paused; `herdexec ctl adapt` gives control back\n")
    return 0


def _request(
    base: str, method: str, path: str, token: str | None, body: bytes | None = None
) -> str:
    # Imported here: urllib.request brings http.client, email and ssl along, a third of
    # the start-up of `herdexec run`, which never needs them.
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    url = base + path
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
            text: str = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise CtlError(_refusal(method, url, error, token), REFUSED) from None
    except urllib.error.URLError as error:
        raise CtlError(_unreachable(base, error.reason), UNREACHABLE) from None
    except TimeoutError:
        raise CtlError(f"{base} did not answer within {_TIMEOUT:g} seconds", UNREACHABLE) from None
    except (OSError, ValueError) as error:  # a reset mid-answer; a URL urllib cannot use
        raise CtlError(f"cannot talk to {base}: {error}", UNREACHABLE) from None
    if path == "/herd" and not _is_json_object(text):
        raise CtlError(f"{url} answered, but not as a herd's control server does", REFUSED)
    return text


def _refusal(method: str, url: str, error: urllib.error.HTTPError, token: str | None) -> str:
    """What the server said no with: its JSON msg if it sent one, else its status line."""
    with error:
        raw = error.read(4096)
    try:
        msg = json.loads(raw).get("msg")
    except (ValueError, AttributeError):
        msg = None
    text = f"{method} {url}: {error.code} {error.reason}"
    if msg:
        text += f": {msg}"
    if error.code == 401 and token is None:
        text += " (give --token TOKEN, or set HERDEXEC_TOKEN)"
    return text


def _unreachable(base: str, reason: object) -> str:
    import socket  # noqa: PLC0415  (loaded with urllib.request already)

    if isinstance(reason, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(reason, TimeoutError):
        why = f"no answer within {_TIMEOUT:g} seconds"
    elif isinstance(reason, socket.gaierror):
        why = f"unknown host ({reason.strerror})"
    else:
        why = str(getattr(reason, "strerror", None) or reason)
    return f"no control server at {base}: {why}; is `herdexec run --serve` running?"


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
