"""A unit of work, its outcome, and the future that carries both.

These are gofherd's ``Work`` and ``Status`` (see its README), made to fit
``concurrent.futures``: the future a herd hands back is a ``Future`` that also knows its work.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from types import MappingProxyType
from typing import Any, Final, TypeVar

from ._condition import FutureCondition

T = TypeVar("T")

_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
# The states in which a future has told its waiters all it ever will.
_TOLD = (CANCELLED_AND_NOTIFIED, FINISHED)
# Stands for an empty list of done-callbacks: Future._invoke_callbacks iterates it
# alike, and code that appends to it fails rather than add to every future.
_NO_CALLBACKS: Final[Any] = ()
_NO_KWARGS: Final[Mapping[str, Any]] = MappingProxyType({})


class _NoWaiters(tuple[()]):
    """The waiter list of a future that ended before anyone waited on it.

    Nothing can come of waiting on such a future, so what ``wait()`` puts in is let go
    of, and taking it out again succeeds. Future itself only iterates a waiter list,
    and ``wait()`` and ``as_completed()`` only ``append`` and ``remove``. An empty
    tuple, so that the iteration that every settled future makes runs in C.
    """

    __slots__ = ()

    def append(self, waiter: object) -> None:
        pass

    def remove(self, waiter: object) -> None:
        pass


_NO_WAITERS: Final[Any] = _NoWaiters()


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

    The herd makes one for each work (``submit()``, ``map()``, ``send_work()``), with
    the call that a gopher is to make, and lets go of that call once the work ends. One
    made by hand, with only a ``work``, is a future for code that settles it itself.

    While the work waits for a retry the future is pending again, so ``cancel()`` works
    on it and cancels the retry. Its lock is a cheaper one than the stdlib's, with the
    same behaviour (see ``herdexec/_condition.py``).

    Args:
        work: What the future reports on.
        fn: The call a gopher makes: ``fn(*args, **kwargs)``.
        args: Its positional arguments.
        kwargs: Its keyword arguments.
        process: ``fn`` is a process function, which returns the :class:`Status`.
    """

    # Future's fields and the herd's, as slots: Future gives its instances a __dict__,
    # but one that nothing stores into is never made (on 3.10 it would be one more
    # object per future for the garbage collector).
    __slots__ = (
        "_args",
        "_condition",
        "_done_callbacks",
        "_exception",
        "_fn",
        "_holds_slot",
        "_kwargs",
        "_process",
        "_result",
        "_state",
        "_waiter_list",
        "_withdraw",
        "_work",
    )

    def __init__(
        self,
        work: Work,
        fn: Callable[..., Any] | None = None,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] = _NO_KWARGS,
        process: bool = False,
    ) -> None:
        # Future.__init__'s fields, with a cheaper condition (see _condition.py), and no
        # list for done-callbacks or for waiters until there is one: most futures never
        # get either, and every object a future holds is one more for the garbage
        # collector to scan, again and again while a large backlog waits.
        # tests/test_future.py checks that the fields are the running Python's.
        self._condition = FutureCondition()  # type: ignore[assignment]
        self._state = PENDING
        self._result = None
        self._exception = None
        self._done_callbacks = _NO_CALLBACKS
        # The waiters that concurrent.futures.wait() and as_completed() add, once they do.
        self._waiter_list: list[Any] | None = None
        self._work = work
        # The future is also the herd's queue entry, with the call a gopher makes, so
        # that a queued work costs that collector no object of its own.
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._process = process  # fn is a process function: it returns the Status
        # A slot token, given back when a gopher is done with it; the herd sets it False
        # for a work that holds none (a waiting retry, a submit that must not wait).
        self._holds_slot = True
        # Set by the herd while a retry waits, so cancel() can take it back.
        self._withdraw: Callable[[HerdFuture[Any]], None] | None = None

    @property
    def _waiters(self) -> list[Any]:
        """Future's plain list, made when first needed."""
        waiters = self._waiter_list
        if waiters is None:
            # Future reads it once more as it ends, to tell the waiters: an ended future
            # that nobody waits on never needs a list.
            if self._state in _TOLD:
                return _NO_WAITERS  # type: ignore[no-any-return]
            waiters = self._waiter_list = []
        return waiters

    @_waiters.setter
    def _waiters(self, waiters: list[Any]) -> None:
        # Future.__init__ sets it, should a subclass call that; and typeshed's protocol
        # for as_completed() takes only futures whose _waiters can be set.
        self._waiter_list = waiters

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
        try:
            cancelled = super().cancel()
        finally:
            # A waiting retry is withdrawn even if a Ctrl-C (or a done-callback's
            # BaseException) cut cancel() short once the future was cancelled: it must
            # not wait out its backoff. Withdrawing again finishes what a Ctrl-C cut short.
            withdraw = self._withdraw
            if withdraw is not None and self._state == CANCELLED:
                try:
                    withdraw(self)
                except BaseException:
                    withdraw(self)
                    raise
        if cancelled:
            self._drop_call()
        return cancelled

    def _tell_cancelled(self) -> None:
        """Tell wait() and as_completed() that this cancelled future is done: once,
        however often it is called."""
        with self._condition:
            if self._state == CANCELLED:
                self.set_running_or_notify_cancel()

    def _drop_call(self) -> None:
        # The work has ended: let go of its function and arguments, as ThreadPoolExecutor
        # lets go of its work item, so that a future kept for its result keeps no more.
        self._fn = None
        self._args = ()
        self._kwargs = _NO_KWARGS

    def _await_retry(self) -> None:
        # RUNNING -> PENDING: a waiting retry is not running, and a pending future is
        # one that Future.cancel() and set_running_or_notify_cancel() know how to handle.
        with self._condition:
            self._state = PENDING
