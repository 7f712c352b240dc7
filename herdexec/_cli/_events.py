"""The pipe ``herdexec run``'s main thread waits on: one byte per signal or event.

The main thread does nothing but wait here for what happens: a signal, the end of the
run, a failure of herdexec's own input or output. Signals arrive through
``signal.set_wakeup_fd``, which the interpreter writes to from whichever thread the
kernel gave the signal to; a Python handler would run only once the main thread woke
up for some other reason. The handlers installed therefore do nothing, so no handler
ever runs herd code in the middle of herd code on the main thread. The run's own events
are bytes that no signal number takes.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Final

__all__ = ["FINISHED", "HALT_NOW", "IO_FAILED", "Events"]

# Events besides signal numbers, which are below 65.
FINISHED: Final = 255  # every item read is reported: the run is over
IO_FAILED: Final = 254  # herdexec's own input or output failed (the run knows what)
HALT_NOW: Final = 253  # a --halt now condition is met: kill the running jobs


class Events:
    """The pipe itself, for one run: any thread posts, the main thread waits."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def catching(self, signums: Iterable[int]) -> Iterator[None]:
        """Have ``signums`` arrive on the pipe for the ``with`` block; then put the
        handlers and the wakeup descriptor back as they were, and close the pipe."""
        previous = {signum: signal.getsignal(signum) for signum in signums}
        previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in previous:
            signal.signal(signum, _on_the_pipe)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            self._close()

    def post(self, event: int) -> None:
        """From any thread: tell the main thread."""
        with self._lock:
            if not self._closed:
                # A full pipe wakes the main thread anyway.
                with contextlib.suppress(BlockingIOError):
                    os.write(self._write, bytes([event]))

    def wait(self, timeout: float | None) -> bytes:
        """The events so far, waiting up to ``timeout`` seconds for one."""
        if not select.select([self._read], [], [], timeout)[0]:
            return b""
        try:
            return os.read(self._read, 512)
        except BlockingIOError:
            return b""

    def _close(self) -> None:
        """Close the pipe; a thread that posts later (a feeder whose read failed at
        last) posts nothing, and never to a descriptor that was reused meanwhile."""
        with self._lock:
            self._closed = True
            os.close(self._read)
            os.close(self._write)


def _on_the_pipe(signum: int, frame: FrameType | None) -> None:
    """A handler that leaves everything to the wakeup pipe, which has the signal already."""
