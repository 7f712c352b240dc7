"""The page's server side, over real loopback HTTP: its files, the JSON it reads, and the
guards every answer passes (Host, CORS, Content-Security-Policy). The page in a real
browser is tests/test_page_browser.py."""

from __future__ import annotations

import http.client
import json
import logging
import re
from collections.abc import Callable, Iterator
from importlib import resources

import pytest
from prometheus_client import CollectorRegistry

from herdexec import ControlServer, HerdExecutor

from .http_helpers import call, call_json

TOKEN = "page-token"
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}


@pytest.fixture
def herd(make_herd: Callable[..., HerdExecutor]) -> HerdExecutor:
    return make_herd(2, name="paged", registry=CollectorRegistry())


@pytest.fixture
def server(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0", allowed_hosts=["herd.example.com"]) as server:
        yield server


def with_host(
    server: ControlServer, method: str, path: str, host: str | None, body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request whose Host header is ``host`` exactly (None: no Host header at all)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


# -- the page's files ------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGE_FILES)
def test_the_page_is_served_from_the_package(server: ControlServer, path: str) -> None:
    name, content_type = PAGE_FILES[path]
    status, headers, data = call(server, "GET", path)
    assert (status, headers["Content-Type"]) == (200, content_type)
    shipped = (resources.files("herdexec._control") / "static" / name).read_bytes()
    assert data == shipped
    assert headers["Cache-Control"] == "no-cache"
    status, _, data = call(server, "HEAD", path)
    assert (status, data) == (200, b"")


def test_the_page_loads_only_its_own_files(server: ControlServer) -> None:
    page = call(server, "GET", "/")[2].decode()
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links
    # Every file it loads is served here; every link stays on this server.
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    for link in links:
        assert call(server, "GET", link)[0] == 200, link
    assert '<label for="size">Herd size</label>' in page


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_the_page_answers_only_reads(server: ControlServer, method: str) -> None:
    status, headers, body = call_json(server, method, "/")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert "GET, HEAD" in body["msg"]


def test_the_page_is_served_without_a_token_even_when_reads_need_one(herd: HerdExecutor) -> None:
    # It holds no figure of the herd: it asks for the token, then reads GET /herd with it.
    with herd.serve("127.0.0.1:0", token=TOKEN, protect_reads=True) as server:
        assert call(server, "GET", "/")[0] == 200
        assert call(server, "GET", "/herd")[0] == 401


def test_get_herd_gives_the_histogram_from_the_same_snapshot(
    server: ControlServer, herd: HerdExecutor
) -> None:
    for future in [herd.submit(pow, 3, n) for n in range(5)]:
        future.result()
    status, _, data = call(server, "GET", "/herd")
    assert status == 200
    # Strict JSON: the open last bound is null, never Infinity.
    body = json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    stats = herd.stats()
    assert body["duration_buckets"][:-1] == list(stats.duration_buckets[:-1])
    assert body["duration_buckets"][-1] is None
    assert body["duration_counts"] == list(stats.duration_counts)
    assert sum(body["duration_counts"]) == 5
    assert body["duration_sum"] == stats.duration_sum
    assert list(body)[:2] == ["num", "msg"]


# -- what every answer carries ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 200),
        ("GET", "/herd", 200),
        ("GET", "/metrics", 200),
        ("PATCH", "/herd", 401),
        ("POST", "/herd", 405),
        ("GET", "/nope", 404),
    ],
)
def test_every_answer_is_nosniff_and_lets_nothing_else_in(
    herd: HerdExecutor, method: str, path: str, status: int
) -> None:
    with herd.serve("127.0.0.1:0", token=TOKEN) as server:
        got, headers, _ = call(server, method, path, b'{"num": 3}' if method != "GET" else None)
    assert got == status
    assert headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(
        part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"  # scripts, styles, fetches: this server only
    assert policy["frame-ancestors"] == "'none'"  # nobody frames the page to steal clicks


@pytest.mark.parametrize("method", ["GET", "PATCH", "OPTIONS"])
def test_no_cors_header_lets_another_origin_in(
    server: ControlServer, herd: HerdExecutor, method: str
) -> None:
    headers = {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, response_headers, _ = call(server, method, "/herd", b'{"num": 7}', headers)
    assert not [h for h in response_headers if h.lower().startswith("access-control-")]
    # The preflight a cross-origin PATCH needs is refused, so a browser never sends it.
    assert status == {"GET": 200, "PATCH": 200, "OPTIONS": 405}[method]
    assert herd.herd_size == (7 if method == "PATCH" else 2)  # curl is no browser


# -- the Host check against DNS rebinding ----------------------------------------------


def bound(server: ControlServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    "host",
    [
        "{bound}",
        "127.0.0.1",
        "localhost",
        "localhost:8080",
        "LocalHost.",
        "[::1]:8080",  # a tunnel's near end
        "herd.example.com",
        "HERD.example.com.:443",
        None,  # HTTP/1.0 clients may send none; browsers always do
    ],
)
def test_a_known_host_is_answered(server: ControlServer, host: str | None) -> None:
    host = host.format(bound=bound(server)) if host is not None else None
    assert with_host(server, "GET", "/herd", host)[0] == 200
    assert with_host(server, "GET", "/", host)[0] == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "localhost.evil.example",
        "sub.herd.example.com",
        "10.0.0.1",
        "[::2]",
        "",
        "[::1",
    ],
)
def test_any_other_host_gets_403_and_changes_nothing(
    server: ControlServer, herd: HerdExecutor, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    host = host.format(port=server.port)
    caplog.set_level(logging.WARNING, logger="herdexec")
    for method, path, body in (("GET", "/herd", None), ("GET", "/", None)):
        status, headers, data = with_host(server, method, path, host, body)
        assert (status, headers["Content-Type"]) == (403, "application/json")
        msg = json.loads(data)["msg"]
        assert f"Host {host!r}" in msg
        assert "allowed_hosts" in msg
        assert "--allow-host" in msg
    status, _, data = with_host(server, "PATCH", "/herd", host, b'{"num": 9}')
    assert status == 403
    assert "num" not in json.loads(data)  # not even the size
    assert herd.herd_size == 2
    assert any("refused Host" in r.getMessage() for r in caplog.records)


def test_the_host_check_comes_before_the_token(herd: HerdExecutor) -> None:
    with herd.serve("127.0.0.1:0", token=TOKEN) as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            connection.request(
                "PATCH", "/herd", b'{"num": 5}', {**headers, "Host": "rebound.example"}
            )
            assert connection.getresponse().status == 403
        finally:
            connection.close()
    assert herd.herd_size == 2


def test_star_lets_every_host_in(herd: HerdExecutor) -> None:
    with herd.serve("127.0.0.1:0", allowed_hosts=["*"]) as server:
        assert with_host(server, "GET", "/herd", "anything.example")[0] == 200


def test_an_allowed_address_and_a_wildcard_bind(herd: HerdExecutor) -> None:
    with herd.serve("127.0.0.1:0", allowed_hosts=["::FFFF:10.0.0.1"]) as server:
        assert with_host(server, "GET", "/herd", "10.0.0.1")[0] == 200
        assert with_host(server, "GET", "/herd", "10.0.0.2")[0] == 403
    # Bound to every interface, any address of the machine is its own; names still are not.
    with herd.serve("0.0.0.0:0") as server:
        assert with_host(server, "GET", "/herd", f"192.0.2.7:{server.port}")[0] == 200
        assert with_host(server, "GET", "/herd", f"rebound.example:{server.port}")[0] == 403


@pytest.mark.parametrize(
    ("allowed_hosts", "error", "match"),
    [
        ("herd.example.com", TypeError, "list of host names"),
        (None, TypeError, "list of host names"),
        ([b"herd.example.com"], TypeError, "bytes"),
        (["herd.example.com:8080"], ValueError, "without scheme, port or path"),
        (["http://herd.example.com"], ValueError, "without scheme, port or path"),
        (["herd.example.com/"], ValueError, "without scheme, port or path"),
        ([""], ValueError, "no host name"),
        (["two words"], ValueError, "no host name"),
    ],
)
def test_bad_allowed_hosts_are_refused_before_listening(
    herd: HerdExecutor, allowed_hosts: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        herd.serve("127.0.0.1:0", allowed_hosts=allowed_hosts)  # type: ignore[arg-type]
    assert herd.server is None
