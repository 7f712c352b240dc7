"""A gopher's tally: what it has counted, in a list that it alone writes.

Each gopher counts its own outcomes, so that counting takes no lock on the path every work
takes; the herd adds the tallies up, under its lock, when it is asked for statistics.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = [
    "BUCKET0",
    "CANCELLED",
    "COUNTS",
    "DURATION_BUCKETS",
    "FAILED",
    "RETRIED",
    "RUNNING",
    "SECONDS",
    "SUCCEEDED",
    "new_tally",
]

# The fields: outcome counts, 1 while the gopher holds a work, the seconds its attempts
# took, then how many attempts fell in each DURATION_BUCKETS bucket.
SUCCEEDED, FAILED, CANCELLED, RETRIED, RUNNING, SECONDS = range(6)
COUNTS: Final = (SUCCEEDED, FAILED, CANCELLED, RETRIED)
BUCKET0: Final = 6

#: Upper bounds, in seconds, of the attempt-duration histogram (Prometheus' defaults).
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    math.inf,
)


def new_tally() -> list[Any]:
    """A tally with nothing counted yet."""
    return [0, 0, 0, 0, 0, 0.0] + [0] * len(DURATION_BUCKETS)
