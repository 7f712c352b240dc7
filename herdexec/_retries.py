"""Retries waiting out their backoff: how long (``backoff_delay``), a heap by due time,
and a thread to wake them.

A waiting retry holds no gopher: it sits here until its time comes, then goes to the
herd's due queue, which gophers serve before new work. The thread exists only while a
retry waits, so a herd that never backs off never starts it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, MutableSequence
from typing import Generic, TypeVar

__all__ = ["RetryTimer", "backoff_delay"]

T = TypeVar("T")


def backoff_delay(backoff: Callable[[int], float] | None, attempt: int) -> float | BaseException:
    """The wait before retry number ``attempt``: what ``backoff`` says, checked; or what
    it raised, which the work then fails with while its gopher goes on.

    Returned, not raised, so that the gopher's frame that asks keeps no traceback, which
    would link the failed work back to itself (see Herd._run).
    """
    if backoff is None:
        return 0.0
    try:
        delay = backoff(attempt)
        if isinstance(delay, (int, float)) and not isinstance(delay, bool) and delay >= 0:
            return float(delay)
        raise ValueError(f"backoff({attempt}) returned {delay!r}, not a number of seconds >= 0")
    except BaseException as exc:
        return exc


class RetryTimer(Generic[T]):
    """The retries in backoff of one herd, guarded by the herd's lock.

    Args:
        lock: The herd's lock; every ``*_locked`` method is called holding it, and the
            callbacks run holding it.
        name: The timer thread's name.
        on_due: Called with a retry whose backoff is over.
        on_idle: Called when the thread ends, the last retry gone.
    """

    def __init__(
        self,
        lock: threading.Lock,
        name: str,
        on_due: Callable[[T], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._wake = threading.Condition(lock)
        self._name = name
        self._on_due = on_due
        self._on_idle = on_idle
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()  # ties keep their order; items never compare
        self.thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add_locked(self, item: T, delay: float) -> threading.Thread | None:
        """Wake ``item`` after ``delay`` seconds; returns the thread if it had to start."""
        entry = (time.monotonic() + delay, next(self._order), item)
        heapq.heappush(self._heap, entry)
        if self.thread is None:
            self.thread = threading.Thread(name=self._name, target=self._main)
            self.thread.start()
            return self.thread
        if self._heap[0] is entry:
            self._wake.notify()  # sooner than what the thread sleeps for
        return None

    # Taking out is done so that a Ctrl-C on the caller's thread cannot lose a retry: a
    # retry leaves the heap and enters ``into`` with no call in between, and the thread
    # is told first, since a notify cut short would leave it asleep until a due time
    # that no longer counts.

    def take_back_locked(self, item: T, into: MutableSequence[T]) -> None:
        """Move ``item`` into ``into``, if it waits here."""
        heap = self._heap
        for index, entry in enumerate(heap):
            if entry[2] is item:
                self._wake.notify()
                heap[index] = heap[-1]
                del heap[-1]
                into += [item]  # an operator, not a call: it goes with the del
                heapq.heapify(heap)
                return

    def take_all_locked(self, into: MutableSequence[T]) -> None:
        """Move every waiting retry into ``into`` (the thread then ends)."""
        self._wake.notify()
        heap = self._heap
        while heap:
            entry = heap[-1]  # a heap stays one without its last entry
            del heap[-1]
            into.append(entry[2])

    def _main(self) -> None:
        with self._lock:
            while self._heap:
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    # A backoff may be longer than a lock wait can be (inf, say).
                    self._wake.wait(min(wait, threading.TIMEOUT_MAX))
                    continue
                self._on_due(heapq.heappop(self._heap)[2])
            self.thread = None
            self._on_idle()
