"""Small tools the tests share."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from herdexec import Work

if TYPE_CHECKING:
    from herdexec import ControlServer, HerdExecutor, HerdFuture


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; for states no event marks.

    The short sleep matters: a loop that spins on ``stats()`` would hold the herd's
    lock nearly all the time and starve the gophers of it.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def assert_capacity(herd: HerdExecutor, capacity: int) -> None:
    """Exactly ``capacity`` works that hold on are taken at once, not one more."""
    gate = threading.Event()
    probes: list[HerdFuture[Any]] = []
    try:
        for n in range(capacity):
            probes.append(herd.send_work(Work(f"probe{n}", gate), timeout=0))
        with pytest.raises(concurrent.futures.TimeoutError):
            herd.send_work(Work("one too many", gate), timeout=0)
    finally:
        gate.set()
    for probe in probes:
        probe.result(timeout=10)


@contextlib.contextmanager
def ended_while_serving(herd: HerdExecutor) -> Iterator[ControlServer]:
    """Serve ``herd``, shut it down, and keep its server open once the herd has ended.

    shutdown() closes the server after the herd has ended and its threads are joined. The
    last work's done-callbacks run on its gopher after the herd has ended: one that
    waits holds that thread, and so the server, open for as long as the block runs.
    """
    server = herd.serve("127.0.0.1:0")
    gate, entered, release = threading.Event(), threading.Event(), threading.Event()
    future = herd.submit(gate.wait, 10)
    future.add_done_callback(lambda _: (entered.set(), release.wait(10)))
    herd.shutdown(wait=False)
    gate.set()
    assert entered.wait(10)
    try:
        yield server
    finally:
        release.set()
        assert wait_until(lambda: server.closed)
