"""``herdexec run``'s intake: from the input to the herd, and every item read to the reporter.

The input thread takes items from the input into a short queue, where they are not
read yet: an item is read (made a job, which is reported whatever becomes of it) as it
is handed to the herd. Whoever finds a gopher free hands the next job over, without
waiting: the gopher whose job just ended, in that job's done-callback on its own thread,
and the input thread as items come in. Handing each job from one thread to another cost
more than all the rest of herdexec's own work per job.

Jobs given to the herd and not yet ended are counted in flight, and a hand-over gives a
job only while fewer are than the herd has gophers (the herd would not refuse a
gopher's own send_work(): it queues the work without a slot). Past that, one job read
ahead waits for a gopher, as the one a blocked submit() holds would. When no job is left
to end and hand it over (a paused herd), the input thread waits in send_work() with it,
so that a resize starts it at once. A gopher freed with nobody told (a resize over HTTP,
a job waiting for its retry, which holds none) is found by the main thread
(:mod:`herdexec._cli._run`), which tries the waiting job on every tick.

Every item read is reported exactly once, whether it ran or never started, and the
intake counts those not reported yet: the run is over once none is left and no more
will be read (the input is at its end, or the intake is closed), whatever the input
thread is doing then: it may be blocked reading a terminal or a pipe that will never
say more. This state is the intake's alone, under its own lock; the run only closes it,
asks it to try the waiting job, and hears from it through callbacks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent import futures
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from herdexec import HerdExecutor, HerdFuture, Retry, Work

from ._jobs import Job, JobOver, JobStatus, argv_builder

if TYPE_CHECKING:
    from ._report import Reporter
    from ._run import RunOptions

__all__ = ["Intake"]

#: Items the input thread takes ahead of the herd (not read yet), and how few of them
#: wake it to take more.
_AHEAD: Final = 64
_LOW: Final = 16


class Intake:
    """The input thread, the hand-overs, and the count of what is read and unreported.

    Args:
        options: The run's command line: its items, the command, --resume's skips,
            and whether jobs may wait for a retry.
        executor: The herd the jobs go to.
        reporter: Where each job read goes once it ends or never starts.
        reported: Called after each job is reported (the --halt check), or None.
        input_failed: Called on the input thread when the input cannot be read.
        over: Called once, when every item read is reported and no more will be.
    """

    def __init__(
        self,
        options: RunOptions,
        executor: HerdExecutor,
        reporter: Reporter,
        *,
        reported: Callable[[], None] | None,
        input_failed: Callable[[OSError], None],
        over: Callable[[], None],
    ) -> None:
        self._options = options
        self._executor = executor
        self._reporter = reporter
        self._reported = reported
        self._input_failed = input_failed
        self._on_over = over
        self._argv_for = argv_builder(options.command)
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)  # wakes the input thread
        self._queue: deque[tuple[int, str]] = deque()  # taken from the input, not yet read
        self._next: Job | None = None  # read, and waiting for a gopher
        self._sending = False  # the input thread waits in send_work() with the next job
        self._in_flight = 0  # jobs given (or being given) to the herd and not yet ended
        # Given to the herd and not yet ended, for the jobs that may wait for a retry
        # (none do without --retries: nothing to track then, for every job).
        self._waiting: dict[Job, HerdFuture[Any]] | None = {} if options.retries else None
        self._unreported = 0  # items read and not yet through the reporter
        self._closed = False  # the run stops: nothing more goes to the herd
        self._feed_over = False  # the input thread has stopped
        self._complete = False  # ... at the end of the input, every item handed over
        self._over = False  # every item read is reported, and no more will be

    # -- for the run's main thread ---------------------------------------------------

    def start(self) -> None:
        """Start the input thread."""
        threading.Thread(target=self._feed, name="herdexec-run-input", daemon=True).start()

    @property
    def job_waiting(self) -> bool:
        """Whether a job read waits for a gopher (a look, without the lock)."""
        return self._next is not None

    @property
    def complete(self) -> bool:
        """Whether every item of the input was read and handed over."""
        return self._complete

    def close(self) -> None:
        """Hand nothing more to the herd, and let the input thread end."""
        with self._lock:
            self._closed = True
            self._wanted.notify()

    def report_unstarted(self) -> None:
        """After :meth:`close`: report the job that waited for a gopher as never started,
        and end the run if nothing else is left to report."""
        with self._lock:
            unstarted, self._next = self._next, None
        if unstarted is not None:
            self._report(unstarted)
        with self._lock:
            self._check_over_locked()

    def cancel_retries(self) -> None:
        """Cancel the jobs waiting for a retry (cancel() refuses running ones)."""
        if self._waiting is None:
            return
        with self._lock:
            waiting = list(self._waiting.values())
        for future in waiting:
            future.cancel()

    # -- the input thread ------------------------------------------------------------

    def _feed(self) -> None:
        """The input thread: keep the queue filled, and hand over what nobody else will."""
        items = enumerate(self._options.items, 1)
        more = True  # the input may hold more items
        try:
            while True:
                with self._lock:
                    while not self._feed_has_work_locked(more):
                        self._wanted.wait()
                    if self._closed:
                        return
                    job = self._next if self._in_flight == 0 else None
                    if job is not None:
                        self._next, self._sending = None, True
                        self._in_flight += 1
                    elif not (more or self._queue or self._next):
                        self._complete = True  # every item read, and handed over
                        return
                if job is not None:
                    self._give(job, None)
                    with self._lock:
                        self._sending = False
                    self.hand_over()
                    continue
                entry = next(items, None)  # reads the input: may wait for it
                if entry is None:
                    more = False
                    continue
                with self._lock:
                    self._queue.append(entry)
                    idle = self._next is None  # so a gopher may be
                if idle:
                    self.hand_over()
        except OSError as exc:
            self._input_failed(exc)
        finally:
            with self._lock:
                self._feed_over = True
                self._check_over_locked()

    def _feed_has_work_locked(self, more: bool) -> bool:
        """Whether the input thread has something to do: stop, hand over the waiting job
        (no job is left to end and do it), take more items, or end (all are read)."""
        if self._closed or (self._next is not None and self._in_flight == 0):
            return True
        if more:
            return len(self._queue) < _AHEAD
        return not (self._queue or self._next)

    # -- hand-overs, from any thread -------------------------------------------------

    def hand_over(self, *, force: bool = False) -> None:
        """Hand jobs to the herd while it has gophers free, without waiting; once none
        is, a job read waits as the next one. ``force``: try even when every gopher
        seems busy (a job waiting for its retry holds none, a resize over HTTP is not
        told), until one is refused."""
        size = self._executor.herd_size
        while True:
            with self._lock:
                if self._closed or self._sending:
                    return
                job: Job | int | None = self._next
                self._next = None
                if job is None:
                    job = self._read_locked()
                if job is None or isinstance(job, int):
                    pass
                elif force or self._in_flight < size:
                    self._in_flight += 1  # claimed: see _give()
                else:
                    self._next = job
                    if not self._in_flight:
                        self._wanted.notify()  # a paused herd: the input thread waits with it
                    return
            if job is None:
                return
            if isinstance(job, int):
                self._reporter.skip(job)  # not under our lock: the reporter's comes first
            elif not self._give(job, 0):
                self._park(job)
                return

    def _read_locked(self) -> Job | int | None:
        """The next item of the queue, read: a job, or the place (``seq``) of an item
        that --resume skips; None if the queue is empty."""
        if not self._queue:
            self._wanted.notify()  # the input thread may wait for this, to end
            return None
        seq, item = self._queue.popleft()
        if len(self._queue) <= _LOW:
            self._wanted.notify()  # for more items, or for the end
        if seq in self._options.skip:
            return seq
        self._unreported += 1
        return Job(seq, item, self._argv_for(item))

    def _park(self, job: Job) -> None:
        """``job``, refused for want of a gopher, waits as the next one (of two that
        crossed, the first in input order; the other's item goes back to the queue,
        unread)."""
        with self._lock:
            if not self._closed:
                other, self._next = self._next, job
                if other is not None:
                    if other.seq < job.seq:
                        self._next, other = other, job
                    self._queue.appendleft((other.seq, other.item))
                    self._unreported -= 1
                if not self._in_flight:
                    self._wanted.notify()  # nobody else will hand it over
                return
        self._report(job)  # the run stops: read, and never started

    def _give(self, job: Job, timeout: float | None) -> bool:
        """Give ``job`` to the herd, waiting up to ``timeout`` for a gopher; False if
        none was free (the job is the caller's again). Once the herd takes no more (the
        run stops), the job is reported as never started. The caller has counted it in
        flight: whoever looks meanwhile must not take its gopher for free."""
        try:
            future = self._executor.send_work(Work(str(job.seq), job), timeout)
        except (futures.TimeoutError, RuntimeError) as exc:  # no gopher; close_input()
            with self._lock:
                self._in_flight -= 1
            if isinstance(exc, futures.TimeoutError):
                return False
            self._report(job)
            return True
        if self._waiting is not None:
            with self._lock:
                self._waiting[job] = future
        future.add_done_callback(partial(self._ended, job))
        return True

    # -- the gophers -----------------------------------------------------------------

    def _ended(self, job: Job, future: futures.Future[Any]) -> None:
        """A job's future settled: done, failed for good, or cancelled. Its gopher is
        free: it takes the next job on the way."""
        if job.status is not JobStatus.SUCCESS and not future.cancelled():
            exc = future.exception()
            if exc is not None and not isinstance(exc, (Retry, JobOver)):
                job.status, job.reason = JobStatus.FAILURE, f"internal error: {exc!r}"
        self._report(job, ended=True)
        self.hand_over()

    def _report(self, job: Job, *, ended: bool = False) -> None:
        """Report ``job``: read and never started, or ``ended`` in the herd."""
        try:
            self._reporter.finished(job)
            if self._reported is not None:
                self._reported()
        finally:
            with self._lock:
                if ended:
                    self._in_flight -= 1
                    if self._waiting is not None:
                        self._waiting.pop(job, None)
                self._unreported -= 1
                self._check_over_locked()

    def _check_over_locked(self) -> None:
        if self._over or self._unreported:
            return
        if self._feed_over or self._closed:
            self._over = True
            self._on_over()
