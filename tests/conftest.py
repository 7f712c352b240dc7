"""Fixtures shared by the tests: a herd that is always shut down, and a thread census."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from herdexec import HerdExecutor


@pytest.fixture
def make_herd() -> Iterator[Callable[..., HerdExecutor]]:
    """Build herds that are shut down (and their threads joined) after the test."""
    herds: list[HerdExecutor] = []

    def make(*args: Any, **kwargs: Any) -> HerdExecutor:
        herd = HerdExecutor(*args, **kwargs)
        herds.append(herd)
        return herd

    yield make
    for herd in herds:
        if herd.herd_size == 0 and herd.stats().outstanding:
            herd.herd_size = 1  # a paused herd would wait forever for its work
        herd.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Every test must leave no gopher or timer thread behind.

    A thread with no ident has not run yet: one whose start() a Ctrl-C cut short before
    it was made stays listed by threading, never to run (CPython's own, and
    ThreadPoolExecutor's alike), and cannot be joined.
    """
    before = set(threading.enumerate())
    yield
    left = [
        t
        for t in threading.enumerate()
        if t not in before and t.name.startswith(("HerdExecutor", "herd")) and t.ident is not None
    ]
    for thread in left:
        thread.join(timeout=5)
    assert not [t for t in left if t.is_alive()], f"threads left: {left}"


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread, whatever was installed."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach only the main thread")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
