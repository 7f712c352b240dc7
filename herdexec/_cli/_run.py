"""``herdexec run``: read items, run a command for each on a herd, report, and stop cleanly.

Three kinds of thread share the work. An input thread reads the input, a few dozen
items ahead, into a queue. The gophers run the jobs (:mod:`herdexec._cli._jobs`),
report each one as it ends (:mod:`herdexec._cli._report`), and take the next item from
the queue on the way: a job is made of an item, and the item counts as read, only as it
is handed to the herd, so the input is read no faster than the herd runs it (see "the
intake" below). The main thread does nothing but wait on one pipe for what happens: a
signal, the end of the run, a failure of herdexec's own input or output, each one byte.
Signals arrive there through ``signal.set_wakeup_fd``, which the interpreter writes to
from whichever thread the kernel gave the signal to; a Python handler would run only
once the main thread woke up for some other reason. And since the handlers do nothing,
no handler ever runs herd code in the middle of herd code on the main thread.

Stopping, whether by Ctrl-C, SIGTERM, a reader that went away, an input, stdout or
joblog that failed, or a ``--halt`` condition met (which the thread that reported the
job acts on at once, so that its gopher starts nothing more): intake closes
(``close_input()`` wakes a send_work() that waits), the job read and waiting for a
gopher is reported as not started, jobs waiting for a retry are cancelled, and running
jobs finish; jobs killed on the way are reported like any other. The run is over once
every item read has been reported, whatever the input thread is doing then: it may be
blocked reading a terminal or a pipe that will never say more.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import shlex
import signal
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from herdexec import HerdExecutor, HerdFuture, Retry, Work

from ._jobs import KILL_GRACE, Captured, Job, JobOver, JobStatus, Runner, argv_builder
from ._report import Joblog, Reporter, Streams, printable

if TYPE_CHECKING:
    from ._halt import Halt
    from ._progress import Progress

__all__ = [
    "IO_FAILURE",
    "RunOptions",
    "ServeError",
    "count_items",
    "dry_run",
    "input_failure",
    "read_items",
    "run",
]

#: The exit status of a run stopped because its own input or output failed: the input
#: could not be read, or stdout or the joblog could not be written (a full disk, say).
IO_FAILURE: Final = 3

#: Seconds between redraws of the progress bar, between looks for a gopher that came
#: free with nobody told, and between sweeps for retries to cancel while the run stops.
_TICK: Final = 0.2
_READ_SIZE: Final = 64 * 1024
#: Items the input thread takes ahead of the herd (not read yet: see "the intake"), and
#: how few of them wake it to take more.
_AHEAD: Final = 64
_LOW: Final = 16
#: The longest wait between retries, however large --backoff is.
_MAX_BACKOFF: Final = 60.0
# Events on the wakeup pipe besides signal numbers, which are below 65.
_FINISHED: Final = 255
_IO_FAILED: Final = 254  # what failed is in _Run._failures
_HALT_NOW: Final = 253  # a --halt now condition is met: kill the running jobs
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_RESIZE_SIGNALS: Final = {signal.SIGUSR1: +1, signal.SIGUSR2: -1}
#: Signals that kill the running jobs at once, without waiting for a second one.
_KILLING_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)


class ServeError(Exception):
    """The control server cannot listen where ``--serve`` says (the message says why)."""


class RunOptions(NamedTuple):
    """``herdexec run``'s command line, checked, with its files open."""

    command: list[str]
    items: Iterator[str]  # read_items() of the input, from its first item
    jobs: int
    adapt: tuple[int, int] | None = None  # the bounds of an adaptive herd
    total: int | None = None  # how many items there are to run, when known
    skip: frozenset[int] = frozenset()  # the items (seq) that --resume skips
    halt: Halt | None = None
    retries: int = 0
    backoff: float = 0.0
    timeout: float | None = None
    serve: str | None = None
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    joblog: Joblog | None = None
    keep_order: bool = False
    progress: bool = False


def read_items(fd: int) -> Iterator[str]:
    """One item per line, exactly as given but for the newline; empty lines are skipped.

    Lines are bytes turned into text the way the file system does it (with
    surrogateescape), so an item that is not valid UTF-8 reaches the command byte for byte.
    It reads the descriptor itself, not through ``sys.stdin``: a feeder thread still
    blocked in a read when the run ends must hold no lock that the interpreter's
    shutdown would wait for (it aborts, "could not acquire lock for <stdin>").

    Each read's whole lines are decoded at once: a newline byte is never part of a
    multibyte character, nor of an undecodable sequence, so that decodes every line
    as ``os.fsdecode`` would, for a fraction of the calls.
    """
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    rest = b""
    while chunk := os.read(fd, _READ_SIZE):
        whole, newline, rest = (rest + chunk).rpartition(b"\n")
        if newline:
            for line in whole.decode(encoding, errors).split("\n"):
                if line:
                    yield line
    if rest:
        yield rest.decode(encoding, errors)


def dry_run(options: RunOptions) -> int:
    """Print each command as a shell would read it back, and run none; return 0, or the
    exit status of a failed input or output."""
    failures: list[OSError] = []
    streams = Streams(sys.stdout, sys.stderr, failures.append)
    argv_for = argv_builder(options.command)
    try:
        for seq, item in enumerate(options.items, 1):
            if seq in options.skip:
                continue
            line = os.fsencode(shlex.join(argv_for(item))) + b"\n"
            if not streams.output(Captured(stdout=line), None):
                code, what = _stdout_failure(failures[0])
                streams.message(what)
                return code
    except OSError as exc:
        streams.message(input_failure(exc))
        return IO_FAILURE
    return 0


def run(options: RunOptions) -> int:
    """Run the jobs; return the exit status (0, 1, or 128 + the signal that stopped it).

    Raises:
        ServeError: The control server cannot listen where ``--serve`` says.
    """
    return _Run(options).main()


class _Run:
    def __init__(self, options: RunOptions) -> None:
        self._options = options
        self._events = _Events()
        self._streams = Streams(sys.stdout, sys.stderr, self._stdout_failed)
        self._reporter = Reporter(
            self._streams, options.joblog, options.keep_order, self._joblog_failed
        )
        self._runner = Runner(
            options.command[0], options.timeout, options.retries, self._reporter.retrying
        )
        logger = logging.getLogger("herdexec.run")
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        logger.addHandler(_MessageHandler(self._streams))
        # Metrics only for /metrics: loading prometheus_client (and the http.server it
        # brings along) would cost a run that serves nothing more than all its other
        # start-up.
        herd: dict[str, Any] = {} if options.serve is not None else {"registry": None}
        # The backoff and the adaptive algorithm only when asked for: each would load
        # dataclasses (and Gradient statistics too) at every run's start.
        if options.backoff:
            from herdexec import ExponentialBackoff  # noqa: PLC0415

            maximum = max(_MAX_BACKOFF, options.backoff)
            herd["backoff"] = ExponentialBackoff(options.backoff, maximum=maximum)
        if options.adapt is not None:
            from herdexec import Gradient  # noqa: PLC0415

            herd["adapt"] = Gradient(min_size=options.adapt[0], max_size=options.adapt[1])
        # send_work() hands the jobs over, with a timeout where submit() could only
        # wait: see "the intake" below.
        self._executor = HerdExecutor(
            options.jobs,
            thread_name_prefix="herdexec-run",
            name="herdexec-run",
            process=self._runner.attempt,
            output=False,
            max_retries=options.retries,
            logger=logger,
            **herd,
        )
        self._progress: Progress | None = None
        # Guards what the feeder, the gophers and the main thread share below.
        self._lock = threading.Lock()
        # Given to the herd and not yet ended, for the jobs that may wait for a retry
        # (none do without --retries: nothing to track then, for every job).
        self._waiting: dict[Job, HerdFuture[Any]] | None = {} if options.retries else None
        # The intake (see below).
        self._argv_for = argv_builder(options.command)
        self._queue: deque[tuple[int, str]] = deque()  # taken from the input, not yet read
        self._next: Job | None = None  # read, and waiting for a gopher
        self._sending = False  # the input thread waits in send_work() with the next job
        self._in_flight = 0  # jobs given (or being given) to the herd and not yet ended
        self._wanted = threading.Condition(self._lock)  # wakes the input thread
        self._unreported = 0  # items read and not yet through the reporter
        self._intake_over = False  # the input thread has stopped
        self._input_complete = False  # ... at the end of the input
        self._stop_code: int | None = None  # why the run stops early, as an exit status
        self._stop_note = ""  # ... and in words, for the summary
        # herdexec's own input or output that failed, in order: exit status, what failed;
        # and how many of them the main thread has acted on.
        self._failures: list[tuple[int, str]] = []
        self._failures_seen = 0
        # --halt: how many of the jobs it counts stop the run; and whether they have.
        halt = options.halt
        self._halt_at = halt.threshold(options.total) if halt is not None else math.inf
        self._halted = False
        self._over = False  # every item read is reported: the run is over

    # -- the main thread -------------------------------------------------------------

    def main(self) -> int:
        handled = (*_STOP_SIGNALS, *_RESIZE_SIGNALS)
        previous = {signum: signal.getsignal(signum) for signum in handled}
        previous_fd = signal.set_wakeup_fd(self._events.fd, warn_on_full_buffer=False)
        for signum in handled:
            signal.signal(signum, _on_the_pipe)
        try:
            if self._options.serve is not None:
                self._serve(self._options.serve)
            if self._options.progress:
                from ._progress import Progress  # noqa: PLC0415  (tqdm only when drawn)

                self._progress = Progress(self._options.total, sys.stderr)
                self._streams.clear_bar = self._progress.cleared
            threading.Thread(target=self._feed, name="herdexec-run-input", daemon=True).start()
            self._wait_for_the_end()
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._runner.close()
            self._reporter.close()
            if self._progress is not None:
                self._show_progress()
                self._progress.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            self._events.close()
        return self._finish()

    def _serve(self, addr: str) -> None:
        try:
            server = self._executor.serve(
                addr, token=self._options.token, allowed_hosts=self._options.allowed_hosts
            )
        except (OSError, ValueError) as exc:  # in use, say, or not host:port
            raise ServeError(f"--serve {addr}: {exc}") from exc
        self._streams.message(f"control server at {server.url}")
        if self._options.token is None and not _is_loopback(server.host):
            self._streams.message(
                f"warning: anyone who can reach {server.url} can resize this run;"
                " give --token to require one"
            )

    def _wait_for_the_end(self) -> None:
        interrupts = 0
        kill_at: float | None = None  # when jobs sent SIGTERM get SIGKILL
        while True:
            timeout = _TICK
            if kill_at is not None:
                timeout = min(_TICK, max(0.0, kill_at - time.monotonic()))
            for event in self._events.wait(timeout):
                if event == _FINISHED:
                    return
                if event == _IO_FAILED:
                    for code, failure in self._new_failures():
                        self._stop(code, failure)
                elif event == _HALT_NOW:
                    kill_at = self._kill(signal.SIGTERM)
                elif event in _RESIZE_SIGNALS:
                    self._resize(_RESIZE_SIGNALS[signal.Signals(event)])
                elif event in _STOP_SIGNALS:
                    interrupts += 1
                    self._stop(128 + event)
                    if event in _KILLING_SIGNALS or interrupts == 2:
                        kill_at = self._kill(signal.SIGTERM)
                    elif interrupts > 2:
                        self._kill(signal.SIGKILL)
            if kill_at is not None and time.monotonic() >= kill_at:
                self._kill(signal.SIGKILL)
                kill_at = None
            if self._stop_code is not None:
                self._cancel_retries()
            elif self._next is not None:  # a gopher that nobody heard come free?
                self._hand_over(force=True)
            self._show_progress()

    def _show_progress(self) -> None:
        if self._progress is not None:
            self._progress.show(
                done=self._reporter.done,
                failed=self._reporter.failed,
                running=self._runner.running,
                herd_size=self._executor.herd_size,
            )

    def _resize(self, change: int) -> None:
        size = self._executor.herd_size + change
        self._executor.herd_size = max(0, min(size, self._executor.max_herd_size))
        self._hand_over()

    def _stop(self, code: int, failure: str | None = None) -> None:
        """Start no more jobs; running ones finish. ``failure`` says what failed, when
        it is not a signal that stops the run."""
        with self._lock:
            first = self._stop_code is None
            if first:
                self._stop_code = code
                self._stop_note = (
                    f"stopped: {failure}"
                    if failure is not None
                    else f"stopped by {signal.Signals(code - 128).name}"
                )
        if not first:
            if failure is not None:  # while stopping anyway: still say it
                self._streams.message(failure)
            return
        self._runner.stop()
        self._executor.close_input()  # the input thread's waiting send_work() gives up
        with self._lock:
            unstarted, self._next = self._next, None
            self._wanted.notify()
        running = self._runner.running
        waiting = f", waiting for {running} running" if running else ""
        if failure is not None:
            self._streams.message(f"{failure}: starting no more jobs{waiting}")
        elif code == 128 + signal.SIGINT:
            again = " (Ctrl-C again to kill them)" if running else ""
            self._streams.message(f"interrupted: starting no more jobs{waiting}{again}")
        if unstarted is not None:
            self._report(unstarted)  # read, and never started
        with self._lock:
            self._check_over_locked()

    def _kill(self, signum: int) -> float:
        """Signal every running job; return when the stragglers get SIGKILL."""
        killed = self._runner.kill(signum)
        if killed:
            self._streams.message(f"sending {signal.Signals(signum).name} to {killed} running jobs")
        return time.monotonic() + KILL_GRACE

    def _cancel_retries(self) -> None:
        """Cancel the jobs waiting for a retry (cancel() refuses running ones).

        Swept on every tick while the run stops, since a job failing now may be put to
        wait for its retry just after a sweep.
        """
        if self._waiting is None:
            return
        with self._lock:
            waiting = list(self._waiting.values())
        for future in waiting:
            future.cancel()

    def _finish(self) -> int:
        reporter = self._reporter
        code, note = self._stop_code, self._stop_note
        # A failure as the reporter closed, at the very end; or after --halt, whose 0 or 1
        # must not hide that output was lost.
        if self._failures and (code is None or code < IO_FAILURE):
            if code is None:
                note = f"stopped: {self._failures[0][1]}"
            code = self._failures[0][0]
        eventful = reporter.failed or reporter.retried or reporter.not_started or reporter.skipped
        if code is not None or eventful or self._options.progress:
            notes = ""
            if code is not None:
                notes = f"; {note}"
                if not self._input_complete:
                    notes += ", input not read to the end"
            self._streams.message(reporter.summary() + notes)
        if code is not None:
            return code
        return 1 if reporter.failed or reporter.not_started else 0

    # -- the intake: from the input to the herd --------------------------------------
    #
    # The input thread takes items from the input into a short queue, where they are
    # not read yet: an item is read (made a job, which is reported whatever becomes of
    # it) as it is handed to the herd. Whoever finds a gopher free hands the next job
    # over, without waiting: the gopher whose job just ended, in that job's done-callback
    # on its own thread, and the input thread as items come in. Handing each job from
    # one thread to another cost more than all the rest of herdexec's own work per job.
    #
    # Jobs given to the herd and not yet ended are counted in flight, and a hand-over
    # gives a job only while fewer are than the herd has gophers (the herd would not
    # refuse a gopher's own send_work(): it queues the work without a slot). Past
    # that, one job read ahead waits for a gopher, as the one a blocked submit() holds
    # would. When no job is left to end and hand it over (a paused herd), the input
    # thread waits in send_work() with it, so that a resize starts it at once. A gopher
    # freed with nobody told (a resize over HTTP, a job waiting for its retry, which
    # holds none) is found by the main thread, which tries the waiting job on every
    # tick.

    def _feed(self) -> None:
        """The input thread: keep the queue filled, and hand over what nobody else will."""
        items = enumerate(self._options.items, 1)
        more = True  # the input may hold more items
        try:
            while True:
                with self._lock:
                    while not self._feed_has_work_locked(more):
                        self._wanted.wait()
                    if self._stop_code is not None:
                        return
                    job = self._next if self._in_flight == 0 else None
                    if job is not None:
                        self._next, self._sending = None, True
                        self._in_flight += 1
                    elif not (more or self._queue or self._next):
                        self._input_complete = True  # every item read, and handed over
                        return
                if job is not None:
                    self._give(job, None)
                    with self._lock:
                        self._sending = False
                    self._hand_over()
                    continue
                entry = next(items, None)  # reads the input: may wait for it
                if entry is None:
                    more = False
                    continue
                with self._lock:
                    self._queue.append(entry)
                    idle = self._next is None  # so a gopher may be
                if idle:
                    self._hand_over()
        except OSError as exc:
            self._failed(IO_FAILURE, input_failure(exc))
        finally:
            with self._lock:
                self._intake_over = True
                self._check_over_locked()

    def _feed_has_work_locked(self, more: bool) -> bool:
        """Whether the input thread has something to do: stop, hand over the waiting job
        (no job is left to end and do it), take more items, or end (all are read)."""
        if self._stop_code is not None or (self._next is not None and self._in_flight == 0):
            return True
        if more:
            return len(self._queue) < _AHEAD
        return not (self._queue or self._next)

    def _hand_over(self, *, force: bool = False) -> None:
        """Hand jobs to the herd while it has gophers free, without waiting; once none
        is, a job read waits as the next one. ``force``: try even when every gopher
        seems busy (a job waiting for its retry holds none, a resize over HTTP is not
        told), until one is refused."""
        size = self._executor.herd_size
        while True:
            with self._lock:
                if self._stop_code is not None or self._sending:
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
            if self._stop_code is None:
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

    # -- failures of herdexec's own input and output, from any thread ---------------

    def _failed(self, code: int, failure: str) -> None:
        """Tell the main thread, which stops the run on the first failure and says each."""
        with self._lock:
            self._failures.append((code, failure))
        self._events.post(_IO_FAILED)

    def _new_failures(self) -> list[tuple[int, str]]:
        """The failures the main thread has not acted on yet."""
        with self._lock:
            new = self._failures[self._failures_seen :]
            self._failures_seen = len(self._failures)
        return new

    def _stdout_failed(self, error: OSError) -> None:
        self._failed(*_stdout_failure(error))

    def _joblog_failed(self, error: OSError) -> None:
        assert self._options.joblog is not None
        path = printable(self._options.joblog.path)
        self._failed(IO_FAILURE, f"cannot write the joblog {path} ({error.strerror})")

    # -- the gophers -----------------------------------------------------------------

    def _ended(self, job: Job, future: futures.Future[Any]) -> None:
        """A job's future settled: done, failed for good, or cancelled. Its gopher is
        free: it takes the next job on the way."""
        if job.status is not JobStatus.SUCCESS and not future.cancelled():
            exc = future.exception()
            if exc is not None and not isinstance(exc, (Retry, JobOver)):
                job.status, job.reason = JobStatus.FAILURE, f"internal error: {exc!r}"
        self._report(job, ended=True)
        self._hand_over()

    def _report(self, job: Job, *, ended: bool = False) -> None:
        """Report ``job``: read and never started, or ``ended`` in the herd."""
        try:
            self._reporter.finished(job)
            if self._options.halt is not None:
                self._check_halt(self._options.halt)
        finally:
            with self._lock:
                if ended:
                    self._in_flight -= 1
                    if self._waiting is not None:
                        self._waiting.pop(job, None)
                self._unreported -= 1
                self._check_over_locked()

    def _check_halt(self, halt: Halt) -> None:
        """Once the --halt condition is met, stop the run; with ``now``, have the main
        thread kill the running jobs.

        The run stops here, on the thread that reported the job, before its gopher takes
        the next: ``-j 1 --halt soon,fail=1`` starts not one job after the failure.
        """
        reporter = self._reporter
        count = halt.counted(reporter.succeeded, reporter.failed)
        if count < self._halt_at:
            return
        with self._lock:
            if self._halted:
                return
            self._halted = True
        self._stop(halt.exit_status(reporter.failed), halt.reason(count))
        if halt.now:
            self._events.post(_HALT_NOW)

    def _check_over_locked(self) -> None:
        if self._over or self._unreported:
            return
        if self._intake_over or self._stop_code is not None:
            self._over = True
            self._events.post(_FINISHED)


class _Events:
    """The pipe the main thread waits on: one byte per signal or event."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def fd(self) -> int:
        """Where the interpreter writes the numbers of the signals caught."""
        return self._write

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

    def close(self) -> None:
        """Close the pipe; a thread that posts later (a feeder whose read failed at
        last) posts nothing, and never to a descriptor that was reused meanwhile."""
        with self._lock:
            self._closed = True
            os.close(self._read)
            os.close(self._write)


def _stdout_failure(error: OSError) -> tuple[int, str]:
    """The exit status and the words for a write to stdout that failed: a reader that
    went away is a SIGPIPE to the shell, anything else an I/O failure."""
    if isinstance(error, BrokenPipeError):
        return 128 + signal.SIGPIPE, "stdout closed"
    return IO_FAILURE, f"cannot write to stdout ({error.strerror})"


def input_failure(error: OSError) -> str:
    """The words for an input that could not be read."""
    return f"cannot read the input ({error.strerror})"


def _on_the_pipe(signum: int, frame: FrameType | None) -> None:
    """A handler that leaves everything to the wakeup pipe, which has the signal already."""


class _MessageHandler(logging.Handler):
    """The herd's warnings, as herdexec's own lines on stderr."""

    def __init__(self, streams: Streams) -> None:
        super().__init__(logging.WARNING)
        self._streams = streams

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._streams.message(record.getMessage())
        except Exception:
            self.handleError(record)


def count_items(fd: int) -> int | None:
    """How many items a regular file holds (then rewound); None for a pipe or a terminal."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        start = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return None
    count = sum(1 for _ in read_items(fd))
    os.lseek(fd, start, os.SEEK_SET)
    return count


def _is_loopback(host: str) -> bool:
    try:
        import ipaddress  # noqa: PLC0415  (for --serve only)

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
