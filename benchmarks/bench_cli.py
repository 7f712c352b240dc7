"""``herdexec run`` against ``xargs -P``, side by side on the same input, in the same run.

Each round runs, in turn, ``xargs -P J -n 1 true`` and ``herdexec run -j J -- true`` on the
same N input lines, and ``herdexec run`` on an empty input (its start-up cost alone). The
table shows the median of each over the rounds, the ratio herdexec / xargs (the target
is 1.5 or below), and the cost per job: all of it, and herdexec's beyond xargs'.

Usage: ``python benchmarks/bench_cli.py [--jobs 2000] [--parallel 8] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERDEXEC = str(Path(sys.executable).with_name("herdexec"))


def timed(command: list[str], data: bytes) -> float:
    """Seconds ``command`` takes to run to the end on ``data``; it must succeed."""
    started = time.perf_counter()
    subprocess.run(command, input=data, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="input lines (default: 2000)")
    parser.add_argument("--parallel", type=int, default=8, help="-P / -j (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: 5)")
    args = parser.parse_args()
    xargs = shutil.which("xargs")
    if xargs is None:
        sys.exit("bench_cli: xargs is not on PATH")
    data = "".join(f"{n}\n" for n in range(args.jobs)).encode()
    j = str(args.parallel)
    commands = {
        "xargs": [xargs, "-P", j, "-n", "1", "true"],
        "herdexec": [HERDEXEC, "run", "-j", j, "--no-progress", "--", "true"],
    }
    startup_command = commands["herdexec"]
    timed(startup_command, data[:100])  # warm the page cache and the .pyc files
    times: dict[str, list[float]] = {name: [] for name in (*commands, "startup")}
    for _ in range(args.rounds):
        for name, command in commands.items():
            times[name].append(timed(command, data))
        times["startup"].append(timed(startup_command, b""))
    xargs_s = statistics.median(times["xargs"])
    herd_s = statistics.median(times["herdexec"])
    startup_s = statistics.median(times["startup"])
    n = args.jobs
    print(
        f"{n} jobs of `true`, -P/-j {args.parallel}, median of {args.rounds} rounds;"
        f" {os.cpu_count()} CPUs, {platform.system()} {platform.machine()},"
        f" Python {platform.python_version()}"
    )
    print(f"  xargs -P {j} -n 1 true      {xargs_s:7.3f} s   {xargs_s / n * 1e6:6.0f} us/job")
    print(f"  herdexec run -j {j} -- true  {herd_s:7.3f} s   {herd_s / n * 1e6:6.0f} us/job")
    print(f"  herdexec start-up alone    {startup_s:7.3f} s")
    print(f"  ratio herdexec / xargs     {herd_s / xargs_s:7.2f}   (target <= 1.5)")
    extra = (herd_s - xargs_s) / n * 1e6
    beyond = (herd_s - startup_s - xargs_s) / n * 1e6
    print(
        f"  herdexec's cost per job beyond xargs': {extra:.0f} us, {beyond:.0f} us after start-up"
    )


if __name__ == "__main__":
    main()
