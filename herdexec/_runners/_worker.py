"""The worker process's side: its main loop, and the calls that runners ship to it.

Every new worker process imports this module first, so it imports little. The parent's
side is :mod:`herdexec._runners._process`; a Dask worker runs :func:`call` alone.

The parent and its worker speak over one pipe, one message each way per attempt, each
a pickle (protocol 5) of a tuple. To the worker: ``(fn, args, kwargs or None, process)``, or an
empty message meaning "exit". From it: ``(READY, None, "")`` once the initializer has
run, then ``(OK, value, "")`` or ``(RAISED, exception, traceback_text)`` per attempt;
``(RAISED, ...)`` in place of READY says the initializer raised.
"""

from __future__ import annotations

import pickle
import signal
import traceback
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ["OK", "PROTOCOL", "RAISED", "READY", "RemoteTraceback", "call", "call_chunk", "main"]

#: The pickle protocol both ways: 5 frames large buffers without extra copies.
PROTOCOL: Final = 5
READY: Final = "ready"
OK: Final = "ok"
RAISED: Final = "raised"


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as the ``__cause__`` of the
    exception the future raises: pickling keeps an exception's type and arguments,
    not its traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None,
    process: bool,
) -> Any:
    """One attempt, as a gopher would make it (``kwargs`` None for none). A process
    function's answer is its Status and what it put in ``work.result``, since the work
    itself stays behind."""
    value = fn(*args, **kwargs) if kwargs else fn(*args)
    if process:
        return value, args[0].result
    return value


def call_chunk(fn: Callable[..., Any], chunk: Iterable[tuple[Any, ...]]) -> list[Any]:
    """``map(..., chunksize=n)``'s work: ``n`` calls for one round trip."""
    return [fn(*args) for args in chunk]


def main(
    conn: Connection, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> None:
    """Run the initializer, then one attempt per message until told to exit or the
    parent goes away."""
    # A Ctrl-C in a terminal reaches every process of the group: the parent decides
    # what becomes of the work, and the work in hand runs to its end meanwhile.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            _send(conn, RAISED, exc)
            return
    _send(conn, READY, None)
    while True:
        try:
            request = conn.recv_bytes()
        except EOFError:
            return  # the parent closed the pipe, or died
        if not request:
            return
        try:
            value = call(*pickle.loads(request))
        except BaseException as exc:
            _send(conn, RAISED, exc)
        else:
            _send(conn, OK, value)
        # Hold no work's arguments or result while idle.
        del request
        value = None


def _send(conn: Connection, kind: str, payload: object) -> None:
    """Send a reply; what cannot be pickled is replaced by the error that says so."""
    text = ""
    if isinstance(payload, BaseException):
        text = "".join(traceback.format_exception(type(payload), payload, payload.__traceback__))
    try:
        data = pickle.dumps((kind, payload, text), PROTOCOL)
    except BaseException as exc:
        what = "exception" if kind == RAISED else "result"
        note = f"the work's {what} ({type(payload).__qualname__}) could not be pickled: {exc}"
        try:
            data = pickle.dumps((RAISED, type(exc)(note), text), PROTOCOL)
        except BaseException:
            data = pickle.dumps((RAISED, RuntimeError(note), text), PROTOCOL)
    conn.send_bytes(data)
