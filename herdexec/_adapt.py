"""The adaptive herd's algorithms: a concurrency limit learnt from the works themselves.

Each algorithm is a frozen value object: its parameters, checked when it is made, and
pure methods that turn what the herd saw in one *window* of attempts into the next
:class:`LimitEstimate`. Nothing here reads a clock, takes a lock or touches a herd, so the
arithmetic is tested by feeding it windows (:mod:`herdexec._adapter` is what feeds it in a
running herd). A window holds the durations of the attempts that were not dropped, the
number that were, and whether the herd was short of work.

Both start the way TCP does, in *slow start*: the limit doubles each window until the first
sign of overload, then it moves by small steps. :class:`Gradient` reads overload from
latency (the short-term duration against a long-term no-load baseline) and from drops;
:class:`AIMD` from drops alone, which is why it is not the default: it climbs until the
backend refuses, then saw-tooths just under that point, with the latency that goes with
it. docs/adaptive.md compares both with the published algorithms they follow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import Final, final

__all__ = ["AIMD", "Gradient", "LimitEstimate"]

# The gradient never cuts the limit by more than half in one window, so that one slow
# window (a pause of the whole process, say) cannot collapse the herd.
_MIN_GRADIENT: Final = 0.5
# Latency that falls by less than this while the limit halves is not the herd's doing:
# the backend has become slower for everyone, and the baseline moves up to match it.
_STILL_SLOW: Final = 0.75


@final
@dataclass(frozen=True, slots=True)
class LimitEstimate:
    """What an adaptive algorithm has learnt so far, between two windows.

    Attributes:
        limit: The concurrency limit; the herd's size is it rounded, within the
            algorithm's bounds.
        probing: In slow start: the limit doubles each full window until the first
            sign of overload.
        baseline: :class:`Gradient`'s long-term no-load attempt duration, in seconds;
            ``None`` before the first window with a duration, and always for AIMD.
        backed_off_from: While the latency keeps the limit falling: the short-term
            duration at its worst since the fall began (or since the limit last
            halved), and the limit then; else ``None``.
    """

    limit: float
    probing: bool = True
    baseline: float | None = None
    backed_off_from: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Algorithm:
    """The parameters both algorithms share, and how a limit becomes a herd size."""

    min_size: int = 1
    max_size: int | None = None
    window: int = 10
    backoff_ratio: float = 0.9

    def __post_init__(self) -> None:
        _check_int(self.min_size, "min_size", 1)
        if self.max_size is not None:
            _check_int(self.max_size, "max_size", self.min_size, "min_size")
        _check_int(self.window, "window", 1)
        _check_ratio(self.backoff_ratio, "backoff_ratio")

    @property
    def name(self) -> str:
        """The algorithm's name in metrics and on the control server: ``gradient``, ``aimd``."""
        return type(self).__name__.lower()

    def start(self, size: int) -> LimitEstimate:
        """The estimate of a herd that starts (or resumes adapting) at ``size`` gophers:
        the limit is ``size`` within the bounds, in slow start."""
        return LimitEstimate(float(self._bounded(size)))

    def size(self, estimate: LimitEstimate) -> int:
        """The herd size for ``estimate``: its limit rounded, within the bounds."""
        return self._bounded(math.floor(estimate.limit + 0.5))

    def samples(self, estimate: LimitEstimate) -> int:
        """How many attempts the next window holds: ``window``, or one per gopher if
        there are more gophers, so that a window is about one round of the herd."""
        return max(self.window, self.size(estimate))

    def _bounded(self, limit: float) -> int:
        high = self.max_size if self.max_size is not None else math.inf
        return int(min(max(limit, self.min_size), high))

    def _clamped(self, limit: float) -> float:
        high = self.max_size if self.max_size is not None else math.inf
        return min(max(limit, float(self.min_size)), high)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Gradient(_Algorithm):
    """The latency-aware algorithm (the default): it keeps the short-term attempt
    duration within ``tolerance`` of the long-term no-load one.

    Each window compares the median duration of its attempts (the short term) with
    the baseline, the lowest such median so far (the long term: the backend without
    load)::

        gradient = clamp(tolerance * baseline / short, 0.5, 1)
        gradient == 1:  limit += smoothing * sqrt(limit)         (if the herd is busy)
        gradient <  1:  limit -= smoothing * (1 - gradient) * limit

    so the limit grows by a queue allowance while the latency stays within tolerance,
    and shrinks in proportion once it does not. Slow start doubles the limit instead,
    until the first window with ``gradient < 1`` or a drop; it ends at ``limit *
    gradient``, where the latency would be back within tolerance if it grew with the
    limit. A window with a drop cuts the limit to at most ``limit * backoff_ratio``.
    And a latency that falls by less than a quarter while the limit halves is not the
    herd's doing: the backend is slower for everyone, and the baseline moves up to it.

    Args:
        min_size: The smallest herd size the algorithm sets (at least 1, so that a
            herd with work is never paused).
        max_size: The largest; ``None`` means the herd's ``max_herd_size``.
        window: The fewest attempts one decision reads; a window holds ``window``
            attempts or one per gopher, whichever is more.
        backoff_ratio: What a window with a drop multiplies the limit by, at most.
        tolerance: How much longer than the baseline the short-term duration may be
            before the limit shrinks: 1.2 lets a work take a fifth longer than it
            does on an idle backend.
        smoothing: How far each window moves the limit towards its target, from 0
            (never) to 1 (all the way); lower is steadier and slower.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range.
    """

    tolerance: float = 1.2
    smoothing: float = 0.2

    def __post_init__(self) -> None:
        _Algorithm.__post_init__(self)
        _check_number(self.tolerance, "tolerance")
        if not self.tolerance >= 1:
            raise ValueError(f"tolerance must be >= 1, not {self.tolerance}")
        _check_ratio(self.smoothing, "smoothing")

    def update(
        self,
        estimate: LimitEstimate,
        durations: Sequence[float],
        drops: int = 0,
        *,
        busy: bool = True,
    ) -> LimitEstimate:
        """The estimate after one window.

        Args:
            estimate: The estimate before it.
            durations: How long each attempt that was not dropped took, in seconds.
            drops: How many attempts were dropped: retried, failed, or refused as
                overload (see ``HerdExecutor(overload_on=...)``).
            busy: Whether the herd had work for most of its gophers; an idle herd
                says nothing about a larger one, so its limit does not grow.
        """
        limit, baseline = estimate.limit, estimate.baseline
        short = median(durations) if durations else None
        if short is not None and (baseline is None or short < baseline):
            baseline = short
        gradient = 1.0
        if short is not None and baseline is not None and short > 0:
            gradient = max(_MIN_GRADIENT, min(1.0, self.tolerance * baseline / short))
        backed_off_from = None
        if gradient < 1 and short is not None:
            backed_off_from = estimate.backed_off_from
            if backed_off_from is None or short > backed_off_from[1]:
                backed_off_from = (limit, short)  # the worst latency of this fall, and where
            elif limit <= backed_off_from[0] / 2:
                if short > _STILL_SLOW * backed_off_from[1]:
                    # Half the herd, much the same latency: the backend is slower now.
                    baseline, gradient, backed_off_from = short, 1.0, None
                else:
                    backed_off_from = (limit, short)
        if gradient == 1 and not drops:
            if estimate.probing:
                return LimitEstimate(self._clamped(limit * 2 if busy else limit), True, baseline)
            new = limit + self.smoothing * math.sqrt(limit) if busy else limit
        elif estimate.probing:
            new = limit * gradient  # slow start overshot: straight to where it would not have
        else:
            new = limit - self.smoothing * (1 - gradient) * limit
        if drops:
            new = min(new, limit * self.backoff_ratio)
        return LimitEstimate(self._clamped(new), False, baseline, backed_off_from)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class AIMD(_Algorithm):
    """Additive increase, multiplicative decrease on drops alone, as TCP Reno does.

    After slow start, each window without a drop adds ``increase`` to the limit (if
    the herd is busy) and each window with one multiplies it by ``backoff_ratio``. It
    never reads latency: it finds the size at which the backend starts to refuse, and
    stays just under it.

    Args:
        min_size: The smallest herd size the algorithm sets (at least 1).
        max_size: The largest; ``None`` means the herd's ``max_herd_size``.
        window: The fewest attempts one decision reads; a window holds ``window``
            attempts or one per gopher, whichever is more.
        backoff_ratio: What a window with a drop multiplies the limit by.
        increase: What a window without one adds to it.

    Raises:
        TypeError: A parameter has the wrong type.
        ValueError: A parameter is out of range.
    """

    increase: float = 1.0

    def __post_init__(self) -> None:
        _Algorithm.__post_init__(self)
        _check_number(self.increase, "increase")
        if not self.increase > 0:
            raise ValueError(f"increase must be > 0, not {self.increase}")

    def update(
        self,
        estimate: LimitEstimate,
        durations: Sequence[float],
        drops: int = 0,
        *,
        busy: bool = True,
    ) -> LimitEstimate:
        """The estimate after one window; the arguments are :meth:`Gradient.update`'s
        (the durations count only towards whether the window is empty)."""
        limit = estimate.limit
        if drops:
            return LimitEstimate(self._clamped(limit * self.backoff_ratio), False)
        if not busy or not durations:
            return estimate
        if estimate.probing:
            return LimitEstimate(self._clamped(limit * 2), True)
        return LimitEstimate(self._clamped(limit + self.increase), False)


#: What ``HerdExecutor(adapt=...)`` takes besides ``True`` and ``None``.
Algorithm = Gradient | AIMD


def _check_int(value: object, what: str, low: int, low_name: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < low:
        bound = f"{low_name} ({low})" if low_name else str(low)
        raise ValueError(f"{what} must be >= {bound}, not {value}")


def _check_number(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")


def _check_ratio(value: object, what: str) -> None:
    _check_number(value, what)
    assert isinstance(value, (int, float))
    if not 0 < value <= 1:
        raise ValueError(f"{what} must be in (0, 1], not {value}")
