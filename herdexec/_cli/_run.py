"""``herdexec run``: read items, run a command for each on a herd, report, and stop cleanly.

Three kinds of thread share the work. An input thread reads the input, a few dozen
items ahead, into a queue. The gophers run the jobs (:mod:`herdexec._cli._jobs`),
report each one as it ends (:mod:`herdexec._cli._report`), and take the next item from
the queue on the way: a job is made of an item, and the item counts as read, only as it
is handed to the herd, so the input is read no faster than the herd runs it (the
intake, :mod:`herdexec._cli._intake`). The main thread, here, does nothing but wait on
one pipe for what happens (:mod:`herdexec._cli._events`): a signal, the end of the run,
a failure of herdexec's own input or output, each one byte.

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

import logging
import math
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from herdexec import HerdExecutor

from ._events import FINISHED, HALT_NOW, IO_FAILED, Events
from ._input import input_failure
from ._intake import Intake
from ._jobs import KILL_GRACE, Captured, Runner, argv_builder
from ._report import Joblog, Reporter, Streams, printable

if TYPE_CHECKING:
    from ._halt import Halt
    from ._progress import Progress

__all__ = ["IO_FAILURE", "RunOptions", "ServeError", "dry_run", "run"]

#: The exit status of a run stopped because its own input or output failed: the input
#: could not be read, or stdout or the joblog could not be written (a full disk, say).
IO_FAILURE: Final = 3

#: Seconds between redraws of the progress bar, between looks for a gopher that came
#: free with nobody told, and between sweeps for retries to cancel while the run stops.
_TICK: Final = 0.2
#: The longest wait between retries, however large --backoff is.
_MAX_BACKOFF: Final = 60.0
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
        self._events = Events()
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
        # wait: see herdexec._cli._intake.
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
        # Guards what the input thread, the gophers and the main thread share below.
        self._lock = threading.Lock()
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
        self._intake = Intake(
            options,
            self._executor,
            self._reporter,
            reported=self._check_halt if options.halt is not None else None,
            input_failed=self._input_failed,
            over=partial(self._events.post, FINISHED),
        )

    # -- the main thread -------------------------------------------------------------

    def main(self) -> int:
        with self._events.catching((*_STOP_SIGNALS, *_RESIZE_SIGNALS)):
            try:
                if self._options.serve is not None:
                    self._serve(self._options.serve)
                if self._options.progress:
                    from ._progress import Progress  # noqa: PLC0415  (tqdm only when drawn)

                    self._progress = Progress(self._options.total, sys.stderr)
                    self._streams.clear_bar = self._progress.cleared
                self._intake.start()
                self._wait_for_the_end()
            finally:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._runner.close()
                self._reporter.close()
                if self._progress is not None:
                    self._show_progress()
                    self._progress.close()
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
                if event == FINISHED:
                    return
                if event == IO_FAILED:
                    for code, failure in self._new_failures():
                        self._stop(code, failure)
                elif event == HALT_NOW:
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
                # Swept on every tick while the run stops, since a job failing now may
                # be put to wait for its retry just after a sweep.
                self._intake.cancel_retries()
            elif self._intake.job_waiting:  # a gopher that nobody heard come free?
                self._intake.hand_over(force=True)
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
        self._intake.hand_over()

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
        self._intake.close()
        self._runner.stop()
        self._executor.close_input()  # the input thread's waiting send_work() gives up
        running = self._runner.running
        waiting = f", waiting for {running} running" if running else ""
        if failure is not None:
            self._streams.message(f"{failure}: starting no more jobs{waiting}")
        elif code == 128 + signal.SIGINT:
            again = " (Ctrl-C again to kill them)" if running else ""
            self._streams.message(f"interrupted: starting no more jobs{waiting}{again}")
        self._intake.report_unstarted()

    def _kill(self, signum: int) -> float:
        """Signal every running job; return when the stragglers get SIGKILL."""
        killed = self._runner.kill(signum)
        if killed:
            self._streams.message(f"sending {signal.Signals(signum).name} to {killed} running jobs")
        return time.monotonic() + KILL_GRACE

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
                if not self._intake.complete:
                    notes += ", input not read to the end"
            self._streams.message(reporter.summary() + notes)
        if code is not None:
            return code
        return 1 if reporter.failed or reporter.not_started else 0

    # -- failures of herdexec's own input and output, from any thread ---------------

    def _failed(self, code: int, failure: str) -> None:
        """Tell the main thread, which stops the run on the first failure and says each."""
        with self._lock:
            self._failures.append((code, failure))
        self._events.post(IO_FAILED)

    def _new_failures(self) -> list[tuple[int, str]]:
        """The failures the main thread has not acted on yet."""
        with self._lock:
            new = self._failures[self._failures_seen :]
            self._failures_seen = len(self._failures)
        return new

    def _input_failed(self, error: OSError) -> None:
        self._failed(IO_FAILURE, input_failure(error))

    def _stdout_failed(self, error: OSError) -> None:
        self._failed(*_stdout_failure(error))

    def _joblog_failed(self, error: OSError) -> None:
        assert self._options.joblog is not None
        path = printable(self._options.joblog.path)
        self._failed(IO_FAILURE, f"cannot write the joblog {path} ({error.strerror})")

    # -- --halt, on the thread that reported a job ------------------------------------

    def _check_halt(self) -> None:
        """Once the --halt condition is met, stop the run; with ``now``, have the main
        thread kill the running jobs.

        The run stops here, on the thread that reported the job, before its gopher takes
        the next: ``-j 1 --halt soon,fail=1`` starts not one job after the failure.
        """
        halt = self._options.halt
        assert halt is not None
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
            self._events.post(HALT_NOW)


def _stdout_failure(error: OSError) -> tuple[int, str]:
    """The exit status and the words for a write to stdout that failed: a reader that
    went away is a SIGPIPE to the shell, anything else an I/O failure."""
    if isinstance(error, BrokenPipeError):
        return 128 + signal.SIGPIPE, "stdout closed"
    return IO_FAILURE, f"cannot write to stdout ({error.strerror})"


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


def _is_loopback(host: str) -> bool:
    try:
        import ipaddress  # noqa: PLC0415  (for --serve only)

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
