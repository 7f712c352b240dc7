"""Control-server latency: how soon PATCH /herd sets a paused herd going, and how fast
GET /herd answers while the herd saturates the GIL with CPU-bound Python.

    python benchmarks/bench_server.py [--rounds 300] [--get-rounds 100] [--gophers 64]

It prints a table of p50/p99 in milliseconds; docs/server.md and docs/benchmarks.md
record the figures. The anchor of every row is a bare stdlib ``http.server``
(``ThreadingHTTPServer``) in the same process, doing the same job on the same herd
(answering its stats as JSON, or resizing it), with the requests to the two servers
interleaved: the ratio is what herdexec's server (wsgiref + bottle, a thread per
connection) costs over the simplest server Python has, under the same load.

1. PATCH-to-running: a submit() blocks on a fresh herd of 0; PATCH /herd {"num": 1} goes
   out, and we time until the work is running (target: under 20 ms at p99), and the PATCH
   round trip.
2. GET /herd on an idle herd, then while ``--gophers`` gophers spin in Python loops: from
   a client in another process (as curl or Prometheus would be), and from a thread of the
   serving process, which then competes for the GIL as well; at the interpreter's switch
   interval, then at a tenth of it (``sys.setswitchinterval``, the application's knob,
   not ours); and while the gophers do I/O-like waits instead (each wakes every
   millisecond).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # also run as a script

from benchmarks import _common
from herdexec import HerdExecutor

TARGET_MS = 20.0  # PATCH sent -> work running, at p99


def request(url: str, method: str, path: str, body: bytes | None = None) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
        return data
    finally:
        connection.close()


# -- the anchor: the simplest server that does the same job ----------------------------


class Baseline:
    """A stdlib ``ThreadingHTTPServer`` answering GET/PATCH /herd for :attr:`herd`."""

    def __init__(self) -> None:
        self.herd: HerdExecutor | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                assert owner.herd is not None
                stats = dataclasses.asdict(owner.herd.stats())
                self._reply({"num": stats["herd_size"], "msg": "success", **stats})

            def do_PATCH(self) -> None:
                assert owner.herd is not None
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                num = json.loads(body)["num"]
                owner.herd.herd_size = num
                self._reply({"num": num, "msg": "success"})

            def _reply(self, document: dict[str, Any]) -> None:
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# -- PATCH -------------------------------------------------------------------------


def patch_round(url_of: Callable[[HerdExecutor], str]) -> tuple[float, float]:
    """Seconds from PATCH sent to the blocked work running, and the PATCH round trip,
    on a fresh herd of 0 (a fresh one each round, so no round inherits another's state)."""
    started: list[float] = []
    with HerdExecutor(0, registry=None) as herd:
        url = url_of(herd)
        # Blocks: a herd of 0 has no gopher to take the work.
        work = (lambda: started.append(perf_counter()),)
        submitter = threading.Thread(target=herd.submit, args=work)
        submitter.start()
        _common.wait_for(lambda: herd.stats().waiting_submitters == 1)
        sent = perf_counter()
        request(url, "PATCH", "/herd", b'{"num": 1}')
        answered = perf_counter()
        submitter.join()
    return started[0] - sent, answered - sent


def patch_to_running(rounds: int, baseline: Baseline) -> dict[str, dict[str, list[float]]]:
    def on_baseline(herd: HerdExecutor) -> str:
        baseline.herd = herd
        return baseline.url

    def on_herd(herd: HerdExecutor) -> str:
        return herd.serve("127.0.0.1:0").url

    times: dict[str, dict[str, list[float]]] = {
        "running": {"pool": [], "herd": []},
        "round_trip": {"pool": [], "herd": []},
    }
    for index in range(rounds):
        for kind in ("pool", "herd") if index % 2 == 0 else ("herd", "pool"):
            running, round_trip = patch_round(on_baseline if kind == "pool" else on_herd)
            times["running"][kind].append(running)
            times["round_trip"][kind].append(round_trip)
    return times


# -- GET ---------------------------------------------------------------------------


def client_times(urls: Sequence[str], rounds: int) -> list[list[float]]:
    """Time GET /herd ``rounds`` times on each of ``urls``, alternating between them
    (run by :func:`_common.in_child` as the client in another process)."""
    times: list[list[float]] = [[] for _ in urls]
    for index in range(rounds):
        order = range(len(urls)) if index % 2 == 0 else reversed(range(len(urls)))
        for which in order:
            start = perf_counter()
            request(urls[which], "GET", "/herd")
            times[which].append(perf_counter() - start)
    return times


def get_while_busy(
    rounds: int, gophers: int, baseline: Baseline, *, cpu: bool = True
) -> dict[str, dict[str, list[float]]]:
    """Seconds per GET /herd, from another process and from a thread of this one, to
    the herd's server and to the baseline, while every gopher spins in a Python loop
    (or, not ``cpu``, wakes every millisecond); with ``gophers=0``, on an idle herd."""
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
        baseline.herd = herd
        urls = [baseline.url, herd.serve("127.0.0.1:0").url]
        outside = _common.in_child("bench_server:client_times", urls=urls, rounds=rounds)
        inside = client_times(urls, rounds)
        busy = herd.stats().busy
        if busy != gophers:
            raise RuntimeError(f"only {busy} of {gophers} gophers were busy")
    finally:
        stop.set()
        herd.shutdown()
    return {
        "outside": {"pool": outside[0], "herd": outside[1]},
        "inside": {"pool": inside[0], "herd": inside[1]},
    }


# -- the section -------------------------------------------------------------------


def summary(figure: str, times: dict[str, list[float]], target: float | None = None) -> dict:
    pool, herd = times["pool"], times["herd"]
    row = {
        "figure": figure,
        "n": len(herd),
        "pool_p50_ms": _common.median(pool) * 1000,
        "pool_p99_ms": _common.percentile(pool, 99) * 1000,
        "herd_p50_ms": _common.median(herd) * 1000,
        "herd_p99_ms": _common.percentile(herd, 99) * 1000,
        "target_ms": target,
        "pool_samples_ms": [t * 1000 for t in pool],
        "herd_samples_ms": [t * 1000 for t in herd],
    }
    row["ratio_p50"] = row["herd_p50_ms"] / row["pool_p50_ms"]
    row["ratio_p99"] = row["herd_p99_ms"] / row["pool_p99_ms"]
    row["ok"] = None if target is None else row["herd_p99_ms"] < target
    return row


def measure(
    rounds: int = 300,
    get_rounds: int = 100,
    gophers: int = 64,
    slow_get_rounds: int | None = None,
) -> dict[str, Any]:
    """Every row; ``slow_get_rounds`` (default ``get_rounds``) for the GETs at the
    default switch interval, which take a second or more each."""
    rows = []
    loads = [_common.load()]
    baseline = Baseline()
    try:
        times = patch_to_running(rounds, baseline)
        rows.append(
            summary("PATCH sent -> the blocked submit's work running", times["running"], TARGET_MS)
        )
        rows.append(summary("PATCH /herd round trip", times["round_trip"]))
        loads.append(_common.load())
        _common.progress(f"server: PATCH rounds done (load {loads[-1]:.2f})")
        idle = get_while_busy(get_rounds, 0, baseline)
        rows.append(summary("GET /herd, idle herd, client outside", idle["outside"]))
        rows.append(summary("GET /herd, idle herd, client inside", idle["inside"]))
        default = sys.getswitchinterval()
        for interval, n in ((default, slow_get_rounds or get_rounds), (default / 10, get_rounds)):
            sys.setswitchinterval(interval)
            try:
                busy = get_while_busy(n, gophers, baseline)
            finally:
                sys.setswitchinterval(default)
            what = f"GET /herd, {gophers} gophers in CPU loops, switch {interval * 1000:g} ms"
            rows.append(summary(f"{what}, client outside", busy["outside"]))
            rows.append(summary(f"{what}, client inside", busy["inside"]))
            loads.append(_common.load())
            _common.progress(f"server: {what} done (load {loads[-1]:.2f})")
        waking = get_while_busy(get_rounds, gophers, baseline, cpu=False)
        what = f"GET /herd, {gophers} gophers waking every ms"
        rows.append(summary(f"{what}, client outside", waking["outside"]))
        rows.append(summary(f"{what}, client inside", waking["inside"]))
        loads.append(_common.load())
    finally:
        baseline.close()
    return {"rounds": rounds, "get_rounds": get_rounds, "load": loads, "rows": rows}


def table(result: dict[str, Any]) -> str:
    head = (
        f"Control server, milliseconds: {result['rounds']} PATCH rounds, GET rounds as listed;"
        " anchor: a bare http.server.ThreadingHTTPServer doing the same, same process,"
        f" requests interleaved; target: PATCH -> running under {TARGET_MS:g} ms at p99"
    )
    rows = [
        (
            r["figure"],
            r["n"],
            f"{r['pool_p50_ms']:.1f} / {r['pool_p99_ms']:.1f}",
            f"{r['herd_p50_ms']:.1f} / {r['herd_p99_ms']:.1f}",
            f"{r['ratio_p50']:.2f} / {r['ratio_p99']:.2f}",
            _common.verdict(r["ok"]),
        )
        for r in result["rows"]
    ]
    headers = ("milliseconds", "rounds", "http.server p50 / p99", "herdexec p50 / p99")
    headers += ("herd/anchor p50 / p99", "target")
    return head + "\n\n" + _common.markdown(headers, rows, "lrrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="PATCH rounds")
    parser.add_argument("--get-rounds", type=int, default=100, help="GET rounds per row")
    parser.add_argument("--gophers", type=int, default=64)
    args = parser.parse_args(argv)
    print(_common.describe(_common.machine()))
    result = measure(args.rounds, args.get_rounds, args.gophers)
    print(table(result))
    return 1 if any(r["ok"] is False for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
