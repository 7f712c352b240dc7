"""Per-task overhead of HerdExecutor against ThreadPoolExecutor, side by side.

For each worker count and mode, both pools run the same no-op tasks in the same process,
interleaved round by round (the order swapped every round), and the table shows the
median per-task cost of each and their ratio (herd / pool; below 1.00 the herd is
faster). Two workloads:

- submit+result: submit every task, then wait for every future;
- map: ``list(pool.map(fn, range(n)))``.

Every round makes fresh pools, starts all their threads (each worker blocks on a barrier
until every one is up), runs a short untimed warm-up, collects garbage, then times.
The pool is the anchor in both modes; only the herd's ``backlog`` changes.

Usage: ``python benchmarks/bench_overhead.py [--tasks 30000] [--rounds 5] [--workers 1 8 64]``
"""

from __future__ import annotations

import argparse
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
TARGET = 1.10  # the ratio not to exceed...
TARGET_WORKERS = (8, 64)  # ...at these worker counts


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


def measure(
    workers: Sequence[int] = (1, 8, 64),
    tasks: int = 30_000,
    rounds: int = 5,
    modes: Sequence[str] = tuple(MODES),
    workloads: Sequence[str] = ("submit+result", "map"),
) -> dict[str, Any]:
    """Every workload x worker count x mode, ``rounds`` interleaved rounds of each.

    Rounds are the outer loop, so that a disturbance of the machine hits one round of
    every figure rather than every round of one, and the medians shed it.
    """
    configs = [(wl, n, mode) for wl in workloads for n in workers for mode in modes]
    samples: dict[tuple[str, int, str], dict[str, list[float]]] = {
        config: {"pool": [], "herd": []} for config in configs
    }
    loads = [_common.load()]
    for index in range(rounds):
        for config in configs:
            kinds = ("pool", "herd") if index % 2 == 0 else ("herd", "pool")
            for kind in kinds:
                samples[config][kind] += per_task_seconds(
                    kind, config[1], config[2], config[0], tasks
                )
        loads.append(_common.load())
        _common.progress(f"overhead: round {index + 1}/{rounds} done (load {loads[-1]:.2f})")
    rows = []
    for (workload, count, mode), times in samples.items():
        pool_us = _common.median(times["pool"]) * 1e6
        herd_us = _common.median(times["herd"]) * 1e6
        ratio = herd_us / pool_us
        ok = ratio <= TARGET if count in TARGET_WORKERS else None
        rows.append(
            {
                "workload": workload,
                "workers": count,
                "mode": mode,
                "pool_us": pool_us,
                "herd_us": herd_us,
                "ratio": ratio,
                "ok": ok,
                "pool_samples_us": [t * 1e6 for t in times["pool"]],
                "herd_samples_us": [t * 1e6 for t in times["herd"]],
            }
        )
    return {"tasks": tasks, "rounds": rounds, "load": loads, "rows": rows}


def table(result: dict[str, Any]) -> str:
    head = (
        f"Per-task overhead: {result['tasks']} no-op tasks, median of {result['rounds']}"
        f" rounds; target herd/pool <= {TARGET:.2f} at {' and '.join(map(str, TARGET_WORKERS))}"
        " workers"
    )
    rows = [
        (
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
    headers = ("workload", "workers", "herd mode", "ThreadPoolExecutor µs/task")
    headers += ("HerdExecutor µs/task", "herd/pool", "target")
    return head + "\n\n" + _common.markdown(headers, rows, "lrlrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.workers, args.tasks, args.rounds)
    print(table(result))
    return 1 if any(r["ok"] is False for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
