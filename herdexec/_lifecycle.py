"""Interpreter exit and fork, for every live herd at once.

Handled as ``concurrent.futures.thread`` handles them: once the interpreter starts to
exit, no herd accepts work, and every live herd finishes what it accepted before the
interpreter joins its threads. A child of ``fork()`` starts with no live herds: their
gophers stayed behind in the parent.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["exiting", "forget", "register"]


class _Herd(Protocol):
    def shutdown(self, *, cancel_futures: bool = False) -> None: ...
    def join(self) -> None: ...


#: True once the interpreter has begun to exit; herds read it on every submit.
exiting = False
_live: weakref.WeakSet[_Herd] = weakref.WeakSet()
_lock = threading.Lock()


def register(herd: _Herd) -> None:
    """Have interpreter exit finish ``herd``'s accepted work and join its gophers."""
    with _lock:
        _live.add(herd)


def forget(herd: _Herd) -> None:
    """``herd`` is shut down and joined: exit has nothing left to do for it."""
    with _lock:
        _live.discard(herd)


def _python_exit() -> None:
    global exiting
    with _lock:
        exiting = True
        herds = list(_live)
    for herd in herds:
        herd.shutdown()
    for herd in herds:
        herd.join()


# Runs before non-daemon threads are joined, like ThreadPoolExecutor's hook (bpo-39812).
threading._register_atexit(_python_exit)  # type: ignore[attr-defined]


def _after_fork_in_child() -> None:
    # The child must not inherit a held lock (bpo-45021), nor wait at exit for gophers
    # that did not come along.
    global _live
    _lock._at_fork_reinit()  # type: ignore[attr-defined]
    _live = weakref.WeakSet()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_lock.acquire,
        after_in_child=_after_fork_in_child,
        after_in_parent=_lock.release,
    )
