"""The lock and condition inside every HerdFuture, at a fraction of the stdlib's cost.

``concurrent.futures.Future`` makes a ``threading.Condition`` for each future. That
object is written in Python: it copies five bound methods of its ``RLock`` onto itself
when it is made, and runs every ``with`` through Python-level ``__enter__`` and
``__exit__``. A future's life (made, started, settled, read) costs 3.4 µs with it and
1.9 µs with this one, and in ``benchmarks/bench_overhead.py`` a herd's per-task cost
fell by a quarter to a half with the change, more than those 1.5 µs, likely because the
gophers and the thread in ``result()`` meet on these locks, and a lock held across fewer
bytecodes is less often held by a thread that has just lost the GIL.

``Future`` asks of its ``_condition`` only ``with``, ``acquire``/``release`` (``wait()``
and ``as_completed()`` take all their futures' locks), ``wait(timeout)`` and
``notify_all()``. So :class:`FutureCondition` *is* the reentrant lock, in C, with those
two methods added.
"""

from __future__ import annotations

import _thread
from contextlib import suppress
from typing import Final

__all__ = ["FutureCondition"]

_allocate_lock: Final = _thread.allocate_lock


# typeshed marks RLock final, but CPython's type takes subclasses, 3.10 to 3.14 alike.
class FutureCondition(_thread.RLock):  # type: ignore[misc]
    """A reentrant lock that can also be waited on and notified, as a Future's is."""

    # One lock per waiting thread, held until notify_all() releases it; None until
    # a thread waits, as most futures are done before anyone does, so that a future
    # costs the garbage collector one object less.
    _waiters: list[_thread.LockType] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock (however deeply held), sleep until notified or until
        ``timeout`` seconds pass, take the lock back; True if notified."""
        if not self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _allocate_lock()
        waiter.acquire()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        saved = self._release_save()  # type: ignore[attr-defined]
        notified = False
        try:
            if timeout is None:
                notified = waiter.acquire()
            elif timeout > 0:
                notified = waiter.acquire(True, timeout)
            else:
                notified = waiter.acquire(False)
            return notified
        finally:
            self._acquire_restore(saved)  # type: ignore[attr-defined]
            waiters = self._waiters
            if not notified and waiters:  # timed out or interrupted: take the waiter
                with suppress(ValueError):  # back, unless notify_all() took it already
                    waiters.remove(waiter)

    def notify_all(self) -> None:
        """Wake every thread in :meth:`wait`; called with the lock held."""
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for waiter in waiters:
                waiter.release()
