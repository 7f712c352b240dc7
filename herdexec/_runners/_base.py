"""What a runner is to the herd: the small private protocol that runners implement.

A *runner* is the user's choice of where works run, a value with no resources of its
own (:class:`Runner`). A herd *binds* it (``Runner._bind``) to get a :class:`Bound`
runner: the resources that herd shares (a multiprocessing context, a Dask client). Each
gopher thread then takes a :class:`Seat` from it, its own place to run works (a worker
process, a slot on a cluster), calls ``Seat.call`` once per attempt, and closes the
seat when it leaves. A seat is used by its gopher's thread alone.

The thread runner is no runner at all: a herd without one calls the work on the gopher
thread, as it always has, and pays nothing for runners.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable
from concurrent import futures
from typing import Any, Protocol

from .._work import HerdFuture

__all__ = ["Bound", "OverTime", "Runner", "Seat"]

if sys.version_info >= (3, 11):
    OverTime = TimeoutError
else:

    class OverTime(futures.TimeoutError, TimeoutError):
        """A work over its time limit, caught by either ``except TimeoutError`` or
        ``except concurrent.futures.TimeoutError``: one class since 3.11, two before."""


class Seat(Protocol):
    """One gopher's place to run works."""

    def call(self, future: HerdFuture[Any]) -> Any:
        """Make one attempt at the future's call and return its value, or raise what it
        raised (or why it could not run). For a process function the value is the
        Status, and the seat has put the function's ``work.result`` on the future's
        work."""

    def close(self) -> None:
        """The gopher leaves: release what the seat holds, before the thread ends."""


class Bound(Protocol):
    """A runner bound to one herd."""

    def default_size(self) -> int:
        """The herd size when ``max_workers`` is None."""

    def seat(self, broken: Callable[[BaseException], None]) -> Seat:
        """A seat for a new gopher, called on its thread. ``broken(exc)`` breaks the
        herd (an initializer raised); the seat then also raises BrokenHerd."""

    def resized(self, size: int) -> None:
        """The herd size changed (or was first set)."""

    def cancel_running(self) -> None:
        """shutdown(cancel_futures=True): stop what the runner can stop of the works
        in hand."""

    def close(self) -> None:
        """The herd is shut down and joined: release what the herd shares."""


class Runner(abc.ABC):
    """Where a herd's gophers run their works; pass one as ``HerdExecutor(runner=...)``."""

    __slots__ = ()

    @abc.abstractmethod
    def _bind(
        self,
        *,
        name: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> Bound:
        """The resources one herd shares; ``name`` is its thread name prefix."""
