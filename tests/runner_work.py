"""Works for runner tests, importable in a worker process at little cost.

A worker process imports the module of every function it is sent, so these live apart
from the test modules, which import pytest and the rest of the suite.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from herdexec import HerdExecutor, Retry, Status, Work


def square(x: int) -> int:
    return x * x


def add(x: int, y: int = 0) -> int:
    return x + y


def pid(_: object = None) -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def exit_with(code: int) -> None:
    os._exit(code)


def kill_self(signum: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(60)  # a signal that does not kill at once: no answer


def interrupt_at(n: int, at: int, pid: int) -> int:
    """Work ``n``; the one ``at`` sends process ``pid`` (the parent) a Ctrl-C."""
    if n == at:
        os.kill(pid, signal.SIGINT)
    return n


def sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def give_lock() -> object:
    return threading.Lock()


class Unpicklable(Exception):
    """An exception that carries a lock, so that it cannot be pickled."""

    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise Unpicklable()


def first_time(marker: str, how: str) -> str:
    """Fail the first attempt (``how``: "die" exits, "retry" raises Retry, "hang"
    sleeps past any time limit), succeed after: the marker file tells attempts apart."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        if how == "die":
            os._exit(7)
        if how == "hang":
            time.sleep(60)
        raise Retry()
    return "second"


def record_pid(directory: str) -> None:
    """An initializer: leave this process's pid in ``directory``."""
    (Path(directory) / str(os.getpid())).touch()


def record_pid_and_die(directory: str) -> None:
    """Leave this process's pid in ``directory``, then die at once: a work that takes
    down every worker that runs it."""
    record_pid(directory)
    kill_self()


class Overloaded(Exception):
    """A backend's refusal (an HTTP 429), which adaptive herds back off from."""


def refuse(_: object = None) -> None:
    raise Overloaded("try later")


def initializer_fails() -> None:
    raise OSError("no such resource")


def span(seconds: float, fault: str = "", marker: str = "") -> tuple[int, float, float]:
    """Busy for ``seconds``: this process's pid and when it started and ended, on the
    machine-wide monotonic clock, so the parent can count the processes busy at once."""
    started = time.monotonic()
    if fault and not Path(marker).exists():
        Path(marker).touch()
        if fault == "die":
            os._exit(9)
        if fault == "retry":
            raise Retry()
    if fault == "fail":
        raise ValueError(marker)
    time.sleep(seconds)
    return os.getpid(), started, time.monotonic()


def wait_for_file(path: str, timeout: float = 30.0) -> int:
    """Start, say so with ``path + ".started.<pid>"``, then wait until ``path`` exists."""
    Path(f"{path}.started.{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def await_byte(address: tuple[str, int], timeout: float) -> str:
    """Connect to ``address`` and wait for it to send a byte: a work that waits for its
    submitter to act after submitting."""
    with socket.create_connection(address, timeout=timeout) as connection:
        return connection.recv(1).decode()


def submit_square(herd: HerdExecutor, x: int) -> int:
    """Submit to ``herd`` from the work; a herd cannot be sent to a worker process."""
    return herd.submit(square, x).result()


def process(work: Work) -> Status:
    """A gofherd process function: the work's body squared, or FAILURE for negatives."""
    if work.body < 0:
        return Status.FAILURE
    work.set_result((work.body * work.body, os.getpid()))
    return Status.SUCCESS
