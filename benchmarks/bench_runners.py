"""Process gophers against ProcessPoolExecutor, loky and the thread herd.

Four figures, each from one run, as ratios where there is an anchor:

- cpu: W CPU-bound pure-Python works of about 5 ms each on 2 workers, through
  ``map``: the process herd's wall time against ProcessPoolExecutor's and loky's (the
  same map), and its throughput against the thread herd's (the GIL's one core);
- noop: the cost of a task that does nothing, submit all then wait for all, against
  ProcessPoolExecutor's;
- resize: a process herd busy with 10 ms works resized 2 -> 1 -> 2: the time from the
  resize until 1 process is busy, then until 2 are (a process start included);
- channel: one round trip of a small message between the parent and a worker process
  over a pipe of its own (what a gopher uses), against the pair of shared queues a
  pool's workers share (``multiprocessing.SimpleQueue`` and ``Queue``).

Pools are made and warmed (every worker process started) before the clock; rounds
alternate the order of the contenders.

Usage: ``python benchmarks/bench_runners.py [--quick]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from herdexec import HerdExecutor

CPU_THREAD_TARGET = 1.8  # process herd throughput at least this times the thread herd's
PPE_TARGET = 1.0  # process herd time at most this times ProcessPoolExecutor's
# A smoke run's settings (``--quick``, here and in run_all).
QUICK: dict[str, Any] = {
    "works": 200,
    "rounds": 1,
    "noop_tasks": 500,
    "resize_rounds": 1,
    "trips": 500,
}


def burn(iterations: int) -> int:
    """Pure-Python CPU work, holding the GIL throughout."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def noop(value: object = None) -> object:
    return value


def stamp(seconds: float) -> tuple[int, float, float]:
    """Busy ``seconds``; its process and when it ran, on the machine-wide monotonic clock."""
    import os  # noqa: PLC0415

    started = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), started, time.monotonic()


def calibrate(milliseconds: float) -> int:
    """Iterations of :func:`burn` that take about ``milliseconds`` on one core here."""
    burn(10_000)
    best = min(_timed(burn, 200_000) for _ in range(5))
    return max(1, round(200_000 * milliseconds / 1000 / best))


def _timed(fn: Callable[[int], object], arg: int) -> float:
    started = time.perf_counter()
    fn(arg)
    return time.perf_counter() - started


def make(kind: str, workers: int) -> Executor:
    if kind == "process herd":
        return HerdExecutor(workers, runner="process", backlog=None, registry=None)
    if kind == "thread herd":
        return HerdExecutor(workers, backlog=None, registry=None)
    if kind == "ProcessPoolExecutor":
        return ProcessPoolExecutor(workers)
    if kind == "loky":
        import loky  # noqa: PLC0415  (the bench extra)

        return loky.ProcessPoolExecutor(workers)  # type: ignore[no-any-return]
    raise ValueError(kind)


def warm(pool: Executor, workers: int) -> None:
    """Start every worker: ``workers`` tasks at once, each long enough to need its own."""
    for future in [pool.submit(time.sleep, 0.05) for _ in range(2 * workers)]:
        future.result()


def cpu_round(kind: str, workers: int, works: int, iterations: int) -> float:
    with make(kind, workers) as pool:
        warm(pool, workers)
        _common.warm_up()
        started = time.perf_counter()
        for _ in pool.map(burn, [iterations] * works):
            pass
        return time.perf_counter() - started


def noop_round(kind: str, workers: int, tasks: int) -> float:
    with make(kind, workers) as pool:
        warm(pool, workers)
        _common.warm_up()
        started = time.perf_counter()
        futures = [pool.submit(noop) for _ in range(tasks)]
        for future in futures:
            future.result()
        return (time.perf_counter() - started) / tasks


def resize_round(work_s: float = 0.01, settle_s: float = 0.4) -> tuple[float, float]:
    """Shrink 2 -> 1 and grow 1 -> 2 under load: seconds until 1, then 2, are busy."""
    herd = HerdExecutor(2, runner="process", registry=None)
    warm(herd, 2)
    futures: list[Future[tuple[int, float, float]]] = []
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            futures.append(herd.submit(stamp, work_s))

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(settle_s)
    shrunk = time.monotonic()
    herd.herd_size = 1
    time.sleep(settle_s)
    grown = time.monotonic()
    herd.herd_size = 2
    time.sleep(settle_s)
    stop.set()
    feeder.join()
    herd.shutdown()
    spans = [future.result() for future in futures]

    def running(at: float) -> int:
        return sum(start <= at < end for _, start, end in spans)

    # The last moment two ran at once after the shrink: when the surplus one's work ended.
    ends = [end for _, _, end in spans if shrunk < end < grown and running(end - 1e-6) >= 2]
    shrink = max(ends, default=shrunk) - shrunk
    # The first moment two ran at once after the growth.
    starts = sorted(start for _, start, _ in spans if start >= grown and running(start) >= 2)
    grow = starts[0] - grown if starts else float("nan")
    return shrink, grow


def echo(conn: Connection) -> None:
    while True:
        data = conn.recv_bytes()
        if not data:
            return
        conn.send_bytes(pickle.dumps(pickle.loads(data), 5))


def echo_queues(inbox: Any, outbox: Any) -> None:
    while True:
        item = inbox.get()
        if item is None:
            return
        outbox.put(item)


def channel_round(kind: str, trips: int) -> float:
    """Seconds per round trip of a small tuple to a worker process and back."""
    context = multiprocessing.get_context("forkserver")
    message = (noop, (1, 2), None, False)
    if kind == "pipe":
        ours, theirs = context.Pipe()
        process = context.Process(target=echo, args=(theirs,))
        process.start()
        theirs.close()
        ours.send_bytes(pickle.dumps(message, 5))
        ours.recv_bytes()
        started = time.perf_counter()
        for _ in range(trips):
            ours.send_bytes(pickle.dumps(message, 5))
            pickle.loads(ours.recv_bytes())
        elapsed = time.perf_counter() - started
        ours.send_bytes(b"")
        process.join()
        ours.close()
        return elapsed / trips
    queue_type = context.SimpleQueue if kind == "SimpleQueue pair" else context.Queue
    inbox, outbox = queue_type(), queue_type()
    process = context.Process(target=echo_queues, args=(inbox, outbox))
    process.start()
    inbox.put(message)
    outbox.get()
    started = time.perf_counter()
    for _ in range(trips):
        inbox.put(message)
        outbox.get()
    elapsed = time.perf_counter() - started
    inbox.put(None)
    process.join()
    for q in (inbox, outbox):
        q.close()
    return elapsed / trips


CPU_KINDS = ("process herd", "ProcessPoolExecutor", "loky", "thread herd")
NOOP_KINDS = ("process herd", "ProcessPoolExecutor", "loky")
CHANNELS = ("pipe", "SimpleQueue pair", "Queue pair")


def measure(
    works: int = 2000,
    work_ms: float = 5.0,
    workers: int = 2,
    rounds: int = 3,
    noop_tasks: int = 5000,
    resize_rounds: int = 5,
    trips: int = 5000,
) -> dict[str, Any]:
    iterations = calibrate(work_ms)
    loads = [_common.load()]
    cpu: dict[str, list[float]] = {kind: [] for kind in CPU_KINDS}
    noops: dict[str, list[float]] = {kind: [] for kind in NOOP_KINDS}
    channels: dict[str, list[float]] = {kind: [] for kind in CHANNELS}
    for index in range(rounds):
        order = CPU_KINDS if index % 2 == 0 else CPU_KINDS[::-1]
        for kind in order:
            cpu[kind].append(cpu_round(kind, workers, works, iterations))
        for kind in NOOP_KINDS if index % 2 == 0 else NOOP_KINDS[::-1]:
            noops[kind].append(noop_round(kind, workers, noop_tasks))
        for kind in CHANNELS:
            channels[kind].append(channel_round(kind, trips))
        loads.append(_common.load())
        _common.progress(f"runners: round {index + 1}/{rounds} done (load {loads[-1]:.2f})")
    resizes = [resize_round() for _ in range(resize_rounds)]
    cpu_s = {kind: _common.median(times) for kind, times in cpu.items()}
    noop_s = {kind: _common.median(times) for kind, times in noops.items()}
    herd, thread = cpu_s["process herd"], cpu_s["thread herd"]
    ppe = cpu_s["ProcessPoolExecutor"]
    return {
        "works": works,
        "work_ms": work_ms,
        "iterations": iterations,
        "workers": workers,
        "rounds": rounds,
        "load": loads,
        "cpu_s": cpu_s,
        "cpu_samples_s": cpu,
        "cpu_vs_thread": thread / herd,
        "cpu_vs_ppe": herd / ppe,
        "cpu_vs_loky": herd / cpu_s["loky"],
        "cpu_ok_thread": thread / herd >= CPU_THREAD_TARGET,
        "cpu_ok_ppe": herd / ppe <= PPE_TARGET,
        "noop_tasks": noop_tasks,
        "noop_us": {kind: 1e6 * s for kind, s in noop_s.items()},
        "noop_samples_us": {kind: [1e6 * s for s in v] for kind, v in noops.items()},
        "noop_vs_ppe": noop_s["process herd"] / noop_s["ProcessPoolExecutor"],
        "noop_ok": noop_s["process herd"] / noop_s["ProcessPoolExecutor"] <= PPE_TARGET,
        "resize_ms": {
            "shrink_2_to_1": 1e3 * statistics.median(s for s, _ in resizes),
            "grow_1_to_2": 1e3 * statistics.median(g for _, g in resizes),
        },
        "resize_samples_ms": [[1e3 * s, 1e3 * g] for s, g in resizes],
        "channel_us": {kind: 1e6 * _common.median(v) for kind, v in channels.items()},
    }


def table(r: dict[str, Any]) -> str:
    cpu = r["cpu_s"]
    rows = [
        (
            kind,
            f"{cpu[kind]:.2f}",
            f"{r['works'] / cpu[kind]:.0f}",
            f"{cpu['process herd'] / cpu[kind]:.2f}",
        )
        for kind in CPU_KINDS
    ]
    parts = [
        f"CPU-bound: {r['works']} pure-Python works of ~{r['work_ms']:g} ms on"
        f" {r['workers']} workers through map(), median of {r['rounds']} rounds",
        _common.markdown(("pool", "wall s", "works/s", "process herd time / this"), rows),
        _common.markdown(
            ("figure", "ratio", "target"),
            [
                (
                    "process herd throughput / thread herd's",
                    f"{r['cpu_vs_thread']:.2f}",
                    f">= {CPU_THREAD_TARGET} " + _common.verdict(r["cpu_ok_thread"]),
                ),
                (
                    "process herd time / ProcessPoolExecutor's",
                    f"{r['cpu_vs_ppe']:.2f}",
                    f"<= {PPE_TARGET} " + _common.verdict(r["cpu_ok_ppe"]),
                ),
                ("process herd time / loky's", f"{r['cpu_vs_loky']:.2f}", ""),
                (
                    "no-op per-task cost / ProcessPoolExecutor's",
                    f"{r['noop_vs_ppe']:.2f}",
                    f"<= {PPE_TARGET} " + _common.verdict(r["noop_ok"]),
                ),
            ],
            "lrl",
        ),
        f"No-op tasks, {r['noop_tasks']} submitted then waited for, per-task cost:",
        _common.markdown(
            ("pool", "µs per task"), [(k, f"{v:.1f}") for k, v in r["noop_us"].items()]
        ),
        "Resizing a busy process herd (10 ms works), median:",
        _common.markdown(
            ("resize", "ms until that many processes are busy"),
            [
                ("2 -> 1", f"{r['resize_ms']['shrink_2_to_1']:.1f}"),
                ("1 -> 2 (starts a process)", f"{r['resize_ms']['grow_1_to_2']:.1f}"),
            ],
        ),
        "One round trip to a worker process and back (a 4-tuple):",
        _common.markdown(("channel", "µs"), [(k, f"{v:.1f}") for k, v in r["channel_us"].items()]),
    ]
    return "\n\n".join(parts)


def ok(result: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every figure with a target, for run_all's summary."""
    return [
        (
            f"process herd / thread herd throughput: {result['cpu_vs_thread']:.2f}x",
            result["cpu_ok_thread"],
        ),
        (
            f"process herd / ProcessPoolExecutor time: {result['cpu_vs_ppe']:.2f}x",
            result["cpu_ok_ppe"],
        ),
        (f"no-op per task / ProcessPoolExecutor: {result['noop_vs_ppe']:.2f}x", result["noop_ok"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--works", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(**(QUICK if args.quick else {"works": args.works, "rounds": args.rounds}))
    print(table(result))
    return 0 if all(passed for _, passed in ok(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
