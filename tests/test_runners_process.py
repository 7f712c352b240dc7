"""Process gophers: each gopher runs its works in a worker process of its own.

Real worker processes throughout (forkserver, the default). Each test checks that no
worker process outlives the herd (``no_process_left``), besides what it checks itself.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import logging
import math
import multiprocessing
import os
import pickle
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import herdexec
from herdexec import BrokenHerd, HerdExecutor, HerdFuture, ProcessRunner, Status, Work, WorkerDied

from . import runner_work as rw
from .helpers import wait_until


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Every herd's worker processes have exited by the end of the test."""
    before = set(multiprocessing.active_children())
    yield
    left = set(multiprocessing.active_children()) - before
    assert not left, f"worker processes left: {left}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_works_run_in_worker_processes(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(2, runner="process")
    assert list(herd.map(rw.square, range(20))) == [n * n for n in range(20)]
    assert herd.submit(rw.add, 2, y=3).result() == 5
    pids = set(herd.map(rw.pid, range(40)))
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2
    stats = herd.stats()
    assert (stats.submitted, stats.succeeded, stats.failed) == (61, 61, 0)


def test_runner_names_and_types() -> None:
    with pytest.raises(ValueError, match=r"runner must be 'thread', 'process'.*'threads'"):
        HerdExecutor(1, runner="threads")
    with pytest.raises(TypeError, match=r"not the class ProcessRunner \(an instance is needed\)"):
        HerdExecutor(1, runner=ProcessRunner)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        HerdExecutor(1, runner=3)  # type: ignore[arg-type]


def test_process_runner_arguments() -> None:
    runner = ProcessRunner()
    default = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    assert runner.start_method == default
    assert ProcessRunner(mp_context="spawn").start_method == "spawn"
    spawn = multiprocessing.get_context("spawn")
    assert ProcessRunner(mp_context=spawn, timeout=2, max_tasks_per_child=3).timeout == 2.0
    assert repr(ProcessRunner(max_tasks_per_child=3)) == (
        f"ProcessRunner(mp_context={default!r}, max_tasks_per_child=3, timeout=None)"
    )
    with pytest.raises(ValueError, match="cannot find context for 'pigeon'"):
        ProcessRunner(mp_context="pigeon")
    with pytest.raises(TypeError, match="mp_context must be"):
        ProcessRunner(mp_context=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1, not 0"):
        ProcessRunner(max_tasks_per_child=0)
    with pytest.raises(TypeError, match="max_tasks_per_child must be an int or None, not bool"):
        ProcessRunner(max_tasks_per_child=True)
    with pytest.raises(ValueError, match="timeout must be > 0, not 0"):
        ProcessRunner(timeout=0)
    with pytest.raises(TypeError, match="timeout must be a number or None, not str"):
        ProcessRunner(timeout="1")  # type: ignore[arg-type]


def test_default_size_is_the_cpu_count(make_herd: Callable[..., HerdExecutor]) -> None:
    cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
    assert make_herd(runner="process").herd_size == (cpu_count() or 1)
    assert make_herd(runner="process", max_herd_size=1).herd_size == 1


def test_exceptions_keep_their_type_and_remote_traceback(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    herd = make_herd(1, runner="process")
    future = herd.submit(rw.fail, "boom")
    exc = future.exception()
    assert type(exc) is ValueError
    assert str(exc) == "boom"
    assert "in fail" in str(exc.__cause__)
    assert future.status is Status.FAILURE


@pytest.mark.parametrize(
    ("fn", "args", "kind", "match"),
    [
        (lambda: 1, (), (pickle.PicklingError, AttributeError), "lambda"),
        (rw.add, (threading.Lock(), 1), TypeError, "lock"),
        (rw.give_lock, (), TypeError, r"result \(lock\) could not be pickled"),
        (rw.raise_unpicklable, (), TypeError, r"exception \(Unpicklable\) could not be pickled"),
    ],
    ids=["lambda", "lock-argument", "lock-result", "unpicklable-exception"],
)
def test_what_cannot_be_pickled_fails_its_work_only(
    make_herd: Callable[..., HerdExecutor],
    fn: Callable[..., object],
    args: tuple[object, ...],
    kind: type[BaseException] | tuple[type[BaseException], ...],
    match: str,
) -> None:
    herd = make_herd(1, runner="process")
    future = herd.submit(fn, *args)
    with pytest.raises(kind, match=match):
        future.result(timeout=30)
    # The one gopher, and its process, go on.
    assert herd.submit(rw.square, 4).result(timeout=30) == 16
    assert herd.stats().failed == 1


def test_a_work_in_a_worker_process_cannot_be_given_its_herd(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    """So a work in a worker never submits to its own herd: the herd is threads and
    locks and, like a ThreadPoolExecutor, cannot be pickled. The work fails, saying so;
    the herd goes on."""
    herd = make_herd(1, runner="process")
    with pytest.raises(TypeError, match=r"^cannot pickle 'HerdExecutor' object: a herd stays"):
        herd.submit(rw.submit_square, herd, 3).result(timeout=30)
    assert herd.submit(rw.square, 3).result(timeout=30) == 9


def test_a_callback_on_a_gopher_submits_to_its_own_herd_without_waiting(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    """A process herd's works run in its workers, but its callbacks on the gophers, in
    this process: on_success submits a follow-up while its work holds the only slot."""
    followups: queue.SimpleQueue[HerdFuture[int]] = queue.SimpleQueue()

    def follow_up(work: Work) -> None:
        if work.result < 100:
            followups.put(herd.submit(rw.square, work.result))

    herd = make_herd(1, runner="process", on_success=follow_up)
    assert herd.submit(rw.square, 3).result(timeout=30) == 9
    assert followups.get(timeout=30).result(timeout=30) == 81
    assert followups.get(timeout=30).result(timeout=30) == 6561


def test_an_event_loop_hands_a_busy_process_herd_work_without_blocking(
    make_herd: Callable[..., HerdExecutor],
) -> None:
    """run_in_executor() submits on the loop's thread. The one worker waits for the loop
    to send it a byte, which the loop does only after handing the herd a second work: a
    submit that waited for the gopher would hold the loop, and the worker would wait in
    vain."""
    herd = make_herd(1, runner="process")

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            first = loop.run_in_executor(herd, rw.await_byte, listener.getsockname(), 10.0)
            second = loop.run_in_executor(herd, rw.square, 7)  # the only slot is taken
            connection, _ = await loop.sock_accept(listener)
            with connection:
                await loop.sock_sendall(connection, b"x")
                return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == ["x", 49]


def test_initializer_and_its_arguments_must_pickle() -> None:
    with pytest.raises(TypeError, match="initializer and initargs must pickle"):
        HerdExecutor(1, initializer=lambda: None, runner="process")
    with pytest.raises(TypeError, match="initializer and initargs must pickle"):
        HerdExecutor(1, initializer=print, initargs=(threading.Lock(),), runner="process")


@pytest.mark.parametrize(
    ("fn", "arg", "exitcode", "how"),
    [
        (rw.exit_with, 3, 3, "exited with code 3"),
        (rw.kill_self, signal.SIGKILL, -signal.SIGKILL, "was killed by signal SIGKILL (9)"),
        (rw.kill_self, signal.SIGTERM, -signal.SIGTERM, "was killed by signal SIGTERM (15)"),
    ],
    ids=["exit", "sigkill", "sigterm"],
)
def test_a_worker_that_dies_fails_only_its_work(
    make_herd: Callable[..., HerdExecutor],
    fn: Callable[[int], None],
    arg: int,
    exitcode: int,
    how: str,
) -> None:
    herd = make_herd(1, runner="process")
    first = herd.submit(rw.pid).result(timeout=30)
    doomed = herd.submit(fn, arg)
    after = [herd.submit(rw.pid) for _ in range(3)]  # waiting meanwhile, in the backlog
    exc = doomed.exception(timeout=30)
    assert isinstance(exc, WorkerDied)
    assert isinstance(exc, concurrent.futures.process.BrokenProcessPool)
    assert exc.exitcode == exitcode
    assert exc.pid == first
    assert exc.signal == (signal.Signals(-exitcode) if exitcode < 0 else None)
    assert str(exc) == f"the worker process (pid {first}) running work '1' {how}"
    assert pickle.loads(pickle.dumps(exc)).exitcode == exitcode
    # The gopher started a fresh process, and the works behind ran there.
    pids = {future.result(timeout=30) for future in after}
    assert len(pids) == 1
    assert first not in pids
    assert not alive(first)
    stats = herd.stats()
    assert (stats.succeeded, stats.failed, stats.herd_size) == (4, 1, 1)


def test_a_dead_worker_is_retried_when_asked(
    make_herd: Callable[..., HerdExecutor], tmp_path: Path
) -> None:
    seen: list[BaseException | None] = []
    herd = make_herd(
        1,
        runner="process",
        retry_on=WorkerDied,
        max_retries=1,
        on_retry=lambda work: seen.append(work.exception),
    )
    future = herd.submit(rw.first_time, str(tmp_path / "m"), "die")
    assert future.result(timeout=30) == "second"
    assert (future.retries, herd.stats().retried) == (1, 1)
    assert len(seen) == 1
    assert isinstance(seen[0], WorkerDied)
    assert seen[0].exitcode == 7


def test_a_work_over_its_time_is_killed_with_its_process(
    make_herd: Callable[..., HerdExecutor], tmp_path: Path
) -> None:
    herd = make_herd(1, runner=ProcessRunner(timeout=0.5))
    first = herd.submit(rw.pid).result(timeout=30)
    slow = herd.submit(rw.sleep, 60)
    with pytest.raises(TimeoutError, match=r"work '1' ran over its time limit of 0\.5 seconds"):
        slow.result(timeout=30)
    assert isinstance(slow.exception(), concurrent.futures.TimeoutError)
    assert not alive(first)
    assert herd.submit(rw.pid).result(timeout=30) != first
    # Retried when asked, in a fresh process.
    retried = make_herd(1, runner=ProcessRunner(timeout=0.5), retry_on=TimeoutError, max_retries=1)
    assert retried.submit(rw.first_time, str(tmp_path / "m"), "hang").result(timeout=30) == (
        "second"
    )


def test_initializer_runs_in_each_new_process(
    make_herd: Callable[..., HerdExecutor], tmp_path: Path
) -> None:
    herd = make_herd(
        1,
        initializer=rw.record_pid,
        initargs=(str(tmp_path),),
        runner=ProcessRunner(max_tasks_per_child=2),
    )
    pids = [herd.submit(rw.pid).result(timeout=30) for _ in range(6)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == sorted(set(pids))
    # A chunk of map() is one task.
    herd.herd_size = 0
    assert wait_until(lambda: herd.stats().idle == 0)
    herd.herd_size = 1
    before = len(list(tmp_path.iterdir()))
    assert list(herd.map(rw.square, range(12), chunksize=3)) == [n * n for n in range(12)]
    assert len(list(tmp_path.iterdir())) == before + 2


def test_an_initializer_that_raises_breaks_the_herd(
    make_herd: Callable[..., HerdExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    herd = make_herd(1, initializer=rw.initializer_fails, runner="process")
    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        first = herd.submit(rw.square, 2)
        with pytest.raises(BrokenHerd, match="initializer failed"):
            first.result(timeout=30)
    assert isinstance(first.exception().__cause__, OSError)  # type: ignore[union-attr]
    assert "Exception in initializer" in caplog.text
    assert "no such resource" in caplog.text
    with pytest.raises(BrokenHerd):
        herd.submit(rw.square, 3)


def test_gofherd_process_function_in_a_worker(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(2, process=rw.process, runner="process")
    works = [Work(f"w{n}", n - 2) for n in range(8)]
    futures = [herd.send_work(work) for work in works]
    herd.close_input()
    finished = {work.id: work for work in herd.output_chan()}
    assert sorted(finished) == sorted(work.id for work in works)
    for work, future in zip(works, futures, strict=True):
        assert finished[work.id] is work
        if work.body < 0:
            assert work.status is Status.FAILURE
            assert isinstance(future.exception(), herdexec.WorkFailed)
        else:
            assert work.status is Status.SUCCESS
            square, pid = work.result
            assert square == work.body**2
            assert pid != os.getpid()
            assert future.result() == work.result


def test_map_chunks_are_one_round_trip_each(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(2, runner="process")
    assert list(herd.map(rw.add, range(100), range(100), chunksize=7)) == [
        2 * n for n in range(100)
    ]
    assert herd.stats().submitted == math.ceil(100 / 7)
    with pytest.raises(ValueError, match="chunksize must be >= 1, not 0"):
        herd.map(rw.square, range(3), chunksize=0)
    with pytest.raises(TypeError, match="chunksize must be an int, not str"):
        herd.map(rw.square, range(3), chunksize="2")  # type: ignore[arg-type]
    # A failure in a chunk raises at its place in the results.
    results = herd.map(rw.fail, ["a", "b", "c"], chunksize=2)
    with pytest.raises(ValueError, match="a"):
        next(results)


def test_resizing_starts_and_retires_processes(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(1, runner="process")
    assert herd.submit(rw.pid).result(timeout=30)
    assert len(multiprocessing.active_children()) == 1
    herd.herd_size = 3
    pids = {f.result(timeout=30) for f in [herd.submit(rw.sleep, 0.3) for _ in range(3)]}
    assert len(pids) == 3
    assert len(multiprocessing.active_children()) == 3
    herd.herd_size = 1
    assert wait_until(lambda: len(multiprocessing.active_children()) == 1)
    herd.herd_size = 0
    assert wait_until(lambda: not multiprocessing.active_children())
    assert {p for p in pids if alive(p)} == set()


@pytest.mark.parametrize(
    ("wait", "cancel_futures"), [(True, False), (True, True), (False, False), (False, True)]
)
def test_shutdown_leaves_no_worker_process(
    wait: bool, cancel_futures: bool, tmp_path: Path
) -> None:
    herd = HerdExecutor(2, runner="process", backlog=None)
    gate = str(tmp_path / "go")
    running = [herd.submit(rw.wait_for_file, gate) for _ in range(2)]
    queued = [herd.submit(rw.square, n) for n in range(5)]
    assert wait_until(lambda: len(list(tmp_path.glob("go.started.*"))) == 2, timeout=30)
    herd.shutdown(wait=False, cancel_futures=cancel_futures)
    Path(gate).touch()
    if wait:
        herd.shutdown(wait=True)
    else:
        assert wait_until(lambda: not multiprocessing.active_children(), timeout=30)
    pids = {future.result(timeout=30) for future in running}
    assert all(future.cancelled() for future in queued) is cancel_futures
    assert not multiprocessing.active_children()
    assert not any(alive(pid) for pid in pids)
    herd.shutdown(wait=True)


SCRIPT = """
import os, sys, time
from pathlib import Path

def work(directory):
    Path(directory, f"started.{os.getpid()}.{time.monotonic_ns()}").touch()
    time.sleep(0.5)
    return os.getpid()

def main(herd, futures, directory, mode):
    while len(os.listdir(directory)) < 2:
        time.sleep(0.01)
    print("ready", flush=True)  # the test sends its SIGINT once it reads this
    if mode == "exit":  # without shutdown
        print("exiting", flush=True)
        return
    for future in futures:
        future.result()

if __name__ == "__main__":
    from herdexec import HerdExecutor
    directory, mode = sys.argv[1:]
    def say(line):  # one write: print() from two gophers at once could interleave
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    herd = HerdExecutor(2, runner="process", backlog=None,
                        on_success=lambda w: say(f"done {w.result}"))
    futures = [herd.submit(work, directory) for _ in range(4)]
    if mode != "catch":
        main(herd, futures, directory, mode)
    else:
        try:
            main(herd, futures, directory, mode)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        herd.shutdown(wait=True)
        import multiprocessing
        print("stats", herd.stats().succeeded, len(multiprocessing.active_children()), flush=True)
"""


def run_script(tmp_path: Path, mode: str, sigint: bool) -> tuple[list[str], int]:
    """Run SCRIPT in a process group of its own; with ``sigint``, Ctrl-C the whole
    group (as a terminal would) once two works run. Returns its output lines and the
    exit code, once no process of the group is left."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "marks"
    directory.mkdir()
    with subprocess.Popen(
        [sys.executable, str(script), str(directory), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    ) as child:
        assert child.stdout is not None
        # A bound on the whole run: a hang fails the test rather than stall the suite.
        watchdog = threading.Timer(60, os.killpg, (child.pid, signal.SIGKILL))
        watchdog.start()
        try:
            lines = [child.stdout.readline().strip()]
            assert lines == ["ready"]
            if sigint:
                os.killpg(child.pid, signal.SIGINT)
            lines += child.stdout.read().split("\n")[:-1]
            child.wait()
        finally:
            watchdog.cancel()
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)

    def group_gone() -> bool:
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert wait_until(group_gone, timeout=30), "a process of the group is left"
    return lines, child.returncode


def test_ctrl_c_to_the_group_leaves_the_parent_in_charge(tmp_path: Path) -> None:
    lines, code = run_script(tmp_path, "catch", sigint=True)
    # The works in hand ran to their end (the workers ignore SIGINT), those queued ran
    # after them, each counted once; then no worker process was left.
    assert lines[0] == "ready"
    assert lines[-1] == "stats 4 0"
    assert sorted(line.split()[0] for line in lines[1:-1]) == ["done"] * 4 + ["interrupted"]
    assert code == 0


def test_an_uncaught_ctrl_c_finishes_accepted_work_and_leaves_no_process(
    tmp_path: Path,
) -> None:
    lines, code = run_script(tmp_path, "raise", sigint=True)
    # As with ThreadPoolExecutor, exit waits for the accepted works.
    assert lines[0] == "ready"
    assert [line.split()[0] for line in lines[1:]] == ["done"] * 4
    assert code in (1, -signal.SIGINT, 128 + signal.SIGINT)


def test_interpreter_exit_without_shutdown_leaves_no_process(tmp_path: Path) -> None:
    lines, code = run_script(tmp_path, "exit", sigint=False)
    # Exit waits for the accepted works, as ThreadPoolExecutor's does.
    assert sorted(line.split()[0] for line in lines) == ["done"] * 4 + ["exiting", "ready"]
    assert code == 0


def test_invariants_under_resizes_deaths_and_retries(tmp_path: Path) -> None:
    """Works busy at once in worker processes never exceed the herd size; every work
    ends exactly once; the counters add up; no process is left."""
    rng = random.Random(7)
    herd = HerdExecutor(
        2, runner="process", backlog=3, max_retries=2, retry_on=WorkerDied, registry=None
    )
    # The herd size in force from each moment on, on the clock the workers stamp with.
    limits: list[tuple[float, int]] = [(time.monotonic(), 2)]
    settled: Counter[str] = Counter()
    kinds: dict[str, tuple[str, HerdFuture[tuple[int, float, float]]]] = {}
    done_submitting = threading.Event()

    def submit() -> None:
        local = random.Random(11)
        for n in range(200):
            kind = local.choice(["ok"] * 12 + ["die", "retry", "fail", "cancel"])
            fault = "" if kind in ("ok", "cancel") else kind
            future = herd.submit(rw.span, local.uniform(0.002, 0.01), fault, str(tmp_path / f"{n}"))
            future.add_done_callback(lambda f: settled.update([f.id]))  # type: ignore[attr-defined]
            if kind == "cancel":
                future.cancel()
            kinds[future.id] = (kind, future)
        done_submitting.set()

    def resize(size: int) -> None:
        """Set the herd size, and record it from the moment it holds."""
        if size >= herd.herd_size:
            limits.append((time.monotonic(), size))
            herd.herd_size = size
        else:
            herd.herd_size = size
            # Works already running finish; the lower limit holds once they have.
            assert wait_until(lambda: herd.stats().busy <= size, timeout=30)
            limits.append((time.monotonic(), size))

    submitter = threading.Thread(target=submit)
    submitter.start()
    while not done_submitting.wait(0.05):
        resize(rng.choice([0, 1, 2, 3, 4]))
    resize(3)  # from 4, the last works must finish first like any other shrink
    submitter.join(timeout=60)
    herd.shutdown(wait=True)

    assert not multiprocessing.active_children()
    assert settled == dict.fromkeys(kinds, 1)
    stats = herd.stats()
    assert stats.submitted == 200
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled
    spans = []
    for kind, future in kinds.values():
        if future.cancelled():
            assert kind == "cancel"
        elif kind == "fail":
            assert isinstance(future.exception(), ValueError)
        else:
            spans.append(future.result())
            assert future.retries == (1 if kind in ("die", "retry") else 0)
    assert stats.retried == sum(kind in ("die", "retry") for kind, _ in kinds.values())
    times = [t for t, _ in limits]
    for _, start, _ in spans:
        limit = limits[bisect.bisect_right(times, start) - 1][1]
        busy = sum(s <= start < e for _, s, e in spans)
        assert busy <= limit, (start, busy, limit)


def test_an_executor_dropped_without_shutdown_leaves_no_process() -> None:
    herd = HerdExecutor(2, runner="process", registry=None)
    pids = set(herd.map(rw.sleep, [0.1] * 4))
    threads = herd._threads
    del herd  # collected: its finalizer winds the herd down, as ThreadPoolExecutor's does
    for thread in threads:
        thread.join(timeout=30)
    assert not multiprocessing.active_children()
    assert not any(alive(pid) for pid in pids)
