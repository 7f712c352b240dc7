"""How cost grows with work: per-task overhead at 10^3, 10^4 and 10^5 tasks, and memory
with 10^5 finished futures held, then released.

- Overhead: no-op tasks on 8 workers, herd (both modes) and ThreadPoolExecutor
  interleaved as in bench_overhead, two ways: submit+result (every future held until
  the end, so memory grows with the tasks) and streamed (at most 1,000 futures in
  flight, so it does not). At 10^3 tasks a round times ten runs and keeps their median,
  so that every size gets 10^4 tasks or more per round. *Growth* is the per-task cost at
  10^5 over that at 10^3: it must stay flat (target: at most 1.25 for the herd), the
  pool's growth beside it.
- Memory: each pool in a fresh interpreter, warm (threads started, garbage collected):
  the baseline, then 10^5 no-op tasks submitted and finished with their futures held,
  then the futures dropped and garbage collected, then (glibc) ``malloc_trim(0)`` to
  hand the freed memory back to the system. Twice: once reading RSS (psutil), once
  reading the Python heap (tracemalloc, which would disturb RSS). It must return to
  baseline (targets: what stays on the heap is under 1 % of what the futures held, and
  the RSS once trimmed under 5 % of what they held).

Usage: ``python benchmarks/bench_growth.py [--rounds 5] [--sizes 1000 10000 100000]``
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from benchmarks.bench_overhead import MODES, make_pool, noop, per_task_seconds, start_threads

WORKERS = 8
WORKLOADS = ("submit+result", "streamed")
TARGET_GROWTH = 1.25  # per-task cost at the largest size over the smallest, at most
TARGET_RETAINED = 0.01  # of the heap the futures held, at most, once they are released
TARGET_RSS_TRIMMED = 0.05  # of the RSS they held, at most, once released and trimmed


def measure_overhead(
    sizes: Sequence[int] = (1000, 10_000, 100_000),
    rounds: int = 5,
    modes: Sequence[str] = tuple(MODES),
    workloads: Sequence[str] = WORKLOADS,
) -> dict[str, Any]:
    configs = [(wl, mode, n) for wl in workloads for mode in modes for n in sizes]
    samples: dict[tuple[str, str, int], dict[str, list[float]]] = {
        config: {"pool": [], "herd": []} for config in configs
    }
    for index in range(rounds):
        for workload, mode, tasks in configs:
            batches = max(1, 10_000 // tasks)
            for kind in ("pool", "herd") if index % 2 == 0 else ("herd", "pool"):
                times = per_task_seconds(kind, WORKERS, mode, workload, tasks, batches)
                samples[workload, mode, tasks][kind].append(_common.median(times))
        _common.progress(f"growth: round {index + 1}/{rounds} done (load {_common.load():.2f})")
    rows = []
    for (workload, mode, tasks), times in samples.items():
        pool_us = _common.median(times["pool"]) * 1e6
        herd_us = _common.median(times["herd"]) * 1e6
        rows.append(
            {
                "workload": workload,
                "tasks": tasks,
                "mode": mode,
                "pool_us": pool_us,
                "herd_us": herd_us,
                "ratio": herd_us / pool_us,
                "pool_samples_us": [t * 1e6 for t in times["pool"]],
                "herd_samples_us": [t * 1e6 for t in times["herd"]],
            }
        )
    growth = []
    for workload, mode, _ in configs[:: len(sizes)]:
        first, last = (
            r
            for r in rows
            if (r["workload"], r["mode"]) == (workload, mode)
            and r["tasks"] in (sizes[0], sizes[-1])
        )
        herd, pool = last["herd_us"] / first["herd_us"], last["pool_us"] / first["pool_us"]
        growth.append(
            {
                "workload": workload,
                "mode": mode,
                "pool": pool,
                "herd": herd,
                "ok": herd <= TARGET_GROWTH,
            }
        )
    return {"sizes": list(sizes), "rounds": rounds, "rows": rows, "growth": growth}


def memory_round(kind: str, tasks: int, traced: bool) -> dict[str, float]:
    """In a fresh process: bytes above baseline with ``tasks`` finished futures held, and
    once they are dropped; the RSS, or with ``traced`` the traced Python heap."""
    with make_pool(kind, WORKERS, "default") as pool:
        start_threads(pool, WORKERS)
        for _ in range(2000):
            pool.submit(noop).result()
        if traced:
            tracemalloc.start()
        gc.collect()

        def reading() -> int:
            return tracemalloc.get_traced_memory()[0] if traced else _common.rss()

        before = reading()
        futures = [pool.submit(noop) for _ in range(tasks)]
        for future in futures:
            future.result()
        gc.collect()
        held = reading()
        del futures, future
        gc.collect()
        after = reading()
        trimmed = after
        if not traced and _malloc_trim is not None:
            _malloc_trim(0)
            trimmed = reading()
        if traced:
            tracemalloc.stop()
    return {"held": held - before, "after": after - before, "trimmed": trimmed - before}


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, which hands freed heap pages back to the system."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_malloc_trim()


def measure_memory(tasks: int = 100_000, rounds: int = 3) -> dict[str, Any]:
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        "rss": {"pool": [], "herd": []},
        "traced": {"pool": [], "herd": []},
    }
    for index in range(rounds):
        for reading in samples:
            for kind in ("pool", "herd") if index % 2 == 0 else ("herd", "pool"):
                samples[reading][kind].append(
                    _common.in_child(
                        "bench_growth:memory_round",
                        kind=kind,
                        tasks=tasks,
                        traced=reading == "traced",
                    )
                )
        _common.progress(f"memory: round {index + 1}/{rounds} done (load {_common.load():.2f})")
    rows = []
    for reading, kinds in samples.items():
        for stage in ("held", "after") if reading == "traced" else ("held", "after", "trimmed"):
            pool = _common.median(s[stage] for s in kinds["pool"]) / 2**20
            herd = _common.median(s[stage] for s in kinds["herd"]) / 2**20
            held = _common.median(s["held"] for s in kinds["herd"]) / 2**20
            ok = None
            if reading == "traced" and stage == "after":
                ok = herd <= TARGET_RETAINED * held
            elif stage == "trimmed" and _malloc_trim is not None:
                ok = herd <= TARGET_RSS_TRIMMED * held
            rows.append(
                {
                    "reading": reading,
                    "stage": stage,
                    "pool_mib": pool,
                    "herd_mib": herd,
                    "ratio": herd / pool if pool > 0.05 else None,
                    "ok": ok,
                }
            )
    return {"tasks": tasks, "rounds": rounds, "rows": rows, "samples": samples}


def measure(
    sizes: Sequence[int] = (1000, 10_000, 100_000),
    rounds: int = 5,
    memory_rounds: int = 3,
) -> dict[str, Any]:
    loads = [_common.load()]
    overhead = measure_overhead(sizes, rounds)
    loads.append(_common.load())
    memory = measure_memory(sizes[-1], memory_rounds)
    loads.append(_common.load())
    return {"overhead": overhead, "memory": memory, "load": loads}


MEMORY_LABELS = {
    ("rss", "held"): "RSS, {n} finished futures held",
    ("rss", "after"): "RSS, after releasing them + gc",
    ("rss", "trimmed"): "RSS, after that + malloc_trim(0)",
    ("traced", "held"): "Python heap (tracemalloc), futures held",
    ("traced", "after"): "Python heap (tracemalloc), after releasing + gc",
}


def table(result: dict[str, Any]) -> str:
    over, memory = result["overhead"], result["memory"]
    head = (
        f"Cost with work: no-op tasks on {WORKERS} workers, median of {over['rounds']} rounds;"
        f" target: growth (per-task cost at {over['sizes'][-1]} over {over['sizes'][0]} tasks)"
        f" <= {TARGET_GROWTH:.2f}"
    )
    rows = [
        (
            r["workload"],
            r["tasks"],
            r["mode"],
            f"{r['pool_us']:.2f}",
            f"{r['herd_us']:.2f}",
            f"{r['ratio']:.2f}",
            "",
        )
        for r in over["rows"]
    ]
    rows += [
        (
            g["workload"],
            f"growth {over['sizes'][-1]} / {over['sizes'][0]}",
            g["mode"],
            f"{g['pool']:.2f}x",
            f"{g['herd']:.2f}x",
            f"{g['herd'] / g['pool']:.2f}",
            _common.verdict(g["ok"]),
        )
        for g in over["growth"]
    ]
    headers = ("workload", "tasks", "herd mode", "ThreadPoolExecutor µs/task")
    headers += ("HerdExecutor µs/task", "herd/pool", "target")
    first = head + "\n\n" + _common.markdown(headers, rows, "lrlrrrl")
    head = (
        f"Memory: {memory['tasks']} finished futures on {WORKERS} workers (herd: default"
        f" mode), MiB above the warm baseline, median of {memory['rounds']} fresh processes;"
        f" targets: heap left after release <= {TARGET_RETAINED:.0%} of what was held,"
        f" RSS left after malloc_trim <= {TARGET_RSS_TRIMMED:.0%} of what was held"
    )
    rows = [
        (
            MEMORY_LABELS[r["reading"], r["stage"]].format(n=memory["tasks"]),
            f"{r['pool_mib']:.2f}",
            f"{r['herd_mib']:.2f}",
            "" if r["ratio"] is None else f"{r['ratio']:.2f}",
            _common.verdict(r["ok"]),
        )
        for r in memory["rows"]
    ]
    headers = ("MiB above baseline", "ThreadPoolExecutor", "HerdExecutor", "herd/pool", "target")
    return first + "\n\n" + head + "\n\n" + _common.markdown(headers, rows, "lrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.sizes, args.rounds, args.memory_rounds)
    print(table(result))
    failed = [g for g in result["overhead"]["growth"] if not g["ok"]]
    failed += [r for r in result["memory"]["rows"] if r["ok"] is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
