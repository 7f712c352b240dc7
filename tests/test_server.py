"""The control server: gofherd's HTTP contract on /herd, over real loopback HTTP.

Every test talks to a real server started on port 0, with the standard library's own
clients (http.client, urllib, raw sockets for what those refuse to send).
"""

from __future__ import annotations

import errno
import gc
import inspect
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

import herdexec
from herdexec import ControlServer, HerdExecutor
from herdexec._control._routes import MAX_BODY
from herdexec._control._server import _Handler

from .helpers import ended_while_serving, wait_until
from .http_helpers import call, call_json, raw

EXAMPLE = Path(__file__).parent.parent / "examples" / "quickstart.py"
TOKEN = "s3cret-token"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def herd(make_herd: Callable[..., HerdExecutor], registry: CollectorRegistry) -> HerdExecutor:
    return make_herd(2, name="test", registry=registry)


@pytest.fixture
def server(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0") as server:
        yield server


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("herdexec-server")]


# -- GET /herd -----------------------------------------------------------------------


def test_get_herd_reports_the_size_first_then_live_figures(
    server: ControlServer, herd: HerdExecutor
) -> None:
    for future in [herd.submit(pow, 2, n) for n in range(3)]:
        future.result()
    status, headers, body = call_json(server, "GET", "/herd")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert list(body)[:2] == ["num", "msg"]
    assert (body["num"], body["msg"]) == (2, "success")
    stats = herd.stats()
    assert body["succeeded"] == stats.succeeded == 3
    for field in ("busy", "idle", "waiting_submitters", "backlog", "pending_retries"):
        assert body[field] == getattr(stats, field), field
    assert (body["name"], body["max_herd_size"], body["outstanding"]) == ("test", 10_000, 0)


def test_head_herd(server: ControlServer) -> None:
    status, headers, data = call(server, "HEAD", "/herd")
    assert (status, data) == (200, b"")
    assert headers["Content-Type"] == "application/json"


def test_get_herd_answers_while_the_herd_is_saturated(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    # Queued on a paused herd, then let go: growing starts a gopher for each at once.
    herd = make_herd(0, backlog=None, registry=None)
    started = threading.Semaphore(0)
    stop = threading.Event()

    def spin() -> int:
        started.release()
        n = 0
        while not stop.is_set():
            n += 1  # CPU-bound Python, holding the GIL all it can
        return n

    futures = [herd.submit(spin) for _ in range(8)]
    herd.herd_size = 8
    try:
        for _ in futures:
            started.acquire()
        with herd.serve("127.0.0.1:0") as server:
            status, _, body = call_json(server, "GET", "/herd")
            assert (status, body["busy"]) == (200, 8)
            status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 9}')
            assert (status, body) == (200, {"num": 9, "msg": "success"})
    finally:
        stop.set()
    assert all(f.result() > 0 for f in futures)


# -- PATCH /herd ---------------------------------------------------------------------


def test_patch_resizes_and_answers_exactly(server: ControlServer, herd: HerdExecutor) -> None:
    status, _, data = call(server, "PATCH", "/herd", b'{"num": 10}')
    assert (status, data) == (200, b'{"num": 10, "msg": "success"}')
    assert herd.herd_size == 10


def test_patch_to_zero_pauses(server: ControlServer, herd: HerdExecutor) -> None:
    status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 0}')
    assert (status, body) == (200, {"num": 0, "msg": "success"})
    assert herd.herd_size == 0


def test_patch_same_size(server: ControlServer, herd: HerdExecutor) -> None:
    status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 2}')
    assert (status, body) == (200, {"num": 2, "msg": "Herd size already 2"})


def test_patch_negative(server: ControlServer, herd: HerdExecutor) -> None:
    status, _, body = call_json(server, "PATCH", "/herd", b'{"num": -1}')
    assert (status, body) == (400, {"num": 2, "msg": "Herd size cannot be negative"})
    assert herd.herd_size == 2


def test_patch_a_small_padded_body_is_fine(server: ControlServer, herd: HerdExecutor) -> None:
    body = b'{"num": 3' + b" " * 4096 + b"}"
    assert call_json(server, "PATCH", "/herd", body)[::2] == (200, {"num": 3, "msg": "success"})


def test_patch_ignores_other_keys(server: ControlServer, herd: HerdExecutor) -> None:
    # A client may send back what GET /herd gave it, with num changed.
    body = b'{"num": 4, "msg": "success", "busy": 0}'
    assert call_json(server, "PATCH", "/herd", body)[::2] == (200, {"num": 4, "msg": "success"})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(b"ten please", "not JSON", id="not-json"),
        pytest.param(b'{"num": 3', "not JSON", id="truncated-json"),
        pytest.param(b'{"num": "\xff"}', "not JSON", id="not-utf8"),
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"  \n", "empty", id="blank"),
        pytest.param(b"[10]", "JSON object", id="array"),
        pytest.param(b"10", "JSON object", id="number"),
        pytest.param(b'"10"', "JSON object", id="string"),
        pytest.param(b"null", "JSON object", id="null-body"),
        pytest.param(b"{}", 'no "num"', id="num-missing"),
        pytest.param(b'{"nun": 10}', 'no "num"', id="num-misspelt"),
        pytest.param(b'{"num": 10.0}', "integer", id="float-whole"),
        pytest.param(b'{"num": 2.5}', "integer", id="float"),
        pytest.param(b'{"num": 1e1}', "integer", id="exponent"),
        pytest.param(b'{"num": NaN}', "integer", id="nan"),
        pytest.param(b'{"num": "10"}', "integer", id="num-string"),
        pytest.param(b'{"num": true}', "integer", id="true"),
        pytest.param(b'{"num": false}', "integer", id="false"),
        pytest.param(b'{"num": null}', "integer", id="null"),
        pytest.param(b'{"num": [10]}', "integer", id="num-array"),
        pytest.param(b'{"num": {"n": 10}}', "integer", id="num-object"),
        pytest.param(b'{"num": 10001}', "above 10000", id="above-cap"),
        pytest.param(b'{"num": 1000000000000000000000}', "above 10000", id="far-above-cap"),
        pytest.param(b'{"num": 1, "num": 900}', "more than once", id="duplicate-key"),
        pytest.param(b"[" * 50_000, "nested too deep", id="nested-deep"),
        pytest.param(b'{"num": ' + b"9" * 5_000 + b"}", "too long", id="huge-integer"),
    ],
)
def test_patch_bad_bodies_get_400_and_change_nothing(
    server: ControlServer, herd: HerdExecutor, body: bytes, says: str
) -> None:
    status, _, answer = call_json(server, "PATCH", "/herd", body)
    assert status == 400
    assert answer["num"] == 2
    assert says in answer["msg"]
    assert herd.herd_size == 2


def test_patch_body_over_the_limit_gets_413(server: ControlServer, herd: HerdExecutor) -> None:
    body = b'{"num": 3' + b" " * MAX_BODY + b"}"
    status, _, answer = call_json(server, "PATCH", "/herd", body)
    assert (status, answer["num"]) == (413, 2)
    assert str(MAX_BODY) in answer["msg"]
    assert herd.herd_size == 2


def test_413_reaches_urllib_rather_than_a_reset(server: ControlServer, herd: HerdExecutor) -> None:
    # The server answers before reading the body, then drains it: without that, the
    # client would still be sending when the socket closed, and read a reset.
    request = urllib.request.Request(
        server.url + "/herd", data=b" " * (4 * 1024 * 1024), method="PATCH"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    with caught.value as response:
        assert response.code == 413
        assert "bytes" in json.loads(response.read())["msg"]
    assert herd.herd_size == 2


def test_patch_chunked_body_gets_411(server: ControlServer, herd: HerdExecutor) -> None:
    chunks = iter([b'{"num": ', b"3}"])
    status, _, data = call(server, "PATCH", "/herd", chunks)  # type: ignore[arg-type]
    assert status == 411
    assert "Content-Length" in json.loads(data)["msg"]
    assert herd.herd_size == 2


def test_patch_content_length_not_a_number(server: ControlServer, herd: HerdExecutor) -> None:
    request = b"PATCH /herd HTTP/1.1\r\nHost: localhost\r\nContent-Length: ten\r\n\r\n"
    status, answer = raw(server, request)
    assert (status, answer["num"]) == (400, 2)
    assert "Content-Length" in answer["msg"]


def test_patch_body_shorter_than_its_length(server: ControlServer, herd: HerdExecutor) -> None:
    request = b'PATCH /herd HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"num": 3}'
    status, answer = raw(server, request, half_close=True)
    assert (status, answer["num"]) == (400, 2)
    assert "ended before" in answer["msg"]
    assert herd.herd_size == 2


def test_patch_is_not_read_as_form_data(server: ControlServer, herd: HerdExecutor) -> None:
    # curl -d sends application/x-www-form-urlencoded: the body is JSON all the same.
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 5}', headers)
    assert (status, body) == (200, {"num": 5, "msg": "success"})


# -- every other request -------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_on_herd_get_405(
    server: ControlServer, herd: HerdExecutor, method: str
) -> None:
    status, headers, body = call_json(server, method, "/herd", b'{"num": 7}')
    assert status == 405
    assert headers["Allow"] == "GET, HEAD, PATCH"
    assert "GET, HEAD, PATCH" in body["msg"]
    assert herd.herd_size == 2


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_other_methods_on_metrics_get_405(server: ControlServer, method: str) -> None:
    status, headers, _ = call_json(server, method, "/metrics")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/index.html", "/herd/", "/HERD", "/nope", "/metrics/x"])
def test_unknown_paths_get_404_json(server: ControlServer, path: str) -> None:
    status, _, body = call_json(server, "GET", path)
    assert status == 404
    assert "/herd" in body["msg"]


def test_a_query_string_is_not_part_of_the_path(server: ControlServer) -> None:
    assert call_json(server, "GET", "/herd?verbose=1")[0] == 200


@pytest.mark.parametrize(
    "request_line",
    [b"NONSENSE\r\n\r\n", b"GET /herd HTTP/2.0\r\n\r\n", b"GET /herd HTTP/x\r\n\r\n"],
    ids=["syntax", "http2", "bad-version"],
)
def test_malformed_requests_get_400_json(server: ControlServer, request_line: bytes) -> None:
    status, answer = raw(server, request_line)
    assert status == 400
    assert answer["msg"]


def test_a_stuck_client_does_not_hold_the_server_up(server: ControlServer) -> None:
    with socket.create_connection((server.host, server.port)) as stuck:
        stuck.sendall(b"GET /herd HTTP/1.1\r\n")  # and nothing more
        assert call_json(server, "GET", "/herd")[0] == 200
        assert call_json(server, "PATCH", "/herd", b'{"num": 3}')[0] == 200


def test_a_silent_client_is_dropped_after_the_timeout(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_Handler, "timeout", 0.2)
    with caplog.at_level(logging.DEBUG, logger="herdexec"):
        with socket.create_connection((server.host, server.port)) as silent:
            silent.settimeout(10)
            assert silent.recv(4096) == b""  # the server hung up on it
        assert call_json(server, "GET", "/herd")[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_requests_are_logged_through_the_herds_logger_not_stderr(
    make_herd: Callable[..., HerdExecutor],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("this collector is broken")

    registry = CollectorRegistry()
    registry.register(Broken())  # type: ignore[arg-type]
    logger = logging.getLogger("test.control")
    caplog.set_level(logging.DEBUG, logger="test.control")
    herd = make_herd(1, logger=logger, registry=registry)
    with herd.serve("127.0.0.1:0") as server:
        call(server, "GET", "/herd")
        call(server, "PATCH", "/herd", b'{"num": 2}')
        raw(server, b"NONSENSE\r\n\r\n")
        # A fault of the server's own is a 5xx, in JSON, with its traceback in the log.
        status, _, body = call_json(server, "GET", "/metrics")
        assert status == 500
        assert "log" in body["msg"]
    messages = [r.getMessage() for r in caplog.records if r.name == "test.control"]
    assert any('"GET /herd HTTP/1.1" 200' in m for m in messages)
    assert any("resized from 1 to 2" in m for m in messages)
    assert any("NONSENSE" in m for m in messages)
    assert any("this collector is broken" in m for m in messages)
    assert capfd.readouterr().err == ""


# -- the token -----------------------------------------------------------------------


@pytest.fixture
def guarded(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0", token=TOKEN) as server:
        yield server


@pytest.mark.parametrize(
    ("authorization", "invalid"),
    [
        (None, False),
        ("Bearer", False),
        (f"Basic {TOKEN}", False),
        ("Bearer wrong", True),
        (f"Bearer {TOKEN}x", True),
        (f"Bearer {TOKEN[:-1]}", True),
    ],
)
def test_patch_needs_the_token(
    guarded: ControlServer, herd: HerdExecutor, authorization: str | None, invalid: bool
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, response_headers, body = call_json(guarded, "PATCH", "/herd", b'{"num": 5}', headers)
    assert status == 401
    assert response_headers["WWW-Authenticate"].startswith('Bearer realm="herdexec"')
    assert ('error="invalid_token"' in response_headers["WWW-Authenticate"]) is invalid
    assert set(body) == {"msg"}
    assert herd.herd_size == 2


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_patch_with_the_token(guarded: ControlServer, herd: HerdExecutor, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    status, _, body = call_json(guarded, "PATCH", "/herd", b'{"num": 5}', headers)
    assert (status, body) == (200, {"num": 5, "msg": "success"})
    assert herd.herd_size == 5


@pytest.mark.parametrize(
    "body",
    [b"garbage", b'{"num": -1}', b" " * (4 * MAX_BODY)],
    ids=["not-json", "negative", "too-large"],
)
def test_the_token_is_checked_before_the_body(guarded: ControlServer, body: bytes) -> None:
    headers = {"Authorization": "Bearer wrong"}
    assert call_json(guarded, "PATCH", "/herd", body, headers)[0] == 401


def test_reads_stay_open_with_a_token(guarded: ControlServer) -> None:
    assert call_json(guarded, "GET", "/herd")[0] == 200
    assert call(guarded, "GET", "/metrics")[0] == 200


def test_protect_reads(herd: HerdExecutor) -> None:
    with herd.serve("127.0.0.1:0", token=TOKEN, protect_reads=True) as server:
        for path in ("/herd", "/metrics"):
            status, _, body = call_json(server, "GET", path)
            assert status == 401
            assert set(body) == {"msg"}  # not even the size
            headers = {"Authorization": f"Bearer {TOKEN}"}
            assert call(server, "GET", path, headers=headers)[0] == 200


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"token": ""}, ValueError),
        ({"token": "two words"}, ValueError),
        ({"token": "caf\u00e9"}, ValueError),
        ({"token": b"bytes"}, TypeError),
        ({"protect_reads": True}, ValueError),
        ({"token": TOKEN, "protect_reads": "yes"}, TypeError),
    ],
)
def test_bad_tokens_are_refused_before_listening(
    herd: HerdExecutor, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        herd.serve("127.0.0.1:0", **kwargs)  # type: ignore[arg-type]
    assert herd.server is None
    assert not server_threads()


# -- the address, and serving ---------------------------------------------------------


def test_serve_binds_loopback_and_reports_where(server: ControlServer, herd: HerdExecutor) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert herd.server is server
    assert repr(server) == f"<ControlServer {server.url} serving>"


def test_default_addr_is_loopback_2112() -> None:
    assert inspect.signature(HerdExecutor.serve).parameters["addr"].default == "127.0.0.1:2112"


def test_addr_at_construction(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(0, addr="127.0.0.1:0", registry=None)
    assert herd.server is not None
    status, _, body = call_json(herd.server, "GET", "/herd")
    assert (status, body["num"]) == (200, 0)


def test_port_in_use_raises_oserror_at_serve(
    herd: HerdExecutor, registry: CollectorRegistry
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}") as caught:
            herd.serve(f"127.0.0.1:{port}")
        assert caught.value.errno == errno.EADDRINUSE
        assert herd.server is None
        # From the constructor too; that herd is shut down and out of the metrics.
        with pytest.raises(OSError, match="in use"):
            HerdExecutor(1, name="stillborn", addr=f"127.0.0.1:{port}", registry=registry)
    assert not server_threads()
    assert b"stillborn" not in generate_latest(registry)


def test_the_port_is_free_again_as_soon_as_the_server_closes(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    # The server half-closes each connection first, so the closed connection waits in
    # TIME-WAIT on the server's side; without SO_REUSEADDR that holds the port for a minute.
    first = make_herd(1, name="first", registry=None)
    server = first.serve("127.0.0.1:0")
    port = server.port
    with socket.create_connection((server.host, port), timeout=10) as client:
        client.sendall(b"GET /herd HTTP/1.0\r\n\r\n")
        # Read to the server's end before hanging up: a client that closed first (as
        # http.client may, once it has the body) would take the TIME-WAIT on its side.
        while client.recv(65536):
            pass
    server.close()
    again = make_herd(1, name="again", registry=None)
    with again.serve(f"127.0.0.1:{port}") as reopened:
        assert call_json(reopened, "GET", "/herd")[0] == 200
        # A server still listening keeps its port: a second one is refused, as before.
        with pytest.raises(OSError, match=f"cannot serve on 127.0.0.1:{port}") as caught:
            first.serve(f"127.0.0.1:{port}")
        assert caught.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize(
    ("addr", "error"),
    [
        ("localhost", ValueError),
        (":2112", ValueError),
        ("127.0.0.1:", ValueError),
        ("127.0.0.1:65536", ValueError),
        ("127.0.0.1:http", ValueError),
        ("127.0.0.1:-1", ValueError),
        (2112, TypeError),
        (("127.0.0.1", 0), TypeError),
    ],
)
def test_bad_addr(herd: HerdExecutor, addr: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        herd.serve(addr)  # type: ignore[arg-type]


def test_ipv6_loopback(herd: HerdExecutor) -> None:
    try:
        server = herd.serve("[::1]:0")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        assert server.host == "::1"
        assert server.url == f"http://[::1]:{server.port}"
        assert call_json(server, "GET", "/herd")[0] == 200


def test_one_server_at_a_time(server: ControlServer, herd: HerdExecutor) -> None:
    with pytest.raises(RuntimeError, match="serves already"):
        herd.serve("127.0.0.1:0")
    server.close()
    assert herd.server is None
    with herd.serve("127.0.0.1:0") as again:
        assert herd.server is again
        assert call_json(again, "GET", "/herd")[0] == 200


def test_two_herds_in_one_process(
    make_herd: Callable[..., HerdExecutor], registry: CollectorRegistry
) -> None:
    ants = make_herd(1, name="ants", registry=registry)
    bees = make_herd(2, name="bees", registry=registry)
    with ants.serve("127.0.0.1:0") as a, bees.serve("127.0.0.1:0") as b:
        assert call_json(a, "PATCH", "/herd", b'{"num": 5}')[0] == 200
        assert (ants.herd_size, bees.herd_size) == (5, 2)
        assert call_json(a, "GET", "/herd")[2]["name"] == "ants"
        body = call_json(b, "GET", "/herd")[2]
        assert (body["name"], body["num"]) == ("bees", 2)
        for server in (a, b):
            metrics = call(server, "GET", "/metrics")[2].decode()
            assert 'herdexec_herd_size{herd="ants"} 5.0' in metrics
            assert 'herdexec_herd_size{herd="bees"} 2.0' in metrics


# -- closing -------------------------------------------------------------------------


def test_close_with_stuck_clients_returns_and_leaves_no_thread(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No socket timeout: only close() can free these handlers (the test times out if not).
    monkeypatch.setattr(_Handler, "timeout", None)
    silent = socket.create_connection((server.host, server.port))
    halfway = socket.create_connection((server.host, server.port))
    body_due = socket.create_connection((server.host, server.port))
    clients = [silent, halfway, body_due]
    try:
        halfway.sendall(b"GET /herd HTTP/1.1\r\nHost: localhost\r\n")
        body_due.sendall(b"PATCH /herd HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
        # Answered, so the connections before it were accepted: their handlers wait.
        assert call_json(server, "GET", "/herd")[0] == 200
        server.close()
        assert server.closed
        assert not server_threads()
        for client in clients:
            client.settimeout(10)
            while client.recv(4096):
                pass  # whatever answer there was, then the end
    finally:
        for client in clients:
            client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port)).close()


def test_close_cuts_a_client_that_does_not_read(
    make_herd: Callable[..., HerdExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Large:
        def collect(self) -> Iterator[object]:
            yield GaugeMetricFamily("large", "x" * 32_000_000, value=1)

    monkeypatch.setattr(_Handler, "timeout", None)
    monkeypatch.setattr(herdexec._control._server, "_CLOSE_GRACE", 0.01)
    registry = CollectorRegistry()
    registry.register(Large())  # type: ignore[arg-type]
    server = make_herd(1, registry=registry).serve("127.0.0.1:0")
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect((server.host, server.port))
        reader.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert reader.recv(1, socket.MSG_PEEK)  # the answer began; far more is to come
        server.close()
    assert not server_threads()


def test_close_twice_and_as_context_manager(herd: HerdExecutor) -> None:
    with herd.serve("127.0.0.1:0") as server:
        pass
    assert server.closed
    server.close()
    assert repr(server).endswith("closed>")


def test_shutdown_closes_the_server(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(1, registry=None)
    server = herd.serve("127.0.0.1:0")
    herd.shutdown()
    assert server.closed
    assert herd.server is None
    assert not server_threads()
    with pytest.raises(RuntimeError, match="after shutdown"):
        herd.serve("127.0.0.1:0")


def test_a_paused_herd_can_be_resized_while_shutdown_waits(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    herd = make_herd(0, backlog=None, registry=None)
    server = herd.serve("127.0.0.1:0")
    future = herd.submit(pow, 2, 10)
    waiter = threading.Thread(target=herd.shutdown, name="herd-test-shutdown")
    waiter.start()
    assert call_json(server, "PATCH", "/herd", b'{"num": 1}')[0] == 200
    waiter.join()
    assert future.result() == 1024
    assert server.closed


def test_patch_once_the_herd_has_ended_gets_409(herd: HerdExecutor) -> None:
    """Between the herd's end and its server's closing, a resize is refused, saying why;
    one that changes nothing is still answered as such."""
    with ended_while_serving(herd) as server:
        status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 5}')
        assert (status, body) == (409, {"num": 2, "msg": "cannot resize the herd after shutdown"})
        status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 2}')
        assert (status, body) == (200, {"num": 2, "msg": "Herd size already 2"})
    assert herd.herd_size == 2


# -- max_herd_size: the cap that PATCH relies on -------------------------------------


def test_max_herd_size(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(2, max_herd_size=4, registry=None)
    assert herd.max_herd_size == 4
    herd.herd_size = 4
    with pytest.raises(ValueError, match=r"herd_size must be <= max_herd_size \(4\), not 5"):
        herd.herd_size = 5
    assert herd.herd_size == 4
    with pytest.raises(TypeError):
        herd.herd_size = 2.0  # type: ignore[assignment]
    assert make_herd(max_herd_size=3, registry=None).herd_size <= 3  # the default, capped


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_herd_size": 0}, ValueError),
        ({"max_herd_size": -5}, ValueError),
        ({"max_herd_size": "10"}, TypeError),
        ({"max_herd_size": True}, TypeError),
        ({"max_herd_size": 10.0}, TypeError),
        ({"max_workers": 11, "max_herd_size": 10}, ValueError),
        ({"registry": "global"}, TypeError),
    ],
)
def test_bad_construction(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        HerdExecutor(**kwargs)  # type: ignore[arg-type]


# -- the README's example ------------------------------------------------------------


def test_readme_curl_commands_against_the_example() -> None:
    command = [sys.executable, str(EXAMPLE), "--addr", "127.0.0.1:0"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as example:
        try:
            assert example.stderr is not None
            match = None
            while match is None:
                line = example.stderr.readline()
                assert line, "the example ended before it served"
                match = re.search(r"curl -XGET (http://\S+)/herd", line)
            url = match.group(1)
            # curl -XGET localhost:5555/herd
            with urllib.request.urlopen(url + "/herd", timeout=10) as response:
                body = json.loads(response.read())
            assert (body["num"], body["msg"]) == (0, "success")
            # curl -XPATCH 127.0.0.1:5555/herd -d '{"num": 10}'
            request = urllib.request.Request(url + "/herd", data=b'{"num": 10}', method="PATCH")
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read()) == {"num": 10, "msg": "success"}
            out, _ = example.communicate(timeout=30)
        finally:
            example.kill()
    assert example.returncode == 0
    assert sorted(out.splitlines()) == sorted(
        f"workID:{i}, status: success, result:{i + 10}" for i in range(10)
    )


def test_shutdown_without_wait_keeps_serving_until_the_work_is_done() -> None:
    herd = HerdExecutor(0, backlog=None, registry=None)
    server = herd.serve("127.0.0.1:0")
    future = herd.submit(int, "6")
    herd.shutdown(wait=False)
    assert not server.closed  # the paused herd can still be resumed over HTTP
    status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 1}')
    assert (status, body) == (200, {"num": 1, "msg": "success"})
    assert future.result(timeout=10) == 6
    assert wait_until(lambda: server.closed)


def test_a_dropped_serving_herd_lives_until_shutdown(registry: CollectorRegistry) -> None:
    """Its server holds it, so an operator can still resize it; shutdown() ends both."""
    herd = HerdExecutor(1, addr="127.0.0.1:0", registry=registry)
    server = herd._server
    assert server is not None
    ref = weakref.ref(herd)
    del herd
    gc.collect()
    revived = ref()
    assert revived is not None
    status, _, body = call_json(server, "PATCH", "/herd", b'{"num": 2}')
    assert (status, body["num"]) == (200, 2)
    assert revived.herd_size == 2
    revived.shutdown()
    with pytest.raises(ConnectionRefusedError):
        call_json(server, "GET", "/herd")
