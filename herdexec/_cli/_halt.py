"""``--halt``: stop a run once enough of its jobs failed, succeeded or ended.

GNU parallel's conditions, with its meanings: ``WHEN,WHY=LIMIT``, where WHEN is
``soon`` (start no more jobs, let the running ones finish) or ``now`` (kill the running
ones too); WHY is ``fail``, ``success`` or ``done`` (either); LIMIT is a count, or a
percentage of the jobs the run has to run, which then has to be known before the first
one starts. A job counts once it has ended, after its retries; ``never`` is the default.

The exit status says what the run was for, in herdexec's terms rather than GNU
parallel's (which gives the failed jobs' count, or the failed job's own status, in
codes that herdexec uses for its own errors and for signals): halted by ``success``, 0;
by ``fail``, 1; by ``done``, 1 if some job had failed by then, else 0.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from ._report import printable

__all__ = ["Halt", "parse_halt"]

_FORM: Final = re.compile(r"(soon|now),(fail|success|done)=(\d+(?:\.\d+)?)(%?)")
_WORDS: Final = {"fail": "failed", "success": "succeeded", "done": "ended"}


class Halt(NamedTuple):
    """A ``--halt`` condition.

    Attributes:
        now: Kill the running jobs too, not only start no more.
        why: ``"fail"``, ``"success"`` or ``"done"``: which jobs count.
        limit: How many of them stop the run; a percentage if ``percent``.
        percent: ``limit`` is a percentage of the jobs to run.
    """

    now: bool
    why: str
    limit: float
    percent: bool

    def __str__(self) -> str:
        limit = f"{self.limit:g}{'%' if self.percent else ''}"
        return f"{'now' if self.now else 'soon'},{self.why}={limit}"

    def threshold(self, total: int | None) -> float:
        """How many jobs stop the run, out of ``total`` to run (needed for a percentage;
        with none to run, none stop it)."""
        if not self.percent:
            return self.limit
        assert total is not None, "a percentage needs the number of jobs"
        return self.limit * total / 100 if total else float("inf")

    def counted(self, succeeded: int, failed: int) -> int:
        """The jobs that count towards the limit, of those ended so far."""
        if self.why == "fail":
            return failed
        if self.why == "success":
            return succeeded
        return succeeded + failed

    def reason(self, count: int) -> str:
        """Why the run stops, in words: ``3 jobs failed (--halt soon,fail=3)``."""
        return f"{count} job{'s' * (count != 1)} {_WORDS[self.why]} (--halt {self})"

    def exit_status(self, failed: int) -> int:
        """The run's exit status once halted, with ``failed`` jobs failed by then."""
        if self.why == "success":
            return 0
        return 1 if self.why == "fail" or failed else 0


def parse_halt(text: str) -> Halt | None:
    """``--halt TEXT``: a condition, or ``None`` for ``never``.

    Raises:
        ValueError: TEXT is neither (the message says what is expected).
    """
    if text == "never":
        return None
    match = _FORM.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected never, or soon or now, fail, success or done, and a count or a"
            f" percentage, like now,fail=1 or soon,success=10%; not '{printable(text)}'"
        )
    when, why, number, percent = match.groups()
    limit = float(number)
    if percent and not 0 < limit <= 100:
        raise ValueError(f"a percentage above 0 and at most 100, not {number}%")
    if not percent and (limit < 1 or not limit.is_integer()):
        raise ValueError(f"a whole number of jobs, at least 1, not {number}")
    return Halt(now=when == "now", why=why, limit=limit, percent=bool(percent))
