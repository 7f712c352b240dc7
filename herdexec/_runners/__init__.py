"""Where the works run: runners other than the gopher threads themselves.

Loaded when a herd is given a runner, or when one of its public names is first asked
for: ``import herdexec`` loads neither multiprocessing nor Dask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, TypeVar

from ._base import Bound, Runner
from ._worker import call_chunk

__all__ = ["Bound", "Runner", "map_in_chunks", "resolve"]

T = TypeVar("T")


def resolve(runner: object) -> Runner | None:
    """The runner that ``runner=`` names; None for the gopher threads themselves.

    Raises:
        ValueError: An unknown runner name.
        TypeError: Neither a name nor a runner.
    """
    if isinstance(runner, str):
        if runner == "thread":
            return None
        if runner == "process":
            from ._process import ProcessRunner  # noqa: PLC0415  (multiprocessing when used)

            return ProcessRunner()
        raise ValueError(
            f"runner must be 'thread', 'process', a ProcessRunner or a DaskRunner, not {runner!r}"
        )
    if isinstance(runner, Runner):
        return runner
    what = (
        f"the class {runner.__name__} (an instance is needed)"
        if isinstance(runner, type)
        else type(runner).__name__
    )
    raise TypeError(
        f"runner must be 'thread', 'process', a ProcessRunner or a DaskRunner, not {what}"
    )


def map_in_chunks(
    map_: Callable[..., Iterator[list[T]]],
    fn: Callable[..., T],
    iterables: tuple[Iterable[Any], ...],
    chunksize: object,
    **options: Any,
) -> Iterator[T]:
    """``map(fn, *iterables, chunksize=n)`` as a map of one work per ``n`` calls, so that
    a runner that ships works elsewhere makes one round trip per chunk (as
    ProcessPoolExecutor does). Statistics, retries and time limits count chunks.

    Raises:
        TypeError: ``chunksize`` is not an int.
        ValueError: ``chunksize`` is below 1.
    """
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be an int, not {type(chunksize).__name__}")
    if chunksize < 1:
        raise ValueError(f"chunksize must be >= 1, not {chunksize}")
    calls = zip(*iterables, strict=False)
    chunks = iter(lambda: tuple(itertools.islice(calls, chunksize)), ())
    return itertools.chain.from_iterable(map_(partial(call_chunk, fn), chunks, **options))
