"""Elasticity: grow from 0 to 1,000 busy gophers and back to 0.

Each round runs in two fresh interpreters, one per pool, in alternating order, so that
RSS and thread counts start from scratch:

- the herd: ``HerdExecutor(0, backlog=None)`` takes 1,000 works that each block until
  released, then ``herd_size = 1000``; *grow* ends when all 1,000 are running. Then
  ``herd_size = 0`` and the works are released; *shrink* ends when the process is back
  to the threads it had before the herd (the herd is not shut down until then);
- the anchor: ``ThreadPoolExecutor(1000)`` takes the same 1,000 works (it starts a
  thread per submit); *grow* ends when all are running. A pool cannot shrink, so
  *shrink* is the works released and ``shutdown(wait=True)``.

Peak RSS is the most the process held above what it held before the pool was made
(getrusage), RSS after is what it still holds once back to 0 (psutil), threads left what
is left above the threads of before.

Usage: ``python benchmarks/bench_elastic.py [--gophers 1000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from herdexec import HerdExecutor

FIGURES = {
    "grow_s": ("grow 0 -> N busy", "s", 3),
    "shrink_s": ("shrink N -> 0 threads", "s", 3),
    "peak_rss_mib": ("peak RSS above baseline", "MiB", 1),
    "rss_after_mib": ("RSS above baseline, back at 0", "MiB", 1),
    "threads_left": ("threads left, back at 0", "", 0),
    "threads_left_shutdown": ("threads left after shutdown()", "", 0),
}


def one_round(kind: str, gophers: int) -> dict[str, float]:
    """Grow to ``gophers`` busy threads and back, in this (fresh) process."""
    gc.collect()
    threads_before, rss_before = _common.threads(), _common.rss()
    release = threading.Event()
    running = threading.Semaphore(0)

    def busy() -> None:
        running.release()
        release.wait()

    def wait_all_running() -> None:
        for started in range(gophers):
            if not running.acquire(timeout=60):
                raise RuntimeError(f"only {started} of {gophers} works started")

    started = time.perf_counter()
    if kind == "herd":
        herd = HerdExecutor(0, backlog=None, registry=None, max_herd_size=max(gophers, 1))
        futures = [herd.submit(busy) for _ in range(gophers)]
        herd.herd_size = gophers
        wait_all_running()
        grown = time.perf_counter()
        herd.herd_size = 0
        release.set()
        for future in futures:
            future.result()
        back = _common.wait_for(lambda: _common.threads() <= threads_before, timeout=30)
        shrunk = time.perf_counter()
        threads_left = _common.threads() - threads_before
        if not back:
            _common.progress(f"elastic: {threads_left} threads still there after 30 s")
        gc.collect()
        rss_after = _common.rss()
        herd.shutdown(wait=True)
    else:
        pool = ThreadPoolExecutor(gophers)
        futures = [pool.submit(busy) for _ in range(gophers)]
        wait_all_running()
        grown = time.perf_counter()
        release.set()
        pool.shutdown(wait=True)
        shrunk = time.perf_counter()
        threads_left = _common.threads() - threads_before
        gc.collect()
        rss_after = _common.rss()
    return {
        "grow_s": grown - started,
        "shrink_s": shrunk - grown,
        "peak_rss_mib": (_common.peak_rss() - rss_before) / 2**20,
        "rss_after_mib": (rss_after - rss_before) / 2**20,
        "threads_left": threads_left,
        "threads_left_shutdown": _common.threads() - threads_before,
    }


def measure(gophers: int = 1000, rounds: int = 5) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {"pool": [], "herd": []}
    loads = [_common.load()]
    for index in range(rounds):
        for kind in ("pool", "herd") if index % 2 == 0 else ("herd", "pool"):
            samples[kind].append(
                _common.in_child("bench_elastic:one_round", kind=kind, gophers=gophers)
            )
        loads.append(_common.load())
        _common.progress(f"elastic: round {index + 1}/{rounds} done (load {loads[-1]:.2f})")
    rows = []
    for key in FIGURES:
        pool = _common.median(s[key] for s in samples["pool"])
        herd = _common.median(s[key] for s in samples["herd"])
        left = key.startswith("threads_left")
        rows.append(
            {
                "figure": key,
                "pool": pool,
                "herd": herd,
                "ratio": None if left or not pool else herd / pool,
                # Back at 0 means no thread left behind, in every round.
                "ok": max(s[key] for s in samples["herd"]) == 0 if left else None,
            }
        )
    return {"gophers": gophers, "rounds": rounds, "load": loads, "rows": rows, "samples": samples}


def table(result: dict[str, Any]) -> str:
    head = (
        f"Elasticity: 0 -> {result['gophers']} busy threads -> 0, median of"
        f" {result['rounds']} rounds, each pool in a fresh process; target: no thread left"
    )
    rows = []
    for r in result["rows"]:
        label, unit, digits = FIGURES[r["figure"]]
        label = label.replace("N", str(result["gophers"]))
        rows.append(
            (
                f"{label}{f' ({unit})' if unit else ''}",
                f"{r['pool']:.{digits}f}",
                f"{r['herd']:.{digits}f}",
                "" if r["ratio"] is None else f"{r['ratio']:.2f}",
                _common.verdict(r["ok"]),
            )
        )
    headers = ("figure", "ThreadPoolExecutor", "HerdExecutor", "herd/pool", "target")
    return head + "\n\n" + _common.markdown(headers, rows, "lrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gophers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.gophers, args.rounds)
    print(table(result))
    return 1 if any(r["ok"] is False for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
