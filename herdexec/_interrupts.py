"""The two tools that keep a Ctrl-C from leaving a herd half changed.

A Ctrl-C reaches a caller's path in the herd where the interpreter looks for pending
signals: as a Python function starts, after a call returns, at the end of a loop's pass,
or inside a blocking wait. _herd.py's docstring gives the three rules that make every
change safe from it; two of them need a tool, shared by the herd and its slots:

- a change that is safe to do twice is done again if one cut it short (``finish``);
- what a caller takes out of a queue goes into a list in the same C call, so that a
  handler can settle the list (``take_into``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, MutableSequence
from typing import Any, Final

__all__ = ["finish", "take_into"]

_NOTHING: Final = object()  # never on a queue that take_into reads


def finish(step: Callable[..., object], *args: Any) -> None:
    """Do ``step(*args)``; if an exception (a Ctrl-C) cuts it short, do it once more,
    to its end, before the exception goes on.

    For a call's first change to the herd: a Ctrl-C as this starts leaves the herd as it
    was. A change that must follow an earlier one is retried inline, in the ``try`` that
    the earlier one is in.
    """
    try:
        step(*args)
    except BaseException:
        step(*args)
        raise


def take_into(taken: MutableSequence[Any], get: Callable[[], Any], limit: int | None) -> None:
    """Move up to ``limit`` items (None: all) from ``get()`` into ``taken``, until ``get``
    raises (Empty, for a ``get_nowait``).

    ``taken.append(get())`` could lose the item: a Ctrl-C raised as ``get`` returns lands
    before the append. Here ``extend`` pulls the items through an iterator, all in C, so
    a Ctrl-C (in a blocking ``get``, or after) finds each item in one place or the other.
    """
    taken.extend(itertools.islice(iter(get, _NOTHING), limit))
