"""Dask gophers against Dask's own client, on one LocalCluster of worker processes.

- overhead: N no-op tasks through a herd of H gophers (each submits one task and
  waits for it) against ``client.submit`` in a loop and ``client.map``, each followed
  by ``client.gather``; the figure is the herd's wall time over the client's;
- io: W works of ``time.sleep(S)`` with H in flight, against the bound
  ``ceil(W/H) * S`` (no H workers can do better); efficiency is bound / wall time.
  The cluster has H threads, so ``client.map`` of the same sleeps is held to the same
  bound: its efficiency, beside the herd's, is what Dask itself reaches here.

The cluster is started once and shared by every figure, and rounds alternate the
order of the contenders. Needs the dask extra: ``pip install '.[dask,bench]'``.

Usage: ``python benchmarks/bench_dask.py [--quick]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from herdexec import DaskRunner, HerdExecutor

OVERHEAD_TARGET = 1.2  # herd time at most this times client.submit's...
OVERHEAD_GOPHERS = 64  # ...at this herd size
IO_TARGET = 0.9  # efficiency at least
# A smoke run's settings (``--quick``, here and in run_all).
QUICK: dict[str, Any] = {"tasks": 300, "rounds": 1, "io_tasks": 128, "io_sleep": 0.2}


def noop(value: object = None) -> object:
    return value


def herd_round(client: Any, gophers: int, fn: Callable[..., Any], args: list[Any]) -> float:
    with HerdExecutor(gophers, runner=DaskRunner(client), backlog=None, registry=None) as herd:
        for _ in herd.map(time.sleep, [0.01] * gophers):  # every gopher thread up
            pass
        _common.warm_up()
        started = time.perf_counter()
        for _ in herd.map(fn, args):
            pass
        return time.perf_counter() - started


def client_round(client: Any, how: str, tasks: int) -> float:
    _common.warm_up()
    started = time.perf_counter()
    if how == "client.submit":
        futures = [client.submit(noop, n, pure=False) for n in range(tasks)]
    else:
        futures = client.map(noop, range(tasks), pure=False)
    client.gather(futures)
    elapsed = time.perf_counter() - started
    del futures
    return elapsed


def measure(
    tasks: int = 2000,
    gophers: Sequence[int] = (4, 16, OVERHEAD_GOPHERS),
    rounds: int = 3,
    io_tasks: int = 640,
    io_gophers: int = 64,
    io_sleep: float = 0.5,
) -> dict[str, Any]:
    from distributed import Client, LocalCluster  # noqa: PLC0415  (the dask extra)

    loads = [_common.load()]
    # Enough threads for the I/O figure's H sleeps at once; the overhead figure's no-op
    # tasks need none of them.
    threads = max(2, io_gophers // 2)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.gather(client.map(noop, range(100), pure=False))  # warm the cluster
        kinds = ["client.submit", "client.map", *(f"herd H={h}" for h in gophers)]
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        io: list[float] = []
        io_client: list[float] = []
        for index in range(rounds):
            for kind in kinds if index % 2 == 0 else kinds[::-1]:
                if kind.startswith("herd"):
                    h = int(kind.split("=")[1])
                    seconds = herd_round(client, h, noop, list(range(tasks)))
                else:
                    seconds = client_round(client, kind, tasks)
                samples[kind].append(seconds)
            io.append(herd_round(client, io_gophers, time.sleep, [io_sleep] * io_tasks))
            _common.warm_up()
            started = time.perf_counter()
            client.gather(client.map(time.sleep, [io_sleep] * io_tasks, pure=False))
            io_client.append(time.perf_counter() - started)
            loads.append(_common.load())
            _common.progress(f"dask: round {index + 1}/{rounds} done (load {loads[-1]:.2f})")
    medians = {kind: _common.median(times) for kind, times in samples.items()}
    submit = medians["client.submit"]
    ratio = medians[f"herd H={OVERHEAD_GOPHERS}"] / submit if OVERHEAD_GOPHERS in gophers else None
    bound = math.ceil(io_tasks / io_gophers) * io_sleep
    efficiency = bound / _common.median(io)
    return {
        "tasks": tasks,
        "rounds": rounds,
        "cluster": f"LocalCluster: 2 worker processes x {threads} threads",
        "load": loads,
        "per_task_us": {kind: 1e6 * s / tasks for kind, s in medians.items()},
        "samples_s": samples,
        "vs_submit": {kind: s / submit for kind, s in medians.items()},
        "vs_map": {kind: s / medians["client.map"] for kind, s in medians.items()},
        "overhead_ok": None if ratio is None else ratio <= OVERHEAD_TARGET,
        "io": {
            "tasks": io_tasks,
            "gophers": io_gophers,
            "sleep_s": io_sleep,
            "bound_s": bound,
            "wall_s": _common.median(io),
            "samples_s": io,
            "efficiency": efficiency,
            "client_map_s": _common.median(io_client),
            "client_map_samples_s": io_client,
            "client_map_efficiency": bound / _common.median(io_client),
            "ok": efficiency >= IO_TARGET,
        },
    }


def table(r: dict[str, Any]) -> str:
    rows = [
        (
            kind,
            f"{us:.0f}",
            f"{r['vs_submit'][kind]:.2f}",
            f"{r['vs_map'][kind]:.2f}",
            _common.verdict(r["overhead_ok"]) if kind == f"herd H={OVERHEAD_GOPHERS}" else "",
        )
        for kind, us in r["per_task_us"].items()
    ]
    io = r["io"]
    parts = [
        f"No-op tasks on a {r['cluster']}, {r['tasks']} per round, median of"
        f" {r['rounds']} rounds (target: herd H={OVERHEAD_GOPHERS} <= {OVERHEAD_TARGET}x"
        " client.submit)",
        _common.markdown(
            ("how", "µs per task", "/ client.submit", "/ client.map", "target"), rows, "lrrrl"
        ),
        f"I/O-bound: {io['tasks']} works of time.sleep({io['sleep_s']:g}) at H={io['gophers']}"
        f" in flight: bound {io['bound_s']:.2f} s, herd {io['wall_s']:.2f} s, efficiency"
        f" {io['efficiency']:.2f} (target >= {IO_TARGET}) {_common.verdict(io['ok'])};"
        f" client.map of the same sleeps on the same {io['gophers']} threads"
        f" {io['client_map_s']:.2f} s, efficiency {io['client_map_efficiency']:.2f}",
    ]
    return "\n\n".join(parts)


def ok(result: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every figure with a target, for run_all's summary."""
    found = [
        (
            f"I/O H={result['io']['gophers']}: efficiency {result['io']['efficiency']:.2f}",
            bool(result["io"]["ok"]),
        )
    ]
    if result["overhead_ok"] is not None:
        ratio = result["vs_submit"][f"herd H={OVERHEAD_GOPHERS}"]
        found.insert(
            0, (f"herd H={OVERHEAD_GOPHERS} / client.submit: {ratio:.2f}x", result["overhead_ok"])
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(**(QUICK if args.quick else {}))
    print(table(result))
    return 0 if all(passed for _, passed in ok(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
