"""``--resume`` and ``--resume-failed``: what an earlier run's joblog says is left to do.

An item is known by its place in the input (the joblog's ``seq``, from 1, empty lines
not counted) and its text. The joblog's last line for an item is what became of it;
an item without a line (still running, waiting for a retry, or held back for
``--keep-order`` when herdexec was killed outright) never ended, so it runs again.

Before anything runs, the input is read as far as the joblog goes and each logged item
is compared with the input's item at its place: a changed input is refused, never
misapplied (GNU parallel trusts the numbers alone and may run the wrong commands).

A SIGKILLed run may leave a torn last line, without its newline: it is not a line, its
item runs again, and :meth:`herdexec._cli._report.Joblog.cut` drops the tear before new
lines are appended.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Final, NamedTuple

from ._jobs import JobStatus
from ._report import JOBLOG_HEADER, TSV_ESCAPES, printable

__all__ = ["Resume", "ResumeError", "resume"]

#: What ``--resume`` runs again: the items that never ended. Anything else ended, well
#: or not (output-lost too: the job succeeded, its output is what was lost).
_NOT_ENDED: Final = frozenset({JobStatus.NOT_STARTED})
#: What ``--resume-failed`` runs again: every item that did not succeed.
_NOT_SUCCEEDED: Final = frozenset(JobStatus) - {JobStatus.SUCCESS}
_STATUSES: Final = {str(status): status for status in JobStatus}
_UNESCAPES: Final = {escaped: chr(char) for char, escaped in TSV_ESCAPES.items()}
_ESCAPED: Final = re.compile(r"\\.")
_FIELDS: Final = JOBLOG_HEADER.count("\t") + 1


class ResumeError(Exception):
    """The joblog is not one, or the input is not the one it logged (says which)."""


class Resume(NamedTuple):
    """What to run on resuming.

    Attributes:
        items: The input's items, from the first, as :func:`read_items` gives them (the
            ones read for the check, then the rest).
        skip: The places (``seq``) of the items not to run again.
        kept: How many bytes of the joblog are whole lines, to append after.
    """

    items: Iterator[str]
    skip: frozenset[int]
    kept: int


def resume(earlier: bytes, items: Iterator[str], *, failed: bool) -> Resume:
    """What is left to do after the run that wrote the joblog ``earlier``.

    Args:
        earlier: The joblog as found (empty if there was none).
        items: The input's items; read here as far as the joblog goes.
        failed: ``--resume-failed``: run again every item that did not succeed, not
            only the ones that never ended.

    Raises:
        ResumeError: ``earlier`` is not a joblog, or the input does not match it.
        OSError: The input could not be read.
    """
    kept = earlier.rfind(b"\n") + 1  # a last line without its newline is torn
    last = _last_lines(earlier[:kept], earlier[kept:])
    rerun = _NOT_SUCCEEDED if failed else _NOT_ENDED
    checked = list(itertools.islice(items, max(last, default=0)))
    for seq in sorted(last):
        if seq > len(checked):
            raise ResumeError(
                f"it logs item {max(last)}, but the input has {len(checked)} items: the input"
                " changed since (run without --resume to start over)"
            )
        if checked[seq - 1] != last[seq][0]:
            raise ResumeError(
                f"item {seq} of the input is {_shown(checked[seq - 1])}, but"
                f" {_shown(last[seq][0])} in the joblog: the input changed since (run without"
                " --resume to start over)"
            )
    skip = frozenset(seq for seq, (_, status) in last.items() if status not in rerun)
    return Resume(itertools.chain(checked, items), skip, kept)


def _last_lines(whole: bytes, torn: bytes) -> dict[int, tuple[str, JobStatus]]:
    """Each logged item's text and last status, by seq."""
    header = JOBLOG_HEADER.encode()
    if not whole:
        if not header.startswith(torn):
            raise ResumeError("not a herdexec joblog (no header line)")
        return {}
    lines = whole.decode("utf-8", "surrogateescape").split("\n")[:-1]
    if lines[0] + "\n" != JOBLOG_HEADER:
        raise ResumeError("not a herdexec joblog (its first line is not the header)")
    last: dict[int, tuple[str, JobStatus]] = {}
    for number, line in enumerate(lines[1:], 2):
        fields = line.split("\t")
        status = _STATUSES.get(fields[1]) if len(fields) == _FIELDS else None
        if status is None or not fields[0].isdecimal() or int(fields[0]) < 1:
            raise ResumeError(f"line {number} is not a joblog line: {_shown(line)}")
        seq, item = int(fields[0]), _ESCAPED.sub(_unescape, fields[-1])
        if seq in last and last[seq][0] != item:
            raise ResumeError(f"line {number} logs item {seq} as another item than before")
        last[seq] = item, status
    return last


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPES.get(match.group(), match.group())


def _shown(text: str, limit: int = 60) -> str:
    shown = printable(text)
    return f"'{shown}'" if len(shown) <= limit else f"'{shown[: limit - 3]}...'"
