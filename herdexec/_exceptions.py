"""The exceptions herdexec raises, and the one it listens for.

The hierarchy, beside the standard library's own::

    Exception
    ├── RuntimeError
    │   └── concurrent.futures.BrokenExecutor
    │       ├── concurrent.futures.thread.BrokenThreadPool
    │       │   └── BrokenHerd        a gopher's initializer raised
    │       └── concurrent.futures.process.BrokenProcessPool
    │           └── WorkerDied        a worker process died under one work
    ├── WorkFailed                    process() said FAILURE and raised nothing
    └── Retry                         raised by a task to ask for another attempt

``BrokenHerd`` subclasses ``BrokenThreadPool`` so that code written for
``ThreadPoolExecutor`` keeps catching it unchanged; ``WorkerDied`` subclasses
``BrokenProcessPool`` for the same reason, though only its one work fails, not the herd.
It lives with the process runner (``_runners/_process.py``), since its base class loads
multiprocessing, which ``import herdexec`` does not.
"""

from __future__ import annotations

from concurrent.futures.thread import BrokenThreadPool
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._work import Work


class BrokenHerd(BrokenThreadPool):
    """A gopher's initializer raised, so the herd takes no more work.

    Work that was waiting fails with this exception, and so does every later ``submit``.
    """


class WorkFailed(Exception):
    """A work ended in FAILURE without an exception of its own.

    ``future.result()`` raises it when ``process()`` returned ``Status.FAILURE``; the
    failed work is at ``.work``.
    """

    def __init__(self, work: Work) -> None:
        super().__init__(f"work {work.id!r} failed")
        self.work = work


class Retry(Exception):
    """Raise it from a task to have the task tried again.

    Each raise counts as one retry; once ``max_retries`` is used up the work fails with
    this exception as its ``future.exception()``.
    """
