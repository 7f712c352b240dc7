"""Slots: how many works a herd holds at once, as tokens in a queue.

A herd of size N with a backlog of B admits at most N + B works at a time: each holds a
slot token from when it is accepted until its attempt ends, or until it goes to wait for
a retry, which holds none. The tokens sit in a ``SimpleQueue``, so that a submit takes
one and a finishing gopher gives it back with no lock (see _herd.py on the convoy that a
shared lock makes). A herd whose backlog has no bound has no slots: admission never
waits.

Growing the herd puts more tokens in; shrinking takes the free ones out and owes the
rest, a *debt* paid by dropping tokens as they come back. Callers blocked for a slot
are counted with tokens of their own, and refused with one ``_REFUSED`` token each when
intake stops.

A Ctrl-C on a caller's thread (see _herd.py) never loses a token: a token taken goes
into the caller's list in the same C call (``take_into``), and every other change here is
plain stores followed by at most one call.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent import futures
from functools import partial
from typing import Final

from ._interrupts import take_into

__all__ = ["Slots"]

_REFUSED: Final = object()  # a slot token that tells a blocked caller to give up
_NO_TOKEN: Final = object()  # never on the slot queue


class Slots:
    """The slot tokens of one herd whose backlog has a bound.

    Args:
        lock: The herd's lock; every ``*_locked`` method is called holding it, and the
            others take it when they must (the debt, and a blocked caller's counting).
        size: The herd's size.
        backlog: How many works may wait beyond those the gophers run.
        check_open_locked: The herd's own check, which raises if it takes no more work.
    """

    def __init__(
        self,
        lock: threading.Lock,
        size: int,
        backlog: int,
        check_open_locked: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._check_open_locked = check_open_locked
        self.backlog = backlog
        # Tokens in the queue, held by works, or owed: N + B for the size last set, kept
        # here so that a resize that a Ctrl-C cut short is completed by its second run.
        self._capacity = size + backlog
        self._tokens: queue.SimpleQueue[object] = queue.SimpleQueue()
        for _ in range(self._capacity):
            self._tokens.put(None)
        self._debt = 0  # tokens to drop as they come back, after a shrink
        # One token per caller blocked for a slot: a token, not a count under the lock,
        # so that a caller leaving the wait takes no lock (whose wait a Ctrl-C could cut).
        self._waiters: queue.SimpleQueue[None] = queue.SimpleQueue()

    def waiting(self) -> int:
        """How many callers are blocked for a slot."""
        return self._waiters.qsize()

    def take_free(self, held: list[object]) -> bool:
        """Move a free token into ``held``, if there is one (see take_into)."""
        tokens = self._tokens
        if tokens.empty():  # cheaper than an Empty raised on every full herd
            return False
        try:
            take_into(held, tokens.get_nowait, 1)
        except queue.Empty:
            return False
        return True

    def wait(self, timeout: float | None, held: list[object]) -> None:
        """Block until a slot token comes into ``held``, or until the herd refuses this
        caller; the caller gives back what ``held`` has if anything is raised later.

        A timed wait first tries a get() that does not block. On CPython 3.10 a get() with
        a timeout that finds the queue empty and the queue's own lock free can block for
        good, when its deadline passes before it looks again (the wait left is then
        negative, which means no limit); a thread that loses the CPU for a few
        microseconds there does it. A get() that does not block leaves that lock set, and
        a timeout of 0 never blocks at all. 3.11 and later have no such flaw.

        Raises:
            RuntimeError: The herd takes no more work, or refused this caller.
            BrokenHerd: An initializer failed.
            TimeoutError: No slot came free within ``timeout``.
        """
        counted = False
        try:
            with self._lock:
                self._check_open_locked()
                counted = True  # the put comes next, with no call in between
                self._waiters.put(None)
            if timeout is not None:
                self.take_free(held)
            if not held:
                get = partial(self._tokens.get, timeout is None or timeout > 0, timeout)
                take_into(held, get, 1)
        except queue.Empty:
            # concurrent.futures' own, so that one except clause catches this and a
            # result() timeout alike (it is the built-in one from Python 3.11 on).
            raise futures.TimeoutError(
                f"no gopher took the work within {timeout} seconds"
            ) from None
        finally:
            if counted:
                self._waiters.get_nowait()
        if held[0] is _REFUSED:
            with self._lock:
                self._check_open_locked()

    def put_back(self, held: list[object]) -> None:
        """Give back the token in ``held``, which no work came to hold."""
        self._tokens.put(held.pop())

    def give_back(self) -> None:
        """A work that held a slot is done with it: the token goes back, or pays the
        debt of a shrink."""
        if self._debt:
            with self._lock:
                if self._debt:
                    self._debt -= 1
                    return
        self._tokens.put(None)

    def refuse_waiting_locked(self) -> None:
        """Wake every caller blocked for a slot; each finds the herd closed and raises.

        Done again, it refuses them again: a token that nobody takes is harmless once
        intake has stopped for good.
        """
        for _ in range(self._waiters.qsize()):
            self._tokens.put(_REFUSED)

    def resize_locked(self, size: int) -> None:
        """The herd's size is now ``size``: as many tokens more, or owed, as the capacity
        changed by; then the free tokens pay what a shrink owes.

        The capacity and its tokens change in one step, and paying is safe to do again,
        so a second run completes one that a Ctrl-C cut short.
        """
        change = size + self.backlog - self._capacity
        if change <= 0:
            self._capacity += change
            self._debt -= change  # owed, and paid as tokens come free
        else:
            repaid = min(change, self._debt)
            tokens = map(self._tokens.put, itertools.repeat(None, change - repaid))
            self._capacity += change
            self._debt -= repaid
            # No call since the stores: the new tokens go in with them, one C call that
            # runs the puts to their end (a deque of no length keeps nothing).
            deque(tokens, maxlen=0)
        self._pay_debt_locked()

    def _pay_debt_locked(self) -> None:
        """Take free tokens off for what a shrink owes; tokens in use are dropped as they
        come back (give_back).

        Each token is taken and paid with no call in between: a Ctrl-C lands between
        two, and doing this again pays the rest.
        """
        try:
            for _ in itertools.islice(iter(self._tokens.get_nowait, _NO_TOKEN), self._debt):
                self._debt -= 1
        except queue.Empty:
            pass
