"""The herd's invariants under load, with the herd resized at random as it runs.

- a work starts only while fewer than herd_size works run (after a shrink, works that
  were already running finish: the limit drops once the herd's busy count has);
- every submitted work ends exactly once: its future settles once and it runs once per
  attempt;
- a work that submits a child to its own herd never waits, and the child holds no slot:
  once all is done, the herd still takes herd_size + backlog works and no more;
- after shutdown, submitted == succeeded + failed + cancelled, and no gopher is left.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import CancelledError, Future

import pytest

from herdexec import HerdExecutor, Retry, Status, Work

from .helpers import wait_until

WORKS = 3000
SUBMITTERS = 3


class Census:
    """Counts the works running right now against the limit the herd must keep."""

    def __init__(self, limit: int) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.limit = limit
        self.violations: list[tuple[int, int]] = []
        self.attempts: Counter[str] = Counter()

    def enter(self, key: str) -> None:
        with self.lock:
            self.running += 1
            self.attempts[key] += 1
            if self.running > self.limit:
                self.violations.append((self.running, self.limit))

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


def resize(herd: HerdExecutor, census: Census, size: int) -> None:
    """Resize, keeping the census' limit at what the herd promises at every instant."""
    if size >= herd.herd_size:
        with census.lock:
            census.limit = size  # raise the limit before any new gopher can start
        herd.herd_size = size
        return
    herd.herd_size = size
    # Works already running when the herd shrank may finish; until then the old limit
    # holds. (A poll: no event marks the moment the busy count drops.)
    assert wait_until(lambda: herd.stats().busy <= size, timeout=30)
    with census.lock:
        census.limit = size


@pytest.mark.parametrize("backlog", [0, 7, None])
def test_random_resizes_under_load(
    make_herd: Callable[..., HerdExecutor], backlog: int | None
) -> None:
    rng = random.Random(1234)
    census = Census(limit=4)
    settled: Counter[str] = Counter()
    settled_lock = threading.Lock()

    def task(key: str, kind: str) -> str:
        census.enter(key)
        try:
            if kind == "spawn" and census.attempts[key] == 1:
                child = herd.submit(task, f"{key}.child", "ok")  # from a gopher: no wait
                child.add_done_callback(on_settled)
                with futures_lock:
                    futures[f"{key}.child"] = ("ok", child)
            if kind == "retry" and census.attempts[key] < 3:
                raise Retry()
            if kind == "fail":
                raise ValueError(key)
            return key
        finally:
            census.leave()

    def on_settled(future: Future[str]) -> None:
        with settled_lock:
            settled[future.work.id] += 1  # type: ignore[attr-defined]

    herd = make_herd(4, backlog=backlog, max_retries=3)  # shut down however the test ends
    futures: dict[str, tuple[str, Future[str]]] = {}
    futures_lock = threading.Lock()
    submitted_all = threading.Event()
    remaining = [SUBMITTERS]

    def submit(offset: int) -> None:
        local = random.Random(offset)
        for n in range(offset, WORKS, SUBMITTERS):
            kind = local.choice(["ok", "ok", "ok", "retry", "fail", "cancel", "spawn"])
            future = herd.submit(task, f"w{n}", kind)
            future.add_done_callback(on_settled)
            if kind == "cancel":
                future.cancel()
            with futures_lock:
                futures[f"w{n}"] = (kind, future)
        with futures_lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                submitted_all.set()

    submitters = [threading.Thread(target=submit, args=(k,)) for k in range(SUBMITTERS)]
    for thread in submitters:
        thread.start()
    sizes = [0, 1, 2, 5, 8, 0, 3, 16, 1, 0, 4]
    while not submitted_all.is_set():
        resize(herd, census, rng.choice(sizes))
        submitted_all.wait(0.002)
    resize(herd, census, 4)
    for thread in submitters:
        thread.join(timeout=60)
    # Only works still running make children now: none is left once nothing is.
    assert wait_until(lambda: not herd.stats().outstanding, timeout=60), herd.stats()
    stats = herd.stats()
    if backlog is not None:
        assert_takes(herd, 4 + backlog)
    herd.shutdown(wait=True)

    assert census.violations == []
    spawned = sum(kind == "spawn" for kind, _ in futures.values())
    assert len(futures) == WORKS + spawned
    assert not herd._threads
    assert stats.submitted == WORKS + spawned
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled
    after = herd.stats()
    assert (after.busy, after.idle, after.backlog, after.pending_retries) == (0, 0, 0, 0)
    outcomes: Counter[str] = Counter()
    for kind, future in futures.values():
        assert future.done()
        try:
            future.result()
            outcomes["succeeded"] += 1
            assert future.status is Status.SUCCESS
        except CancelledError:
            outcomes["cancelled"] += 1
            assert kind == "cancel"
        except ValueError:
            outcomes["failed"] += 1
            assert kind == "fail"
    assert outcomes == {
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
    }
    # Each work settled exactly once; none ran after being cancelled, none ran twice
    # but by retrying.
    ids = {future.id for _, future in futures.values()}
    assert settled == dict.fromkeys(ids, 1)
    for key, (kind, future) in futures.items():
        expected = {"retry": 3, "cancel": 0}.get(kind, 1)
        if kind == "cancel" and not future.cancelled():
            expected = 1  # it started before cancel() was called
        assert census.attempts[key] == expected, (key, kind)
        if kind == "spawn":
            assert f"{key}.child" in futures, key
    assert stats.retried == 2 * sum(kind == "retry" for kind, _ in futures.values())


def assert_takes(herd: HerdExecutor, places: int) -> None:
    """The herd, idle, takes ``places`` works without a wait; one more caller waits."""
    gate = threading.Event()
    callers = [
        threading.Thread(target=herd.submit, args=(gate.wait, 30)) for _ in range(places + 1)
    ]
    before = herd.stats().submitted
    for caller in callers:
        caller.start()

    def full() -> bool:
        stats = herd.stats()
        return (stats.submitted - before, stats.waiting_submitters) == (places, 1)

    try:
        assert wait_until(full), herd.stats()
    finally:
        gate.set()
        for caller in callers:
            caller.join(timeout=30)


def test_output_chan_delivers_each_work_once_under_resizes() -> None:
    rng = random.Random(99)

    def process(work: Work) -> Status:
        return Status.SUCCESS if work.body % 5 else Status.FAILURE

    herd = HerdExecutor(3, process=process, backlog=2, output=8)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.extend(w.id for w in herd.output_chan()))
    reader.start()
    for n in range(2000):
        herd.send_work(Work(f"w{n}", n))
        if n % 100 == 0:
            herd.herd_size = rng.choice([1, 2, 6, 12])
    herd.close_input()
    reader.join(timeout=60)
    herd.shutdown()
    assert sorted(received) == sorted(f"w{n}" for n in range(2000))
    stats = herd.stats()
    assert (stats.succeeded, stats.failed) == (1600, 400)
