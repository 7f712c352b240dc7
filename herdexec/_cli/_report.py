"""What ``herdexec run`` tells the world: each job's output, the joblog, and the summary.

Every finished job, and every item that never started, passes through
:meth:`Reporter.finished` exactly once. That one place counts it, passes its output on,
whole and under one lock, so that two jobs' output never mixes within a line, and then
writes its joblog line, which can thus say whether the output was written; with
``--keep-order`` it holds output (and joblog line) back until every earlier item's is
out.

herdexec's own output can fail: a full disk under stdout or the joblog, a reader that
went away. Nothing here raises then; the failure is handed to a callback once, the run
stops on it, and what could not be written is never counted or logged as a success.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import stat
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import IO, BinaryIO, Final, TextIO

from ._jobs import NO_OUTPUT, Captured, Job, JobStatus

__all__ = [
    "JOBLOG_HEADER",
    "TSV_ESCAPES",
    "Joblog",
    "Reporter",
    "Streams",
    "joblog_line",
    "printable",
]

JOBLOG_HEADER: Final = "seq\tstatus\texit\tattempts\tstart\tduration\titem\n"
# Tabs and backslashes in an item are escaped so that every joblog line has 7 fields.
TSV_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"})
# What a terminal would act on rather than show, and the bytes that are not UTF-8 (held
# as surrogate escapes, U+DC80 to U+DCFF), as the \xNN a reader can make sense of.
_UNPRINTABLE: Final = {
    **{c: f"\\x{c:02x}" for c in (*range(32), 127)},
    **{c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)},
}
_SHOWN_MAX: Final = 300


class Streams:
    """Standard output and error, shared by every thread.

    Each write is whole, under one lock, and clear of the progress bar when one is on.
    A write to stdout that fails (its reader went away, a full disk) is told to the
    ``on_failed`` callback once, with its error; later output to stdout is dropped.

    Args:
        stdout: Where the jobs' standard output goes.
        stderr: Where the jobs' standard error and herdexec's own messages go.
        on_failed: Called, once, with the error of the first write to stdout that failed.
    """

    def __init__(
        self, stdout: TextIO, stderr: TextIO, on_failed: Callable[[OSError], object]
    ) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._stdout_failed = False
        #: Set while a progress bar is up: what to hold while writing to a terminal.
        self.clear_bar: Callable[[], AbstractContextManager[object]] | None = None
        self._stdout_tty = _isatty(stdout)

    def message(self, text: str) -> None:
        """One line of herdexec's own on stderr."""
        with self._lock, self._cleared(to_stdout=False):
            self._stderr.write(f"herdexec: {text}\n")
            self._stderr.flush()

    def output(self, captured: Captured, note: str | None) -> bool:
        """A job's stdout, then its stderr, then herdexec's note about it, all at once.

        Returns:
            False if its stdout could not be written (now, or since stdout failed).
        """
        if not (captured.stdout or captured.stderr or note):
            return True
        to_stderr = bool(captured.stderr) or note is not None
        with self._lock, self._cleared(to_stdout=not to_stderr):
            written = not captured.stdout or self._write_stdout(captured.stdout)
            if captured.stderr:
                self._stderr.flush()
                _write(self._stderr.buffer, captured.stderr)
            if note is not None:
                self._stderr.write(f"herdexec: {note}\n")
                self._stderr.flush()
        return written

    def _write_stdout(self, data: bytes | IO[bytes]) -> bool:
        if self._stdout_failed:
            return False
        try:
            _write(self._stdout.buffer, data)
        except OSError as error:
            self._stdout_failed = True
            # What the buffer still holds would fail again, and Python would complain
            # about it at exit (and exit with 120): let it go to /dev/null instead.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stdout.fileno())
            os.close(devnull)
            self._on_failed(error)
            return False
        return True

    def _cleared(self, *, to_stdout: bool) -> AbstractContextManager[object]:
        """Clear the bar (on stderr) for a write to stderr, or to a stdout that shares
        its terminal."""
        clear_bar = self.clear_bar
        if clear_bar is None or (to_stdout and not self._stdout_tty):
            return nullcontext()
        return clear_bar()


class Joblog:
    """The ``--joblog`` file: one whole line per job, or none.

    Each line is written at once, unbuffered, as its job is reported. A line that can
    only be written in part (the disk fills, the file reaches its size limit) is cut off
    again, so that every line a reader finds has all its fields. A regular file is
    locked (``flock``) while the run writes it: a second run on the same joblog, which
    would mix its lines in, or resume from a log still being written, is refused.

    Args:
        path: The file, created if need be.
        append: Keep what the file holds, in :attr:`earlier`, to resume from: nothing
            is written until :meth:`cut` says what to keep. Otherwise the file is
            emptied and the header written.

    Raises:
        OSError: It cannot be opened or locked, or the header cannot be written.
    """

    def __init__(self, path: str, *, append: bool = False) -> None:
        self.path = path
        flags = (os.O_RDWR if append else os.O_WRONLY) | os.O_CREAT
        mode = "r+b" if append else "wb"
        self._file = open(os.open(path, flags, 0o666), mode, buffering=0)  # noqa: SIM115
        try:
            regular = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
            if regular:  # a device (/dev/stdout) is no log to resume, and not ours to lock
                _lock(self._file.fileno())
            #: What the file held, when appending to a regular file; else empty.
            self.earlier = self._file.read() if append and regular else b""
            if not append:
                if regular:
                    self._file.truncate(0)
                self.write(JOBLOG_HEADER)
        except OSError:
            self._file.close()
            raise

    def cut(self, size: int) -> None:
        """Append after the first ``size`` bytes of :attr:`earlier` (its whole lines),
        dropping the rest, a torn last line; with none kept, start with the header.

        Raises:
            OSError: The file cannot be cut, or the header cannot be written.
        """
        if size < len(self.earlier):
            self._file.truncate(size)
            self._file.seek(size)
        self.earlier = b""  # read: no need to hold it for the run
        if not size:
            self.write(JOBLOG_HEADER)

    def write(self, line: str) -> None:
        """Write ``line`` whole.

        Raises:
            OSError: It could not be written (whatever part was, is taken back).
        """
        data = line.encode("utf-8", "surrogateescape")
        done = 0
        try:
            while done < len(data):
                done += self._file.write(data[done:])
        except OSError:
            if done:
                with contextlib.suppress(OSError):  # not a regular file: cannot be undone
                    self._file.truncate(self._file.tell() - done)
            raise

    def close(self) -> None:
        self._file.close()


class Reporter:
    """Counts, logs and passes on every job as it ends.

    Args:
        streams: Where output and notes go.
        joblog: The ``--joblog`` file, or ``None``.
        keep_order: Pass output on in input order, not as jobs end.
        on_joblog_failed: Called, once, with the error of the first joblog line that
            could not be written; no line is written after it.
    """

    def __init__(
        self,
        streams: Streams,
        joblog: Joblog | None,
        keep_order: bool,
        on_joblog_failed: Callable[[OSError], object],
    ) -> None:
        self._streams = streams
        self._joblog = joblog
        self._on_joblog_failed = on_joblog_failed
        self._keep_order = keep_order
        self._lock = threading.Lock()
        # --keep-order: ended (None: skipped by --resume), waiting for earlier items
        self._held: dict[int, Job | None] = {}
        self._next_seq = 1
        self.succeeded = 0
        self.failed = 0  # failure, timeout, killed or output-lost
        self.retried = 0  # jobs that took more than one attempt
        self.not_started = 0
        self.skipped = 0  # ended in the joblog resumed from

    @property
    def done(self) -> int:
        """Jobs that ran and ended, whether they succeeded or not."""
        return self.succeeded + self.failed

    def finished(self, job: Job) -> None:
        """``job`` is over: count it, pass its output on and log it (or hold both for
        order)."""
        with self._lock:
            if job.status is JobStatus.SUCCESS:
                self.succeeded += 1
            elif job.status is JobStatus.NOT_STARTED:
                self.not_started += 1
            else:
                self.failed += 1
            self.retried += job.attempts > 1
            if not self._keep_order:
                self._pass_on(job)
                return
            self._hold(job.seq, job)

    def skip(self, seq: int) -> None:
        """The item at ``seq`` ended in the joblog resumed from: count it, and let later
        items' output by."""
        with self._lock:
            self.skipped += 1
            if self._keep_order:
                self._hold(seq, None)

    def _hold(self, seq: int, job: Job | None) -> None:
        """Hold ``job`` (under the lock) until every earlier item is out, then pass on all
        that may go."""
        self._held[seq] = job
        while self._next_seq in self._held:
            held = self._held.pop(self._next_seq)
            if held is not None:
                self._pass_on(held)
            self._next_seq += 1

    def retrying(self, job: Job) -> None:
        """An attempt at ``job`` failed and it will be retried: pass its stderr on now,
        with a note, and drop its stdout (the attempt that counts will write its own)."""
        self._streams.output(Captured(stderr=job.output.stderr), _note(job, retrying=True))
        job.output.close()
        job.output = NO_OUTPUT

    def close(self) -> None:
        """Pass on (and log) whatever is still held, in order, and close the joblog."""
        with self._lock:
            for seq in sorted(self._held):
                held = self._held.pop(seq)
                if held is not None:
                    self._pass_on(held)
            if self._joblog is not None:
                self._joblog.close()

    def summary(self) -> str:
        """succeeded / retried / failed / not started (/ skipped), in one line."""
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (
            f"{self.succeeded} succeeded, {self.retried} retried, {self.failed} failed,"
            f" {self.not_started} not started{skipped}"
        )

    def _pass_on(self, job: Job) -> None:
        """Write the job's output, then its joblog line, which says if it was lost."""
        note, written = _note(job), True
        if job.output is not NO_OUTPUT or note is not None:
            try:
                written = self._streams.output(job.output, note)
            finally:
                job.output.close()
                job.output = NO_OUTPUT
        if not written and job.status is JobStatus.SUCCESS:
            job.status = JobStatus.OUTPUT_LOST
            self.succeeded -= 1
            self.failed += 1
        if self._joblog is not None:
            try:
                self._joblog.write(joblog_line(job))
            except OSError as error:
                self._joblog.close()
                self._joblog = None
                self._on_joblog_failed(error)


def _lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BlockingIOError(errno.EWOULDBLOCK, "in use by another herdexec run") from None


def joblog_line(job: Job) -> str:
    """The job's line in the joblog: tab-separated, in the order of JOBLOG_HEADER."""
    start = ""
    if job.started is not None:
        seconds, millis = divmod(int(job.started * 1000), 1000)  # truncated, as isoformat
        start = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"
    fields = (
        str(job.seq),
        str(job.status),
        "" if job.exit_code is None else str(job.exit_code),
        str(job.attempts),
        start,
        "" if job.duration is None else f"{job.duration:.3f}",
        job.item.translate(TSV_ESCAPES),
    )
    return "\t".join(fields) + "\n"


def _note(job: Job, *, retrying: bool = False) -> str | None:
    """herdexec's line about a job (or an attempt) that did not succeed, after its own
    output."""
    status = job.status
    if status is JobStatus.SUCCESS or status is JobStatus.NOT_STARTED:
        return None
    command = _shown(job.argv)
    if retrying:
        what = "timed out" if status is JobStatus.TIMEOUT else f"failed with exit {job.exit_code}"
        return f"attempt {job.attempts} {what}, retrying: {command}"
    attempts = f" after {job.attempts} attempts" if job.attempts > 1 else ""
    if job.reason:
        code = "" if job.exit_code is None else f" (exit {job.exit_code})"
        return f"cannot run {command}: {job.reason}{code}"
    if status is JobStatus.TIMEOUT:
        return f"timed out{attempts}: {command}"
    if status is JobStatus.KILLED:
        return f"killed: {command}"
    return f"failed with exit {job.exit_code}{attempts}: {command}"


def printable(text: str) -> str:
    """``text`` safe to print on a terminal, and readable: control characters and bytes
    that are not UTF-8 (file names and items hold them as surrogate escapes) as ``\\xNN``."""
    return text.translate(_UNPRINTABLE)


def _shown(argv: list[str]) -> str:
    """A command as a shell would take it back, and safe to print on a terminal."""
    text = printable(shlex.join(argv))
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def _write(stream: BinaryIO, data: bytes | IO[bytes]) -> None:
    if isinstance(data, bytes):
        stream.write(data)
    else:
        import shutil  # noqa: PLC0415  (for output over 1 MiB only)

        shutil.copyfileobj(data, stream)
    stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False
