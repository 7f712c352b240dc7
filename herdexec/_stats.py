"""The herd's statistics snapshot: what the HTTP endpoint, the metrics and the logs read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._adapt import Algorithm


@dataclass(frozen=True, slots=True)
class HerdStats:
    """One consistent reading of a herd, taken under its lock.

    Attributes:
        herd_size: The number of gophers asked for (0 = paused).
        busy: Gophers holding a work right now.
        idle: Gophers waiting for work.
        waiting_submitters: Callers blocked in ``submit``/``send_work`` for a gopher.
        backlog: Accepted works waiting in the backlog for a gopher.
        pending_retries: Works waiting for a retry, in backoff or due.
        submitted: Works the herd accepted.
        succeeded: Works that ended in SUCCESS.
        retried: Retries granted, one per ``on_retry`` call (a work retried twice
            counts twice).
        failed: Works that ended in FAILURE.
        cancelled: Works cancelled before they ran, or while waiting for a retry. A work
            cancelled in the queue counts once a gopher (or shutdown) drops it; until then
            it is outstanding.
        duration_buckets: Upper bounds, in seconds, of the attempt-duration histogram.
        duration_counts: How many attempts fell in each bucket (not cumulative).
        duration_sum: The seconds all attempts took together.
        adapt: The algorithm that sizes the herd (``HerdExecutor(adapt=...)``), with
            its bounds; ``None`` for a herd sized by hand alone.
        adapting: Whether the algorithm sets the size now; False once an operator has
            set ``herd_size``, until ``adapting = True`` gives it back.
        adapt_limit: The algorithm's current concurrency limit, of which ``herd_size``
            is the rounding while it adapts; ``None`` without ``adapt``.

    Once a herd is shut down, ``submitted == succeeded + failed + cancelled``.
    """

    herd_size: int
    busy: int
    idle: int
    waiting_submitters: int
    backlog: int
    pending_retries: int
    submitted: int
    succeeded: int
    retried: int
    failed: int
    cancelled: int
    duration_buckets: tuple[float, ...]
    duration_counts: tuple[int, ...]
    duration_sum: float
    adapt: Algorithm | None = None
    adapting: bool = False
    adapt_limit: float | None = None

    @property
    def outstanding(self) -> int:
        """Accepted works that have not ended yet."""
        return self.submitted - self.succeeded - self.failed - self.cancelled
