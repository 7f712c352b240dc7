"""The herd: gophers, how work reaches them, and the herd's lifecycle.

A herd of size N with a backlog of B admits at most N + B works at a time: each holds a
*slot* token (kept by ``Slots``, _slots.py). A caller that gets a slot has its work
taken, in the sense of a Go channel whose receiver is ready: the work goes onto the
shared ``ready`` queue that gophers read, and the caller returns at once. A caller that
gets no slot blocks until a finishing gopher gives one back (gofherd's ``SendWork``).
Retries hold no slot: a finishing gopher serves due retries before it reads the queue,
so they go before new intake.

Why queues of tokens and not counters behind a lock: with the GIL, a lock that the
submitting thread and the gophers both take on every work turns into a convoy (the
holder waits for the GIL while everyone waits for it), costing a context switch per
work. So a gopher's path through a work takes no lock at all: only ``SimpleQueue``
operations, which are atomic in C, and counters that the gopher alone writes. A submit
takes the herd's lock once, as ThreadPoolExecutor's takes its own; the lock otherwise
guards the rare paths: starting and stopping gophers, resizing, retries, refusals,
shutdown and statistics.

Two callers never wait for a slot, since the wait could not end: one of the herd's own
gophers (a work, or a callback, that submits to its herd), which would wait for a slot
that only its own work can free; and a thread running an asyncio event loop
(``loop.run_in_executor``), which would stall the very coroutines a work may be waiting
for. Their work is queued at once, holding no slot, as a retry holds none.

Gopher threads reference the ``Herd``, never the ``HerdExecutor`` that wraps it, so an
executor dropped without ``shutdown()`` is collected and its finalizer winds the herd
down, as an unreferenced ``ThreadPoolExecutor`` does.

A Ctrl-C (any exception a signal handler raises) reaches only the main thread, so only
a caller's path can be cut short: submit, resize, cancel, close_input, shutdown, join and
an output read. The interpreter raises it as a Python function starts, after a call
returns, at the end of a loop's pass, or inside a blocking wait, and never between
statements that call nothing. So each change a caller makes to the herd is plain stores
followed by at most one call, which a Ctrl-C cannot split; or it records what it took
in a list in the same step (``take_into``) and a handler settles the list; or it is a
step that is safe to do again, done again if it was cut short (``finish``; both tools
are in _interrupts.py). The slots keep the same rules. Gophers and the retry timer are
never interrupted. docs/design.md ("Ctrl-C") goes through each place.
"""

from __future__ import annotations

import enum
import itertools
import logging
import queue
import sys
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from . import _lifecycle
from ._exceptions import BrokenHerd, Retry, WorkFailed
from ._interrupts import finish, take_into
from ._output import Output
from ._retries import RetryTimer, backoff_delay
from ._slots import Slots
from ._tally import (
    BUCKET0,
    CANCELLED,
    COUNTS,
    DURATION_BUCKETS,
    FAILED,
    RETRIED,
    RUNNING,
    SECONDS,
    SUCCEEDED,
    new_tally,
)
from ._work import HerdFuture, Status, Work

if TYPE_CHECKING:
    from ._adapter import Adapter
    from ._runners._base import Bound, Seat
    from ._stats import HerdStats

__all__ = ["Callbacks", "Herd"]

Callbacks = tuple[
    "Callable[[Work], object] | None",
    "Callable[[Work], object] | None",
    "Callable[[Work], object] | None",
]

# Where ThreadPoolExecutor reports a failed initializer; monitoring that watches it for
# thread pools keeps working for herds.
_STDLIB_LOGGER: Final = logging.getLogger("concurrent.futures")

_SHUTDOWN_MESSAGE: Final = "cannot schedule new futures after shutdown"
_EXIT_MESSAGE: Final = "cannot schedule new futures after interpreter shutdown"
_CLOSED_MESSAGE: Final = "cannot schedule new futures after close_input()"
_BROKEN_MESSAGE: Final = "A gopher initializer failed, the herd is not usable anymore"
_RESIZE_MESSAGE: Final = "cannot resize the herd after shutdown"

# .herd: the herd whose gopher the current thread is, if it is one.
_this_thread: Final = threading.local()


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"  # close_input(): no intake; accepted work and retries go on
    SHUTDOWN = "shutdown"
    BROKEN = "broken"  # an initializer raised; sticky


_OPEN: Final = _State.OPEN  # read on every submit and every finished work

# How often join() on a paused herd looks for works cancelled in its queue, in seconds.
_PAUSED_POLL: Final = 0.1


# Markers, futures only in type (never set up, never handed out), so that the ready
# queue and a gopher's next move are of one type. The marker on the ready queue that
# wakes a gopher to look around: leave if the herd has too many or no more work, else
# take due work, else idle again.
_WAKE: Final[HerdFuture[Any]] = HerdFuture.__new__(HerdFuture)
# What Herd._after tells the gopher besides its next work.
_WAIT: Final[HerdFuture[Any]] = HerdFuture.__new__(HerdFuture)  # idle token given: block
_GONE: Final[HerdFuture[Any]] = HerdFuture.__new__(HerdFuture)  # departed: end the thread
_BOOTED, _REVOKED = 0, 1  # a new gopher's flags (see Herd._spawn_locked)


class Herd:
    """The state of one herd and the loop its gophers run."""

    def __init__(
        self,
        *,
        size: int,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        backlog: int | None,
        max_retries: int,
        retry_on: tuple[type[BaseException], ...],
        backoff: Callable[[int], float] | None,
        output: int | None,
        callbacks: Callbacks,
        name: str,
        logger: logging.Logger,
        own_logger: bool,
        runner: Bound | None = None,
    ) -> None:
        self._lock = threading.Lock()
        # Notified when a gopher leaves, the size changes or the work runs out.
        self._changed = threading.Condition(self._lock)
        self._state = _State.OPEN
        self._shut_down = False  # shutdown() was called, even on a broken herd
        self._size = size
        self._prefix = thread_name_prefix
        self._initializer = initializer
        self._initargs = initargs
        self._max_retries = max_retries
        self._retry_on: tuple[type[BaseException], ...] = (Retry, *retry_on)
        self._backoff = backoff
        self._on_success, self._on_retry, self._on_failure = callbacks
        self.name = name
        self.logger = logger
        self._own_logger = own_logger  # the user gave it: report everything there too
        # Where works run, if not on the gopher threads (see _runners/_base.py).
        self._runner = runner

        self._ready: queue.SimpleQueue[HerdFuture[Any]] = queue.SimpleQueue()
        # One token per gopher idle in ready.get() with no work promised to it.
        self._idle: queue.SimpleQueue[None] = queue.SimpleQueue()
        # Gopher threads started and not yet gone. Gophers leave when it exceeds the
        # size: busy ones as they finish, idle ones when a _WAKE marker wakes them.
        self._alive = 0
        self._marks = 0  # _WAKE markers on the ready queue
        self._threads: set[threading.Thread] = set()
        self._thread_numbers = itertools.count()

        # None when the backlog has no bound: admission never waits.
        self._slots = (
            None if backlog is None else Slots(self._lock, size, backlog, self._check_open_locked)
        )

        # Served before the ready queue: retries whose backoff is over, and works that a
        # gopher handed back because the herd shrank under it.
        self._due: deque[HerdFuture[Any]] = deque()
        self._backoffs: RetryTimer[HerdFuture[Any]] = RetryTimer(
            self._lock, f"{thread_name_prefix}_retries", self._due_locked, self._changed.notify_all
        )

        # Finished work for output_chan(); a bounded output also has space tokens.
        # Finished work for output_chan(), when it is on.
        self._output = None if output is None else Output(output)
        self._ended = False  # no work can come any more: gophers sent away, output ended

        self._submitted = 0
        # One tally per live gopher, written by it alone; keyed by identity, since two
        # tallies with the same counts are equal lists.
        self._tallies: dict[int, list[Any]] = {}
        self._retired = new_tally()  # departed gophers' tallies, and the rare paths'

        # Learns the herd's size from its attempts, if it adapts (herdexec._adapter).
        self.adapter: Adapter | None = None

        _lifecycle.register(self)

    # -- reading ---------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def bounded_backlog(self) -> int:
        """The backlog's capacity, or 0 when it has no bound."""
        return 0 if self._slots is None else self._slots.backlog

    @property
    def shut_down(self) -> bool:
        """Whether shutdown() has been called (ThreadPoolExecutor's ``_shutdown``)."""
        return self._shut_down

    @property
    def broken(self) -> str | None:
        """Why the herd takes no work any more, if an initializer broke it."""
        return _BROKEN_MESSAGE if self._state is _State.BROKEN else None

    @property
    def output_enabled(self) -> bool:
        return self._output is not None

    def lock_is_free(self) -> bool:
        """True if the lock is not held right now (so this thread does not hold it)."""
        if self._lock.acquire(blocking=False):
            self._lock.release()
            return True
        return False

    def busy(self) -> bool:
        """Whether the herd has work for most of its gophers: half of them or more run a
        work, or more works wait than the gophers not running one could take, or a caller
        waits in submit. (Idle tokens cannot tell: a work just queued holds one that its
        gopher has not woken up to yet.)"""
        with self._lock:
            running = sum(tally[RUNNING] for tally in self._tallies.values())
            queued = self._ready.qsize() - self._marks
            return (
                2 * running >= self._size
                or queued > self._alive - running
                or (self._slots is not None and self._slots.waiting() > 0)
            )

    def threads(self) -> frozenset[threading.Thread]:
        with self._lock:
            return frozenset(self._threads)

    def stats(self) -> HerdStats:
        # Loaded at the first reading, not with herdexec: see _LAZY in __init__.py.
        from ._stats import HerdStats  # noqa: PLC0415

        with self._lock:
            tally = self._tally_locked()
            busy = tally[RUNNING]
            idle = max(0, self._alive - busy)
            queued = self._ready.qsize() - self._marks
            adapter = self.adapter
            return HerdStats(
                herd_size=self._size,
                busy=busy,
                idle=idle,
                waiting_submitters=0 if self._slots is None else self._slots.waiting(),
                backlog=max(0, queued - idle),  # what the idle gophers cannot take now
                # A retry carries its _withdraw; a work handed back after a shrink, or
                # queued without a slot, is not one.
                pending_retries=sum(f._withdraw is not None for f in self._due)
                + len(self._backoffs),
                submitted=self._submitted,
                succeeded=tally[SUCCEEDED],
                retried=tally[RETRIED],
                failed=tally[FAILED],
                cancelled=tally[CANCELLED],
                duration_buckets=DURATION_BUCKETS,
                duration_counts=tuple(tally[BUCKET0:]),
                duration_sum=tally[SECONDS],
                adapt=None if adapter is None else adapter.algorithm,
                adapting=adapter is not None and adapter.adapting,
                adapt_limit=None if adapter is None else adapter.estimate.limit,
            )

    def _tally_locked(self) -> list[Any]:
        total = list(self._retired)
        for tally in self._tallies.values():
            for field, count in enumerate(tally):
                total[field] += count
        return total

    def _outstanding_locked(self) -> int:
        """Accepted works not yet ended; reads only the three counts it needs, since
        every gopher leaving a large herd asks."""
        ended = 0
        for tally in (self._retired, *self._tallies.values()):
            ended += tally[SUCCEEDED] + tally[FAILED] + tally[CANCELLED]
        return int(self._submitted - ended)

    # -- intake ----------------------------------------------------------------------

    def accept(self, future: HerdFuture[Any], timeout: float | None) -> None:
        """Give ``future`` a slot, blocking until one is free; a caller that must not
        wait (see :meth:`_must_not_wait`) has its work queued without one.

        Raises:
            RuntimeError: The herd takes no more work (shut down, input closed).
            BrokenHerd: An initializer failed.
            TimeoutError: No slot came free within ``timeout``; the work was not
                accepted.
        """
        # The path every submit takes: kept short, as ThreadPoolExecutor's is.
        slots = self._slots
        # The slot token, from when it leaves the queue until the work holds it: given
        # back if anything is raised in between (see take_into).
        held: list[object] = []
        try:
            if slots is not None and not slots.take_free(held):
                if self._must_not_wait():
                    future._holds_slot = False
                else:
                    slots.wait(timeout, held)
            with self._lock:
                if self._state is not _OPEN or _lifecycle.exiting:
                    self._check_open_locked()
                # Counted, holding its slot and queued, with no call before the put: a
                # Ctrl-C lands before all three or after.
                self._submitted += 1
                del held[:]
                try:
                    self._ready.put(future)
                    self._find_gopher_locked()
                except BaseException:
                    self._find_gopher_locked()  # the work is queued: a gopher must come
                    raise
        except BaseException:
            if held:
                assert slots is not None
                slots.put_back(held)
            raise

    def _must_not_wait(self) -> bool:
        """Whether the caller is one of this herd's gophers or runs an asyncio event loop:
        asked only when no slot is free, so the common path pays nothing for it."""
        if getattr(_this_thread, "herd", None) is self:
            return True
        # Not imported for this: where asyncio was never imported, no loop runs.
        events = sys.modules.get("asyncio.events")
        return events is not None and events._get_running_loop() is not None

    def _find_gopher_locked(self) -> None:
        """A work was just queued: promise it an idle gopher, or start one.

        The work is queued first, so that a gopher started for it finds it: an idle
        token must never stand for a gopher that is in fact busy, or a later work would
        wait for a gopher that is not coming. Done again after a Ctrl-C cut it short, it
        may take one idle token too many or start one gopher more (within the size),
        which costs a thread, never a work.
        """
        if not _take(self._idle) and self._alive < self._size:  # else an idle one takes it
            self._spawn_locked()

    def _check_open_locked(self) -> None:
        if self._state is _State.OPEN and not _lifecycle.exiting:
            return
        if self._state is _State.BROKEN:
            raise BrokenHerd(_BROKEN_MESSAGE)
        if _lifecycle.exiting:
            raise RuntimeError(_EXIT_MESSAGE)
        if self._state is _State.CLOSED:
            raise RuntimeError(_CLOSED_MESSAGE)
        raise RuntimeError(_SHUTDOWN_MESSAGE)

    def _refuse_waiting_locked(self) -> None:
        """Wake every caller blocked for a slot; each finds the herd closed and raises
        (safe to do again: see Slots.refuse_waiting_locked)."""
        if self._slots is not None:
            self._slots.refuse_waiting_locked()

    def _wake_for_due_locked(self) -> None:
        """Work waits in the due queue: see that a gopher looks there."""
        if self._alive < self._size and not self._idle.qsize():
            self._spawn_locked()
        else:
            self._wake_locked(1)  # an idle gopher wakes; else a busy one reads it later

    def _spawn_locked(self) -> None:
        """Start a gopher, counted from before its thread starts.

        ``Thread.start()`` waits for the new thread to run, and a Ctrl-C lands there as
        often as not, or just before the thread was made: the exception does not say
        which. So the gopher is counted first, and if ``start()`` raises, the spawner
        and the thread settle it with two flags: the spawner sets REVOKED, then reads
        BOOTED; the thread sets BOOTED, then reads REVOKED; so at least one of them sees
        the other's. A spawner that sees BOOTED keeps the gopher, which runs; one that
        does not counts it out, and a thread that starts after all sees REVOKED and
        asks under the lock (held by the spawner until it has decided) whether it still
        counts. Without an interrupt the thread reads one flag and takes no lock.
        """
        flags = [False, False]
        tally = new_tally()
        name = f"{self._prefix}_{next(self._thread_numbers)}"
        thread = threading.Thread(name=name, target=self._gopher_main, args=(flags, tally))
        try:
            self._alive += 1
            self._tallies[id(tally)] = tally
            self._threads.add(thread)
            thread.start()
        except BaseException:
            flags[_REVOKED] = True
            if not flags[_BOOTED]:
                self._alive -= 1
                del self._tallies[id(tally)]
                self._threads.discard(thread)
            raise
        if len(self._threads) > 2 * self._alive + 16:
            self._threads = {t for t in self._threads if t.is_alive()}

    def _wake_locked(self, count: int) -> None:
        """Put ``count`` _WAKE markers on the ready queue, for idle gophers to see.

        A marker takes no idle token: idle tokens can undercount the idle gophers (a
        busy gopher may take the work promised to an idle one), so they cannot tell
        whether anyone would wake. A spare marker costs a look around.
        """
        for _ in range(count):
            self._marks += 1  # each counted as it is put, with no call in between
            self._ready.put(_WAKE)

    # -- resizing --------------------------------------------------------------------

    def resize(self, size: int) -> None:
        """Set the number of gophers: growing takes effect at once; shrinking sends idle
        gophers away and lets busy ones leave as they finish.

        Raises:
            RuntimeError: The herd has ended: shut down, and every work it accepted
                ended. Until then a resize works, as a paused herd's shutdown needs.
        """
        with self._lock:
            if self._shut_down and not self._outstanding_locked():
                raise RuntimeError(_RESIZE_MESSAGE)
            finish(self._resize_locked, size)

    def _resize_locked(self, size: int) -> None:
        """resize(), which a second run finishes if a Ctrl-C cut the first short: the
        size is one store, the slots count their change from the capacity they hold
        (so a second run adds no tokens twice), and what follows is safe to do again."""
        self._size = size
        if self._slots is not None:
            self._slots.resize_locked(size)
        self._staff_locked()
        # Busy surplus gophers leave as they finish; idle ones when woken.
        self._wake_locked(max(0, self._alive - size))
        self._changed.notify_all()

    def _staff_locked(self) -> None:
        """Start gophers for the works that wait with no gopher to take them, up to
        the size."""
        if self._state is _State.BROKEN or self._ended:
            return
        waiting = self._ready.qsize() - self._marks - self._idle.qsize() + len(self._due)
        for _ in range(min(waiting, self._size - self._alive)):
            self._spawn_locked()

    # -- the gophers -----------------------------------------------------------------

    def _gopher_main(self, flags: list[bool], tally: list[Any]) -> None:
        flags[_BOOTED] = True
        if flags[_REVOKED]:  # a Ctrl-C cut the spawner's start() short (see _spawn_locked)
            with self._lock:
                if id(tally) not in self._tallies:
                    return  # counted out
        _this_thread.herd = self  # its own submits never wait: see accept()
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:
                self._initializer_failed(exc, tally)
                return
        # A runner's seat is taken once per gopher, so the thread herd's path through
        # a work pays for runners only a test that the seat is None.
        seat = None if self._runner is None else self._runner.seat(self._initializer_failed)
        try:
            self._serve(tally, seat)
        finally:
            if seat is not None:
                seat.close()

    def _serve(self, tally: list[Any], seat: Seat | None) -> None:
        """The gopher's loop: take work, run it, until it leaves."""
        ready = self._ready
        future: HerdFuture[Any] | None = None
        while future is not _GONE:
            if future is _WAIT:
                # Wait here, not in _run(): its frame would keep the last work, its
                # arguments and its result alive while the gopher idles (GH-60488).
                future = ready.get()
                if future is _WAKE:
                    # Woken, not given work: its idle token no longer stands for it.
                    # (None left: one was taken for a work that someone else got.)
                    with suppress(queue.Empty):
                        self._idle.get_nowait()
            elif future is None:
                future = self._due_pop() if self._due else None
                if future is None:
                    future = self._read_or_idle()
            elif future is _WAKE:
                future = _GONE if self._should_leave(tally, marker=True) else None
            else:
                # Busy from here, before the check, so that busy never undercounts.
                tally[RUNNING] = 1
                if self._alive > self._size and self._hand_back(future, tally):
                    future = _GONE
                elif future.set_running_or_notify_cancel():
                    future = self._run(future, tally, seat)
                else:
                    tally[CANCELLED] += 1
                    future = self._after(future, tally)

    def _due_pop(self) -> HerdFuture[Any] | None:
        with self._lock:
            return self._due.popleft() if self._due else None

    def _run(
        self, future: HerdFuture[Any], tally: list[Any], seat: Seat | None
    ) -> HerdFuture[Any] | None:
        """Make one attempt at ``future``: settle it or let it wait for a retry, and
        return what _after says.

        This frame can outlive the attempt: the traceback of an exception that the call
        or the backoff raised holds every frame down to the one that raised it, each with
        its locals. So it ends holding nothing of the work's: a cycle from the future
        back to itself would wait for the garbage collector, and hold the arguments and
        the gopher's next work until then. ThreadPoolExecutor's ``_WorkItem.run`` drops
        its own locals for the same reason.
        """
        work = future._work
        value: Any = None
        exception: BaseException | None = None
        nxt: HerdFuture[Any] | None = None
        try:
            started = perf_counter()
            try:
                if seat is None:
                    value = future._fn(*future._args, **future._kwargs)  # type: ignore[misc]
                else:
                    value = seat.call(future)
            except BaseException as exc:
                exception = exc
                status = Status.RETRY if isinstance(exc, self._retry_on) else Status.FAILURE
            else:
                if not future._process:
                    status = Status.SUCCESS
                    work.result = value
                elif isinstance(value, Status):
                    status = value
                else:
                    status = Status.FAILURE
                    exception = TypeError(
                        f"process() must return a herdexec.Status, not {type(value).__name__}"
                    )
            seconds = perf_counter() - started
            tally[SECONDS] += seconds
            tally[BUCKET0 + bisect_left(DURATION_BUCKETS, seconds)] += 1
            if self.adapter is not None:
                self.adapter.observe(started, seconds, status is not Status.SUCCESS, exception)
            if status is Status.RETRY:
                if work.retries < self._max_retries:
                    delay = backoff_delay(self._backoff, work.retries + 1)
                    if not isinstance(delay, BaseException):
                        work.exception = exception
                        return self._retry(future, delay, tally)
                    exception = delay  # the backoff raised: the work fails with that
                status = Status.FAILURE
            work.exception = exception
            self._record(future, status, tally)
            nxt = self._after(future, tally)
            # Settle the future last, so that whoever its result wakes finds the counters,
            # the output and the gopher's next move already done.
            try:
                if status is Status.SUCCESS:
                    future.set_result(work.result)
                else:
                    future.set_exception(exception or WorkFailed(work))
            except BaseException:
                # A done-callback raised past Future's own `except Exception`: the gopher
                # holds its next work already, and must live to run it.
                self.logger.exception(
                    "herd %r: a done-callback raised for work %r", self.name, work.id
                )
            return nxt
        finally:
            del future, work, value, exception, nxt  # why: see the docstring

    def _record(self, future: HerdFuture[Any], status: Status, tally: list[Any]) -> None:
        """A work ends: its status, its callback, the output, then the tally."""
        work = future._work
        work.status = status
        if status is Status.SUCCESS:
            if self._on_success is not None:
                self._call_back(self._on_success, work)
        elif self._on_failure is not None:
            self._call_back(self._on_failure, work)
        if self._output is not None:
            self._output.put(work)  # a bounded output waits for its reader
        tally[SUCCEEDED if status is Status.SUCCESS else FAILED] += 1
        future._drop_call()
        if self._max_retries:
            future._withdraw = None

    def _after(self, future: HerdFuture[Any], tally: list[Any]) -> HerdFuture[Any]:
        """A gopher is done with ``future``: its next work, _WAIT or _GONE."""
        tally[RUNNING] = 0
        if future._holds_slot and self._slots is not None:
            self._slots.give_back()
        if (self._alive > self._size or self._state is not _OPEN) and self._should_leave(tally):
            return _GONE
        if self._due:
            due = self._due_pop()
            if due is not None:
                return due
        # Read (or promise to read) the queue before the future settles, so that whoever
        # the result wakes finds this gopher idle rather than starting another.
        return self._read_or_idle()

    def _read_or_idle(self) -> HerdFuture[Any]:
        """The next work on the ready queue, or _WAIT once this gopher's idle token is in."""
        ready = self._ready
        if not ready.empty():  # cheaper than an Empty raised on every idle moment
            try:
                return ready.get_nowait()
            except queue.Empty:
                pass
        self._idle.put(None)
        return _WAIT

    def _hand_back(self, future: HerdFuture[Any], tally: list[Any]) -> bool:
        """A gopher that the herd shrank under is about to start ``future``: if it is
        surplus, it puts the work first in line for the others and leaves."""
        with self._lock:
            if self._alive <= self._size:
                return False
            self._due.appendleft(future)
            self._depart_locked(tally)
            return True

    def _should_leave(self, tally: list[Any], *, marker: bool = False) -> bool:
        """Leave if surplus after a shrink, broken, or out of work for good."""
        with self._lock:
            self._marks -= marker
            if (
                self._alive > self._size
                or self._state is _State.BROKEN
                or (self._state is not _OPEN and not self._outstanding_locked())
            ):
                self._depart_locked(tally)
                self._wind_down_if_finished_locked()
                return True
            return False

    def _depart_locked(self, tally: list[Any]) -> None:
        """This gopher's thread ends: fold its tally into the herd's."""
        self._alive -= 1
        del self._tallies[id(tally)]
        tally[RUNNING] = 0
        for field, count in enumerate(tally):
            self._retired[field] += count
        if self._due and self._state is not _State.BROKEN:
            self._wake_for_due_locked()  # it may have been the one to take it
        self._changed.notify_all()

    def _wind_down_if_finished_locked(self) -> None:
        """Once no work can come any more: send the gophers away and end the output.

        Marked done last, so that a run a Ctrl-C cut short is done again by the next
        (a spare marker or end of output costs nothing).
        """
        if self._ended or self._state is _State.OPEN or self._outstanding_locked():
            return
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break
        self._wake_locked(self._alive)
        if self._output is not None:
            self._output.end()
        self._ended = True
        self._changed.notify_all()

    def _call_back(self, callback: Callable[[Work], object], work: Work) -> None:
        try:
            callback(work)
        except BaseException:  # even SystemExit: a gopher that died would strand its work
            self.logger.exception(
                "herd %r: callback %r raised for work %r", self.name, callback, work.id
            )

    # -- retries ---------------------------------------------------------------------

    def _retry(
        self, future: HerdFuture[Any], delay: float, tally: list[Any]
    ) -> HerdFuture[Any] | None:
        """Let the work wait ``delay`` seconds for its next attempt, holding no slot."""
        work = future._work
        work.retries += 1
        work.status = Status.RETRY
        if self._on_retry is not None:
            self._call_back(self._on_retry, work)
        future._await_retry()
        if future._holds_slot and self._slots is not None:
            self._slots.give_back()
        future._holds_slot = False  # a waiting retry holds no slot and no gopher
        # Counted even if the herd has just broken and the retry never runs: the work
        # and on_retry have seen it, and the counts must agree with them.
        tally[RETRIED] += 1
        with self._lock:
            broken = self._state is _State.BROKEN
            if not broken:
                future._withdraw = self._withdraw
                if delay <= 0:
                    self._due.append(future)
                else:
                    timer = self._backoffs.add_locked(future, delay)
                    if timer is not None:
                        self._threads.add(timer)
        if broken:
            self._fail_broken(future)
        return self._after(future, tally)

    def _due_locked(self, future: HerdFuture[Any]) -> None:
        """A retry's backoff is over: first in line for the next free gopher."""
        self._due.append(future)
        if self._state is not _State.BROKEN:
            self._wake_for_due_locked()

    def _withdraw(self, future: HerdFuture[Any]) -> None:
        """Take back a waiting retry whose future was just cancelled, and end it: it is
        counted and wait() is told now, not once its backoff is over. If a gopher got
        there first, it sees the cancellation itself."""
        taken: deque[HerdFuture[Any]] = deque()
        with self._lock:
            try:
                if future in self._due:  # futures compare by identity
                    index = self._due.index(future)
                    del self._due[index]
                    taken.append(future)  # no call since the del: the two go together
                else:
                    self._backoffs.take_back_locked(future, taken)
            finally:
                try:
                    self._settle_taken_locked(taken)
                except BaseException:
                    self._settle_taken_locked(taken)  # finish what a Ctrl-C cut short
                    raise

    # -- breaking, closing, shutting down --------------------------------------------

    def _take_waiting_locked(self, taken: deque[HerdFuture[Any]]) -> None:
        """Move every accepted work that has not started out of the herd into ``taken``,
        with the ready queue's markers.

        Each leaves the herd and enters ``taken`` in one step that a Ctrl-C cannot
        split, so that whoever settles ``taken`` has them all.
        """
        with suppress(queue.Empty):
            take_into(taken, self._ready.get_nowait, None)
        due = self._due
        while due:
            future = due[0]
            del due[0]
            taken.append(future)  # no call since the del
        self._backoffs.take_all_locked(taken)

    def _settle_taken_locked(self, taken: deque[HerdFuture[Any]]) -> None:
        """Settle the works taken out of the herd, one by one: a cancelled one ends
        (wait() told, counted cancelled); any other, and a marker, goes back on the
        ready queue.

        Each leaves ``taken`` only as it is settled, in a step that a Ctrl-C cannot
        split, so that doing this again settles the rest. No slot is given back: a
        waiting retry holds none, and otherwise the herd is shut down.
        """
        while taken:
            future = taken[0]
            if future is not _WAKE and future.cancelled():
                future._withdraw = None
                future._tell_cancelled()  # tells wait() and as_completed(), once
                self._retired[CANCELLED] += 1
                del taken[0]
            else:
                del taken[0]
                self._ready.put(future)  # no call since the del
        self._wind_down_if_finished_locked()

    def _initializer_failed(self, exc: BaseException, tally: list[Any] | None = None) -> None:
        """An initializer raised, in a gopher (with its ``tally``: it leaves) or in a
        runner's worker: say so where ThreadPoolExecutor does, and break the herd."""
        _STDLIB_LOGGER.critical("Exception in initializer:", exc_info=exc)
        if self._own_logger:
            self.logger.critical("herd %r: exception in initializer:", self.name, exc_info=exc)
        self._break(tally)

    def _break(self, tally: list[Any] | None) -> None:
        """Fail every waiting work and refuse all later ones; a gopher that breaks the
        herd gives its ``tally`` and leaves."""
        taken: deque[HerdFuture[Any]] = deque()
        with self._lock:
            self._state = _State.BROKEN
            if tally is not None:
                self._depart_locked(tally)
            self._refuse_waiting_locked()
            self._take_waiting_locked(taken)
            waiting = [future for future in taken if future is not _WAKE]
            for _ in range(len(taken) - len(waiting)):
                self._ready.put(_WAKE)  # for the gophers they are to wake
            self._wake_locked(self._alive)
        for future in waiting:
            self._fail_broken(future)

    def _fail_broken(self, future: HerdFuture[Any]) -> None:
        """Fail a work that a broken herd will never run."""
        tally = new_tally()
        running = future.set_running_or_notify_cancel()
        exception = future.work.exception = BrokenHerd(_BROKEN_MESSAGE)
        if running:
            self._record(future, Status.FAILURE, tally)
        else:
            tally[CANCELLED] += 1
        with self._lock:
            for field in COUNTS:
                self._retired[field] += tally[field]
            self._wind_down_if_finished_locked()
        if running:
            future.set_exception(exception)

    def close_input(self) -> None:
        """Stop intake; accepted work and its retries go on (gofherd's CloseInputChan)."""
        finish(self._close_input)

    def _close_input(self) -> None:
        with self._lock:
            if self._state is _State.OPEN:
                self._state = _State.CLOSED
            if self._state is _State.CLOSED:  # again, if a Ctrl-C cut the first run short
                self._refuse_waiting_locked()
                self._wind_down_if_finished_locked()

    def shutdown(self, *, cancel_futures: bool = False) -> None:
        """Stop intake for good; with ``cancel_futures`` cancel what has not started."""
        taken: deque[HerdFuture[Any]] = deque()
        try:
            finish(self._stop, cancel_futures, taken)
        finally:
            try:
                self._cancel_taken(taken)
            except BaseException:
                self._cancel_taken(taken)  # finish what a Ctrl-C cut short
                raise

    def _stop(self, cancel_futures: bool, taken: deque[HerdFuture[Any]]) -> None:
        with self._lock:
            self._shut_down = True
            if self._state is not _State.BROKEN:
                self._state = _State.SHUTDOWN
            self._refuse_waiting_locked()
            if cancel_futures:
                self._take_waiting_locked(taken)
            self._wind_down_if_finished_locked()

    def _cancel_taken(self, taken: deque[HerdFuture[Any]]) -> None:
        """Cancel the works that shutdown() took out of the herd, then settle them."""
        if not taken:
            return
        for future in list(taken):
            if future is not _WAKE:
                # Cancelling runs the future's callbacks, which may call back into the
                # herd: never under the lock.
                future._withdraw = None
                future.cancel()
        with self._lock:
            self._settle_taken_locked(taken)

    def _drop_cancelled_locked(self) -> None:
        """Take cancelled works off the ready queue, as a gopher would have (join on a
        paused herd, which is shut down: no slot is given back)."""
        taken: deque[HerdFuture[Any]] = deque()
        try:
            take_into(taken, self._ready.get_nowait, None)
        except queue.Empty:
            pass
        finally:
            try:
                self._settle_taken_locked(taken)
            except BaseException:
                self._settle_taken_locked(taken)  # finish what a Ctrl-C cut short
                raise

    def join(self) -> None:
        """Wait until every accepted work has ended and every thread has exited."""
        warned = False
        with self._lock:
            while self._alive or self._backoffs.thread or self._outstanding_locked():
                if self._size or self._alive:
                    self._changed.wait()
                    continue
                # Paused: no gopher will drop the works cancelled in the queue, so do it
                # here, and look again now and then, since cancel() tells no one.
                self._drop_cancelled_locked()
                if warned or not self._outstanding_locked():
                    self._changed.wait(_PAUSED_POLL)
                    continue
                # Paused with work to do: say so, but not under the lock, since a
                # logging handler may well call back into the herd.
                warned = True
                outstanding = self._outstanding_locked()
                self._lock.release()
                try:
                    self.logger.warning(
                        "herd %r: shutdown(wait=True) is waiting for %d accepted works on a"
                        " paused herd; it goes on once the herd is resized (herd_size or"
                        " PATCH /herd)",
                        self.name,
                        outstanding,
                    )
                finally:
                    self._lock.acquire()
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join()
        with self._lock:
            self._threads.difference_update(t for t in threads if not t.is_alive())
        _lifecycle.forget(self)

    # -- output ----------------------------------------------------------------------

    def output(self) -> Iterator[Work]:
        """Finished works in completion order, until none can come any more."""
        assert self._output is not None
        return iter(self._output)


def _take(tokens: queue.SimpleQueue[Any]) -> bool:
    """Take a token if there is one, without the cost of raising Empty when there is not."""
    if tokens.empty():
        return False
    try:
        tokens.get_nowait()
    except queue.Empty:
        return False
    return True
