"""``herdexec run`` against both anchors, ``xargs -P`` and GNU ``parallel``, side by side.

Two workloads: many tiny jobs (2,000 of ``true`` at -j 8: the cost per job and the
start-up) and a wide herd of waiting jobs (200 of ``sleep 0.05`` at -j 50: how well the
slots are kept full). Each round runs every tool on each workload, in an order that
rotates from round to round, plus ``herdexec run`` on an empty input (its start-up
alone). Ratios are taken within a round, where the tools met the same load on the
machine, and the table shows their medians over the rounds, beside the median times.
The load average before and after says how disturbed the run was.

Usage: ``python benchmarks/bench_cli.py [--rounds 5] [--quick]`` (``--quick``: a tenth
of the jobs, to try it out); GNU parallel is Debian's ``parallel`` package.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERDEXEC = str(Path(sys.executable).with_name("herdexec"))
TARGET = 1.15  # herdexec / xargs on the `true` jobs


@dataclass(frozen=True)
class Workload:
    name: str
    command: list[str]  # the item is added as its last argument
    item: str | None  # every line's text; None: the line's number
    jobs: int
    parallel: int

    def input(self, scale: float) -> bytes:
        count = max(1, int(self.jobs * scale))
        return "".join(f"{self.item or n}\n" for n in range(count)).encode()

    def commands(self, xargs: str, parallel: str) -> dict[str, list[str]]:
        j = str(self.parallel)
        return {
            "xargs": [xargs, "-P", j, "-n", "1", *self.command],
            "parallel": [parallel, "--will-cite", "-j", j, *self.command],
            "herdexec": [HERDEXEC, "run", "-j", j, "--no-progress", "--", *self.command],
        }


WORKLOADS = (
    Workload("true", ["true"], None, 2000, 8),
    Workload("sleep 0.05", ["sleep"], "0.05", 200, 50),
)


# herdexec's .pyc files are written on the first run, as pip writes them on install, even
# where PYTHONDONTWRITEBYTECODE is set: compiling the modules anew each time would cost
# every run tens of milliseconds that no installed herdexec pays.
_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str], data: bytes) -> tuple[float, float]:
    """Seconds ``command`` takes to run to the end on ``data``, and the CPU seconds it and
    its jobs used; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, input=data, check=True, stdout=subprocess.DEVNULL, env=_ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _ratio(ours: list[float], anchor: list[float]) -> str:
    """The median of the rounds' ratios, with their range: ``0.95 (0.90-1.02)``."""
    ratios = [a / b for a, b in zip(ours, anchor, strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the jobs")
    args = parser.parse_args()
    xargs, parallel = shutil.which("xargs"), shutil.which("parallel")
    if xargs is None or parallel is None:
        sys.exit("bench_cli: xargs and GNU parallel (Debian's `parallel`) must be on PATH")
    scale = 0.1 if args.quick else 1.0
    runs = [
        (workload.name, tool, command, workload.input(scale))
        for workload in WORKLOADS
        for tool, command in workload.commands(xargs, parallel).items()
    ]
    startup = [HERDEXEC, "run", "--no-progress", "--", "true"]
    runs.append(("", "start-up", startup, b""))
    for _, _, command, data in runs:  # warm the page cache and the .pyc files
        timed(command, data[: len(data) // 10])
    load_before = os.getloadavg()[0]
    times: dict[tuple[str, str], list[float]] = {(name, tool): [] for name, tool, _, _ in runs}
    cpu: dict[tuple[str, str], list[float]] = {(name, tool): [] for name, tool, _, _ in runs}
    for number in range(args.rounds):
        shift = number % len(runs)
        for name, tool, command, data in runs[shift:] + runs[:shift]:
            wall, used = timed(command, data)
            times[name, tool].append(wall)
            cpu[name, tool].append(used)
        print(f"  round {number + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]

    print(
        f"herdexec run against xargs -P and GNU parallel, median of {args.rounds} rounds;"
        f" {os.cpu_count()} CPUs, {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}; load average {load_before:.1f} before,"
        f" {load_after:.1f} after\n"
    )
    print(
        "| jobs | xargs -P | GNU parallel | herdexec run | herdexec / xargs | herdexec / parallel |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for workload in WORKLOADS:
        name, count = workload.name, max(1, int(workload.jobs * scale))
        of = {tool: times[name, tool] for tool in ("xargs", "parallel", "herdexec")}
        cells = [f"{statistics.median(of[tool]):.3f} s" for tool in of]
        ratios = [_ratio(of["herdexec"], of[anchor]) for anchor in ("xargs", "parallel")]
        label = f"{count} x `{name}`, -j {workload.parallel}"
        print(f"| {label} | {' | '.join(cells)} | {ratios[0]} | {ratios[1]} |")
    print("\nCPU time, the tool's and its jobs' (less moved by other load than wall time):\n")
    print(
        "| jobs | xargs -P | GNU parallel | herdexec run | herdexec / xargs | herdexec / parallel |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for workload in WORKLOADS:
        name, count = workload.name, max(1, int(workload.jobs * scale))
        of = {tool: cpu[name, tool] for tool in ("xargs", "parallel", "herdexec")}
        cells = [f"{statistics.median(of[tool]):.3f} s" for tool in of]
        ratios = [_ratio(of["herdexec"], of[anchor]) for anchor in ("xargs", "parallel")]
        label = f"{count} x `{name}`, -j {workload.parallel}"
        print(f"| {label} | {' | '.join(cells)} | {ratios[0]} | {ratios[1]} |")
    startup_s = statistics.median(times["", "start-up"])
    startup_cpu = statistics.median(cpu["", "start-up"])
    print(f"\nherdexec start-up alone (an empty input): {startup_s:.3f} s, {startup_cpu:.3f} s CPU")
    print("ratios: the median of the rounds' ratios (the lowest and highest in brackets)")
    true_ratio = statistics.median(
        ours / xargs_s
        for ours, xargs_s in zip(times["true", "herdexec"], times["true", "xargs"], strict=True)
    )
    verdict = "within" if true_ratio <= TARGET else "OVER"
    print(f"herdexec / xargs on `true`: {true_ratio:.2f}, {verdict} the {TARGET} target")


if __name__ == "__main__":
    main()
