"""A unit of work, its outcome, and the future that carries both.

These are gofherd's ``Work`` and ``Status`` (see its README), made to fit
``concurrent.futures``: the future a herd hands back is a ``Future`` that also knows its work.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import Any, Final, TypeVar

from ._condition import FutureCondition

T = TypeVar("T")

_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
# Stands for an empty list of done-callbacks: Future._invoke_callbacks iterates it
# alike, and code that appends to it fails rather than add to every future.
_NO_CALLBACKS: Final[Any] = ()


class Status(enum.Enum):
    """How one attempt at a work ended (gofherd's ``Status``)."""

    #: Done; never retried.
    SUCCESS = "success"
    #: Failed, but worth another attempt while retries remain.
    RETRY = "retry"
    #: Failed for good.
    FAILURE = "failure"

    def __str__(self) -> str:
        return self.value


class Work:
    """One unit of work: an id, an input ``body``, and what became of it.

    ``status`` is ``None`` until the first attempt ends; ``retries`` counts the retries
    made so far; a process function reports its answer with :meth:`set_result`.

    Args:
        id: Names the work in logs, in ``output_chan()`` and in the joblog.
        body: The input, anything the process function understands.

    Raises:
        TypeError: ``id`` is not a string.
    """

    __slots__ = ("body", "exception", "id", "result", "retries", "status")

    def __init__(self, id: str, body: Any = None) -> None:
        if not isinstance(id, str):
            raise TypeError(f"Work id must be a str, not {type(id).__name__}")
        self.id = id
        self.body = body
        self.status: Status | None = None
        self.retries = 0
        self.result: Any = None
        self.exception: BaseException | None = None

    def set_result(self, result: Any) -> None:
        """Record the answer; a successful future's ``result()`` returns it."""
        self.result = result

    def __repr__(self) -> str:
        status = "pending" if self.status is None else str(self.status)
        return f"<Work {self.id!r} {status} retries={self.retries}>"


class HerdFuture(Future[T]):
    """A ``concurrent.futures.Future`` that also carries its :class:`Work`.

    While the work waits for a retry the future is pending again, so ``cancel()`` works
    on it and cancels the retry. Its lock is a cheaper one than the stdlib's, with the
    same behaviour (see ``herdexec/_condition.py``).
    """

    # Set by the herd while a retry waits, so cancel() can take it back.
    _withdraw: Callable[[HerdFuture[Any]], None] | None = None

    def __init__(self, work: Work) -> None:
        # Future.__init__'s fields, with a cheaper condition (see _condition.py) and no
        # list for done-callbacks until there is one: most futures never get one, and
        # each object a future holds is one more for the garbage collector to scan.
        # tests/test_future.py checks that the fields are the running Python's.
        self._condition = FutureCondition()  # type: ignore[assignment]
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks = _NO_CALLBACKS
        self._work = work

    @property
    def work(self) -> Work:
        """The work this future reports on."""
        return self._work

    @property
    def id(self) -> str:
        """The work's id."""
        return self._work.id

    @property
    def status(self) -> Status | None:
        """The status of the latest attempt, ``None`` before the first one ends."""
        return self._work.status

    @property
    def retries(self) -> int:
        """How many retries the work has had."""
        return self._work.retries

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """As ``Future.add_done_callback``: ``fn(future)`` once the future is done."""
        with self._condition:
            if self._state not in _DONE:
                if self._done_callbacks is _NO_CALLBACKS:
                    self._done_callbacks = [fn]
                else:
                    self._done_callbacks.append(fn)
                return
        super().add_done_callback(fn)  # done: Future calls it at once, and logs a raise

    def cancel(self) -> bool:
        """Cancel the work if it has not started, or if it is waiting for a retry."""
        cancelled = super().cancel()
        withdraw = self._withdraw
        if cancelled and withdraw is not None:
            withdraw(self)
        return cancelled

    def _await_retry(self) -> None:
        # RUNNING -> PENDING: a waiting retry is not running, and a pending future is
        # one that Future.cancel() and set_running_or_notify_cancel() know how to handle.
        with self._condition:
            self._state = PENDING
