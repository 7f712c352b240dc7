"""The delay before a retry: exponential growth, a cap, and jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ExponentialBackoff:
    """Retry after ``initial * factor ** (attempt - 1)`` seconds, capped, with jitter.

    Pass an instance as ``HerdExecutor(backoff=...)``: the herd calls it with the retry's
    number (1 for the first retry). Jitter spreads retries that failed together so they
    do not come back together: the delay is drawn from ``(d * (1 - jitter), d]``.

    Args:
        initial: The first retry's delay, in seconds.
        factor: How much each retry multiplies the delay by.
        maximum: The cap on any delay, in seconds.
        jitter: The fraction of the delay that is random, from 0 (none) to 1.

    Raises:
        ValueError: A field is out of range.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.initial >= 0:
            raise ValueError(f"initial must be >= 0, not {self.initial!r}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, not {self.factor!r}")
        if not self.maximum >= 0:
            raise ValueError(f"maximum must be >= 0, not {self.maximum!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter!r}")

    def delay(self, attempt: int, draw: float) -> float:
        """The delay before retry number ``attempt`` given a random ``draw`` in [0, 1).

        Pure, so a test can check the schedule without sleeping.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, not {attempt!r}")
        try:
            base = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        except OverflowError:
            base = self.maximum
        return base * (1.0 - self.jitter * draw)

    def __call__(self, attempt: int) -> float:
        """The delay before retry number ``attempt``, with a fresh random draw."""
        return self.delay(attempt, random.random())
