"""The progress bar of ``herdexec run``, drawn by tqdm.

Why tqdm: it is the most used progress library for Python, maintained since 2013, pure
Python with no dependencies of its own, and it draws the rate and the ETA and fits the
terminal's width by itself; rich would do as well but brings pygments and
markdown-it-py along for one bar. tqdm is untyped: it stays in this module.

The main thread alone updates the bar, a few times a second. Other threads, which write
the jobs' output to the same terminal, do it inside :meth:`Progress.cleared`, so that no
line of a job's output ever lands in the middle of the bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm  # type: ignore[import-untyped]

__all__ = ["Progress"]


class Progress:
    """A bar of finished jobs, with the failed, running and herd-size counts beside it.

    Args:
        total: How many jobs there will be, if the input's length is known.
        stream: Where to draw; stderr.
    """

    def __init__(self, total: int | None, stream: TextIO) -> None:
        tqdm.monitor_interval = 0  # no monitor thread: the main thread refreshes the bar
        self._bar = tqdm(
            total=total,
            file=stream,
            unit="job",
            dynamic_ncols=True,
            mininterval=0,
            smoothing=0.1,
            bar_format=None if total else "{n_fmt} jobs [{elapsed}, {rate_fmt}{postfix}]",
        )

    def show(self, *, done: int, failed: int, running: int, herd_size: int) -> None:
        """Redraw with these counts; tqdm derives the rate and the ETA from ``done``."""
        bar = self._bar
        bar.set_postfix_str(f"failed={failed} running={running} herd={herd_size}", refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)
        else:
            bar.refresh()

    @contextmanager
    def cleared(self) -> Iterator[None]:
        """Take the bar off the terminal while the caller writes, then draw it again."""
        with self._bar.get_lock():
            self._bar.clear(nolock=True)
            try:
                yield
            finally:
                self._bar.refresh(nolock=True)

    def close(self) -> None:
        """Draw the bar a last time and leave it on the terminal."""
        self._bar.close()
