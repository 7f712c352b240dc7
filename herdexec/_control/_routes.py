"""The control plane's HTTP contract, on bottle: ``GET``/``PATCH /herd``, ``GET /metrics``,
and the operator's page at ``GET /``.

gofherd's clients must keep working (``curl -XPATCH host:5555/herd -d '{"num": 10}'``), so
its answers are kept word for word: ``{"num": N, "msg": "success"}``, ``"Herd size already
N"``, ``"Herd size cannot be negative"``. Where gofherd is lenient, this is not: a body it
would read as ``num = 0``, pausing the herd, is refused here. Every bad request gets a 4xx
whose JSON ``msg`` says what was wrong, and leaves the herd as it was; every answer is JSON,
bottle's HTML error pages included. docs/server.md lists the contract.

bottle is untyped: it stays in this module, behind :func:`make_app`.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import math
import threading
from typing import TYPE_CHECKING, Any, Final, cast

import bottle  # type: ignore[import-untyped]
from prometheus_client.exposition import choose_encoder

from ._page import ASSETS, read_asset

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from prometheus_client.registry import CollectorRegistry

    from .._executor import HerdExecutor
    from .._stats import HerdStats

__all__ = ["MAX_BODY", "make_app"]

#: The largest PATCH body read, in bytes; ``{"num": N}`` needs a dozen.
MAX_BODY: Final = 64 * 1024

# What each path answers, for 405's Allow header (bottle answers HEAD for GET).
_ALLOW: Final = {
    "/herd": "GET, HEAD, PATCH",
    "/metrics": "GET, HEAD",
    **dict.fromkeys(ASSETS, "GET, HEAD"),
}


def make_app(
    executor: HerdExecutor,
    *,
    registry: CollectorRegistry | None,
    token: str | None,
    protect_reads: bool,
) -> WSGIApplication:
    """The WSGI application that controls ``executor``.

    Raises:
        TypeError: ``token`` is not a str, or ``protect_reads`` not a bool.
        ValueError: ``token`` cannot travel in a header, or ``protect_reads`` has no token.
    """
    routes = _Routes(executor, registry, _check_token(token, protect_reads), protect_reads)
    app = bottle.Bottle()
    app.route("/herd", "GET", routes.get_herd)
    app.route("/herd", "PATCH", routes.patch_herd)
    app.route("/metrics", "GET", routes.get_metrics)
    for path in ASSETS:
        app.route(path, "GET", _get_asset)
    app.default_error_handler = _error_page
    return cast("WSGIApplication", app)


class _BadRequest(Exception):
    """A PATCH body the herd will not act on: the status and the msg to answer with."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


class _Routes:
    """The handlers; bottle calls them on the connection's thread."""

    def __init__(
        self,
        executor: HerdExecutor,
        registry: CollectorRegistry | None,
        token: bytes | None,
        protect_reads: bool,
    ) -> None:
        self._executor = executor
        self._registry = registry
        self._token = token
        self._protect_reads = protect_reads
        # One resize at a time, so "already N" and the log's "from old" are true.
        self._resizing = threading.Lock()

    def get_herd(self) -> Any:
        refused = self._refuse(read=True)
        if refused is not None:
            return refused
        s = self._executor.stats()
        return _reply(
            200,
            {
                "num": s.herd_size,
                "msg": "success",
                "name": self._executor.name,
                "max_herd_size": self._executor.max_herd_size,
                "busy": s.busy,
                "idle": s.idle,
                "waiting_submitters": s.waiting_submitters,
                "backlog": s.backlog,
                "pending_retries": s.pending_retries,
                "outstanding": s.outstanding,
                "submitted": s.submitted,
                "succeeded": s.succeeded,
                "retried": s.retried,
                "failed": s.failed,
                "cancelled": s.cancelled,
                # JSON has no infinity: the last bucket's open upper bound is null.
                "duration_buckets": [None if math.isinf(b) else b for b in s.duration_buckets],
                "duration_counts": list(s.duration_counts),
                "duration_sum": s.duration_sum,
                "adapt": _adapt_document(s),
            },
        )

    def patch_herd(self) -> Any:
        # The token comes first: an unauthorized body is never read, let alone parsed.
        refused = self._refuse(read=False)
        if refused is not None:
            return refused
        executor = self._executor
        try:
            num, adapt = _requested(bottle.request.environ, executor.max_herd_size)
            adaptive = executor.stats().adapt is not None
            if adapt is not None and not adaptive:
                raise _BadRequest(
                    409, "this herd does not adapt: it was made without adapt= (or --adapt)"
                )
        except _BadRequest as bad:
            return _reply(bad.status, {"num": executor.herd_size, "msg": bad.msg})
        with self._resizing:
            old = executor.herd_size
            if num == old and adapt is None and not executor.adapting:
                return _reply(200, {"num": num, "msg": f"Herd size already {num}"})
            try:
                if num is not None:
                    executor.herd_size = num  # on an adaptive herd, this pins it
                if adapt is not None:
                    executor.adapting = adapt
            except RuntimeError as exc:  # the herd has ended: "cannot resize ... after shutdown"
                return _reply(409, {"num": old, "msg": str(exc)})
            new = executor.herd_size
        how = f" by PATCH /herd from {bottle.request.remote_addr}"
        if new != old:
            executor.logger.info("herd %r resized from %d to %d%s", executor.name, old, new, how)
        if adaptive:
            state = "adapting" if executor.adapting else "pinned"
            executor.logger.info("herd %r %s at %d%s", executor.name, state, new, how)
            return _reply(200, {"num": new, "msg": "success", "adapting": executor.adapting})
        return _reply(200, {"num": new, "msg": "success"})

    def get_metrics(self) -> Any:
        refused = self._refuse(read=True)
        if refused is not None:
            return refused
        if self._registry is None:
            return _reply(404, {"msg": "this herd reports no metrics: it has registry=None"})
        encoder, content_type = choose_encoder(bottle.request.get_header("Accept", ""))
        return bottle.HTTPResponse(
            encoder(self._registry), 200, headers={"Content-Type": content_type}
        )

    def _refuse(self, *, read: bool) -> Any | None:
        """The 401 for a request without the right token, or None to let it through."""
        if self._token is None or (read and not self._protect_reads):
            return None
        request = bottle.request
        scheme, _, credentials = request.get_header("Authorization", "").partition(" ")
        bearer = scheme.lower() == "bearer" and credentials.strip() != ""
        # WSGI headers are latin-1 strings: back to the bytes the client sent.
        given = credentials.strip().encode("latin-1")
        if bearer and hmac.compare_digest(given, self._token):
            return None
        challenge = 'Bearer realm="herdexec"'
        what = f"{request.method} {request.path}"
        if bearer:
            self._executor.logger.warning(
                "control server: wrong token for %s from %s", what, request.remote_addr
            )
            challenge += ', error="invalid_token"'
            msg = f"{what}: wrong token"
        else:
            msg = f"{what} needs a token: send Authorization: Bearer <token>"
        return _reply(401, {"msg": msg}, {"WWW-Authenticate": challenge})


def _get_asset() -> Any:
    """One of the page's files: the same for every client, so no token."""
    name, content_type = ASSETS[bottle.request.path]
    # Revalidated each time: after an upgrade, the page and its script change together.
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    return bottle.HTTPResponse(read_asset(name), 200, headers=headers)


def _requested(environ: dict[str, Any], cap: int) -> tuple[int | None, bool | None]:
    """The ``num`` and ``adapt`` of a PATCH body, checked; either may be absent.

    Raises:
        _BadRequest: The body is too large, incomplete, not JSON, not an object, has
            neither key, its ``num`` is not an integer, negative, or above ``cap``, or
            its ``adapt`` is not a boolean.
    """
    document = _parse(_read_body(environ))
    if not isinstance(document, dict):
        raise _BadRequest(
            400, f'the body must be a JSON object like {{"num": 10}}, not {_show(document)}'
        )
    if "num" not in document and "adapt" not in document:
        raise _BadRequest(
            400, 'the body has no "num": send {"num": N} (or {"adapt": true} to an adaptive herd)'
        )
    adapt = document.get("adapt")
    if "adapt" in document and not isinstance(adapt, bool):
        raise _BadRequest(400, f'"adapt" must be true or false, not {_show(adapt)}')
    if "num" not in document:
        return None, adapt
    num = document["num"]
    if isinstance(num, bool) or not isinstance(num, int):
        raise _BadRequest(400, f'"num" must be an integer, not {_show(num)}')
    if num < 0:
        raise _BadRequest(400, "Herd size cannot be negative")  # gofherd's words
    if num > cap:
        raise _BadRequest(400, f"Herd size cannot be above {cap}, the herd's max_herd_size")
    return num, adapt


def _adapt_document(stats: HerdStats) -> dict[str, Any] | None:
    """GET /herd's ``adapt``: the algorithm, its parameters, and where it stands."""
    if stats.adapt is None:
        return None
    return {
        "algorithm": stats.adapt.name,
        "adapting": stats.adapting,
        "limit": stats.adapt_limit,
        **dataclasses.asdict(stats.adapt),
    }


def _read_body(environ: dict[str, Any]) -> bytes:
    if environ.get("HTTP_TRANSFER_ENCODING"):
        raise _BadRequest(411, "send the body with a Content-Length, not a Transfer-Encoding")
    length_text = environ.get("CONTENT_LENGTH") or "0"
    if not (length_text.isascii() and length_text.isdigit()):
        raise _BadRequest(400, f"Content-Length must be a number of bytes, not {length_text!r}")
    # Its length first: int() refuses strings of thousands of digits.
    if len(length_text) > len(str(MAX_BODY)) or int(length_text) > MAX_BODY:
        raise _BadRequest(413, f'the body is over {MAX_BODY} bytes; {{"num": N}} needs a dozen')
    length = int(length_text)
    try:
        body = environ["wsgi.input"].read(length)
    except TimeoutError:
        raise _BadRequest(408, "the body did not arrive in time") from None
    except OSError:
        raise _BadRequest(400, "the connection failed while the body was being read") from None
    if len(body) < length:
        raise _BadRequest(400, f"the body ended before its Content-Length of {length} bytes")
    return cast("bytes", body)


def _parse(body: bytes) -> object:
    if not body.strip():
        raise _BadRequest(400, 'the body is empty: send {"num": N}')
    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise _BadRequest(400, "the body is not JSON this server reads: nested too deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(400, f"the body is not JSON: {exc}") from None
    except ValueError:
        # Python 3.11 refuses to convert integers of over 4300 digits.
        raise _BadRequest(400, "the body holds a number too long to read") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key repeats: ``{"num": 1, "num": 900}`` is ambiguous."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _BadRequest(400, f"the body gives {json.dumps(key)} more than once")
        seen.add(key)
    return dict(pairs)


def _show(value: object) -> str:
    """A JSON value as the client wrote it, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_token(token: object, protect_reads: object) -> bytes | None:
    if not isinstance(protect_reads, bool):
        raise TypeError(f"protect_reads must be a bool, not {type(protect_reads).__name__}")
    if token is None:
        if protect_reads:
            raise ValueError("protect_reads=True needs a token")
        return None
    if not isinstance(token, str):
        raise TypeError(f"token must be a str or None, not {type(token).__name__}")
    # It travels in a header: printable ASCII, no spaces (secrets.token_urlsafe() fits).
    if not token or not all("!" <= char <= "~" for char in token):
        raise ValueError("token must be a non-empty string of printable ASCII without spaces")
    return token.encode("ascii")


def _error_page(error: Any) -> str:
    """bottle's own errors (no such route, a method the route lacks, a crash) as JSON,
    where bottle would send an HTML page."""
    request, response = bottle.request, bottle.response
    response.content_type = "application/json"
    if error.status_code == 404:
        msg = "no such path: this server answers /, /herd and /metrics"
    elif error.status_code == 405:
        allow = _ALLOW[request.path]
        response.set_header("Allow", allow)
        msg = f"{request.path} answers {allow} only"
    else:
        msg = "internal error: the herd's log has the details"
    return json.dumps({"msg": msg})


def _reply(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return bottle.HTTPResponse(json.dumps(payload), status, headers=headers)
