"""Process gophers: each gopher owns one worker process and ships it one attempt at a time.

The gopher stays a thread of the herd (so herd size, blocking submit, the backlog,
retries, callbacks and statistics are the herd's, unchanged) and its seat is a worker
process with a pipe of its own: a request and a reply per attempt, no feeder thread,
no shared queue whose lock the gophers would contend for, and a process that dies or
runs over its time takes nothing down but the work it held.

A worker process starts when its gopher first needs it: at the gopher's first work, and
again after the process died, was killed for its time, or served
``max_tasks_per_child`` works. It exits when its gopher leaves (a shrink, shutdown,
interpreter exit) and is killed if it does not within a few seconds.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import select
import signal
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Final

from .._exceptions import BrokenHerd
from .._work import HerdFuture
from . import _worker
from ._base import Bound, OverTime, Runner, Seat

__all__ = ["ProcessRunner", "WorkerDied"]

# How long a leaving gopher waits for its idle worker to exit before killing it.
_EXIT_GRACE: Final = 5.0


class WorkerDied(BrokenProcessPool):
    """The worker process running a work died before it answered.

    Only that work fails (it is retried if ``retry_on`` lists this type); its gopher
    starts a fresh process for its next work and the herd goes on. ProcessPoolExecutor
    would break the whole pool here, which is why this subclasses ``BrokenProcessPool``:
    code written to catch that keeps catching this.

    Attributes:
        exitcode: The process's exit code, negative for a signal (as in
            ``multiprocessing.Process.exitcode``).
        signal: The signal that killed it, or ``None`` if it exited.
        pid: The process's id.
        what: What it was running: ``"work '3'"``, say.
    """

    def __init__(self, exitcode: int | None, pid: int | None, what: str = "a work") -> None:
        self.exitcode = exitcode
        self.pid = pid
        self.what = what
        self.signal: signal.Signals | None = None
        if exitcode is not None and exitcode < 0:
            try:
                self.signal = signal.Signals(-exitcode)
                how = f"was killed by signal {self.signal.name} ({-exitcode})"
            except ValueError:
                how = f"was killed by signal {-exitcode}"
        else:
            how = f"exited with code {exitcode}"
        super().__init__(f"the worker process (pid {pid}) running {what} {how}")

    def __reduce__(self) -> tuple[object, ...]:
        # Its arguments are not its message: pickling (to a log, across a process) needs
        # to know how to make it again.
        return (type(self), (self.exitcode, self.pid, self.what))


def _default_context() -> BaseContext:
    """forkserver where there is one (POSIX), spawn elsewhere (Windows).

    fork() from a process with threads (the gophers) can copy into the child a lock that
    another thread held, and the child then deadlocks; forkserver forks from a clean
    single-threaded server instead (Python 3.14 made it the POSIX default for this).
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _preload_worker(context: BaseContext) -> None:
    """Have the forkserver import the worker's module once, before it forks.

    Otherwise every new worker imports herdexec itself: ten times the cost of starting
    a worker process on a loaded machine (see docs/benchmarks.md). The server's list is
    extended, not replaced, and only read if this Python has it where CPython keeps it;
    once the server runs, a change waits for its next start.
    """
    from multiprocessing import forkserver  # noqa: PLC0415  (POSIX only)

    modules = getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None)
    if isinstance(modules, list) and _worker.__name__ not in modules:
        context.set_forkserver_preload([*modules, _worker.__name__])


class ProcessRunner(Runner):
    """Run each gopher's works in a worker process of its own, past the GIL.

    ``HerdExecutor(n, runner="process")`` is ``runner=ProcessRunner()``. The herd size is
    the number of worker processes; the herd's ``initializer`` runs in each new one.

    Args:
        mp_context: A multiprocessing context or start method name; by default
            ``"forkserver"`` where there is one (POSIX), else ``"spawn"``. ``"fork"``
            is unsafe with a herd's threads running.
        max_tasks_per_child: Replace a worker process after it has made this many
            attempts (a ``map`` chunk counts once); ``None`` keeps it.
        timeout: Seconds one attempt may take; a work over it has its process killed
            and fails with ``TimeoutError`` (retried if ``retry_on`` lists it).

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, or an unknown start method.
    """

    __slots__ = ("_context", "_max_tasks", "_timeout")

    def __init__(
        self,
        *,
        mp_context: BaseContext | str | None = None,
        max_tasks_per_child: int | None = None,
        timeout: float | None = None,
    ) -> None:
        if mp_context is None:
            mp_context = _default_context()
        if isinstance(mp_context, str):
            mp_context = multiprocessing.get_context(mp_context)  # ValueError if unknown
        elif not isinstance(mp_context, BaseContext):
            raise TypeError(
                "mp_context must be a multiprocessing context, a start method name or"
                f" None, not {type(mp_context).__name__}"
            )
        if max_tasks_per_child is not None:
            if isinstance(max_tasks_per_child, bool) or not isinstance(max_tasks_per_child, int):
                raise TypeError(
                    "max_tasks_per_child must be an int or None,"
                    f" not {type(max_tasks_per_child).__name__}"
                )
            if max_tasks_per_child < 1:
                raise ValueError(f"max_tasks_per_child must be >= 1, not {max_tasks_per_child}")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
            if not timeout > 0:
                raise ValueError(f"timeout must be > 0, not {timeout}")
            timeout = float(timeout)
        if mp_context.get_start_method() == "forkserver":
            _preload_worker(mp_context)
        self._context: BaseContext = mp_context
        self._max_tasks = max_tasks_per_child
        self._timeout = timeout

    @property
    def start_method(self) -> str:
        """How worker processes start: ``"forkserver"``, ``"spawn"`` or ``"fork"``."""
        return str(self._context.get_start_method())

    @property
    def max_tasks_per_child(self) -> int | None:
        """Attempts a worker process makes before it is replaced, or ``None``."""
        return self._max_tasks

    @property
    def timeout(self) -> float | None:
        """Seconds an attempt may take, or ``None``."""
        return self._timeout

    def __repr__(self) -> str:
        return (
            f"ProcessRunner(mp_context={self.start_method!r},"
            f" max_tasks_per_child={self._max_tasks!r}, timeout={self._timeout!r})"
        )

    def _bind(
        self,
        *,
        name: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> Bound:
        # A worker gets them pickled as it starts: find out now, not in every gopher.
        try:
            pickle.dumps((initializer, initargs), _worker.PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"a process herd's initializer and initargs must pickle: {exc}"
            ) from exc
        return _Processes(self, name, initializer, initargs)


class _Processes:
    """A ProcessRunner bound to one herd."""

    def __init__(
        self,
        runner: ProcessRunner,
        name: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        self.context = runner._context
        self.max_tasks = runner._max_tasks
        self.timeout = runner._timeout
        self.name = name
        self.initializer = initializer
        self.initargs = initargs
        self.numbers = itertools.count()

    def default_size(self) -> int:
        cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
        return int(cpu_count() or 1)

    def seat(self, broken: Callable[[BaseException], None]) -> Seat:
        return _WorkerSeat(self, broken)

    def resized(self, size: int) -> None:
        pass  # each gopher starts and stops its own process

    def cancel_running(self) -> None:
        pass  # works in hand run to their end, as with ProcessPoolExecutor

    def close(self) -> None:
        pass  # the seats held everything


class _WorkerSeat:
    """One gopher's worker process and its end of their pipe."""

    def __init__(self, processes: _Processes, broken: Callable[[BaseException], None]) -> None:
        self._processes = processes
        self._broken = broken
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._poll: Any = None  # a select.poll() on the pipe and the process, on POSIX
        self._tasks = 0
        self._retired: list[BaseProcess] = []  # told to exit, not yet joined

    def call(self, future: HerdFuture[Any]) -> Any:
        what = f"work {future.work.id!r}"
        # Pickled here, on the gopher's thread: what cannot be pickled fails this work.
        request = pickle.dumps(
            (future._fn, future._args, future._kwargs or None, future._process),
            _worker.PROTOCOL,
        )
        if self._conn is None:
            self._start(what)
        conn, process = self._conn, self._process
        assert conn is not None
        assert process is not None
        try:
            conn.send_bytes(request)
        except OSError:
            raise self._died(process, what) from None
        del request
        kind, value, text = self._receive(conn, process, what, self._processes.timeout)
        self._tasks += 1
        if self._processes.max_tasks is not None and self._tasks >= self._processes.max_tasks:
            self._retire()
        if kind != _worker.OK:
            value.__cause__ = _worker.RemoteTraceback(text)
            raise value
        if future._process:
            value, future.work.result = value
        return value

    def close(self) -> None:
        if self._process is not None:
            self._retire()
        self._reap()

    def _start(self, what: str) -> None:
        """Start a worker process and wait for its initializer."""
        self._reap()
        processes = self._processes
        ours, theirs = processes.context.Pipe()
        process = processes.context.Process(  # type: ignore[attr-defined]
            target=_worker.main,
            args=(theirs, processes.initializer, processes.initargs),
            name=f"{processes.name}_worker_{next(processes.numbers)}",
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._process, self._conn, self._tasks = process, ours, 0
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(ours.fileno(), select.POLLIN)
            self._poll.register(process.sentinel, select.POLLIN)
        kind, value, text = self._receive(ours, process, f"its initializer (before {what})", None)
        if kind == _worker.READY:
            return
        self._forget()
        process.join()
        value.__cause__ = _worker.RemoteTraceback(text)
        self._broken(value)
        raise BrokenHerd(
            "A worker process's initializer failed, the herd is not usable anymore"
        ) from value

    def _receive(
        self, conn: Connection, process: BaseProcess, what: str, timeout: float | None
    ) -> tuple[str, Any, str]:
        """The worker's next reply; raise if it dies or runs over ``timeout`` first."""
        if self._poll is not None:
            # One system call on a poll object kept for the process: wait() would make
            # and register a selector every time, a tenth of a gopher's cost per work.
            events = self._poll.poll(None if timeout is None else 1000 * timeout)
            replied = any(fd == conn.fileno() for fd, _ in events)
        else:
            events = wait([conn, process.sentinel], timeout)
            replied = conn in events
        if not events:
            self._forget()
            process.kill()
            process.join()
            raise OverTime(
                f"{what} ran over its time limit of {timeout} seconds; its worker process"
                f" (pid {process.pid}) was killed"
            )
        if not replied and not conn.poll():
            raise self._died(process, what)
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            raise self._died(process, what) from None
        reply: tuple[str, Any, str] = pickle.loads(data)
        return reply

    def _died(self, process: BaseProcess, what: str) -> WorkerDied:
        self._forget()
        process.join()
        return WorkerDied(process.exitcode, process.pid, what)

    def _forget(self) -> None:
        """The process is gone or going: the next attempt starts another."""
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = self._poll = None

    def _retire(self) -> None:
        """Let the idle worker exit (an empty message), joined at the next start or close."""
        assert self._process is not None
        assert self._conn is not None
        with suppress(OSError):  # gone already
            self._conn.send_bytes(b"")
        self._retired.append(self._process)
        self._forget()

    def _reap(self) -> None:
        """Join the retired workers, killing one that has not exited in time."""
        for process in self._retired:
            process.join(_EXIT_GRACE)
            if process.exitcode is None:
                process.kill()
                process.join()
        self._retired.clear()
