"""Bad HTTP input, generated: never a 5xx, never a size change, never a dead server."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from herdexec import ControlServer, HerdExecutor

from .http_helpers import call

SIZE = 3

# Bodies that are no valid {"num": N} with N in range: JSON of every shape, and raw bytes.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.integers(min_value=-(10**30), max_value=-1)
    | st.integers(min_value=10_001),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
bodies = (
    json_values.map(lambda v: json.dumps({"num": v}).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HerdExecutor, ControlServer]]:
    herd = HerdExecutor(SIZE, registry=CollectorRegistry(), name="fuzzed")
    server = herd.serve("127.0.0.1:0")
    yield herd, server
    herd.shutdown()


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same inputs on every run: CI stays deterministic
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    method=st.sampled_from(["PATCH", "GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/herd", "/metrics", "/", "/herd/x", "/%00", "/herd?num=5"]),
    body=bodies,
)
def test_bad_input_never_breaks_the_server(
    served: tuple[HerdExecutor, ControlServer], method: str, path: str, body: bytes
) -> None:
    herd, server = served
    status, _, _ = call(server, method, path, body if method != "GET" else None)
    assert status < 500
    assert herd.herd_size == SIZE
    status, _, _ = call(server, "GET", "/herd")
    assert status == 200  # still alive


def test_a_thousand_served_herds_leave_nothing_behind() -> None:
    threads = threading.active_count()
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    registry = CollectorRegistry()
    for n in range(1000):
        herd = HerdExecutor(1, registry=registry, name=f"leak{n}")
        server = herd.serve("127.0.0.1:0")
        assert call(server, "GET", "/herd")[0] == 200
        herd.submit(int).result(timeout=10)
        herd.shutdown()
    assert threading.active_count() <= threads
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds
    assert [m.name for m in registry.collect() if m.samples] == []  # no series left
