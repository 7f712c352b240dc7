"""One job of ``herdexec run``: a command run for one input item, in its own process group.

A job is attempted on a gopher thread. Its output goes to files of its own (memory files
on Linux), not pipes, for three reasons: reading them needs no thread and no poll loop,
so the cost per job stays close to xargs'; a job that leaves a background process
holding its stdout does not keep herdexec waiting, as a pipe would until EOF; and the
whole output can be passed on at once when the job ends, so that no two jobs' lines
mix. Each attempt gets fresh files, so a straggling background process of an earlier
job can never write into a later one's output.

Each job runs in a process group of its own (``setpgid``, as a shell's job control
does): the terminal's Ctrl-C reaches herdexec alone, which decides what the jobs get,
and a timeout or a kill reaches everything a job started, not just its first process.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Final, NamedTuple

from herdexec import Retry, Status, Work

__all__ = ["NO_OUTPUT", "Captured", "Job", "JobOver", "JobStatus", "Runner", "argv_builder"]

#: Seconds a job has, after SIGTERM, to exit before it gets SIGKILL.
KILL_GRACE: Final = 1.0
#: Output up to this size is read into memory when the job ends; larger stays in its file.
_IN_MEMORY: Final = 1 << 20
_PLACEHOLDER: Final = "{}"

# A process group per job. setpgid in the child needs no preexec_fn, which would force
# fork() instead of vfork(); Python 3.10 lacks process_group, and gets a session
# (setsid) instead, which also makes a process group.
_OWN_GROUP: Final[dict[str, Any]] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
)


class JobStatus(enum.Enum):
    """How a job ended, as the joblog and the summary say it."""

    SUCCESS = "success"
    #: A nonzero exit, or the command could not be run (exit 126 or 127).
    FAILURE = "failure"
    #: The last attempt ran past --timeout and was killed.
    TIMEOUT = "timeout"
    #: Killed by a second Ctrl-C (or by SIGTERM/SIGHUP to herdexec).
    KILLED = "killed"
    #: Read from the input but never started: intake stopped first.
    NOT_STARTED = "not-started"
    #: It succeeded, but its output could not be written: stdout failed, or its reader
    #: went away. Its work may be done; what it said is lost.
    OUTPUT_LOST = "output-lost"

    def __str__(self) -> str:
        return self.value


def argv_builder(template: list[str]) -> Callable[[str], list[str]]:
    """What makes the command for an item: each ``{}`` in ``template`` replaced by it,
    or, if no argument holds a ``{}``, the item appended as one more argument. (Looked
    for once, not for every item.)"""
    if any(_PLACEHOLDER in arg for arg in template):
        return lambda item: [arg.replace(_PLACEHOLDER, item) for arg in template]
    return lambda item: [*template, item]


class Captured(NamedTuple):
    """A finished attempt's stdout and stderr: bytes, or a file for large output."""

    stdout: bytes | IO[bytes] = b""
    stderr: bytes | IO[bytes] = b""

    def close(self) -> None:
        for stream in self:
            if not isinstance(stream, bytes):
                stream.close()


#: An attempt that wrote nothing: shared, since most write nothing and it holds no file.
NO_OUTPUT: Final = Captured()


class Job:
    """One input item and what became of it; written only by the attempt running it.

    A plain class with slots rather than a dataclass: one is made per item, and
    dataclasses would cost every run the import of inspect.
    """

    __slots__ = (
        "_start_clock",
        "argv",
        "attempts",
        "duration",
        "exit_code",
        "item",
        "output",
        "reason",
        "seq",
        "started",
        "status",
    )

    def __init__(self, seq: int, item: str, argv: list[str]) -> None:
        self.seq = seq  # the item's place in the input, from 1
        self.item = item
        self.argv = argv
        self.status = JobStatus.NOT_STARTED
        self.attempts = 0
        self.exit_code: int | None = None
        self.started: float | None = None  # time.time() at the first attempt
        self.duration: float | None = None  # from the first attempt's start to the last's end
        self.reason = ""  # why the command could not be run, if it could not
        self.output = NO_OUTPUT
        self._start_clock = 0.0


class JobOver(Exception):
    """Raised by an attempt that ends its job, however many retries are left."""


class Runner:
    """Runs attempts at jobs, and kills them when asked.

    Args:
        program: The command's program (its first argument, before ``{}`` is replaced).
        timeout: Seconds an attempt may run before its process group is killed.
        retries: How many retries a job gets after its first attempt (the herd's
            ``max_retries``).
        on_retry: Called with a job whose attempt failed, before it is retried.
    """

    def __init__(
        self,
        program: str,
        timeout: float | None,
        retries: int,
        on_retry: Callable[[Job], object],
    ) -> None:
        self._executable = _find(program)
        # One /dev/null for every job's stdin, rather than one opened per job.
        self._devnull = os.open(os.devnull, os.O_RDONLY)
        self._timeout = timeout
        self._retries = retries
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self._attempts = 0  # attempts under way
        self._processes: set[subprocess.Popen[bytes]] = set()  # their processes, once started
        self._stopping = False  # start no more attempts
        self._kill_signal: int | None = None  # what every running job gets, once killing

    @property
    def running(self) -> int:
        """Attempts under way."""
        return self._attempts

    def stop(self) -> None:
        """Start no more attempts; an attempt about to start ends its job instead."""
        with self._lock:
            self._stopping = True

    def kill(self, signum: int) -> int:
        """Send ``signum`` to every running job's process group, and to every job that
        starts from now on; return how many attempts were under way."""
        with self._lock:
            self._stopping = True
            self._kill_signal = signum
            processes = list(self._processes)
            attempts = self._attempts  # some may not have their process yet: see _wait()
        for process in processes:
            _signal_group(process, signum)
        return attempts

    def close(self) -> None:
        """Let go of what the jobs shared; after the last attempt."""
        os.close(self._devnull)

    def attempt(self, work: Work) -> Status:
        """One attempt at the job that ``work`` carries, on a gopher thread (the herd's
        process function).

        Returns SUCCESS. Raises :class:`herdexec.Retry` on a failure worth another
        attempt, so that the herd retries the job with its backoff; raises
        :class:`JobOver`, which the herd does not retry, when the job is over anyway.
        """
        job: Job = work.body
        with self._lock:
            if self._stopping:
                raise JobOver("intake stopped")
            self._attempts += 1
        try:
            code, timed_out = self._run(job)
        finally:
            with self._lock:
                self._attempts -= 1
        job.duration = time.monotonic() - job._start_clock
        job.exit_code = code if code >= 0 else 128 - code  # a signal, as the shell says it
        if code == 0:
            job.status = JobStatus.SUCCESS
            return Status.SUCCESS
        if self._kill_signal is not None:
            job.status = JobStatus.KILLED
            raise JobOver("killed")
        job.status = JobStatus.TIMEOUT if timed_out else JobStatus.FAILURE
        if self._stopping:
            raise JobOver("intake stopped")  # no retry once the user said stop
        if job.attempts <= self._retries:
            self._on_retry(job)
        raise Retry()  # the herd retries it if retries are left, or fails it

    def _run(self, job: Job) -> tuple[int, bool]:
        """Start the job's command and wait for it: its return code, and whether it
        timed out. Its output is then in ``job.output``."""
        if job.started is None:
            job.started, job._start_clock = time.time(), time.monotonic()
        job.attempts += 1
        if job.output is not NO_OUTPUT:  # an earlier attempt's, if the reporter kept it
            job.output.close()
            job.output = NO_OUTPUT
        stdout, stderr = _capture_file(), _capture_file()
        try:
            try:
                process = subprocess.Popen(
                    job.argv,
                    executable=self._executable,
                    stdin=self._devnull,
                    stdout=stdout,
                    stderr=stderr,
                    **_OWN_GROUP,
                )
            except (OSError, ValueError) as exc:
                self._cannot_run(job, exc)
                raise JobOver(job.reason) from exc
            timed_out = self._wait(process)
            out, err = _collect(stdout), _collect(stderr)
            job.output = Captured(out, err) if out or err else NO_OUTPUT
        finally:
            for fd in (stdout, stderr):
                os.close(fd)
        return process.returncode, timed_out

    def _wait(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait for ``process``; True if it ran out of time and was killed."""
        with self._lock:
            self._processes.add(process)
            kill_signal = self._kill_signal
        try:
            if kill_signal is not None:  # started as the kill went out: it missed this one
                _signal_group(process, kill_signal)
            if self._timeout is None:
                process.wait()
                return False
            try:
                process.wait(self._timeout)
                return False
            except subprocess.TimeoutExpired:
                _stop_group(process)
                return True
        finally:
            with self._lock:
                self._processes.discard(process)

    @staticmethod
    def _cannot_run(job: Job, exc: OSError | ValueError) -> None:
        # The shell's codes: 127 for a command not found, 126 for one that cannot run.
        job.exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
        job.status = JobStatus.FAILURE
        job.reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        job.duration = time.monotonic() - job._start_clock


def _find(program: str) -> str | None:
    """Where ``program`` is on PATH, found once for the whole run; None where it has to
    be found for each job: a path already, a program named by the item, or one not found
    (each job then fails to start, as it would have).

    Popen, given a bare name, searches PATH again for every job: a quarter of the time
    it spends in Python per job.
    """
    if os.sep in program or _PLACEHOLDER in program:
        return None
    return shutil.which(program)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, then SIGKILL if it has not exited in time."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    # Only while the leader is unreaped: its pid, the group's id, cannot be reused yet.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
            os.killpg(process.pid, signum)


def _capture_file() -> int:
    """A new, empty, unnamed file for one stream of one attempt."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("herdexec-output", os.MFD_CLOEXEC)
    import tempfile  # noqa: PLC0415  (where there is no memfd_create, and only there)

    with tempfile.TemporaryFile() as handle:
        return os.dup(handle.fileno())


def _collect(fd: int) -> bytes | IO[bytes]:
    """What the attempt wrote to ``fd``: bytes, or for large output a file of its own."""
    size = os.fstat(fd).st_size
    if size == 0:
        return b""
    if size <= _IN_MEMORY:
        return os.pread(fd, size, 0)
    stream = os.fdopen(os.dup(fd), "rb")
    stream.seek(0)
    return stream
