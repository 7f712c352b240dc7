"""The adaptive herd at run time: attempts in, herd sizes out.

Every attempt's gopher hands its duration here (``observe``); once a window is full, the
gopher that filled it asks the algorithm (:mod:`herdexec._adapt`) for the next estimate
and resizes the herd. The path every attempt takes stays off the locks: a sample goes onto
a deque (``append`` is atomic in C) and the window's length is read without a lock; only
the one gopher that gets the adapter's lock without waiting makes the decision, and the
others go on. The herd's own lock is taken only when the size changes, by ``resize``.

The operator always wins: :meth:`Adapter.pin` (``herd_size = N``, ``PATCH /herd``) and
the decision take the same lock, so a decision made before a pin can never land after it.
An attempt that started before the last resize is left out of the next window: it ran
at the old size, and would blur what the new one does. That is checked under the lock,
which the moment of the resize is written under, and not as a sample arrives: the deciding
gopher can be held up (by the herd's lock, or by the OS) between taking a window and
writing that moment, and the attempts that the others make at the old size meanwhile would
pass for the new size's: enough of them to double a herd that is already too large.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from time import perf_counter
from typing import TYPE_CHECKING, Final

from ._adapt import AIMD, Algorithm, Gradient, LimitEstimate

if TYPE_CHECKING:
    from ._herd import Herd

__all__ = ["Adapter", "configure", "default_size"]

_DROPPED: Final = -1.0  # a sample that stands for a drop rather than a duration


class Adapter:
    """One herd's adaptation: its algorithm, the samples of the window being filled,
    the estimate, and whether the operator has pinned the size."""

    def __init__(
        self,
        algorithm: Algorithm,
        herd: Herd,
        overload_on: tuple[type[BaseException], ...],
        resize: Callable[[int], None],
    ) -> None:
        assert algorithm.max_size is not None, "configure() sets it"
        self.algorithm = algorithm
        self.max_size: int = algorithm.max_size  # the largest size the algorithm may set
        self._herd = herd
        self._resize = resize  # herd.resize, and the runner told
        self._overload_on = overload_on
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, float]] = deque()  # (started, duration or _DROPPED)
        self.estimate: LimitEstimate = algorithm.start(herd.size)
        self._due = algorithm.samples(self.estimate)
        self._since = perf_counter()  # attempts that started before this are left out
        self.adapting = True

    def observe(
        self, started: float, seconds: float, failed: bool, exception: BaseException | None
    ) -> None:
        """One attempt ended; ``failed`` if it is retried or failed.

        A drop is any failed attempt, or, once ``overload_on`` names exception types,
        exactly an attempt that raised one of them.
        """
        dropped = isinstance(exception, self._overload_on) if self._overload_on else failed
        samples = self._samples
        samples.append((started, _DROPPED if dropped else seconds))
        if len(samples) >= self._due and self._lock.acquire(blocking=False):
            try:
                self._decide_locked()
            finally:
                self._lock.release()

    def _decide_locked(self) -> None:
        samples = self._samples
        taken = [samples.popleft() for _ in range(len(samples))]
        if not self.adapting:
            return
        window = [sample for sample in taken if sample[0] >= self._since]
        if len(window) < self._due:
            # Not a full window of attempts at this size: another gopher has just
            # decided on the last one, or the attempts from before a resize are out.
            samples.extend(window)
            return
        durations = [s for _, s in window if s != _DROPPED]
        # A herd short of work would idle just as much larger: it does not grow.
        self.estimate = self.algorithm.update(
            self.estimate, durations, len(window) - len(durations), busy=self._herd.busy()
        )
        self._due = self.algorithm.samples(self.estimate)
        self._resize_locked(self.algorithm.size(self.estimate))

    def _resize_locked(self, size: int) -> None:
        if size != self._herd.size:
            self._resize(size)
            self._since = perf_counter()

    def pin(self, size: int) -> None:
        """The operator sets the size: adaptation pauses until :meth:`resume`. A
        resize that the herd refuses (it has ended) changes nothing here either."""
        with self._lock:
            self._resize(size)
            self.adapting = False

    def pause(self) -> None:
        """Stop adapting; the herd keeps its present size."""
        with self._lock:
            self.adapting = False

    def resume(self) -> None:
        """Adapt again, in slow start from the present size (within the bounds, so a
        paused herd starts again); the baseline learnt so far is kept."""
        with self._lock:
            if self.adapting:
                return
            start = self.algorithm.start(self._herd.size)
            estimate = LimitEstimate(start.limit, True, self.estimate.baseline)
            # First, even to the same size: a herd that has ended refuses, and then
            # nothing has changed.
            self._resize(self.algorithm.size(estimate))
            self._samples.clear()
            self.estimate = estimate
            self._due = self.algorithm.samples(estimate)
            self._since = perf_counter()
            # Last: if a Ctrl-C cuts this short, the herd is not adapting yet, and
            # resuming again does it all (a paused herd would stay paused otherwise).
            self.adapting = True


def configure(
    adapt: object,
    overload_on: tuple[type[BaseException], ...],
    size: int | None,
    *,
    max_herd_size: int,
) -> Algorithm | None:
    """``HerdExecutor``'s ``adapt=`` checked: the algorithm, with ``max_size`` set.

    The herd starts at ``max_workers``, ``size`` here (None if not given), which must
    lie within the bounds; :func:`default_size` moves a default one within them.

    Raises:
        TypeError: ``adapt`` is not True, False, None, a Gradient or an AIMD.
        ValueError: a bound is above ``max_herd_size``, ``max_workers`` outside the
            bounds, or ``overload_on`` was given without ``adapt``.
    """
    if adapt is None or adapt is False:
        if overload_on:
            raise ValueError("overload_on tells an adaptive herd what a drop is: give adapt= too")
        return None
    if adapt is True:
        adapt = Gradient()
    if not isinstance(adapt, (Gradient, AIMD)):
        raise TypeError(
            f"adapt must be True, None, a herdexec.Gradient or a herdexec.AIMD,"
            f" not {type(adapt).__name__}"
        )
    for bound in ("min_size", "max_size"):
        value = getattr(adapt, bound)
        if value is not None and value > max_herd_size:
            raise ValueError(
                f"adapt's {bound} ({value}) must be <= max_herd_size ({max_herd_size})"
            )
    if adapt.max_size is None:
        adapt = replace(adapt, max_size=max_herd_size)
    low, high = adapt.min_size, adapt.max_size or max_herd_size
    if size is not None and not low <= size <= high:
        raise ValueError(
            f"max_workers ({size}) is where an adaptive herd starts: it must lie within"
            f" adapt's bounds, min_size {low} to max_size {high}"
        )
    return adapt


def default_size(algorithm: Algorithm | None, size: int) -> int:
    """The default starting size (``max_workers=None``), within the algorithm's bounds."""
    if algorithm is None:
        return size
    return min(max(size, algorithm.min_size), algorithm.max_size or size)
