"""What every request to the control server passes first, and every answer carries.

Every answer says ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy that
lets in nothing from outside the server: the page's script and stylesheet are its own,
and a JSON answer is never run as something else.

The ``Host`` check guards against DNS rebinding.
A page on another site cannot read a loopback server's answers, since its requests are
cross-origin; but if that site's name is made to resolve to 127.0.0.1 (DNS rebinding),
the browser sees the server as the site's own origin, and the page may read the herd and
resize it. What gives such a request away is its ``Host`` header, which carries the
rebound name. So the server answers only a ``Host`` it knows: the address it is bound to
(any address, if it is bound to every interface), a loopback address (a tunnel's near
end), ``localhost`` (which browsers resolve to loopback themselves), or a name or address
the operator allows. An address names no site, and cannot be rebound. A request without a
``Host`` comes from no browser (HTTP/1.0 clients may leave it out) and passes.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ANY_HOST", "Guard", "check_allowed_hosts"]

#: In ``allowed_hosts``, lets every ``Host`` in: for a server behind a proxy that checks it.
ANY_HOST: Final = "*"

#: On every answer. The policy allows the server's own script, stylesheet and requests,
#: and nothing else: no inline code, no other origin, no framing (clickjacking).
SECURITY_HEADERS: Final = (
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
)

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_allowed_hosts(allowed_hosts: object) -> frozenset[str]:
    """The names ``serve(allowed_hosts=...)`` lets in, lowercased, without a final dot.

    Raises:
        TypeError: ``allowed_hosts`` is a string or not iterable, or holds a non-string.
        ValueError: A name is empty, or has a port, a path or a space in it.
    """
    if isinstance(allowed_hosts, (str, bytes)) or not isinstance(allowed_hosts, Iterable):
        raise TypeError(
            "allowed_hosts must be a list of host names, like ['herd.example.com'],"
            f" not {type(allowed_hosts).__name__}"
        )
    names = set()
    for name in allowed_hosts:
        if not isinstance(name, str):
            raise TypeError(f"allowed_hosts holds a {type(name).__name__}, not a host name")
        normal = _normal(name)
        address = _address(normal)
        if address is not None:
            names.add(str(address))
            continue
        if normal != ANY_HOST and (
            not normal or any(c in normal for c in "/@ \t") or _split_port(normal) != normal
        ):
            raise ValueError(
                f"allowed_hosts: {name!r} is no host name; give names as the browser's"
                " address bar shows them, without scheme, port or path"
            )
        names.add(normal)
    return frozenset(names)


class Guard:
    """WSGI middleware: 403 for a ``Host`` the server does not know; else the app; and
    the security headers on every answer."""

    def __init__(
        self,
        app: WSGIApplication,
        bound: str,
        allowed: frozenset[str],
        logger: logging.Logger,
    ) -> None:
        self._app = app
        self._bound = _address(bound)  # the socket's own address: never None
        # Bound to every interface: any address of the machine is one it is reached at.
        self._any_address = self._bound is not None and self._bound.is_unspecified
        self._allowed = allowed
        self._logger = logger

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *SECURITY_HEADERS], exc_info)

        host = environ.get("HTTP_HOST")
        if host is None or self._lets_in(host):
            return self._app(environ, start)
        shown = host[:100]
        self._logger.warning(
            "control server: refused Host %r from %s (not this server's name)",
            shown,
            environ.get("REMOTE_ADDR"),
        )
        body = json.dumps(
            {
                "msg": f"Host {shown!r} is not one this server answers to: allow it with"
                f" serve(allowed_hosts=[...]) or herdexec run --allow-host NAME"
            }
        ).encode()
        start("403 Forbidden", [("Content-Type", "application/json")])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _lets_in(self, host: str) -> bool:
        if ANY_HOST in self._allowed:
            return True
        name = _normal(_split_port(host.strip()))
        address = _address(name)
        if address is None:
            return name == "localhost" or name in self._allowed
        return (
            self._any_address
            or address == self._bound
            or address.is_loopback  # a tunnel's near end: [::1]:8080 to 127.0.0.1:2112
            or str(address) in self._allowed
        )


def _normal(name: str) -> str:
    """Lowercase, brackets and a final dot dropped: ``[::1]`` is ``::1``, ``A.b.`` ``a.b``."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.removesuffix(".")


def _split_port(host: str) -> str:
    """The host of ``host:port``; ``[v6]:port`` keeps its brackets, a bare v6 stays whole."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    name, colon, port = host.rpartition(":")
    if colon and ":" not in name and port.isascii() and port.isdigit():
        return name
    return host


def _address(name: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None
    # An IPv4 address reached over IPv6 (::ffff:127.0.0.1) is that IPv4 address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
