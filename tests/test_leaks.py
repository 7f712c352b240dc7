"""Leaks: a thousand herds come and go, and leave no thread and no herd behind."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable

import herdexec._lifecycle
from herdexec import HerdExecutor, Retry, Status, Work
from herdexec._herd import Herd

from .helpers import wait_until

HERDS = 1000
PREFIX = "HerdExecutor-leak"


def flaky(retries: int) -> Callable[[], int]:
    """A task that asks for ``retries`` retries, then returns them."""
    calls = iter(range(retries + 1))

    def task() -> int:
        if next(calls) < retries:
            raise Retry()
        return retries

    return task


def process(work: Work) -> Status:
    work.set_result(work.body)
    return Status.RETRY if work.retries < work.body else Status.SUCCESS


def herds_alive() -> int:
    gc.collect()
    return sum(isinstance(o, (HerdExecutor, Herd)) for o in gc.get_objects())


def test_a_thousand_herds_leave_nothing_behind() -> None:
    threads_before = threading.active_count()
    objects_before = herds_alive()
    live_before = len(herdexec._lifecycle._live)
    refs: list[weakref.ref[object]] = []
    for n in range(HERDS):
        herd = HerdExecutor(
            2,
            thread_name_prefix=PREFIX,
            process=process if n % 4 == 0 else None,
            max_retries=2,
            # Every tenth herd waits out its retries on a timer thread.
            backoff=(lambda attempt: 0.0002) if n % 10 == 0 else None,
            backlog=(0, 3, None)[n % 3],
        )
        refs += [weakref.ref(herd), weakref.ref(herd._herd)]
        futures = [herd.submit(flaky(k % 3)) for k in range(4)]
        if n % 4 == 0:
            futures.append(herd.send_work(Work(f"w{n}", 1)))
        assert [f.result(timeout=10) for f in futures[:4]] == [0, 1, 2, 0]
        if n % 4 == 0:
            assert futures[4].result(timeout=10) == 1
            herd.close_input()
            assert sorted(w.id for w in herd.output_chan()) == sorted(f.id for f in futures)
        # Shut down with and without waiting, and dropped without shutdown().
        if n % 3 == 0:
            herd.shutdown(wait=True)
        elif n % 3 == 1:
            herd.shutdown(wait=False)
        del herd, futures
    # A poll: threads that were not waited for end on their own.
    assert wait_until(lambda: threading.active_count() <= threads_before, timeout=30), [
        t for t in threading.enumerate() if t.name.startswith(PREFIX)
    ]
    assert [t for t in threading.enumerate() if t.name.startswith(PREFIX)] == []
    assert herds_alive() <= objects_before  # herds of earlier tests may go meanwhile
    assert [r for r in refs if r() is not None] == []
    assert len(herdexec._lifecycle._live) <= live_before
