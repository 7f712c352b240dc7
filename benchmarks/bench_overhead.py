"""Per-task overhead of HerdExecutor against ThreadPoolExecutor, side by side, and at one
worker against the floor: a bare ping-pong between two threads.

For each worker count, herd mode and kind of pool, both executors run the same no-op
tasks in the same process, interleaved round by round (the order swapped every round),
and the table shows the median per-task cost of each and their ratio (herd / pool;
below 1.00 the herd is faster). Two workloads:

- submit+result: submit every task, then wait for every future;
- map: ``list(pool.map(fn, range(n)))``.

Two kinds of pool, a new one every round:

- warm: all its threads started before the clock (each worker blocks on a barrier
  until every one is up), a short untimed warm-up, garbage collected, then timed;
- fresh: timed from the constructor to the end of its ``with`` block, as a program's
  first pool is: threads start as the tasks come, and shutdown(wait=True) joins them.

The pool is the anchor in every row; only the herd's ``backlog`` changes. The floor for
one worker is the ping-pong: a thread hands a no-op to another through one
``queue.SimpleQueue`` and waits for its result on a second one, the least that handing
work to a thread and waiting for it can cost in Python. It runs in the same rounds, and
once more carrying a stdlib ``Future`` each way, which is what any executor's task
costs at the least.

Usage: ``python benchmarks/bench_overhead.py [--tasks 30000] [--rounds 5] [--workers 1 8 64]``
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from herdexec import HerdExecutor

MODES: dict[str, int | None] = {"default": 0, "backlog=None": None}
POOLS = ("warm", "fresh")
TARGET = 1.10  # the ratio not to exceed...
TARGET_WORKERS = (8, 64)  # ...at these worker counts
# Stricter, where a program meets the herd first: its default mode, on a fresh pool.
TARGET_FRESH = 1.00
TARGET_FRESH_WORKERS = 8
TARGET_FLOOR = 1.15  # the herd of one, default mode, over the ping-pong, at most


def noop() -> None:
    """The task: nothing, so that only the pool's own cost is measured."""


def identity(value: int) -> int:
    return value


def submit_and_wait(pool: Executor, tasks: int) -> None:
    futures = [pool.submit(noop) for _ in range(tasks)]
    for future in futures:
        future.result()


def map_all(pool: Executor, tasks: int) -> None:
    for _ in pool.map(identity, range(tasks)):
        pass


def submit_streamed(pool: Executor, tasks: int, window: int = 1000) -> None:
    """submit+result holding at most ``window`` futures: the oldest is waited for before
    the next submit, so that memory does not grow with ``tasks``."""
    futures: deque[Future[None]] = deque()
    for _ in range(tasks):
        if len(futures) == window:
            futures.popleft().result()
        futures.append(pool.submit(noop))
    for future in futures:
        future.result()


WORKLOADS: dict[str, Callable[[Executor, int], None]] = {
    "submit+result": submit_and_wait,
    "map": map_all,
    "streamed": submit_streamed,  # for bench_growth
}


def make_pool(kind: str, workers: int, mode: str) -> Executor:
    if kind == "pool":
        return ThreadPoolExecutor(workers)
    return HerdExecutor(workers, backlog=MODES[mode], registry=None)


def start_threads(pool: Executor, workers: int) -> None:
    """Make the pool start every one of its threads: each task waits for all the others."""
    barrier = threading.Barrier(workers + 1)
    futures = [pool.submit(barrier.wait) for _ in range(workers)]
    barrier.wait()
    for future in futures:
        future.result()


def per_task_seconds(
    kind: str, workers: int, mode: str, workload: str, tasks: int, batches: int = 1
) -> list[float]:
    """One round on a fresh, warm pool: the seconds per task of ``batches`` timed runs."""
    run = WORKLOADS[workload]
    times = []
    with make_pool(kind, workers, mode) as pool:
        start_threads(pool, workers)
        run(pool, min(tasks, 2000))  # untimed: warm the code paths
        for _ in range(batches):
            _common.warm_up()
            started = time.perf_counter()
            run(pool, tasks)
            times.append((time.perf_counter() - started) / tasks)
    return times


def fresh_per_task_seconds(kind: str, workers: int, mode: str, workload: str, tasks: int) -> float:
    """One round on a pool made inside the clock: its whole ``with`` block, per task."""
    run = WORKLOADS[workload]
    _common.warm_up()
    started = time.perf_counter()
    with make_pool(kind, workers, mode) as pool:
        run(pool, tasks)
    return (time.perf_counter() - started) / tasks


def ping_pong_seconds(tasks: int, carry: bool = False) -> float:
    """The floor for one worker: the seconds per round trip of a no-op handed to another
    thread through one SimpleQueue, its result back through a second.

    With ``carry``, each round trip also carries a ``concurrent.futures.Future``, made
    here, started and settled there, read here: what any executor's task costs beyond
    the hand-off itself.
    """
    there: queue.SimpleQueue[Callable[[], object] | Future[object] | None] = queue.SimpleQueue()
    back: queue.SimpleQueue[object] = queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) is not None:
            if isinstance(item, Future):
                item.set_running_or_notify_cancel()
                noop()
                item.set_result(None)
                back.put(None)
            else:
                back.put(item())

    def round_trip() -> None:
        if carry:
            future: Future[object] = Future()
            there.put(future)
            back.get()
            future.result()
        else:
            there.put(noop)
            back.get()

    thread = threading.Thread(target=echo)
    thread.start()
    try:
        for _ in range(min(tasks, 2000)):  # untimed: warm, as the pools are
            round_trip()
        _common.warm_up()
        started = time.perf_counter()
        for _ in range(tasks):
            round_trip()
        return (time.perf_counter() - started) / tasks
    finally:
        there.put(None)
        thread.join()


def one_round(kind: str, config: tuple[str, int, str, str], tasks: int) -> float:
    workload, workers, mode, pools = config
    if pools == "fresh":
        return fresh_per_task_seconds(kind, workers, mode, workload, tasks)
    return per_task_seconds(kind, workers, mode, workload, tasks)[0]


def target(workers: int, mode: str, pools: str) -> float | None:
    """The most that herd / pool may be in this row, if the row has a target."""
    if pools == "fresh" and mode == "default" and workers == TARGET_FRESH_WORKERS:
        return TARGET_FRESH
    return TARGET if workers in TARGET_WORKERS else None


def measure(
    workers: Sequence[int] = (1, 8, 64),
    tasks: int = 30_000,
    rounds: int = 5,
    modes: Sequence[str] = tuple(MODES),
    workloads: Sequence[str] = ("submit+result", "map"),
    pools: Sequence[str] = POOLS,
) -> dict[str, Any]:
    """Every workload x worker count x mode x kind of pool, and the ping-pong, ``rounds``
    interleaved rounds of each.

    Rounds are the outer loop, so that a disturbance of the machine hits one round of
    every figure rather than every round of one, and the medians shed it.
    """
    configs = [
        (wl, n, mode, p) for p in pools for wl in workloads for n in workers for mode in modes
    ]
    samples: dict[tuple[str, int, str, str], dict[str, list[float]]] = {
        config: {"pool": [], "herd": []} for config in configs
    }
    floor: list[float] = []
    carrying: list[float] = []
    loads = [_common.load()]
    for index in range(rounds):
        floor.append(ping_pong_seconds(tasks))
        carrying.append(ping_pong_seconds(tasks, carry=True))
        for config in configs:
            kinds = ("pool", "herd") if index % 2 == 0 else ("herd", "pool")
            for kind in kinds:
                samples[config][kind].append(one_round(kind, config, tasks))
        loads.append(_common.load())
        _common.progress(f"overhead: round {index + 1}/{rounds} done (load {loads[-1]:.2f})")
    floor_us = _common.median(floor) * 1e6
    carrying_us = _common.median(carrying) * 1e6
    rows = []
    for (workload, count, mode, kind_of_pool), times in samples.items():
        pool_us = _common.median(times["pool"]) * 1e6
        herd_us = _common.median(times["herd"]) * 1e6
        ratio = herd_us / pool_us
        limit = target(count, mode, kind_of_pool)
        row: dict[str, Any] = {
            "workload": workload,
            "workers": count,
            "mode": mode,
            "pools": kind_of_pool,
            "pool_us": pool_us,
            "herd_us": herd_us,
            "ratio": ratio,
            "target": limit,
            "ok": None if limit is None else ratio <= limit,
            "pool_samples_us": [t * 1e6 for t in times["pool"]],
            "herd_samples_us": [t * 1e6 for t in times["herd"]],
        }
        if count == 1:
            floor_ratio = herd_us / floor_us
            row["floor_ratio"] = floor_ratio
            row["carrying_ratio"] = herd_us / carrying_us
            row["floor_ok"] = floor_ratio <= TARGET_FLOOR if mode == "default" else None
        rows.append(row)
    return {
        "tasks": tasks,
        "rounds": rounds,
        "load": loads,
        "floor_us": floor_us,
        "floor_samples_us": [t * 1e6 for t in floor],
        "carrying_us": carrying_us,
        "carrying_samples_us": [t * 1e6 for t in carrying],
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    head = (
        f"Per-task overhead: {result['tasks']} no-op tasks, median of {result['rounds']}"
        f" rounds; target herd/pool <= {TARGET:.2f} at"
        f" {' and '.join(map(str, TARGET_WORKERS))} workers, <= {TARGET_FRESH:.2f} for"
        f" fresh pools of {TARGET_FRESH_WORKERS} in the default mode"
    )
    rows = [
        (
            r["pools"],
            r["workload"],
            r["workers"],
            r["mode"],
            f"{r['pool_us']:.2f}",
            f"{r['herd_us']:.2f}",
            f"{r['ratio']:.2f}",
            _common.verdict(r["ok"]),
        )
        for r in result["rows"]
    ]
    headers = (
        *("pools", "workload", "workers", "herd mode"),
        *("ThreadPoolExecutor µs/task", "HerdExecutor µs/task", "herd/pool", "target"),
    )
    floor = (
        f"One worker against the floor: a ping-pong through two SimpleQueues takes"
        f" {result['floor_us']:.2f} µs per round trip, {result['carrying_us']:.2f} µs when"
        " it carries a stdlib Future (made, started, settled and read), median of"
        f" {result['rounds']} rounds; target herd/ping-pong <= {TARGET_FLOOR:.2f} in the"
        " default mode"
    )
    floor_rows = [
        (
            r["pools"],
            r["workload"],
            r["mode"],
            f"{r['herd_us']:.2f}",
            f"{r['floor_ratio']:.2f}",
            f"{r['carrying_ratio']:.2f}",
            _common.verdict(r["floor_ok"]),
        )
        for r in result["rows"]
        if "floor_ratio" in r
    ]
    floor_headers = (
        *("pools", "workload", "herd mode", "HerdExecutor µs/task"),
        *("herd/ping-pong", "herd/ping-pong with a Future", "target"),
    )
    return (
        head
        + "\n\n"
        + _common.markdown(headers, rows, "llrlrrrl")
        + "\n\n"
        + floor
        + "\n\n"
        + _common.markdown(floor_headers, floor_rows, "lllrrrl")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.workers, args.tasks, args.rounds)
    print(table(result))
    missed = [r for r in result["rows"] if False in (r["ok"], r.get("floor_ok"))]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
