"""The output channel: finished works in completion order, for output_chan().

Like gofherd's output channel, a bounded one holds its writers back: a gopher with a
finished work waits for room rather than drop anything. Built from ``SimpleQueue``s, so
that a gopher writing a work takes no lock a reader holds.
"""

from __future__ import annotations

import itertools
import operator
import queue
from collections.abc import Iterator
from typing import Final

from ._work import Work

__all__ = ["Output"]

_END: Final = Work("<end of output>")


class Output:
    """Finished works for any number of readers; each work goes to one of them.

    Args:
        capacity: How many works it holds before writers wait; 0 for no bound.
    """

    def __init__(self, capacity: int) -> None:
        self._works: queue.SimpleQueue[Work] = queue.SimpleQueue()
        # One token per free place, when bounded: a writer takes one, a reader gives it back.
        self._space: queue.SimpleQueue[None] | None = None
        if capacity:
            self._space = queue.SimpleQueue()
            for _ in range(capacity):
                self._space.put(None)

    def put(self, work: Work) -> None:
        """Add a finished work, waiting for room if the output is bounded and full."""
        if self._space is not None:
            self._space.get()
        self._works.put(work)

    def end(self) -> None:
        """No work will come any more: readers stop once they have taken the rest."""
        self._works.put(_END)

    def __iter__(self) -> Iterator[Work]:
        # A work is taken, its place given back and the work handed to the reader with
        # no step in Python between them, so that a Ctrl-C on the reader's thread lands
        # before the take (in the blocking get) or once the reader has the work: taken
        # into a local, a work would be lost there, and a bounded output would keep one
        # place fewer for good. get() runs until the end marker; zip() pairs each work
        # with the put that gives its place back; ``yield from`` hands each on without
        # a bytecode where an interrupt could land, and holds none while the reader is
        # away.
        works: Iterator[Work] = iter(self._works.get, _END)
        if self._space is not None:
            places = map(self._space.put, itertools.repeat(None))
            works = map(operator.itemgetter(0), zip(works, places, strict=False))
        yield from works
        self._works.put(_END)  # for the other readers
