"""Dask gophers, against real clusters on this machine's loopback.

Two shapes of cluster, each started once for the module (they are slow to start): a
``LocalCluster`` of worker processes, and a scheduler and workers started as separate
``dask scheduler`` / ``dask worker`` processes, as on several machines. Without dask
these tests skip, unless HERDEXEC_REQUIRE_DASK is set (CI's dask env sets it), when
the missing extra fails them.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

from herdexec import AIMD, HerdExecutor, Status, Work

from . import runner_work as rw
from .helpers import wait_until

if os.environ.get("HERDEXEC_REQUIRE_DASK"):
    import dask
    import distributed
else:
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")

from herdexec import DaskRunner

# Dask's own threads and loops outlive a test by design; its logs of a killed worker are
# expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.timeout(180),
]


def loopback_cluster(workers: int, threads: int) -> distributed.LocalCluster:
    """A LocalCluster of worker processes (each with a nanny), on 127.0.0.1 alone."""
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        worker_dashboard_address=None,
    )


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[distributed.LocalCluster]:
    with loopback_cluster(2, 2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(local_cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    with distributed.Client(local_cluster, set_as_default=False) as client:
        yield client


class Deployment:
    """A scheduler and workers as separate processes on 127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / "scheduler.json"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""
        try:
            # Each process has a group of its own, so that killing one takes its children.
            self.processes.append(
                self._start(
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(self.file),
                )
            )
            assert wait_until(self._read_address, timeout=60), "the scheduler did not start"
            for _ in range(2):
                self.add_worker()
        except BaseException:
            self.stop()
            raise

    def _read_address(self) -> bool:
        """The scheduler's address, once its file is there and whole: the scheduler
        writes it in place, so it can be read empty or in part."""
        try:
            self.address = json.loads(self.file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return False
        return True

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        # The scheduler and workers unpickle the works' functions, so they need the
        # same code as the client (here: this checkout's tests package).
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.directory,
            env=env,
        )

    def add_worker(self) -> None:
        self.processes.append(
            self._start(
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "2",
                "--no-dashboard",
                "--no-nanny",
            )
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    started = Deployment(tmp_path_factory.mktemp("dask"))
    try:
        with distributed.Client(started.address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield started
    finally:
        started.stop()


def test_works_run_on_the_cluster(client: distributed.Client) -> None:
    with HerdExecutor(runner=DaskRunner(client)) as herd:
        assert herd.herd_size == 4  # the cluster's threads
        assert list(herd.map(rw.square, range(20))) == [n * n for n in range(20)]
        assert herd.submit(rw.add, 2, y=3).result(timeout=60) == 5
        pids = set(herd.map(rw.pid, range(40)))
        workers = set(client.run(os.getpid).values())
        assert pids <= workers
        assert os.getpid() not in pids
        assert list(herd.map(rw.add, range(30), range(30), chunksize=4)) == [
            2 * n for n in range(30)
        ]
        stats = herd.stats()
        assert stats.submitted == 20 + 1 + 40 + 8
        assert stats.succeeded == stats.submitted
    assert client.status == "running"  # the user's client: never closed by the herd


def test_exceptions_keep_their_type_and_herdexec_retries(
    client: distributed.Client, tmp_path: Path
) -> None:
    retried: list[str] = []
    with HerdExecutor(
        2, runner=DaskRunner(client), max_retries=1, on_retry=lambda w: retried.append(w.id)
    ) as herd:
        failed = herd.submit(rw.fail, "boom")
        with pytest.raises(ValueError, match="boom"):
            failed.result(timeout=60)
        assert failed.status is Status.FAILURE
        # Retry is herdexec's, counted by the herd once per attempt.
        again = herd.submit(rw.first_time, str(tmp_path / "m"), "retry")
        assert again.result(timeout=60) == "second"
        assert (again.retries, retried) == (1, [again.id])


def test_gofherd_process_function_on_the_cluster(client: distributed.Client) -> None:
    with HerdExecutor(2, process=rw.process, runner=DaskRunner(client)) as herd:
        works = [Work(f"w{n}", n - 1) for n in range(5)]
        for work in works:
            herd.send_work(work)
        herd.close_input()
        finished = {work.id: work for work in herd.output_chan()}
    assert sorted(finished) == sorted(work.id for work in works)
    for work in works:
        if work.body < 0:
            assert work.status is Status.FAILURE
        else:
            assert work.status is Status.SUCCESS
            assert work.result[0] == work.body**2
            assert work.result[1] != os.getpid()


def test_an_argument_dask_cannot_pickle_fails_its_work_alone(client: distributed.Client) -> None:
    """Gophers that submit at once share a graph; one work's argument that cannot be
    pickled fails that work, and the others of its graph run."""
    with HerdExecutor(8, runner=DaskRunner(client), backlog=None) as herd:
        futures = [herd.submit(rw.add, threading.Lock() if n % 8 == 3 else n) for n in range(64)]
        for n, future in enumerate(futures):
            if n % 8 == 3:
                exception = future.exception(timeout=60)
                assert isinstance(exception, TypeError)
                assert "cannot pickle '_thread.lock' object" in str(exception.__cause__)
            else:
                assert future.result(timeout=60) == n
        stats = herd.stats()
        assert (stats.failed, stats.succeeded) == (8, 56)


def test_a_work_over_its_time_is_cancelled_on_the_cluster(
    client: distributed.Client, tmp_path: Path
) -> None:
    gate = tmp_path / "never"
    with HerdExecutor(1, runner=DaskRunner(client, timeout=0.5)) as herd:
        slow = herd.submit(rw.wait_for_file, str(gate), 30)
        with pytest.raises(TimeoutError, match=r"time limit of 0\.5 seconds"):
            slow.result(timeout=60)
        assert herd.submit(rw.square, 3).result(timeout=60) == 9
    # Dask cannot stop a thread: the cancelled task runs on until it returns, and the
    # tests after this one need the worker's thread.
    gate.touch()


def test_shutdown_cancelling_futures_cancels_the_dask_tasks(
    client: distributed.Client, tmp_path: Path
) -> None:
    herd = HerdExecutor(2, runner=DaskRunner(client), backlog=None)
    gate = str(tmp_path / "never")
    running = [herd.submit(rw.wait_for_file, gate, 120) for _ in range(2)]
    queued = [herd.submit(rw.square, n) for n in range(3)]
    assert wait_until(lambda: len(list(tmp_path.glob("never.started.*"))) == 2, timeout=60)
    started = time.monotonic()
    herd.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - started < 60  # not the two minutes the works would take
    assert all(future.cancelled() for future in queued)
    for future in running:
        assert isinstance(future.exception(), CancelledError)
    stats = herd.stats()
    assert (stats.failed, stats.cancelled, stats.succeeded) == (2, 3, 0)
    # Nothing of the herd's is left on the cluster.
    assert wait_until(lambda: not client.processing() or not any(client.processing().values()))
    Path(gate).touch()  # the worker threads the cancelled tasks still hold, for the next tests


def test_a_client_closed_under_the_herd_fails_its_works(
    local_cluster: distributed.LocalCluster, tmp_path: Path
) -> None:
    """Closing the client under a running herd cancels the works on the cluster, fails
    the next ones with Dask's error, and leaves nobody waiting: shutdown returns."""
    user_client = distributed.Client(local_cluster, set_as_default=False)
    herd = HerdExecutor(2, runner=DaskRunner(user_client))
    try:
        assert herd.submit(rw.square, 3).result(timeout=60) == 9
        gate = str(tmp_path / "never")
        in_flight = [herd.submit(rw.wait_for_file, gate, 120) for _ in range(2)]
        assert wait_until(lambda: len(list(tmp_path.glob("never.started.*"))) == 2, timeout=60)
        user_client.close()
        for future in in_flight:
            assert isinstance(future.exception(timeout=60), CancelledError)
        with pytest.raises(distributed.client.ClosedClientError, match="Client is closed"):
            herd.submit(rw.square, 4).result(timeout=60)
    finally:
        herd.shutdown()
        Path(gate).touch()  # the worker threads the cancelled tasks still hold
    assert herd.stats().failed == 3


def test_runner_arguments(client: distributed.Client) -> None:
    with pytest.raises(TypeError, match=r"client must be a distributed\.Client or a scheduler"):
        DaskRunner(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must be >= 1, not 0"):
        DaskRunner(client, scale=0)
    with pytest.raises(TypeError, match="scale must be an int or None, not float"):
        DaskRunner(client, scale=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale= needs a Client made from a cluster"):
        DaskRunner("tcp://127.0.0.1:1", scale=2)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        DaskRunner(client, timeout=-1)
    with pytest.raises(ValueError, match="runs no initializer"):
        HerdExecutor(1, initializer=print, runner=DaskRunner(client))


def test_elastic_cluster_follows_the_herd() -> None:
    with (
        loopback_cluster(1, 2) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):

        def workers() -> int:
            return len(client.scheduler_info(n_workers=-1)["workers"])

        herd = HerdExecutor(3, runner=DaskRunner(client, scale=2))
        try:
            # ceil(3 / 2) = 2 workers, then ceil(6 / 2) = 3, then 1 again.
            assert wait_until(lambda: workers() == 2, timeout=120)
            herd.herd_size = 6
            assert wait_until(lambda: workers() == 3, timeout=120)
            assert sorted(herd.map(rw.square, range(12))) == sorted(n * n for n in range(12))
            herd.herd_size = 1
            assert wait_until(lambda: workers() == 1, timeout=120)
        finally:
            herd.shutdown()


def test_an_adaptive_herd_scales_the_cluster_within_its_bounds() -> None:
    """AIMD grows the herd to its max_size while works succeed and cuts it to its
    min_size once they are refused; every size reaches the cluster as
    ceil(size / scale) workers, and the cluster is never asked for more or fewer than
    the bounds make."""
    with (
        loopback_cluster(1, 2) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        asked: list[int] = []  # the cluster's worker count as asked for, sampled
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.01):
                asked.append(len(cluster.worker_spec))

        def workers() -> int:
            return len(client.scheduler_info(n_workers=-1)["workers"])

        sampler = threading.Thread(target=sample)
        sampler.start()
        herd = HerdExecutor(
            2,
            runner=DaskRunner(client, scale=2),
            adapt=AIMD(min_size=2, max_size=8, window=4, backoff_ratio=0.5),
            overload_on=rw.Overloaded,
            backlog=None,
        )
        try:
            # Slow start while busy: 2 -> 4 -> 8, the max; ceil(8 / 2) = 4 workers.
            assert list(herd.map(rw.square, range(200))) == [n * n for n in range(200)]
            assert herd.herd_size == 8
            assert wait_until(lambda: workers() == 4, timeout=120)
            assert len(cluster.worker_spec) == 4
            # Refused: 8 -> 4 -> 2, the min; ceil(2 / 2) = 1 worker.
            refused = [herd.submit(rw.refuse) for _ in range(40)]
            for future in refused:
                assert isinstance(future.exception(timeout=120), rw.Overloaded)
            assert herd.herd_size == 2
            assert wait_until(lambda: workers() == 1, timeout=120)
            assert len(cluster.worker_spec) == 1
            assert sorted(herd.map(rw.square, range(4))) == [0, 1, 4, 9]
        finally:
            herd.shutdown()
            sampling.set()
            sampler.join()
        assert (min(asked), max(asked)) == (1, 4)


def test_a_work_that_kills_every_worker_fails_with_killed_worker(tmp_path: Path) -> None:
    """Dask runs a work whose worker died again, up to its allowed-failures, then
    fails it with KilledWorker: the future gets that, and the herd goes on."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        loopback_cluster(2, 1) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
        HerdExecutor(2, runner=DaskRunner(client)) as herd,
    ):
        doomed = herd.submit(rw.record_pid_and_die, str(tmp_path))
        exception = doomed.exception(timeout=120)
        assert isinstance(exception, distributed.KilledWorker)
        assert "record_pid_and_die" in str(exception.task)
        assert "died while running it" in str(exception)
        # allowed-failures + 1 attempts, each in a worker process of its own; the herd
        # saw one.
        assert len({path.name for path in tmp_path.iterdir()}) == 2
        assert doomed.retries == 0
        assert doomed.status is Status.FAILURE
        # The nannies start new workers: the cluster and the herd go on.
        assert herd.submit(rw.square, 7).result(timeout=120) == 49
        stats = herd.stats()
        assert (stats.failed, stats.succeeded) == (1, 1)


def test_a_herd_made_from_an_address_closes_its_client(deployment: Deployment) -> None:
    herd = HerdExecutor(4, runner=DaskRunner(deployment.address))
    made = herd._runner.client  # type: ignore[union-attr]
    assert sorted(herd.map(rw.square, range(10))) == [n * n for n in range(10)]
    herd.shutdown()
    assert made.status == "closed"


def test_a_killed_worker_is_rescheduled_by_dask(deployment: Deployment, tmp_path: Path) -> None:
    with (
        distributed.Client(deployment.address, set_as_default=False) as client,
        HerdExecutor(2, runner=DaskRunner(client)) as herd,
    ):
        client.wait_for_workers(2, timeout=60)
        gate = str(tmp_path / "gate")
        future = herd.submit(rw.wait_for_file, gate, 120)
        assert wait_until(lambda: any(tmp_path.glob("gate.started.*")), timeout=60)
        victim = int(next(tmp_path.glob("gate.started.*")).name.rsplit(".", 1)[1])
        os.kill(victim, signal.SIGKILL)
        Path(gate).touch()
        # Dask runs the task again on the other worker; the herd sees one attempt.
        assert future.result(timeout=120) != victim
        assert (future.retries, herd.stats().succeeded) == (0, 1)
        deployment.add_worker()  # for the tests after this one
        client.wait_for_workers(2, timeout=60)


def test_invariants_under_resizes(client: distributed.Client, tmp_path: Path) -> None:
    """In flight on the cluster never exceeds the herd size; each work ends once."""
    rng = random.Random(5)
    settled: Counter[str] = Counter()
    limits: list[tuple[float, int]] = [(time.monotonic(), 3)]
    herd = HerdExecutor(3, runner=DaskRunner(client), backlog=2, max_retries=1)
    kinds: dict[str, tuple[str, Any]] = {}
    done = threading.Event()

    def submit() -> None:
        local = random.Random(3)
        for n in range(100):
            kind = local.choice(["ok"] * 8 + ["retry", "fail", "cancel"])
            fault = kind if kind in ("retry", "fail") else ""
            future = herd.submit(rw.span, 0.005, fault, str(tmp_path / f"{n}"))
            future.add_done_callback(lambda f: settled.update([f.id]))  # type: ignore[attr-defined]
            if kind == "cancel":
                future.cancel()
            kinds[future.id] = (kind, future)
        done.set()

    submitter = threading.Thread(target=submit)
    submitter.start()
    while not done.wait(0.1):
        size = rng.choice([1, 2, 3, 4])
        if size >= herd.herd_size:
            limits.append((time.monotonic(), size))
            herd.herd_size = size
        else:
            herd.herd_size = size
            assert wait_until(lambda: herd.stats().busy <= size, timeout=60)  # noqa: B023
            limits.append((time.monotonic(), size))
    submitter.join(timeout=60)
    herd.shutdown(wait=True)
    assert settled == dict.fromkeys(kinds, 1)
    stats = herd.stats()
    assert stats.submitted == 100 == stats.succeeded + stats.failed + stats.cancelled
    spans = [f.result() for _, f in kinds.values() if not f.cancelled() and not f.exception()]
    assert len(spans) == stats.succeeded
    times = [t for t, _ in limits]
    for _, start, _ in spans:
        limit = limits[bisect.bisect_right(times, start) - 1][1]
        assert sum(s <= start < e for _, s, e in spans) <= limit
