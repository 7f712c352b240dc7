"""Dask gophers: each gopher hands its work to a dask.distributed cluster and waits.

The herd size is then the number of works in flight on the cluster, and everything
else stays the herd's: the backlog, blocking submit, statuses, retries (Dask's own are
off for these tasks, so that one count governs), callbacks and statistics. A gopher's
thread spends its work waiting on a Dask future, so a large herd costs threads, not
cores.

Nothing here imports Dask until a DaskRunner is made: it is an optional extra.
"""

from __future__ import annotations

import itertools
import math
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .._work import HerdFuture
from . import _worker
from ._base import Bound, OverTime, Runner, Seat

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskRunner"]

_EXTRA = "DaskRunner needs dask.distributed: pip install 'herdexec[dask]'"


class DaskRunner(Runner):
    """Run each gopher's works on a dask.distributed cluster, one in flight per gopher.

    Args:
        client: A ``distributed.Client`` (yours: the herd never closes it), or a
            scheduler address such as ``"tcp://10.0.0.5:8786"`` (the herd makes a
            Client and closes it at shutdown).
        scale: Make the cluster follow the herd: whenever the herd size is set, the
            cluster is scaled to ``ceil(herd_size / scale)`` workers, so ``scale`` is
            how many works one worker takes at once (its thread count, usually).
            Needs a Client whose cluster can ``scale`` (LocalCluster, dask-jobqueue,
            dask-kubernetes); ``None`` (the default) leaves the cluster alone.
        timeout: Seconds one attempt may take on the cluster; a work over it has its
            Dask task cancelled and fails with ``TimeoutError``.

    Raises:
        ImportError: dask.distributed is not installed (the ``dask`` extra).
        TypeError: An argument has the wrong type.
        ValueError: An argument is out of range, or ``scale`` without a cluster that
            can scale.
    """

    __slots__ = ("_client", "_scale", "_timeout")

    def __init__(
        self,
        client: Client | str,
        *,
        scale: int | None = None,
        timeout: float | None = None,
    ) -> None:
        try:
            import distributed  # noqa: PLC0415  (an optional extra)
        except ImportError as exc:
            raise ImportError(_EXTRA, name=exc.name) from exc
        if not isinstance(client, (str, distributed.Client)):
            raise TypeError(
                "client must be a distributed.Client or a scheduler address,"
                f" not {type(client).__name__}"
            )
        if scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, int):
                raise TypeError(f"scale must be an int or None, not {type(scale).__name__}")
            if scale < 1:
                raise ValueError(f"scale must be >= 1, not {scale}")
            if isinstance(client, str) or getattr(client, "cluster", None) is None:
                raise ValueError(
                    "scale= needs a Client made from a cluster object that can scale"
                    " (LocalCluster, dask-jobqueue, dask-kubernetes), not one that"
                    " connected to a scheduler address"
                )
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
            if not timeout > 0:
                raise ValueError(f"timeout must be > 0, not {timeout}")
            timeout = float(timeout)
        self._client = client
        self._scale = scale
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"DaskRunner({self._client!r}, scale={self._scale!r}, timeout={self._timeout!r})"

    def _bind(
        self,
        *,
        name: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> Bound:
        if initializer is not None:
            raise ValueError(
                "a DaskRunner runs no initializer: register a Dask WorkerPlugin with the"
                " client instead, which runs on every worker, later ones too"
            )
        import distributed  # noqa: PLC0415

        client = self._client
        if isinstance(client, str):
            made: Any = distributed.Client  # untyped
            return _Cluster(made(client, set_as_default=False), True, self, name)
        return _Cluster(client, False, self, name)


class _Job:
    """One attempt: the call to make, its Dask task once submitted, and its outcome."""

    __slots__ = ("abandoned", "call", "done", "key", "outcome", "task")

    def __init__(self, call: tuple[Any, ...], key: str) -> None:
        self.call = call  # _worker.call's arguments
        self.key = key
        self.task: Any = None  # the distributed.Future, once submitted
        self.abandoned = False  # its gopher gave up on it (its time limit)
        self.done = threading.Event()
        self.outcome: tuple[bool, Any] = (False, None)  # (raised, value or exception)

    def settle(self, raised: bool, value: Any) -> None:
        self.outcome = (raised, value)
        self.done.set()


class _Cluster:
    """A DaskRunner bound to one herd: its client, and the attempts in flight.

    Both ways a task goes through the client a batch at a time, the way ``client.map``
    and ``client.gather`` do, because Dask's costs are per message far more than per
    task. Gophers leave their jobs in ``pending``; whichever finds nobody submitting
    submits every job waiting as one graph (``client.map``) until none is left, so one
    gopher alone waits for nobody and many at once share a graph: a graph of one task
    costs the scheduler about three times what a task in a graph of 64 does. One
    thread, the herd's ``_dask`` thread, waits for whichever tasks finish and fetches
    their results in one ``gather``: a gopher that called ``result()`` itself would
    cost a round trip to the event loop and one to the worker per task, and a large
    herd's threads would contend with the loop (and a LocalCluster's scheduler) for the
    GIL. See docs/benchmarks.md for the figures.
    """

    def __init__(self, client: Client, own: bool, runner: DaskRunner, name: str) -> None:
        import distributed  # noqa: PLC0415
        from dask.utils import funcname  # noqa: PLC0415

        # Dask's API is mostly untyped: it stays Any here, in this one module.
        self.client: Any = client
        self.own = own  # made from an address: closed with the herd
        self.scale = runner._scale
        self.timeout = runner._timeout
        self.name = name
        self.funcname: Callable[[Any], str] = funcname
        # Keys name the function, as Dask's own do, for its dashboard; this herd's
        # token and a count make each attempt a task of its own.
        self.token = uuid.uuid4().hex
        self.numbers = itertools.count()
        self.lock = threading.Lock()
        self.scaling = threading.Lock()  # apart: a cluster may take its time to scale
        self.changed = threading.Condition(self.lock)  # a job came, or closing
        self.pending: list[_Job] = []  # not yet submitted
        self.submitting = False  # a gopher is submitting the pending jobs
        self.jobs: dict[Any, _Job] = {}  # distributed.Future -> _Job, on the cluster
        self.tracked = 0  # tasks handed to `finished` and not yet out of it
        as_completed: Any = distributed.as_completed  # untyped
        self.finished: Any = as_completed(loop=self.client.loop, raise_errors=False)
        self.thread: threading.Thread | None = None
        self.closing = False

    def default_size(self) -> int:
        return max(1, int(sum(self.client.nthreads().values())))

    def seat(self, broken: Callable[[BaseException], None]) -> Seat:
        return _DaskSeat(self)

    def resized(self, size: int) -> None:
        if self.scale is not None:
            with self.scaling:  # one scale() at a time: it edits the cluster's spec
                self.client.cluster.scale(math.ceil(size / self.scale))

    def cancel_running(self) -> None:
        with self.lock:
            running = list(self.jobs)
        if running:
            self.client.cancel(running)

    def close(self) -> None:
        with self.lock:
            self.closing = True
            self.changed.notify_all()
            thread = self.thread
        if thread is not None:
            thread.join()
        if self.own:
            self.client.close()

    def job(self, future: HerdFuture[Any]) -> _Job:
        fn = future._fn
        return _Job(
            (fn, future._args, future._kwargs or None, future._process),
            f"{self.funcname(fn)}-{self.token}-{next(self.numbers)}",
        )

    def submit(self, job: _Job) -> None:
        """Put the job's task on the cluster, with those of the gophers that come
        meanwhile; return once it is there, or settled with why it could not be."""
        with self.lock:
            self.pending.append(job)
            if self.submitting:
                return  # the gopher submitting takes it in its next batch
            self.submitting = True
        while True:
            with self.lock:
                batch, self.pending = self.pending, []
                if not batch:
                    self.submitting = False
                    return
            self._submit(batch)

    def _submit(self, batch: list[_Job]) -> None:
        """Submit a batch as one graph; if Dask refuses it, each job alone, so that only
        the job that could not go (an argument that cannot be pickled) fails."""
        calls = list(zip(*(job.call for job in batch), strict=True))
        try:
            tasks = self.client.map(
                _worker.call,
                *calls,
                key=[job.key for job in batch],
                pure=False,
                retries=0,
            )
        except Exception as exc:
            if len(batch) > 1:
                for job in batch:
                    self._submit([job])
            else:
                batch[0].settle(True, exc)
            return
        abandoned, tracked = [], []
        with self.lock:
            for job, task in zip(batch, tasks, strict=True):
                if job.abandoned:
                    abandoned.append(task)
                else:
                    job.task = task
                    self.jobs[task] = job
                    tracked.append(task)
            if self.thread is None:
                self.thread = threading.Thread(
                    name=f"{self.name}_dask", target=self._settle_loop, daemon=True
                )
                self.thread.start()
        try:
            if tracked:
                self.client.loop.add_callback(self._track, tracked)
        except Exception as exc:  # Dask's loop has closed, and every task with it
            with self.lock:
                lost = [self.jobs.pop(task, None) for task in tracked]
            for gone in lost:
                if gone is not None:
                    gone.settle(True, exc)
        if abandoned:
            with suppress(Exception):  # the client is closing: they go with it
                self.client.cancel(abandoned)

    def abandon(self, job: _Job) -> bool:
        """The gopher gives up on its job (its time limit): cancel its task. False if
        the job has finished meanwhile, and its outcome stands."""
        with self.lock:
            if job.done.is_set():
                return False
            if job.task is None:  # not on the cluster yet: it never will be
                job.abandoned = True
                with suppress(ValueError):
                    self.pending.remove(job)
                return True
            if self.jobs.pop(job.task, None) is None:
                return False  # being settled
        job.task.cancel()
        return True

    def _track(self, tasks: list[Any]) -> None:
        """On Dask's event loop: watch the tasks, and tell the settling thread.

        ``as_completed.update`` wakes the loop once per task from another thread, and a
        wake-up from a thread is a system call that gives up the GIL; from the loop,
        the batch costs the one wake-up that brought it here.
        """
        self.finished.update(tasks)
        with self.lock:
            self.tracked += len(tasks)
            self.changed.notify()

    def _settle_loop(self) -> None:
        while True:
            with self.lock:
                while not self.tracked and not self.closing:
                    self.changed.wait()
                if self.closing and not self.jobs:
                    return
            try:
                batch = self.finished.next_batch(block=True)
            except StopIteration:
                continue  # (closing, with a task not yet watched)
            with self.lock:
                self.tracked -= len(batch)
            self._settle(batch)

    def _settle(self, tasks: list[Any]) -> None:
        """Fetch the results of finished tasks in one gather, and wake their gophers."""
        outcomes: dict[Any, tuple[bool, Any]] = {}
        finished = [task for task in tasks if task.status == "finished"]
        with suppress(Exception):  # one was lost meanwhile: then each is asked below
            values = self.client.gather(finished) if finished else []
            outcomes.update(
                (task, (False, value)) for task, value in zip(finished, values, strict=True)
            )
        for task in tasks:
            if task in outcomes:
                continue
            try:
                outcomes[task] = (False, task.result())
            except BaseException as exc:
                outcomes[task] = (True, exc)
        with self.lock:
            jobs = [(self.jobs.pop(task, None), outcome) for task, outcome in outcomes.items()]
        for job, outcome in jobs:
            if job is not None:  # else its gopher gave up on it (a time limit)
                job.settle(*outcome)
        # The results are here: let the cluster drop its copies, from the loop (see _track).
        self.client.loop.add_callback(self._release, tasks)

    @staticmethod
    def _release(tasks: list[Any]) -> None:
        for task in tasks:
            task.release()


class _DaskSeat:
    """A gopher's place on the cluster: it needs nothing of its own."""

    def __init__(self, cluster: _Cluster) -> None:
        self._cluster = cluster

    def call(self, future: HerdFuture[Any]) -> Any:
        cluster = self._cluster
        job = cluster.job(future)
        cluster.submit(job)
        if not job.done.wait(cluster.timeout) and cluster.abandon(job):
            raise OverTime(
                f"work {future.work.id!r} ran over its time limit of {cluster.timeout}"
                " seconds; its Dask task was cancelled"
            )
        job.done.wait()  # at once, unless it finished as its time ran out
        raised, value = job.outcome
        if raised:
            raise value
        if future._process:
            value, future.work.result = value
        return value

    def close(self) -> None:
        pass
