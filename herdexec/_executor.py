"""HerdExecutor: the ``concurrent.futures`` face of a herd.

This module checks arguments, speaks the ``Executor`` protocol (``submit``, ``map``,
``shutdown``) and gofherd's (``send_work``, ``close_input``, ``output_chan``), and leaves
every piece of shared state to :mod:`herdexec._herd`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NoReturn, ParamSpec, TypeVar, cast

from ._herd import Herd
from ._work import HerdFuture, Status, Work

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ._adapt import Algorithm
    from ._control._server import ControlServer
    from ._runners import Bound, Runner
    from ._stats import HerdStats

__all__ = ["HerdExecutor"]

P = ParamSpec("P")
T = TypeVar("T")

_logger = logging.getLogger("herdexec")


class _GlobalRegistry:
    """The default ``registry``: prometheus_client's global ``REGISTRY``, named lazily.

    prometheus_client takes a third of a bare interpreter's start to import, so importing
    herdexec must not load it; a herd loads it when it first registers with a registry.
    """

    def __repr__(self) -> str:
        return "prometheus_client.REGISTRY"


# Typed as a registry so the signature reads as what it means.
_REGISTRY: Final = cast("CollectorRegistry", _GlobalRegistry())


class HerdExecutor(ThreadPoolExecutor):
    """A thread pool whose size changes at runtime, whose submit waits for a gopher,
    and whose futures carry a status, retries and a result.

    The first four arguments mean what they mean for ``ThreadPoolExecutor``.

    It is a ``ThreadPoolExecutor`` to ``isinstance``, because code asks for one: from
    Python 3.11 on, ``loop.set_default_executor()`` takes nothing else, and that is
    where ``asyncio.to_thread()`` runs. It uses none of that class's machinery:
    ``ThreadPoolExecutor.__init__`` is never called, so no work queue, semaphore or
    lock of its own is made, and every public method is this class's own (a test
    checks that none is inherited). The pool's private state that code written for
    it reads follows the herd instead (``_max_workers``, ``_threads``, ``_broken``,
    ``_shutdown``). Nothing here depends on how ``ThreadPoolExecutor`` works inside,
    which changes between Python versions. A wrapper that is a pool only for asyncio
    would not be the herd that users resize and read.

    Args:
        max_workers: The starting herd size; ``None`` picks ThreadPoolExecutor's
            default, 0 starts the herd paused.
        thread_name_prefix: Gopher threads are named ``{prefix}_{n}``.
        initializer: Called in every new gopher before its first work; if it raises,
            the herd breaks (:class:`BrokenHerd`) and, as ThreadPoolExecutor does, says
            so on the ``concurrent.futures`` logger (and on ``logger``, if given).
        initargs: Arguments for ``initializer``.
        process: gofherd's processing logic, ``process(work) -> Status``, for
            :meth:`send_work`. Giving it turns the output on.
        max_retries: How many times a work may be retried after its first attempt.
        retry_on: Exception types that ask for a retry, besides :class:`Retry`.
        backoff: ``attempt -> seconds`` to wait before retry number ``attempt``, or
            ``None`` to retry at once; see :class:`ExponentialBackoff`.
        backlog: How many accepted works may wait for a gopher: 0 makes ``submit``
            block until a gopher takes the work (gofherd), ``None`` queues without
            bound (ThreadPoolExecutor).
        output: Keep finished work for :meth:`output_chan`: ``True`` without bound,
            an int ``n`` to keep at most ``n`` (gophers then wait for the reader),
            ``False`` not at all; ``None`` means on if and only if ``process`` is given.
        on_success: Called with each work that ends in SUCCESS, on the gopher thread.
        on_retry: Called with a work each time it is retried.
        on_failure: Called with each work that ends in FAILURE.
        logger: Where the herd logs; the ``herdexec`` logger by default.
        name: Names the herd in logs and metrics.
        addr: Serve the control plane on this ``"host:port"`` from the start, as
            :meth:`serve` does (gofherd's ``SetAddr``); ``None`` serves nothing.
        registry: The prometheus_client registry that reports the herd, the global
            ``REGISTRY`` by default so an application's exporter shows it; ``None``
            reports it nowhere.
        max_herd_size: The largest herd size allowed, so that no one call (or PATCH
            request) can start a runaway number of threads.
        runner: Where the gophers run their works: ``"thread"`` (the default) on the
            gopher threads themselves; ``"process"`` or a :class:`ProcessRunner` in a
            worker process per gopher, which runs ``initializer`` and whose default
            herd size is the CPU count; a :class:`DaskRunner` on a dask.distributed
            cluster. The guide's "Where the work runs" tells them apart.
        adapt: Let the herd find its own size from its attempts' durations and drops:
            ``True`` for the default algorithm, :class:`Gradient`, or a
            :class:`Gradient` or :class:`AIMD` with its parameters; ``None`` to size
            it by hand alone. The herd starts at ``max_workers``, which must lie
            within the algorithm's bounds. Setting :attr:`herd_size` pauses it; see
            :attr:`adapting`.
        overload_on: Exception types that say the backend is overloaded (an HTTP 429
            or 503, say). With them, an attempt that raises one is what an adaptive
            herd counts as a drop; without them, every retried or failed attempt is.

    Raises:
        TypeError: An argument has the wrong type, or a runner is neither a name nor
            a runner.
        ValueError: An argument is out of range, or an unknown runner name.
        OSError: ``addr`` cannot be served (see :meth:`serve`).
    """

    # Unique default thread names, as ThreadPoolExecutor numbers its own.
    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        process: Callable[[Work], Status] | None = None,
        max_retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
        backoff: Callable[[int], float] | None = None,
        backlog: int | None = 0,
        output: bool | int | None = None,
        on_success: Callable[[Work], object] | None = None,
        on_retry: Callable[[Work], object] | None = None,
        on_failure: Callable[[Work], object] | None = None,
        logger: logging.Logger | None = None,
        name: str | None = None,
        addr: str | None = None,
        registry: CollectorRegistry | None = _REGISTRY,
        max_herd_size: int = 10_000,
        runner: str | Runner = "thread",
        adapt: bool | Algorithm | None = None,
        overload_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    ) -> None:
        if _check_count(max_herd_size, "max_herd_size") < 1:
            raise ValueError(f"max_herd_size must be >= 1, not {max_herd_size}")
        chosen = None if isinstance(runner, str) and runner == "thread" else _resolve_runner(runner)
        size_given = max_workers is not None
        if max_workers is None and chosen is None:
            cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
            max_workers = min(32, (cpu_count() or 1) + 4, max_herd_size)
        if max_workers is not None:
            size = _check_at_most(max_workers, max_herd_size, "max_workers")
        if not isinstance(thread_name_prefix, str):
            raise TypeError("thread_name_prefix must be a str")
        _check_callable(initializer, "initializer")
        if not isinstance(initargs, tuple):
            raise TypeError("initargs must be a tuple")
        _check_callable(process, "process")
        max_retries = _check_count(max_retries, "max_retries")
        retry_on = _exception_types(retry_on, "retry_on")
        overload_on = _exception_types(overload_on, "overload_on")
        algorithm: Algorithm | None = None
        if (adapt is not None and adapt is not False) or overload_on:
            # The algorithms bring dataclasses and statistics: loaded for adaptive herds.
            from . import _adapter  # noqa: PLC0415

            algorithm = _adapter.configure(
                adapt, overload_on, size if size_given else None, max_herd_size=max_herd_size
            )
        _check_callable(backoff, "backoff")
        if backlog is not None:
            backlog = _check_count(backlog, "backlog")
        for callback, what in (
            (on_success, "on_success"),
            (on_retry, "on_retry"),
            (on_failure, "on_failure"),
        ):
            _check_callable(callback, what)
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger, not {type(logger).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if registry is not None:
            registry = _check_registry(registry)

        # ThreadPoolExecutor.__init__ is not called, on purpose: see the class docstring.
        self._thread_name_prefix = thread_name_prefix or f"HerdExecutor-{self._counter()}"
        self._name = name or self._thread_name_prefix
        self._process = process
        self._ids = itertools.count()
        # A runner takes the initializer to where the works run.
        self._runner: Bound | None = None
        if chosen is not None:
            self._runner = chosen._bind(
                name=self._thread_name_prefix, initializer=initializer, initargs=initargs
            )
            initializer = None
            if max_workers is None:
                size = min(self._runner.default_size(), max_herd_size)
        if algorithm is not None and not size_given:
            size = _adapter.default_size(algorithm, size)
        self._herd = Herd(
            size=size,
            thread_name_prefix=self._thread_name_prefix,
            initializer=initializer,
            initargs=initargs,
            backlog=backlog,
            max_retries=max_retries,
            retry_on=retry_on,
            backoff=backoff,
            output=_output_capacity(output, process is not None),
            callbacks=(on_success, on_retry, on_failure),
            name=self._name,
            logger=logger or _logger,
            own_logger=logger is not None,
            runner=self._runner,
        )
        if self._runner is not None:
            self._runner.resized(size)
        if algorithm is not None:
            # The adapter holds the herd and the runner, never the executor: see Herd.
            resize = partial(_resize, self._herd, self._runner)
            self._herd.adapter = _adapter.Adapter(algorithm, self._herd, overload_on, resize)
        # Dropped without shutdown(): wind the herd down as ThreadPoolExecutor does.
        weakref.finalize(self, _abandon, self._herd).atexit = False

        # The control plane: metrics from the start, HTTP once serve()d (see serve()).
        self._max_herd_size = max_herd_size
        self._registry = registry
        self._control_lock = threading.Lock()
        self._server: ControlServer | None = None
        self._control_closed = False  # shutdown() closed it: serve() no more
        if registry is not None:
            from ._control import _metrics  # noqa: PLC0415  (prometheus_client when used)

            _metrics.track(self, registry)
        if addr is not None:
            try:
                self.serve(addr)
            except BaseException:
                self.shutdown(wait=False)
                raise

    # -- the herd's size -------------------------------------------------------------

    @property
    def herd_size(self) -> int:
        """The number of gophers; 0 pauses the herd.

        Growing starts gophers for waiting work at once. Shrinking never interrupts a
        running work: surplus gophers leave as they finish. On an adaptive herd, setting
        it pins the size: the algorithm pauses until :attr:`adapting` is set again.

        After :meth:`shutdown` the size can still be set for as long as accepted work
        remains, which is how a paused herd's shutdown goes on. Once the herd has ended
        (shut down, and every work it accepted ended) setting it raises, since no
        gopher will ever start again. ``close_input()`` alone does not end resizing.

        Raises:
            TypeError: The new size is not an int.
            ValueError: The new size is negative, or above :attr:`max_herd_size`.
            RuntimeError: The herd has ended (``"cannot resize the herd after
                shutdown"``); the size stays as it was.
        """
        return self._herd.size

    @herd_size.setter
    def herd_size(self, size: int) -> None:
        size = _check_at_most(size, self._max_herd_size, "herd_size")
        if self._herd.adapter is None:
            _resize(self._herd, self._runner, size)
        else:
            self._herd.adapter.pin(size)

    @property
    def adapting(self) -> bool:
        """Whether the herd's ``adapt=`` algorithm sets its size right now.

        Setting :attr:`herd_size` pins the size and makes this False. Set it to True to
        give control back: the algorithm starts again from the present size (moved
        within its bounds, so a paused herd runs again), in slow start, keeping what it
        has learnt of the backend's latency. Set it to False to pause adaptation at
        the present size. ``PATCH /herd {"adapt": true}`` does the same over HTTP.

        Raises:
            TypeError: The new value is not a bool.
            RuntimeError: Set on a herd made without ``adapt=``, or set to True once
                the herd has ended (see :attr:`herd_size`).
        """
        return self._herd.adapter is not None and self._herd.adapter.adapting

    @adapting.setter
    def adapting(self, adapting: bool) -> None:
        if not isinstance(adapting, bool):
            raise TypeError(f"adapting must be a bool, not {type(adapting).__name__}")
        adapter = self._herd.adapter
        if adapter is None:
            raise RuntimeError(
                f"herd {self._name!r} does not adapt: make it with HerdExecutor(adapt=...)"
            )
        if adapting:
            adapter.resume()
        else:
            adapter.pause()

    @property
    def name(self) -> str:
        """The herd's name, used in logs and metrics."""
        return self._name

    @property
    def logger(self) -> logging.Logger:
        """Where the herd logs."""
        return self._herd.logger

    def stats(self) -> HerdStats:
        """A consistent snapshot of the herd's gauges and counters."""
        return self._herd.stats()

    # Read by code written for ThreadPoolExecutor, and by CPython's own tests of it.
    # ThreadPoolExecutor has them as plain attributes; here they follow the herd and
    # cannot be set, which is what the ignores tell mypy.
    @property
    def _max_workers(self) -> int:  # type: ignore[override]
        return self._herd.size

    @property
    def _threads(self) -> frozenset[threading.Thread]:  # type: ignore[override]
        return self._herd.threads()

    @property
    def _broken(self) -> str | bool:  # type: ignore[override]
        return self._herd.broken or False

    @property
    def _shutdown(self) -> bool:  # type: ignore[override]
        return self._herd.shut_down

    # -- intake ----------------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> HerdFuture[T]:
        """Schedule ``fn(*args, **kwargs)``; with no backlog, block until a gopher takes it.

        Two callers never block: one of this herd's own gophers (a work or a callback
        that submits to its herd) and a thread that runs an asyncio event loop
        (``loop.run_in_executor``, ``asyncio.to_thread``). Either would wait for a gopher
        that is waiting for it, so their work is queued at once, beyond the backlog.

        Returns:
            A future whose work has a fresh unique id.

        Raises:
            RuntimeError: After shutdown() or close_input().
            BrokenHerd: An initializer failed.
        """
        future: HerdFuture[T] = HerdFuture(Work(str(next(self._ids))), fn, args, kwargs)
        self._herd.accept(future, None)
        return future

    def send_work(self, work: Work, timeout: float | None = None) -> HerdFuture[Any]:
        """Have the herd's process function handle ``work`` (gofherd's ``SendWork``).

        Blocks until a gopher (or the backlog) takes the work. A successful future's
        ``result()`` is ``work.result``.

        Raises:
            RuntimeError: No ``process=`` was given, or after shutdown()/close_input().
            TypeError: ``work`` is not a Work.
            ValueError: ``timeout`` is negative.
            TimeoutError: Nobody took the work in time; it was not accepted and will
                not run.
        """
        if self._process is None:
            raise RuntimeError("send_work() needs a process function: HerdExecutor(process=...)")
        if not isinstance(work, Work):
            raise TypeError(f"send_work() takes a herdexec.Work, not {type(work).__name__}")
        future: HerdFuture[Any] = HerdFuture(work, self._process, (work,), process=True)
        self._herd.accept(future, _check_timeout(timeout))
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like ``ThreadPoolExecutor.map``, but reads its input lazily.

        At most ``buffersize`` works are in flight (by default twice the herd size plus
        any bounded backlog; for an adaptive herd, twice its ``max_size``, so that the
        herd has the work to grow into), so an endless input takes bounded memory. When map()
        returns, an input no longer than that is already submitted. ``timeout`` counts
        from this call and bounds map's own submits as well as each result; closing
        the iterator early cancels what has not started. ``chunksize`` is ignored by
        the thread runner, as by ThreadPoolExecutor; other runners ship ``chunksize``
        calls as one work, in one round trip.

        Raises:
            TypeError: ``buffersize`` is not an int or None.
            ValueError: ``buffersize`` is below 1.
            RuntimeError: After shutdown() or close_input().
        """
        if buffersize is not None and not isinstance(buffersize, int):
            raise TypeError("buffersize must be an integer or None")
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or > 0")
        if chunksize != 1 and self._runner is not None:
            from ._runners import map_in_chunks  # noqa: PLC0415  (loaded with the runner)

            return map_in_chunks(
                self.map, fn, iterables, chunksize, timeout=timeout, buffersize=buffersize
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        if buffersize is None:
            adapter = self._herd.adapter
            size = self._herd.size if adapter is None else adapter.max_size
            buffersize = 2 * max(1, size) + self._herd.bounded_backlog
        inputs = zip(*iterables, strict=False)
        in_flight: deque[HerdFuture[T]] = deque()
        late: Exception | None = None
        try:
            for args in itertools.islice(inputs, buffersize):
                in_flight.append(self._submit_by(deadline, fn, args))
        except futures.TimeoutError as exc:
            late = exc  # raised in order, once the results before it are out
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
        return _results(weakref.ref(self), fn, inputs, in_flight, deadline, late)

    def _submit_by(
        self, deadline: float | None, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> HerdFuture[T]:
        future: HerdFuture[T] = HerdFuture(Work(str(next(self._ids))), fn, args)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._herd.accept(future, timeout)
        return future

    def close_input(self) -> None:
        """Take no more work; accepted work and its retries go on (gofherd's CloseInputChan).

        ``output_chan()`` ends once they are done.
        """
        self._herd.close_input()

    def output_chan(self) -> Iterator[Work]:
        """Finished works (SUCCESS or FAILURE) in completion order.

        The iterator ends once intake is closed (close_input() or shutdown()) and every
        accepted work has ended. Several readers share the stream; each work goes to
        one of them.

        Raises:
            RuntimeError: The output is off (see ``output=``).
        """
        if not self._herd.output_enabled:
            raise RuntimeError(
                "output_chan() needs the output on: HerdExecutor(output=True) or process=..."
            )
        return self._herd.output()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; with ``wait``, return once every accepted work has ended.

        A caller still blocked in submit() gets RuntimeError and its work does not run.
        On a paused herd with accepted work, ``wait=True`` waits (and logs a warning)
        until the herd is resized from another thread or over HTTP. Once the accepted
        work is done (with or without ``wait``), the control server closes and the herd
        leaves the metrics.

        Args:
            wait: Wait for the accepted work and the gopher threads.
            cancel_futures: Cancel every accepted work that has not started, including
                works waiting for a retry.
        """
        self._herd.shutdown(cancel_futures=cancel_futures)
        if cancel_futures and self._runner is not None:
            self._runner.cancel_running()
        if not wait:
            self._release_when_done()
            return
        try:
            self._herd.join()
        except BaseException:
            # A Ctrl-C cut the wait short: the work goes on, and what the herd shares
            # with the world is released once it is done, as without ``wait``.
            self._release_when_done()
            raise
        self._release()

    def _release_when_done(self) -> None:
        """Release the control plane and the runner once the accepted work is done: a
        paused herd must still be resumable over HTTP meanwhile, and its metrics still
        count."""
        threading.Thread(
            target=self._join_and_release,
            name=f"herdexec-closer-{self._name}",
            daemon=True,
        ).start()

    def _join_and_release(self) -> None:
        self._herd.join()
        self._release()

    def _release(self) -> None:
        """The herd has ended: close what it shared with the world."""
        self._close_control()
        if self._runner is not None:
            self._runner.close()

    # -- the control plane -----------------------------------------------------------

    @property
    def max_herd_size(self) -> int:
        """The largest :attr:`herd_size` allowed, over HTTP or not."""
        return self._max_herd_size

    @property
    def server(self) -> ControlServer | None:
        """The open control server (see :meth:`serve`), or ``None``."""
        server = self._server
        return server if server is not None and not server.closed else None

    def serve(
        self,
        addr: str = "127.0.0.1:2112",
        *,
        token: str | None = None,
        protect_reads: bool = False,
        allowed_hosts: Iterable[str] = (),
    ) -> ControlServer:
        """Serve gofherd's control plane over HTTP, in the background.

        ``GET /herd`` reads the herd, ``PATCH /herd {"num": N}`` resizes it, ``GET
        /metrics`` is the registry's Prometheus exposition, and ``GET /`` is a live page
        for the operator; docs/server.md has the contract. Returns once the server
        listens. A herd has one server at a time, and :meth:`shutdown` closes it, after
        its wait: a paused herd can still be resized over HTTP while shutdown() waits
        for it.

        Args:
            addr: ``"host:port"`` to listen on; port 0 picks a free port. The default
                host, 127.0.0.1, serves this machine only: say ``0.0.0.0`` for every
                interface, and give a token.
            token: If given, ``PATCH /herd`` needs ``Authorization: Bearer <token>``.
            protect_reads: Require the token for ``GET /herd`` and ``/metrics`` too.
            allowed_hosts: Host names, besides ``localhost`` and the server's addresses,
                that requests may name in their ``Host`` header; ``"*"`` allows any.
                Any other gets 403: that is what stops a web page from reaching the
                server through a rebound DNS name.

        Returns:
            The running server; see its ``url``, ``port`` and ``close()``.

        Raises:
            OSError: The address cannot be served: in use, say, or an unknown host.
            RuntimeError: After shutdown(), or while this herd serves already.
            TypeError: ``addr``, ``token``, ``protect_reads`` or ``allowed_hosts`` has
                the wrong type.
            ValueError: ``addr`` is not ``"host:port"``, the token cannot travel in a
                header, ``protect_reads`` has no token, or an allowed host is no name.
        """
        with self._control_lock:
            if self._control_closed:
                raise RuntimeError("cannot serve after shutdown")
            if self._server is not None and not self._server.closed:
                raise RuntimeError(f"herd {self._name!r} serves already at {self._server.url}")
            from ._control._server import ControlServer  # noqa: PLC0415  (bottle when served)

            self._server = ControlServer(
                self,
                addr,
                registry=self._registry,
                token=token,
                protect_reads=protect_reads,
                allowed_hosts=allowed_hosts,
            )
            return self._server

    def _close_control(self) -> None:
        """The herd is shut down: close its server, and leave the metrics."""
        with self._control_lock:
            self._control_closed = True
            server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._registry is not None:
            from ._control import _metrics  # noqa: PLC0415  (prometheus_client when used)

            _metrics.untrack(self, self._registry)

    def __reduce__(self) -> NoReturn:
        # A herd is threads and locks in this process, as a ThreadPoolExecutor is: it
        # cannot be sent to a worker process, or anywhere. Said here, since pickling would
        # otherwise fail on whichever part it met first (on 3.13, with a warning first).
        raise TypeError(
            f"cannot pickle {type(self).__name__!r} object: a herd stays in the process"
            " that made it"
        )

    def __repr__(self) -> str:
        s = self._herd.stats()
        return f"<HerdExecutor {self._name!r} herd_size={s.herd_size} busy={s.busy}>"


def _results(
    executor_ref: weakref.ref[HerdExecutor],
    fn: Callable[..., T],
    inputs: Iterator[tuple[Any, ...]],
    in_flight: deque[HerdFuture[T]],
    deadline: float | None,
    late: Exception | None,
) -> Iterator[T]:
    """map()'s result iterator: refill one, yield the oldest, in input order.

    It holds the executor weakly, as CPython's own map() does, so an executor dropped
    mid-map still winds down. Input that can no longer be submitted (timeout, shutdown,
    executor gone) raises at its place, once the results before it are out.
    """
    try:
        while True:
            if late is None:
                args = next(inputs, None)
                if args is not None:
                    executor = executor_ref()
                    try:
                        if executor is None:
                            raise RuntimeError("the executor was collected during map()")
                        in_flight.append(executor._submit_by(deadline, fn, args))
                    except (futures.TimeoutError, RuntimeError) as exc:
                        late = exc
                    del executor
            if not in_flight:
                if late is not None:
                    raise late
                return
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield _result_or_cancel(in_flight.popleft(), timeout)
    finally:
        for future in in_flight:
            future.cancel()


def _result_or_cancel(future: HerdFuture[T], timeout: float | None) -> T:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        # Do not keep the result alive through this frame (bpo-14406).
        del future


def _resize(herd: Herd, runner: Bound | None, size: int) -> None:
    """Resize the herd, and tell its runner (a Dask cluster scales with it)."""
    herd.resize(size)
    if runner is not None:
        runner.resized(size)


def _abandon(herd: Herd) -> None:
    """Wind down the herd of an executor that was collected without shutdown().

    The cyclic garbage collector may run this on any thread at any allocation, even
    on one that holds the herd's lock; then it must not wait for the lock itself.
    """
    if herd.lock_is_free():
        herd.shutdown()
    else:
        threading.Thread(target=herd.shutdown, name="herdexec-abandon", daemon=True).start()


def _resolve_runner(runner: object) -> Runner | None:
    """What ``runner=`` names; imports the runners only for a herd that has one."""
    from ._runners import resolve  # noqa: PLC0415  (multiprocessing, when used)

    return resolve(runner)


def _check_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, not {value}")
    return value


def _check_at_most(value: object, cap: int, what: str) -> int:
    count = _check_count(value, what)
    if count > cap:
        raise ValueError(f"{what} must be <= max_herd_size ({cap}), not {count}")
    return count


def _exception_types(value: object, what: str) -> tuple[type[BaseException], ...]:
    """An exception type, or a tuple of them, as a tuple."""
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple) or not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in value
    ):
        raise TypeError(f"{what} must be an exception type or a tuple of them")
    return value


def _check_registry(registry: object) -> CollectorRegistry:
    """The registry a herd reports to; the first herd that reports loads prometheus_client."""
    from prometheus_client import REGISTRY  # noqa: PLC0415  (see _GlobalRegistry)
    from prometheus_client.registry import CollectorRegistry  # noqa: PLC0415

    if registry is _REGISTRY:
        return REGISTRY
    if not isinstance(registry, CollectorRegistry):
        raise TypeError(
            f"registry must be a prometheus_client CollectorRegistry or None,"
            f" not {type(registry).__name__}"
        )
    return registry


def _check_callable(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{what} must be a callable or None, not {type(value).__name__}")


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    if not timeout >= 0:
        raise ValueError(f"timeout must be a non-negative number, not {timeout}")
    return float(timeout)


def _output_capacity(output: object, has_process: bool) -> int | None:
    """The herd's output setting: None for off, 0 for unbounded, n for at most n."""
    if output is None:
        output = has_process
    if isinstance(output, bool):
        return 0 if output else None
    if not isinstance(output, int):
        raise TypeError(f"output must be a bool, an int or None, not {type(output).__name__}")
    if output < 1:
        raise ValueError(f"output must be True, False, None or an int >= 1, not {output}")
    return output
