"""Adaptive herds against a backend whose capacity they are not told.

The simulated backend, in this process, has a hidden capacity C: a call takes BASE seconds
while at most C calls run, proportionally longer beyond (``BASE * n / C`` for the n-th
concurrent call, so throughput stays capped at C/BASE), and refuses with ``Overloaded``
at once past ``2 * C``. Refused calls are retried after a backoff. A feeder submits works
without pause (submit blocks until a gopher takes one); a work's latency runs from its
first attempt's start to its success, retries and backoffs included.

Three parts:

- *start*: for a spread of C and BASE, the default (:class:`herdexec.Gradient`) herd
  starts at size 1 (``max_workers=1``, ``max_size`` far above C); just before it and just
  after, a fixed herd of size C, whose mean throughput is the reference. Target: within
  10 s, throughput >= 0.9x the fixed herd's and median latency <= 1.5x BASE, and staying
  there;
- *cost*: what adapting adds to a no-op task's cost on a herd of 8 (``backlog=None``,
  submit then result), with Gradient bounded to 8 so that only the bookkeeping differs;
  no target, a figure to watch;
- *change*: one C and BASE, C halves a third of the way in and comes back (doubles) two
  thirds of the way; Gradient, AIMD, a fixed herd that an oracle resizes to C, and a fixed
  herd four times C all run it. Targets: Gradient back within those bounds less than 5 s
  after each change; Gradient's median latency below AIMD's at no less than 0.9x its
  throughput; AIMD's below the oversized herd's. The chart (docs/adaptive.png) shows size
  and latency over time.

"Within bounds" is judged on sliding windows of 2 s (every 0.25 s): the time to settle
is when the first window begins after which every window to the end of the phase meets
both bounds, plus the window's length. The reference throughput is the fixed herd of
size C (for the change, the oracle's in the same phase).

The machine this was written on has 2 CPUs, shared: at C=64 and BASE=5 ms a herd runs
about 12,800 calls a second, which is more than one interpreter's worth of CPU there, and
the figures follow whatever else the machine is doing.

Usage: ``python benchmarks/bench_adapt.py [--quick]``; ``python -m benchmarks --sections
adapt`` runs it with the others.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from herdexec import AIMD, ExponentialBackoff, Gradient, HerdExecutor

THROUGHPUT_TARGET = 0.9  # of the fixed herd of size C
LATENCY_TARGET = 1.5  # times BASE, the median
START_TARGET_S = 10.0
CHANGE_TARGET_S = 5.0
REFUSE_AT = 2.0  # the backend refuses past this many times C
WINDOW_S = 2.0
STEP_S = 0.25
SAMPLE_S = 0.02  # how often the size is read for the chart
MAX_SIZE = 512  # the adaptive herds' upper bound, far above any C here

KINDS = ("gradient", "aimd", "oracle", "oversized")
LABELS = {
    "gradient": "Gradient (default)",
    "aimd": "AIMD",
    "oracle": "fixed, resized to C",
    "oversized": "fixed at 4 x C",
    "fixed": "fixed at C",
}


class Overloaded(Exception):
    """The backend refuses: too many calls at once (an HTTP 429 or 503, say)."""


class Backend:
    """A service of capacity ``capacity``: see the module's docstring."""

    def __init__(self, capacity: int, base: float) -> None:
        self.capacity = capacity
        self.base = base
        self.refused = 0
        self._running = 0
        self._lock = threading.Lock()

    def call(self) -> None:
        with self._lock:
            if self._running >= REFUSE_AT * self.capacity:
                self.refused += 1
                raise Overloaded
            self._running += 1
            load = self._running / self.capacity
        try:
            time.sleep(self.base * max(1.0, load))
        finally:
            with self._lock:
                self._running -= 1


def one_run(
    kind: str, schedule: Sequence[tuple[float, int]], base: float, seconds: float
) -> dict[str, Any]:
    """Feed one herd for ``seconds``; C follows ``schedule`` ([(from_s, C), ...])."""
    capacity = schedule[0][1]
    backend = Backend(capacity, base)
    options: dict[str, Any] = {
        "registry": None,
        "max_retries": 1000,
        "retry_on": Overloaded,
        "backoff": ExponentialBackoff(initial=base, maximum=1.0, jitter=0.5),
        "max_herd_size": MAX_SIZE,
    }
    if kind == "gradient":
        herd = HerdExecutor(1, adapt=Gradient(), overload_on=Overloaded, **options)
    elif kind == "aimd":
        herd = HerdExecutor(1, adapt=AIMD(), overload_on=Overloaded, **options)
    elif kind == "oversized":
        herd = HerdExecutor(4 * capacity, **options)
    else:  # "fixed" or "oracle"
        herd = HerdExecutor(capacity, **options)
    done: list[tuple[float, float]] = []  # (end, latency), appended by the gophers
    sizes: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def work(first: list[float]) -> None:
        if not first:
            first.append(time.perf_counter())
        backend.call()
        end = time.perf_counter()
        done.append((end - started, end - first[0]))

    def watch() -> None:
        changes = list(schedule[1:])
        while not stop.wait(SAMPLE_S):
            now = time.perf_counter() - started
            while changes and changes[0][0] <= now:
                backend.capacity = changes.pop(0)[1]
                if kind == "oracle":
                    herd.herd_size = backend.capacity
            sizes.append((now, herd.herd_size))

    watcher = threading.Thread(target=watch, name="bench-adapt-watch")
    watcher.start()
    try:
        while time.perf_counter() - started < seconds:
            herd.submit(work, [])
    finally:
        stop.set()
        watcher.join()
        herd.shutdown(wait=True, cancel_futures=True)
    return {"done": done, "sizes": sizes, "refused": backend.refused}


def cost(tasks: int = 20_000, rounds: int = 5) -> dict[str, Any]:
    """Per-task µs of no-op tasks on a herd of 8, without and with adaptation,
    interleaved round by round."""
    samples: dict[str, list[float]] = {"plain": [], "adaptive": []}
    for index in range(rounds):
        for kind in ("plain", "adaptive") if index % 2 == 0 else ("adaptive", "plain"):
            adapt = Gradient(min_size=8, max_size=8) if kind == "adaptive" else None
            with HerdExecutor(8, backlog=None, registry=None, adapt=adapt) as herd:
                for future in [herd.submit(int) for _ in range(500)]:  # warm up
                    future.result()
                _common.warm_up()
                started = time.perf_counter()
                for future in [herd.submit(int) for _ in range(tasks)]:
                    future.result()
                samples[kind].append((time.perf_counter() - started) / tasks * 1e6)
    plain, adaptive = (_common.median(samples[k]) for k in ("plain", "adaptive"))
    return {"tasks": tasks, "plain_us": plain, "adaptive_us": adaptive, "samples_us": samples}


def window_figures(
    done: Sequence[tuple[float, float]], start: float, end: float
) -> tuple[float, float]:
    """Throughput (works per second) and median latency of works that ended in [start, end)."""
    latencies = [latency for at, latency in done if start <= at < end]
    if not latencies:
        return 0.0, float("inf")
    return len(latencies) / (end - start), statistics.median(latencies)


def settle_s(
    done: Sequence[tuple[float, float]],
    phase: tuple[float, float],
    base: float,
    reference: float,
) -> float | None:
    """Seconds from the phase's start until it is within bounds for good, or None."""
    start, end = phase
    settled: float | None = None
    at = start
    while at + WINDOW_S <= end + 1e-9:
        throughput, latency = window_figures(done, at, at + WINDOW_S)
        good = throughput >= THROUGHPUT_TARGET * reference and latency <= LATENCY_TARGET * base
        if not good:
            settled = None
        elif settled is None:
            settled = at
        at += STEP_S
    return None if settled is None else settled + WINDOW_S - start


def measure(
    spread: Sequence[tuple[int, float]] = (
        (4, 0.005),
        (4, 0.1),
        (16, 0.02),
        (64, 0.005),
        (64, 0.1),
    ),
    start_s: float = 14.0,
    fixed_s: float = 6.0,
    change: tuple[int, float] = (16, 0.02),
    phase_s: float = 10.0,
    cost_rounds: int = 5,
) -> dict[str, Any]:
    starts = []
    for capacity, base in spread:
        # The fixed herd runs just before the adaptive one and just after, and the
        # reference is the mean: a machine whose load changes moves both alike.
        before = one_run("fixed", [(0.0, capacity)], base, fixed_s)
        gradient = one_run("gradient", [(0.0, capacity)], base, start_s)
        after = one_run("fixed", [(0.0, capacity)], base, fixed_s)
        fixed = [window_figures(run["done"], 1.0, fixed_s) for run in (before, after)]
        reference = statistics.mean(throughput for throughput, _ in fixed)
        settle = settle_s(gradient["done"], (0.0, start_s), base, reference)
        throughput, latency = window_figures(gradient["done"], start_s - 4, start_s)
        starts.append(
            {
                "capacity": capacity,
                "base_s": base,
                "fixed_per_s": reference,
                "fixed_runs_per_s": [throughput for throughput, _ in fixed],
                "ideal_per_s": capacity / base,
                "per_s": throughput,
                "latency_s": latency,
                "fixed_latency_s": statistics.mean(latency for _, latency in fixed),
                "size": _final_size(gradient["sizes"], start_s - 4),
                "settle_s": settle,
                "ok": settle is not None and settle <= START_TARGET_S,
            }
        )
        _common.progress(
            f"adapt: start C={capacity} BASE={base * 1000:g} ms: settled in {settle} s"
            f" (load {_common.load():.2f})"
        )
    capacity, base = change
    schedule = [(0.0, capacity), (phase_s, capacity // 2), (2 * phase_s, capacity)]
    runs = {}
    for kind in KINDS:
        runs[kind] = one_run(kind, schedule, base, 3 * phase_s)
        _common.progress(f"adapt: change, {kind} done (load {_common.load():.2f})")
    phases = []
    for index, (begin, phase_capacity) in enumerate(schedule):
        end = begin + phase_s
        reference = window_figures(runs["oracle"]["done"], begin + 1.0, end)[0]
        row: dict[str, Any] = {"from_s": begin, "capacity": phase_capacity, "herds": {}}
        for kind, run in runs.items():
            throughput, latency = window_figures(run["done"], end - 4, end)
            row["herds"][kind] = {
                "per_s": throughput,
                "latency_s": latency,
                "size": _final_size(run["sizes"], end - 4, end),
                "settle_s": settle_s(run["done"], (begin, end), base, reference),
            }
        settle = row["herds"]["gradient"]["settle_s"]
        row["reference_per_s"] = reference
        row["ok"] = None if index == 0 else settle is not None and settle < CHANGE_TARGET_S
        phases.append(row)
    comparisons = _comparisons(runs, base, 3 * phase_s)
    return {
        "spread": starts,
        "cost": cost(rounds=cost_rounds),
        "change": {
            "capacity": capacity,
            "base_s": base,
            "phase_s": phase_s,
            "schedule": schedule,
            "phases": phases,
            "comparisons": comparisons,
            "series": {kind: _series(run, 3 * phase_s) for kind, run in runs.items()},
            "refused": {kind: run["refused"] for kind, run in runs.items()},
        },
    }


def _final_size(sizes: Sequence[tuple[float, int]], start: float, end: float = 1e9) -> float:
    chosen = [size for at, size in sizes if start <= at < end]
    return statistics.median(chosen) if chosen else float("nan")


def _comparisons(runs: dict[str, dict[str, Any]], base: float, seconds: float) -> list[Any]:
    """Whole-run figures (the first 2 s left out): who beats whom."""
    figures = {kind: window_figures(run["done"], 2.0, seconds) for kind, run in runs.items()}
    gradient, aimd, oversized = figures["gradient"], figures["aimd"], figures["oversized"]
    return [
        {
            "figure": "Gradient vs AIMD: latency lower, throughput >= 0.9x",
            "ok": gradient[1] < aimd[1] and gradient[0] >= THROUGHPUT_TARGET * aimd[0],
            "values": {"gradient": gradient, "aimd": aimd},
        },
        {
            "figure": "AIMD vs fixed 4 x C: latency lower",
            "ok": aimd[1] < oversized[1],
            "values": {"aimd": aimd, "oversized": oversized},
        },
    ]


def _series(run: dict[str, Any], seconds: float) -> dict[str, list[float]]:
    """The chart's data: the size as sampled, and the median latency per 0.5 s."""
    times, medians = [], []
    at = 0.0
    while at + 0.5 <= seconds:
        latency = window_figures(run["done"], at, at + 0.5)[1]
        times.append(at + 0.25)
        medians.append(latency if latency != float("inf") else float("nan"))
        at += 0.5
    return {
        "size_t": [at for at, _ in run["sizes"]],
        "size": [size for _, size in run["sizes"]],
        "latency_t": times,
        "latency_s": medians,
    }


def table(result: dict[str, Any]) -> str:
    """Two tables: the start from size 1, then the change of C."""
    head = (
        f"Start at size 1, default Gradient: time until throughput >= {THROUGHPUT_TARGET}x"
        f" the fixed herd of size C and median latency <= {LATENCY_TARGET}x BASE for good"
        f" ({WINDOW_S:g} s windows); target <= {START_TARGET_S:g} s. Figures over the last 4 s."
    )
    rows = [
        (
            r["capacity"],
            f"{r['base_s'] * 1000:g}",
            f"{r['fixed_per_s']:.0f} ({r['fixed_per_s'] / r['ideal_per_s']:.2f} of C/BASE)",
            f"{r['per_s'] / r['fixed_per_s']:.2f}",
            f"{r['latency_s'] / r['base_s']:.2f}",
            f"{r['size']:.0f}",
            "never" if r["settle_s"] is None else f"{r['settle_s']:.2f}",
            _common.verdict(r["ok"]),
        )
        for r in result["spread"]
    ]
    headers = ("C", "BASE ms", "fixed C works/s", "throughput / fixed", "latency / BASE")
    headers += ("size", "settled in s", "target")
    first = head + "\n\n" + _common.markdown(headers, rows, "rrrrrrrl")
    change = result["change"]
    base = change["base_s"]
    head = (
        f"C changes: C={change['capacity']}, BASE={base * 1000:g} ms; C halves at"
        f" {change['phase_s']:g} s and doubles back at {2 * change['phase_s']:g} s. Per phase"
        " (last 4 s): throughput / the fixed herd resized to C, median latency / BASE,"
        " median size; settled = s until within bounds for good (target < 5 s after a change)."
    )
    rows = []
    for phase in change["phases"]:
        for kind, h in phase["herds"].items():
            settle = h["settle_s"]
            rows.append(
                (
                    f"{phase['from_s']:g} s, C={phase['capacity']}",
                    LABELS[kind],
                    f"{h['per_s'] / phase['reference_per_s']:.2f}",
                    f"{h['latency_s'] / base:.2f}",
                    f"{h['size']:.0f}",
                    "never" if settle is None else f"{settle:.2f}",
                    _common.verdict(phase["ok"]) if kind == "gradient" else "",
                )
            )
    headers = ("phase", "herd", "throughput", "latency / BASE", "size", "settled in s", "target")
    second = head + "\n\n" + _common.markdown(headers, rows, "llrrrrl")
    refused = ", ".join(f"{LABELS[k]} {n}" for k, n in change["refused"].items())
    comparisons = _common.markdown(
        ("whole run after 2 s", "works/s", "latency / BASE", "target"),
        [
            (
                f"{c['figure']}: " + " vs ".join(LABELS[k] for k in c["values"]),
                " vs ".join(f"{v[0]:.0f}" for v in c["values"].values()),
                " vs ".join(f"{v[1] / base:.2f}" for v in c["values"].values()),
                _common.verdict(c["ok"]),
            )
            for c in change["comparisons"]
        ],
        "lrrl",
    )
    c = result["cost"]
    overhead = (
        f"What adapting costs: {c['plain_us']:.1f} µs per no-op task on a herd of 8 without"
        f" it, {c['adaptive_us']:.1f} µs with it ({c['adaptive_us'] / c['plain_us']:.2f}x)."
    )
    return f"{first}\n\n{overhead}\n\n{second}\n\nCalls refused: {refused}.\n\n{comparisons}"


def ok(result: dict[str, Any]) -> list[tuple[str, bool]]:
    """(what, passed) for every figure with a target."""
    found = [
        (
            f"start C={r['capacity']} BASE={r['base_s'] * 1000:g} ms: settled in"
            f" {'never' if r['settle_s'] is None else format(r['settle_s'], '.2f')} s",
            r["ok"],
        )
        for r in result["spread"]
    ]
    for phase in result["change"]["phases"]:
        if phase["ok"] is not None:
            settle = phase["herds"]["gradient"]["settle_s"]
            shown = "never" if settle is None else f"{settle:.2f} s"
            found.append(
                (f"C -> {phase['capacity']} at {phase['from_s']:g} s: {shown}", phase["ok"])
            )
    found += [(c["figure"], c["ok"]) for c in result["change"]["comparisons"]]
    return found


def chart(result: dict[str, Any], info: dict[str, Any], path: Path) -> None:
    """Size and median latency over time, one line per herd, C shaded."""
    import matplotlib  # noqa: PLC0415 (only the chart needs it, and it is slow to import)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    change = result["change"]
    base = change["base_s"]
    seconds = 3 * change["phase_s"]
    figure, (sizes, latencies) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    steps = [*change["schedule"], (seconds, change["schedule"][-1][1])]
    xs = [at for at, _ in steps]
    capacity = [c for _, c in steps]
    sizes.step(xs, capacity, where="post", color="black", linestyle=":", label="C (hidden)")
    sizes.step(
        xs,
        [REFUSE_AT * c for c in capacity],
        where="post",
        color="grey",
        linestyle=":",
        label="refusals above 2 x C",
    )
    for kind, series in change["series"].items():
        sizes.plot(series["size_t"], series["size"], label=LABELS[kind], linewidth=1.2)
        latencies.plot(
            series["latency_t"],
            [s / base for s in series["latency_s"]],
            label=LABELS[kind],
            linewidth=1.2,
        )
    latencies.axhline(LATENCY_TARGET, color="grey", linestyle="--", label="1.5 x BASE")
    sizes.set_ylabel("herd size")
    sizes.set_yscale("log", base=2)
    latencies.set_ylabel("median latency / BASE (per 0.5 s)")
    latencies.set_yscale("log", base=2)
    latencies.set_xlabel("seconds")
    for ax in (sizes, latencies):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
    figure.suptitle(
        f"Adaptive herds, backend C={change['capacity']} (halved, then back), BASE ="
        f" {base * 1000:g} ms\n{info['python']}, {info['cpus_usable']} CPUs ({info['cpu']})",
        fontsize="medium",
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


QUICK: dict[str, Any] = {
    "spread": ((4, 0.02), (32, 0.01)),
    "start_s": 12.0,
    "fixed_s": 4.0,
    "change": (16, 0.02),
    "phase_s": 8.0,
    "cost_rounds": 2,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two points and a shorter change")
    parser.add_argument("--chart", type=Path, default=_common.ROOT / "docs" / "adaptive.png")
    args = parser.parse_args(argv)
    info = _common.machine()
    print(_common.describe(info))
    result = measure(**QUICK) if args.quick else measure()
    print(table(result))
    chart(result, info, args.chart)
    print(f"Chart: {args.chart}")
    return 0 if all(passed for _, passed in ok(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
