"""``herdexec run``'s input: the items, one a line, read from a descriptor, and counted.

The command line (:mod:`herdexec._cli._main`) opens the input, counts it for the bar or
``--halt P%`` and hands the items to the run; the run's input thread
(:mod:`herdexec._cli._intake`) is what reads them. Both need the same reading, and the
command line must not load what runs jobs to get it, so it lives here on its own.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from typing import Final

__all__ = ["count_items", "input_failure", "read_items"]

_READ_SIZE: Final = 64 * 1024


def read_items(fd: int) -> Iterator[str]:
    """One item per line, exactly as given but for the newline; empty lines are skipped.

    Lines are bytes turned into text the way the file system does it (with
    surrogateescape), so an item that is not valid UTF-8 reaches the command byte for byte.
    It reads the descriptor itself, not through ``sys.stdin``: a feeder thread still
    blocked in a read when the run ends must hold no lock that the interpreter's
    shutdown would wait for (it aborts, "could not acquire lock for <stdin>").

    Each read's whole lines are decoded at once: a newline byte is never part of a
    multibyte character, nor of an undecodable sequence, so that decodes every line
    as ``os.fsdecode`` would, for a fraction of the calls.
    """
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    rest = b""
    while chunk := os.read(fd, _READ_SIZE):
        whole, newline, rest = (rest + chunk).rpartition(b"\n")
        if newline:
            for line in whole.decode(encoding, errors).split("\n"):
                if line:
                    yield line
    if rest:
        yield rest.decode(encoding, errors)


def count_items(fd: int) -> int | None:
    """How many items a regular file holds (then rewound); None for a pipe or a terminal."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        start = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return None
    count = sum(1 for _ in read_items(fd))
    os.lseek(fd, start, os.SEEK_SET)
    return count


def input_failure(error: OSError) -> str:
    """The words for an input that could not be read."""
    return f"cannot read the input ({error.strerror})"
