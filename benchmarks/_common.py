"""What every benchmark shares: the machine, medians and percentiles, fresh processes,
memory readings and markdown tables.

Every section runs on its own too (``python benchmarks/bench_io.py``), and in a fresh
interpreter when :mod:`benchmarks.run_all` runs them all.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

import herdexec

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """The machine a run came from, for the tables and results.json."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "cpus_usable": cpus,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
    }
    info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    info["herdexec"] = herdexec.__version__
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if commit:
        info["commit"] = commit
    return info


def describe(info: dict[str, Any]) -> str:
    """One line for the top of a table."""
    commit = f" at {info['commit']}" if "commit" in info else ""
    return (
        f"{info['python']} on {info['os']}; {info['cpu']}, {info['cpus_usable']} CPUs,"
        f" {info['memory_gib']} GiB; herdexec {info['herdexec']}{commit}"
    )


def load() -> float:
    """The one-minute load average, to tell a disturbed run (NaN where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: int) -> float:
    """The ``pct``-th percentile, inclusive method (the maximum for pct=100)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def warm_up() -> None:
    """Settle the interpreter before a timed run: collect garbage, let the others run."""
    gc.collect()
    time.sleep(0.01)


# -- memory --------------------------------------------------------------------------


def rss() -> int:
    """This process's resident set, in bytes (psutil)."""
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """The largest resident set this process has had, in bytes (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll until ``condition()``, every 0.2 ms; False if ``timeout`` passed first."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.0002)
    return True


def threads() -> int:
    return threading.active_count()


# -- fresh processes -----------------------------------------------------------------


def in_child(target: str, timeout: float = 900.0, **kwargs: Any) -> Any:
    """Run ``benchmarks.<module>:<function>(**kwargs)`` in a fresh interpreter and return
    what it returns (through JSON), so that RSS and thread counts start from scratch."""
    command = [sys.executable, str(Path(__file__).with_name("_child.py")), target]
    done = subprocess.run(
        command,
        input=json.dumps(kwargs),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{target} failed ({done.returncode}):\n{done.stderr}")
    if done.stderr:
        sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# -- tables --------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "**over target**")


def markdown(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> str:
    """A markdown table; ``align`` has one of ``l``/``r`` per column (``r`` by default
    except the first)."""
    align = align or "l" + "r" * (len(headers) - 1)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
