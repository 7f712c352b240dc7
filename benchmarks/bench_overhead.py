"""Per-task overhead of HerdExecutor against ThreadPoolExecutor, side by side.

For each worker count and mode, both pools run the same no-op tasks in the same process,
interleaved round by round, and the table shows the median per-task cost of each and
their ratio (herd / pool; below 1.00 the herd is faster). Two workloads:

- submit+result: submit every task, then wait for every future;
- map: ``list(pool.map(fn, range(n)))``.

Usage: ``python benchmarks/bench_overhead.py [--tasks 30000] [--rounds 5] [--workers 8 64]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from herdexec import HerdExecutor

MODES = {"default": 0, "backlog=None": None}


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


WORKLOADS: dict[str, Callable[[Executor, int], None]] = {
    "submit+result": submit_and_wait,
    "map": map_all,
}


def per_task_seconds(make: Callable[[], Executor], workload: str, tasks: int) -> float:
    """One round: a fresh pool, a warm-up, then the timed run."""
    run = WORKLOADS[workload]
    with make() as pool:
        run(pool, min(tasks, 2000))  # start the threads before the clock does
        started = time.perf_counter()
        run(pool, tasks)
        return (time.perf_counter() - started) / tasks


@dataclass
class Row:
    workload: str
    workers: int
    mode: str
    pool_us: float
    herd_us: float

    @property
    def ratio(self) -> float:
        return self.herd_us / self.pool_us


def measure(workers: Iterable[int], tasks: int, rounds: int) -> list[Row]:
    rows = []
    for workload in WORKLOADS:
        for count in workers:
            for mode, backlog in MODES.items():
                pool_times, herd_times = [], []
                for _ in range(rounds):  # interleaved, so drift hits both alike
                    pool_times.append(
                        per_task_seconds(lambda c=count: ThreadPoolExecutor(c), workload, tasks)
                    )
                    herd_times.append(
                        per_task_seconds(
                            lambda c=count, b=backlog: HerdExecutor(c, backlog=b),
                            workload,
                            tasks,
                        )
                    )
                rows.append(
                    Row(
                        workload,
                        count,
                        mode,
                        statistics.median(pool_times) * 1e6,
                        statistics.median(herd_times) * 1e6,
                    )
                )
                print(f"  {rows[-1].workload} {count} workers {mode}: done", file=sys.stderr)
    return rows


def machine() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}),"
        f" {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    )


def table(rows: list[Row], tasks: int, rounds: int) -> str:
    lines = [
        f"{tasks} no-op tasks, median of {rounds} rounds; {machine()}",
        "",
        "| workload | workers | mode | ThreadPoolExecutor µs/task | HerdExecutor µs/task | ratio |",
        "|---|---:|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r.workload} | {r.workers} | {r.mode} | {r.pool_us:.2f} | {r.herd_us:.2f}"
        f" | {r.ratio:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--target", type=float, default=1.10, help="the ratio not to exceed")
    args = parser.parse_args(argv)
    rows = measure(args.workers, args.tasks, args.rounds)
    print(table(rows, args.tasks, args.rounds))
    slow = [r for r in rows if r.ratio > args.target]
    for r in slow:
        print(f"over target: {r.workload} {r.workers} {r.mode}: {r.ratio:.2f}", file=sys.stderr)
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
