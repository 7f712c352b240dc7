"""``herdexec ctl``: the real console script against a real control server over loopback.

The server is a herd of this test process (``HerdExecutor.serve()``), so each test can
check the herd itself after the command has run.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from herdexec import ControlServer, HerdExecutor

from .helpers import ended_while_serving

HERDEXEC = str(Path(sys.executable).with_name("herdexec"))
TOKEN = "ctl-s3cret"


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HERDEXEC_")}
    return subprocess.run(
        [HERDEXEC, "ctl", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def herd(make_herd: Callable[..., HerdExecutor]) -> HerdExecutor:
    return make_herd(2, name="ctl-test", registry=CollectorRegistry(), max_herd_size=8)


@pytest.fixture
def server(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0") as server:
        yield server


@pytest.fixture
def guarded(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0", token=TOKEN, protect_reads=True) as server:
        yield server


def test_get_prints_the_herd_as_json(server: ControlServer) -> None:
    result = ctl("--url", server.url, "get")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["num"], document["name"], document["msg"]) == (2, "ctl-test", "success")


def test_get_starts_without_the_control_plane(server: ControlServer) -> None:
    # The client needs neither prometheus_client nor the server's bottle and wsgiref,
    # nor what runs jobs: its start-up should not pay for them. -X importtime names
    # every module loaded.
    result = ctl("--url", server.url, "get", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "herdexec._cli._ctl" in loaded
    assert not loaded & {"prometheus_client", "bottle", "wsgiref", "http.server"}
    assert not loaded & {"herdexec._cli._run", "herdexec._cli._jobs", "subprocess"}


def test_the_url_may_omit_the_scheme_or_come_from_the_environment(server: ControlServer) -> None:
    bare = ctl("get", "--url", f"127.0.0.1:{server.port}/herd")
    assert json.loads(bare.stdout)["num"] == 2
    from_env = ctl("get", env={"HERDEXEC_URL": server.url})
    assert json.loads(from_env.stdout)["num"] == 2


def test_set_resizes_the_herd(server: ControlServer, herd: HerdExecutor) -> None:
    result = ctl("--url", server.url, "set", "5")
    assert (result.returncode, result.stdout) == (0, "herd size set to 5\n")
    assert herd.herd_size == 5
    again = ctl("--url", server.url, "set", "5")
    assert (again.returncode, again.stdout) == (0, "Herd size already 5\n")
    paused = ctl("--url", server.url, "set", "0")
    assert paused.returncode == 0
    assert herd.herd_size == 0


def test_metrics_prints_the_prometheus_exposition(server: ControlServer) -> None:
    result = ctl("--url", server.url, "metrics")
    assert result.returncode == 0
    assert 'herdexec_herd_size{herd="ctl-test"} 2.0' in result.stdout


def test_a_server_that_says_no_is_shown_with_its_message(
    guarded: ControlServer, herd: HerdExecutor
) -> None:
    missing = ctl("--url", guarded.url, "set", "3")
    assert missing.returncode == 1
    assert "401 Unauthorized: PATCH /herd needs a token" in missing.stderr
    assert "give --token TOKEN, or set HERDEXEC_TOKEN" in missing.stderr
    wrong = ctl("--url", guarded.url, "--token", "nope", "get")
    assert wrong.returncode == 1
    assert "GET /herd: wrong token" in wrong.stderr
    assert herd.herd_size == 2
    right = ctl("--url", guarded.url, "set", "3", env={"HERDEXEC_TOKEN": TOKEN})
    assert right.returncode == 0
    assert herd.herd_size == 3
    over = ctl("--url", guarded.url, "--token", TOKEN, "set", "9")
    assert over.returncode == 1
    assert "400 Bad Request: Herd size cannot be above 8" in over.stderr


def test_set_on_a_herd_that_has_ended_says_so_in_one_line(herd: HerdExecutor) -> None:
    with ended_while_serving(herd) as server:
        result = ctl("--url", server.url, "set", "5")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"herdexec ctl: PATCH {server.url}/herd: 409 Conflict:"
        " cannot resize the herd after shutdown\n"
    )
    assert herd.herd_size == 2


def test_no_server_there_is_said_plainly() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, and is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = ctl("--url", f"http://127.0.0.1:{port}", "get")
    assert result.returncode == 3
    assert f"no control server at http://127.0.0.1:{port}: connection refused" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("scheme", ["ftp", "https", "HTTPS"])
@pytest.mark.parametrize("where", ["--url", "HERDEXEC_URL"])
def test_a_url_that_is_not_http_is_refused_before_connecting(scheme: str, where: str) -> None:
    # Something listens there, and must see no connection: urllib would talk FTP to it
    # (and wait 10 s for a greeting) or start a TLS handshake.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.setblocking(False)
        url = f"{scheme}://127.0.0.1:{listening.getsockname()[1]}"
        if where == "--url":
            result = ctl("--url", url, "get")
        else:
            result = ctl("get", env={"HERDEXEC_URL": url})
        with pytest.raises(BlockingIOError):
            listening.accept()
    assert result.returncode == 2
    usage, said = result.stderr.splitlines()
    assert usage.startswith("usage: herdexec ctl")
    given_as = "--url" if where == "--url" else "$HERDEXEC_URL"
    assert said == (
        f"herdexec ctl: error: {given_as} {url}: not an http:// URL;"
        " a herd's control server speaks plain HTTP"
    )


def test_something_that_is_not_a_herds_server() -> None:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, format: str, *args: object) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Page) as web:
        thread = threading.Thread(target=web.serve_forever)
        thread.start()
        try:
            result = ctl("--url", f"http://127.0.0.1:{web.server_port}", "get")
        finally:
            web.shutdown()
            thread.join()
    assert result.returncode == 1
    assert "answered, but not as a herd's control server does" in result.stderr


@pytest.mark.parametrize(
    "args", [[], ["set"], ["set", "-1"], ["set", "many"], ["resize", "2"], ["get", "--bogus"]]
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = ctl(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: herdexec ctl")
