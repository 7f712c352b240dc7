"""Control-server latency: how soon PATCH /herd sets a paused herd going, and how fast
GET /herd answers while the herd saturates the GIL with CPU-bound Python.

    python benchmarks/bench_server.py [--rounds 300] [--get-rounds 100] [--gophers 64]

It prints a table of p50/p99 in milliseconds; docs/server.md records the figures. Not a
test: nothing here asserts a speed.

1. PATCH-to-running: a submit() blocks on a herd of 0; PATCH /herd {"num": 1} goes out,
   and we time until the work is running (target: under 20 ms), and the PATCH round trip.
2. GET /herd while ``--gophers`` gophers spin in Python loops: from a client in another
   process (as curl or Prometheus would be), and from a thread of the serving process,
   which then competes for the GIL as well; at the interpreter's switch interval, then
   at a tenth of it (``sys.setswitchinterval``, the application's knob, not ours); and
   while the gophers do I/O-like waits instead (each wakes every millisecond).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from time import perf_counter

from herdexec import ControlServer, HerdExecutor


def request(host: str, port: int, method: str, path: str, body: bytes | None = None) -> bytes:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
        return data
    finally:
        connection.close()


def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():
        time.sleep(0.0005)


def patch_to_running(rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from PATCH sent to work running, and PATCH round trips."""
    to_running: list[float] = []
    round_trips: list[float] = []
    for _ in range(rounds):
        running, round_trip = _patch_round()
        to_running.append(running)
        round_trips.append(round_trip)
    return to_running, round_trips


def _patch_round() -> tuple[float, float]:
    """One round, on a fresh herd: as the core stands, a herd resized 1 -> 0 -> 1 can
    leave its next work waiting with no gopher (a stale idle token in
    Herd._dispatch_locked, reported), which would hang a second round."""
    started: list[float] = []
    with HerdExecutor(0, registry=None) as herd:
        server = herd.serve("127.0.0.1:0")
        # Blocks: a herd of 0 has no gopher to take the work.
        work = (lambda: started.append(perf_counter()),)
        submitter = threading.Thread(target=herd.submit, args=work)
        submitter.start()
        wait_until(lambda: herd.stats().waiting_submitters == 1)
        sent = perf_counter()
        request(server.host, server.port, "PATCH", "/herd", b'{"num": 1}')
        answered = perf_counter()
        submitter.join()
    return started[0] - sent, answered - sent


def get_while_busy(
    rounds: int, gophers: int, *, cpu: bool = True
) -> tuple[list[float], list[float]]:
    """Seconds per GET /herd from another process, and from a thread of this one,
    while every gopher spins in a Python loop (or, not ``cpu``, wakes every millisecond)."""
    stop = threading.Event()
    running = threading.Semaphore(0)

    def spin() -> int:
        running.release()
        n = 0
        while not (stop.is_set() if cpu else stop.wait(0.001)):
            n += 1
        return n

    herd = HerdExecutor(0, backlog=None, registry=None)
    futures = [herd.submit(spin) for _ in range(gophers)]
    herd.herd_size = gophers  # queued first, so that every gopher starts on one
    try:
        for _ in futures:
            running.acquire()
        server = herd.serve("127.0.0.1:0")
        outside = _client_process(server, rounds)
        inside = []
        for _ in range(rounds):
            start = perf_counter()
            request(server.host, server.port, "GET", "/herd")
            inside.append(perf_counter() - start)
        busy = herd.stats().busy
        if busy != gophers:
            raise RuntimeError(f"only {busy} of {gophers} gophers were busy")
    finally:
        stop.set()
        herd.shutdown()
    return outside, inside


def _client_process(server: ControlServer, rounds: int) -> list[float]:
    command = [sys.executable, __file__, "--client", server.url, "--get-rounds", str(rounds)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return list(json.loads(output))


def client(url: str, rounds: int) -> None:
    """The other process: time GET /herd ``rounds`` times, print the seconds as JSON."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    times = []
    for _ in range(rounds):
        start = perf_counter()
        request(host, int(port), "GET", "/herd")
        times.append(perf_counter() - start)
    print(json.dumps(times))


def row(what: str, seconds: list[float]) -> str:
    q = statistics.quantiles(seconds, n=100, method="inclusive")
    p50, p99 = statistics.median(seconds) * 1000, q[98] * 1000
    return f"| {what:<60} | {p50:8.1f} | {p99:8.1f} | {len(seconds):6} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="PATCH rounds")
    parser.add_argument("--get-rounds", type=int, default=100, help="GET rounds per row")
    parser.add_argument("--gophers", type=int, default=64)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client(args.client, args.get_rounds)
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Python {platform.python_version()} on {platform.machine()}, {cpus} CPUs")
    print(f"| {'milliseconds':<60} | {'p50':>8} | {'p99':>8} | {'rounds':>6} |")
    print(f"|{'-' * 62}|{'-' * 9}:|{'-' * 9}:|{'-' * 7}:|")
    to_running, round_trips = patch_to_running(args.rounds)
    print(row("PATCH sent -> the blocked submit's work running", to_running))
    print(row("PATCH /herd round trip", round_trips), flush=True)
    default = sys.getswitchinterval()
    for interval in (default, default / 10):
        sys.setswitchinterval(interval)
        outside, inside = get_while_busy(args.get_rounds, args.gophers)
        busy = f"GET /herd, {args.gophers} gophers in CPU loops, switch {interval * 1000:g} ms"
        print(row(f"{busy}, client outside", outside))
        print(row(f"{busy}, client inside", inside), flush=True)
    sys.setswitchinterval(default)
    outside, inside = get_while_busy(args.get_rounds, args.gophers, cpu=False)
    busy = f"GET /herd, {args.gophers} gophers waking every ms"
    print(row(f"{busy}, client outside", outside))
    print(row(f"{busy}, client inside", inside))


if __name__ == "__main__":
    main()
