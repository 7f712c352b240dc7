"""I/O-bound efficiency: W sleeping tasks on H gophers, against the bound ceil(W/H)*sleep.

No pool of H threads can run W tasks of ``sleep`` seconds each in less than
``ceil(W/H) * sleep``; efficiency is that bound over the wall time (1.00 is perfect).
ThreadPoolExecutor runs the same tasks, interleaved round by round, as a second anchor.
The timed run starts at the first submit and ends when every result is in; the H threads
are started before the clock (each blocks on a barrier until all are up).

Usage: ``python benchmarks/bench_io.py [--tasks 2000] [--sleep 0.05] [--gophers 50 200 1000]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from benchmarks.bench_overhead import MODES, make_pool, start_threads

TARGET = 0.90  # efficiency at least...
TARGET_GOPHERS = 200  # ...at this herd size


def wall_seconds(kind: str, gophers: int, mode: str, tasks: int, sleep: float) -> float:
    """One round on a fresh pool of ``gophers`` started threads: the wall time."""
    with make_pool(kind, gophers, mode) as pool:
        start_threads(pool, gophers)
        _common.warm_up()
        started = time.perf_counter()
        futures = [pool.submit(time.sleep, sleep) for _ in range(tasks)]
        for future in futures:
            future.result()
        return time.perf_counter() - started


def measure(
    gophers: Sequence[int] = (50, 200, 1000),
    tasks: int = 2000,
    sleep: float = 0.05,
    rounds: int = 5,
    modes: Sequence[str] = tuple(MODES),
) -> dict[str, Any]:
    configs = [(h, mode) for h in gophers for mode in modes]
    samples: dict[tuple[int, str], dict[str, list[float]]] = {
        config: {"pool": [], "herd": []} for config in configs
    }
    loads = [_common.load()]
    for index in range(rounds):
        for config in configs:
            for kind in ("pool", "herd") if index % 2 == 0 else ("herd", "pool"):
                samples[config][kind].append(wall_seconds(kind, *config, tasks, sleep))
        loads.append(_common.load())
        _common.progress(f"io: round {index + 1}/{rounds} done (load {loads[-1]:.2f})")
    rows = []
    for (count, mode), times in samples.items():
        bound = math.ceil(tasks / count) * sleep
        herd, pool = _common.median(times["herd"]), _common.median(times["pool"])
        efficiency = bound / herd
        rows.append(
            {
                "gophers": count,
                "mode": mode,
                "bound_s": bound,
                "pool_s": pool,
                "herd_s": herd,
                "pool_efficiency": bound / pool,
                "efficiency": efficiency,
                "ok": efficiency >= TARGET if count == TARGET_GOPHERS else None,
                "pool_samples_s": times["pool"],
                "herd_samples_s": times["herd"],
            }
        )
    return {"tasks": tasks, "sleep_s": sleep, "rounds": rounds, "load": loads, "rows": rows}


def table(result: dict[str, Any]) -> str:
    head = (
        f"I/O-bound efficiency: {result['tasks']} tasks of time.sleep({result['sleep_s']:g}),"
        f" median of {result['rounds']} rounds; efficiency = bound / wall time;"
        f" target >= {TARGET:.2f} at H={TARGET_GOPHERS}"
    )
    rows = [
        (
            r["gophers"],
            r["mode"],
            f"{r['bound_s']:.3f}",
            f"{r['pool_s']:.3f} ({r['pool_efficiency']:.2f})",
            f"{r['herd_s']:.3f}",
            f"{r['efficiency']:.2f}",
            f"{r['herd_s'] / r['pool_s']:.2f}",
            _common.verdict(r["ok"]),
        )
        for r in result["rows"]
    ]
    headers = ("H", "herd mode", "bound s", "ThreadPoolExecutor s (eff.)", "HerdExecutor s")
    headers += ("herd efficiency", "herd/pool time", "target")
    return head + "\n\n" + _common.markdown(headers, rows, "rlrrrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--gophers", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.gophers, args.tasks, args.sleep, args.rounds)
    print(table(result))
    return 1 if any(r["ok"] is False for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
