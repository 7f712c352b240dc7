"""Every benchmark in one command: a table per section, results.json and the chart.

    python -m benchmarks [--quick] [--rounds N] [--sections import overhead io ...]
    python -m benchmarks --sections runners dask         # the runners' figures alone
    python benchmarks/run_all.py ...                      # the same

Each section runs in a fresh interpreter, one after the other, and every figure stands
beside its anchor from the same run (the stdlib's own imports, ThreadPoolExecutor, a
ping-pong between two threads, the ideal bound, or a bare ``http.server``), as a ratio,
with PASS or over target where the issue sets one. The tables go to stdout (progress to
stderr); ``benchmarks/results.json`` gets every sample and ``docs/benchmarks.png`` the
per-task cost chart. ``--quick`` is a smoke run of a minute or two, which writes its
results to a temporary directory instead.

For each section the run also records how many CPUs' worth of time *other* processes
used while it ran (the machine's busy time less this run's own), so that a figure taken
while someone else loaded the machine can be told apart.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import (
    _common,
    bench_adapt,
    bench_dask,
    bench_elastic,
    bench_growth,
    bench_import,
    bench_io,
    bench_overhead,
    bench_runners,
    bench_server,
)

RESULTS = _common.ROOT / "benchmarks" / "results.json"
CHART = _common.ROOT / "docs" / "benchmarks.png"
ADAPT_CHART = _common.ROOT / "docs" / "adaptive.png"


def settings(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each section's function and keyword arguments, from the command line."""
    quick = args.quick
    rounds = args.rounds or (2 if quick else 9)
    return {
        "import": ("bench_import:measure", {"runs": args.import_runs or (10 if quick else 40)}),
        "overhead": (
            "bench_overhead:measure",
            {
                "workers": [1, 8, 64],
                "tasks": args.tasks or (5_000 if quick else 30_000),
                "rounds": rounds,
            },
        ),
        "io": (
            "bench_io:measure",
            {
                "gophers": [50, 200, 1000],
                "tasks": 2000,
                "sleep": 0.01 if quick else 0.05,
                "rounds": min(rounds, 2) if quick else max(3, rounds // 2 + 1),
            },
        ),
        "elastic": (
            "bench_elastic:measure",
            {"gophers": 1000, "rounds": args.elastic_rounds or (2 if quick else 7)},
        ),
        "server": (
            "bench_server:measure",
            {
                "rounds": args.patch_rounds or (20 if quick else 300),
                "get_rounds": args.get_rounds or (4 if quick else 50),
                "slow_get_rounds": args.slow_get_rounds or (3 if quick else 30),
                "gophers": 64,
            },
        ),
        "growth": (
            "bench_growth:measure",
            {
                "sizes": [1000, 10_000, 100_000],
                "rounds": rounds if quick else max(5, rounds // 2 + 1),
                "memory_rounds": args.memory_rounds or (1 if quick else 3),
            },
        ),
        "runners": ("bench_runners:measure", bench_runners.QUICK if quick else {}),
        "dask": ("bench_dask:measure", bench_dask.QUICK if quick else {}),
        "adapt": ("bench_adapt:measure", bench_adapt.QUICK if quick else {}),
    }


TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "import": bench_import.table,
    "overhead": bench_overhead.table,
    "io": bench_io.table,
    "elastic": bench_elastic.table,
    "server": bench_server.table,
    "growth": bench_growth.table,
    "runners": bench_runners.table,
    "dask": bench_dask.table,
    "adapt": bench_adapt.table,
}


def run_section(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one section in a fresh interpreter; add its wall time and the CPU time that
    other processes took meanwhile (in CPUs' worth)."""
    busy_before = _busy_seconds()
    ours_before = _children_seconds()
    started = time.perf_counter()
    result: dict[str, Any] = _common.in_child(target, timeout=3600, **kwargs)
    wall = time.perf_counter() - started
    others = (_busy_seconds() - busy_before) - (_children_seconds() - ours_before)
    result["wall_s"] = wall
    result["other_cpus"] = max(0.0, others / wall)
    result["settings"] = kwargs
    return result


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """Every figure that has a target: (section, what, passed)."""
    found = []
    imported = results.get("import")
    if imported:
        found.append(("import", f"import herdexec: {imported['ratio']:.2f}x", imported["ok"]))
    for r in results.get("overhead", {}).get("rows", []):
        row = f"{r['pools']} pools, {r['workload']}, {r['workers']} workers, {r['mode']}"
        if r["ok"] is not None:
            found.append(("overhead", f"{row}: {r['ratio']:.2f}x the pool", r["ok"]))
        if r.get("floor_ok") is not None:
            what = f"{row}: {r['floor_ratio']:.2f}x the ping-pong"
            found.append(("overhead", what, r["floor_ok"]))
    for r in results.get("io", {}).get("rows", []):
        if r["ok"] is not None:
            what = f"H={r['gophers']}, {r['mode']}: efficiency {r['efficiency']:.2f}"
            found.append(("io", what, r["ok"]))
    for r in results.get("elastic", {}).get("rows", []):
        if r["ok"] is not None:
            label = bench_elastic.FIGURES[r["figure"]][0]
            found.append(("elastic", f"{label}: {r['herd']:.0f}", r["ok"]))
    for r in results.get("server", {}).get("rows", []):
        if r["ok"] is not None:
            found.append(("server", f"{r['figure']}: p99 {r['herd_p99_ms']:.1f} ms", r["ok"]))
    sections = (("runners", bench_runners), ("dask", bench_dask), ("adapt", bench_adapt))
    for section, module in sections:
        if section in results:
            found += [(section, what, ok) for what, ok in module.ok(results[section])]
    growth = results.get("growth")
    if growth:
        for g in growth["overhead"]["growth"]:
            what = f"{g['workload']} growth, {g['mode']}: {g['herd']:.2f}x"
            found.append(("growth", what, g["ok"]))
        for r in growth["memory"]["rows"]:
            if r["ok"] is not None:
                label = bench_growth.MEMORY_LABELS[r["reading"], r["stage"]]
                found.append(("memory", f"{label}: {r['herd_mib']:.2f} MiB", r["ok"]))
    return found


def chart(overhead: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    """Herd against ThreadPoolExecutor, per-task cost by worker count: one panel per
    kind of pool, workload and mode, medians with the interquartile range as error bars,
    and the ping-pong's round trip as a line."""
    import matplotlib  # noqa: PLC0415 (only the chart needs it, and it is slow to import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = overhead["rows"]
    panels = list(dict.fromkeys((r["pools"], r["workload"]) for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    figure, axes = plt.subplots(
        len(panels), len(modes), figsize=(5 * len(modes), 3.6 * len(panels)), squeeze=False
    )
    top = max(max(r["pool_samples_us"] + r["herd_samples_us"]) for r in rows)
    for i, (pools, workload) in enumerate(panels):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            chosen = sorted(
                (
                    r
                    for r in rows
                    if (r["pools"], r["workload"], r["mode"]) == (pools, workload, mode)
                ),
                key=lambda r: r["workers"],
            )
            workers = [r["workers"] for r in chosen]
            for kind, label, style in (
                ("pool", "ThreadPoolExecutor", "s--"),
                ("herd", f"HerdExecutor ({mode})", "o-"),
            ):
                medians = [r[f"{kind}_us"] for r in chosen]
                spread = [_quartiles(r[f"{kind}_samples_us"]) for r in chosen]
                low = [m - q[0] for m, q in zip(medians, spread, strict=True)]
                high = [q[1] - m for m, q in zip(medians, spread, strict=True)]
                ax.errorbar(workers, medians, yerr=[low, high], fmt=style, capsize=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_xticks(workers, [str(w) for w in workers])
            ax.set_ylim(0, top * 1.05)
            ax.axhline(overhead["floor_us"], color="grey", lw=0.8, ls=":", label="ping-pong")
            ax.set_title(f"{pools} pools, {workload}, herd {mode}")
            ax.set_xlabel("workers (threads)")
            ax.set_ylabel("µs per task (median, IQR)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    figure.suptitle(
        f"Per-task cost of no-op tasks, {overhead['tasks']} per round,"
        f" {overhead['rounds']} rounds\n{info['python']}, {info['cpus_usable']} CPUs"
        f" ({info['cpu']}), {info['os']}",
        fontsize="medium",
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--sections", nargs="+", choices=list(TABLES), default=list(TABLES), metavar="SECTION"
    )
    parser.add_argument("--rounds", type=int, help="rounds of the timed sections (default 9)")
    parser.add_argument("--tasks", type=int, help="tasks per overhead round (default 30000)")
    parser.add_argument(
        "--import-runs", type=int, help="fresh interpreters per import (default 40)"
    )
    parser.add_argument("--elastic-rounds", type=int, help="default 7")
    parser.add_argument("--patch-rounds", type=int, help="default 300")
    parser.add_argument("--get-rounds", type=int, help="GETs per row (default 50)")
    parser.add_argument(
        "--slow-get-rounds", type=int, help="GETs per row at the default switch interval (30)"
    )
    parser.add_argument("--memory-rounds", type=int, help="default 3")
    parser.add_argument("--json", type=Path, help=f"default {RESULTS.relative_to(_common.ROOT)}")
    parser.add_argument("--chart", type=Path, help=f"default {CHART.relative_to(_common.ROOT)}")
    args = parser.parse_args(argv)
    if args.quick:
        scratch = Path(tempfile.gettempdir()) / "herdexec-bench-quick"
        args.json = args.json or scratch / "results.json"
        args.chart = args.chart or scratch / "benchmarks.png"
    json_path, chart_path = args.json or RESULTS, args.chart or CHART
    adapt_chart = chart_path.with_name("adaptive.png") if args.chart else ADAPT_CHART

    info = _common.machine()
    started = time.time()
    print(f"# herdexec benchmarks{' (quick)' if args.quick else ''}\n")
    print(f"Machine: {_common.describe(info)}")
    print(f"Started {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started))}\n")
    results: dict[str, dict[str, Any]] = {}
    tables = {}
    for name, (target, kwargs) in settings(args).items():
        if name not in args.sections:
            continue
        if name == "dask" and importlib.util.find_spec("distributed") is None:
            print("## dask\n\nskipped: needs the dask extra (pip install '.[bench,dask]')\n")
            continue
        _common.progress(f"{name}: running {target} in a fresh interpreter")
        results[name] = run_section(target, kwargs)
        r = results[name]
        tables[name] = (
            TABLES[name](r) + f"\n\n({r['wall_s']:.0f} s; other processes used"
            f" {r['other_cpus']:.2f} of {info['cpus_usable']} CPUs meanwhile)"
        )
        print(f"## {name}\n\n{tables[name]}\n", flush=True)

    found = targets(results)
    summary = _common.markdown(
        ("section", "figure", "target"),
        [(section, what, _common.verdict(ok)) for section, what, ok in found],
        "lll",
    )
    passed = sum(ok for _, _, ok in found)
    print(f"## targets: {passed} of {len(found)} pass\n\n{summary}\n")

    document = {
        "machine": info,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started,
        "command": [Path(sys.executable).name, "-m", "benchmarks", *(argv or sys.argv[1:])],
        "quick": args.quick,
        "sections": results,
        "tables": tables,
        "targets": [{"section": s, "figure": w, "ok": ok} for s, w, ok in found],
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=1) + "\n")
    if "overhead" in results:
        chart(results["overhead"], info, chart_path)
        print(f"Chart: {_shown(chart_path)}")
    if "adapt" in results:
        bench_adapt.chart(results["adapt"], info, adapt_chart)
        print(f"Chart: {_shown(adapt_chart)}")
    print(f"Results: {_shown(json_path)}")
    return 0 if passed == len(found) else 1


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
