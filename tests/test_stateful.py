"""A hypothesis state machine drives the herd through random interleavings.

Rules submit tasks (that block until the machine releases them, finish at once, raise,
raise ``Retry`` or raise a BaseException), send works to a process function, resize the
herd (0 included), cancel, release tasks, close the input and shut down. After every
step the herd is left to settle, and the invariants are checked:

- a work starts only while fewer than herd_size works run. After a shrink, works that
  were running may finish; and a gopher that passed its size check just before the
  shrink may still start its work (``_gopher_main`` reads the size unlocked, as it
  should). Such a gopher is busy in ``stats()`` without its task having begun, so the
  census forgives at most that many starts (``slack``), read under the census lock right
  after the shrink. Between steps the herd is settled, so the slack is nearly always 0;
- a caller blocks in submit only while the herd's slots are all taken;
- no waiting work is left while the herd has room for it (the settle step times out).

At the end (teardown: release everything, unpause, ``shutdown(wait=True)``) every
work ended exactly once with the outcome its kind calls for, attempts are
``1 + retries`` (``retries`` for a cancelled work), the counters add up, the output
holds each finished work once, and no gopher thread is left.

Examples are derandomized, with no example database: CI runs the same examples every
time, so a failure there is one a developer can rerun as is, and no ``.hypothesis``
directory appears in the tree. The variety comes from the threads' timing, not from a
seed. ``HERDEXEC_EXPLORE=<n>`` runs ``n`` random examples per backlog mode instead, to
look further afield on a developer's machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import herdexec._lifecycle
from herdexec import HerdExecutor, HerdFuture, Retry, Status, Work, WorkFailed

from .helpers import wait_until

MAX_RETRIES = 2
PREFIX = "HerdExecutor-stateful"
# block: waits for its gate; block_retry: waits, raises Retry, then succeeds; retryN:
# asks for N retries (retry3 runs out of them); interrupt: raises KeyboardInterrupt.
KINDS = ("block", "block", "ok", "fail", "retry1", "retry3", "block_retry", "interrupt")
RETRIES = {"block_retry": 1, "retry1": 1, "retry3": MAX_RETRIES}
# No backoff (the retry is due at once), a short one (the timer thread moves it), and
# one long enough that the retry waits in the timer until cancelled.
BACKOFFS: dict[str | None, Any] = {None: None, "short": lambda n: 0.001, "long": lambda n: 3600.0}
GATE_TIMEOUT = 30.0  # only a broken machine leaves a gate shut this long

STEPS = 50
LATE = 30  # close_input() and shutdown() come after this many steps
_explore = int(os.environ.get("HERDEXEC_EXPLORE", "0"))
SETTINGS = settings(
    max_examples=_explore or 75,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=not _explore,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Census:
    """What the tasks themselves saw: who runs now, and every start against the size."""

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.size = size
        self.slack = 0  # starts forgiven: gophers that passed their check before a shrink
        self.running: set[str] = set()
        self.blocked: set[str] = set()
        self.changes = 0  # bumped on every start and end, to read a stable census
        self.attempts: Counter[str] = Counter()
        self.violations: list[tuple[str, int, int]] = []
        self.errors: list[str] = []

    def enter(self, key: str) -> None:
        with self.lock:
            self.running.add(key)
            self.changes += 1
            self.attempts[key] += 1
            if len(self.running) > self.size:
                if self.slack:
                    self.slack -= 1
                else:
                    self.violations.append((key, len(self.running), self.size))

    def leave(self, key: str) -> None:
        with self.lock:
            self.running.discard(key)
            self.changes += 1


@dataclass
class Task:
    key: str
    kind: str
    via: str  # "submit" or "send_work"
    gate: threading.Event = field(default_factory=threading.Event)
    future: HerdFuture[Any] | None = None
    refused: BaseException | None = None
    closed_before: bool = False  # intake was closed when the call began
    cancelled_at: int | None = None  # attempts when cancel() returned True
    settled: int = 0


class HerdMachine(RuleBasedStateMachine):
    def __init__(self, backlog: int | None, backoff: str | None) -> None:
        super().__init__()
        self.backlog = backlog
        self.backoff = backoff
        self.steps = 0
        self.lock = threading.Lock()  # guards tasks' registration by intake threads
        self.tasks: dict[str, Task] = {}
        self.intake: list[tuple[threading.Thread, Task]] = []
        self.census = Census(0)
        self.closed = False
        self.shut_down = False
        self.herd: HerdExecutor | None = None
        self.numbers = itertools.count()

    # -- the tasks -------------------------------------------------------------------

    def behave(self, key: str, kind: str) -> Status:
        """One attempt: SUCCESS, or RETRY/FAILURE (as the process function says them)."""
        census = self.census
        census.enter(key)
        try:
            attempt = census.attempts[key]
            if kind == "block" or (kind == "block_retry" and attempt == 1):
                with census.lock:
                    census.blocked.add(key)
                opened = self.tasks[key].gate.wait(GATE_TIMEOUT)
                with census.lock:
                    census.blocked.discard(key)
                if not opened:
                    census.errors.append(f"{key}: gate never opened")
                if kind == "block_retry":
                    return Status.RETRY
            if kind == "fail":
                return Status.FAILURE
            if kind == "interrupt":
                raise KeyboardInterrupt(key)
            if kind.startswith("retry") and attempt <= int(kind[-1]):
                return Status.RETRY
            return Status.SUCCESS
        finally:
            census.leave(key)

    def task(self, key: str, kind: str) -> str:
        status = self.behave(key, kind)
        if status is Status.RETRY:
            raise Retry()
        if status is Status.FAILURE:
            raise ValueError(key)
        return key

    def process(self, work: Work) -> Status:
        status = self.behave(work.id, work.body)
        work.set_result(work.id)
        return status

    # -- rules -----------------------------------------------------------------------

    @initialize(size=st.integers(0, 3))
    def start(self, size: int) -> None:
        self.census.size = size
        self.herd = HerdExecutor(
            size,
            thread_name_prefix=PREFIX,
            backlog=self.backlog,
            process=self.process,
            max_retries=MAX_RETRIES,
            backoff=BACKOFFS[self.backoff],
        )
        self.settle()

    @rule(kind=st.sampled_from(KINDS))
    def submit(self, kind: str) -> None:
        task = self.new_task(kind, "submit")
        self.take_in(task, lambda: self.h.submit(self.task, task.key, kind))

    @rule(kind=st.sampled_from(KINDS))
    def send_work(self, kind: str) -> None:
        task = self.new_task(kind, "send_work")
        self.take_in(task, lambda: self.h.send_work(Work(task.key, kind)))

    @rule(size=st.integers(0, 4))
    def resize(self, size: int) -> None:
        self.set_size(size)
        self.settle()

    @rule(index=st.integers(0, 99), pending=st.booleans())
    def cancel(self, index: int, pending: bool) -> None:
        """Cancel a work, preferably one not running now (the others refuse)."""
        with self.census.lock:
            running = set(self.census.running)
        keys = sorted(k for k, t in self.tasks.items() if t.future and not t.future.done())
        if pending and set(keys) - running:
            keys = sorted(set(keys) - running)
        if keys:
            task = self.tasks[keys[index % len(keys)]]
            assert task.future is not None
            if task.future.cancel():
                # Read after: once cancel() is True no attempt can start.
                with self.census.lock:
                    task.cancelled_at = self.census.attempts[task.key]
        self.settle()

    @rule(index=st.integers(0, 99), running=st.booleans())
    def release(self, index: int, running: bool) -> None:
        """Let a blocking task finish; preferably one that is running now."""
        with self.census.lock:
            blocked = sorted(self.census.blocked)
        keys = (
            blocked
            if running and blocked
            else sorted(k for k, t in self.tasks.items() if not t.gate.is_set())
        )
        if keys:
            self.tasks[keys[index % len(keys)]].gate.set()
        self.settle()

    # Intake ends late in a run, so that most steps see an open herd.
    @precondition(lambda self: self.steps >= LATE)
    @rule()
    def close_input(self) -> None:
        self.closed = True
        self.h.close_input()
        self.settle()

    @precondition(lambda self: self.steps >= LATE)
    @rule(cancel_futures=st.booleans())
    def shutdown(self, cancel_futures: bool) -> None:
        self.closed = self.shut_down = True
        self.h.shutdown(wait=False, cancel_futures=cancel_futures)
        self.settle()

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def concurrency_stays_within_the_herd_size(self) -> None:
        assert self.census.violations == []
        assert self.census.errors == []

    @invariant()
    def counters_never_run_ahead(self) -> None:
        if self.herd is None:
            return
        # Read in this order, a caller that gets its slot meanwhile cannot fool us:
        # the herd counts a work before submit() returns, and the thread ends after.
        with self.lock:
            accepted_before = sum(t.future is not None for t in self.tasks.values())
        stats = self.h.stats()
        with self.lock:
            accepted = sum(t.future is not None for t in self.tasks.values())
            in_flight = sum(th.is_alive() for th, _ in self.intake)
        assert stats.herd_size == self.census.size
        assert stats.outstanding >= 0
        assert accepted_before <= stats.submitted <= accepted + in_flight

    @invariant()
    def a_cancelled_work_never_runs_again(self) -> None:
        for task in self.tasks.values():
            if task.cancelled_at is not None:
                assert self.census.attempts[task.key] == task.cancelled_at, task

    @invariant()
    def refusals_only_after_close(self) -> None:
        for task in self.tasks.values():
            if task.refused is not None:
                assert self.closed, f"{task.key} refused while open: {task.refused!r}"
                assert isinstance(task.refused, RuntimeError), task.refused
                assert self.census.attempts[task.key] == 0

    # -- helpers ---------------------------------------------------------------------

    @property
    def h(self) -> HerdExecutor:
        assert self.herd is not None
        return self.herd

    def new_task(self, kind: str, via: str) -> Task:
        key = f"{'t' if via == 'submit' else 'w'}{next(self.numbers)}"
        task = self.tasks[key] = Task(key, kind, via, closed_before=self.closed)
        return task

    def take_in(self, task: Task, call: Any) -> None:
        """Submit from a thread of its own: in the blocking modes it may wait for a slot."""

        def run() -> None:
            try:
                future = call()
            except BaseException as exc:
                with self.lock:
                    task.refused = exc
                return

            def settled(_: object) -> None:
                with self.lock:
                    task.settled += 1

            future.add_done_callback(settled)
            with self.lock:
                task.future = future

        thread = threading.Thread(target=run, name=f"intake-{task.key}")
        with self.lock:
            self.intake.append((thread, task))
        thread.start()
        if self.backlog is None:
            thread.join(10)  # an unbounded backlog never blocks
            assert not thread.is_alive(), "submit blocked with backlog=None"
        self.settle()

    def set_size(self, size: int) -> None:
        """Resize the herd; once it has ended (shut down, every work it accepted done), it
        refuses, and then it must have ended."""
        census = self.census
        ended = self.shut_down and not self.h.stats().outstanding  # it stays ended
        with census.lock:  # no task starts or ends meanwhile
            old = census.size
            census.size = max(size, old)  # before any new gopher can start a work
            refused = False
            try:
                self.h.herd_size = size
            except RuntimeError:
                refused = True
            if refused:
                census.size = old
                assert self.shut_down
                assert not self.h.stats().outstanding
                assert self.h.herd_size == old
                return
            assert not ended, "a herd that had ended took a new size"
            if size < old:
                # Gophers busy without a task begun may have passed the check at the old size.
                census.slack += max(0, self.h.stats().busy - len(census.running))
                census.size = size

    def unsettled(self) -> str:
        """Why the herd may still move by itself, or "" once it waits for the machine:
        every busy gopher is inside a task that waits for its gate, every caller still
        in submit waits for a slot, nothing waits while the herd has room, and no
        gopher is left over."""
        census = self.census
        with self.lock:
            pending = sum(th.is_alive() for th, _ in self.intake)
            futures = [(t, t.future) for t in self.tasks.values() if t.future is not None]
        before = census.changes
        stats = self.h.stats()
        with census.lock:
            running = set(census.running)
            held = {key for key in census.blocked if not self.tasks[key].gate.is_set()}
            stable = census.changes == before
            if stable and stats.busy == len(running):
                census.slack = 0  # no gopher between its check and its task
        waiting = [t for t, f in futures if not f.done() and t.key not in running]
        if self.backoff == "long":  # a retry in an hour's backoff is not waiting for room
            waiting = [t for t in waiting if t.future and t.future.status is not Status.RETRY]
        reasons = {
            "tasks started or ended meanwhile": not stable,
            "a gopher is busy outside a task": stats.busy != len(running),
            "a submit is on its way in or out": stats.waiting_submitters != pending,
            "a task the machine does not hold will end by itself": running != held,
            "a surplus idle gopher has not left": bool(stats.idle)
            and stats.idle + stats.busy > stats.herd_size,
            "a gopher has not left the wound-down herd": self.closed
            and not stats.outstanding
            and bool(stats.idle),
            "a work waits while the herd has room": bool(waiting)
            and len(running) < stats.herd_size,
            "a submit waits while a slot is free": bool(pending)
            and not self.closed
            and self.backlog is not None
            and self.slot_holders(futures, stats.cancelled) < stats.herd_size + self.backlog,
        }
        return ", ".join(reason for reason, holds in reasons.items() if holds)

    @staticmethod
    def slot_holders(futures: list[tuple[Task, HerdFuture[Any]]], popped: int) -> int:
        """Works holding a slot: each holds one until its first attempt ends, or until
        a gopher pops it cancelled (stats' cancelled, less retries cancelled)."""
        holders = sum(not f.done() and f.retries == 0 for _, f in futures)
        cancelled = [f for _, f in futures if f.cancelled()]
        holders += sum(f.retries == 0 for f in cancelled)
        return holders - (popped - sum(f.retries > 0 for f in cancelled))

    def settle(self) -> None:
        self.steps += 1
        if not wait_until(lambda: not self.unsettled(), timeout=5):
            raise AssertionError(f"the herd did not settle: {self.unsettled()}, {self.h.stats()}")

    # -- the end ---------------------------------------------------------------------

    def teardown(self) -> None:
        if self.herd is None:
            return
        herd = self.herd
        threads = herd._threads
        try:
            self.wind_down(herd)
            threads |= herd._threads
        except BaseException:
            # Whatever failed, leave no herd behind to hang the interpreter's exit.
            for task in self.tasks.values():
                task.gate.set()
            with contextlib.suppress(RuntimeError):  # a herd that has ended needs no gopher
                herd.herd_size = max(1, herd.herd_size)
            herd.shutdown(wait=False, cancel_futures=True)
            herdexec._lifecycle.forget(herd._herd)
            raise
        assert [t for t in threads if t.is_alive()] == []
        self.check_the_end(herd)

    def wind_down(self, herd: HerdExecutor) -> None:
        """Release every task, unpause, cancel retries that would wait an hour, and
        shut down with wait=True (from a thread, so that a hang fails the test)."""
        for task in self.tasks.values():
            task.gate.set()
        if herd.herd_size == 0:
            self.set_size(2)
        self.settle()
        if self.backoff == "long":
            for task in self.tasks.values():
                future = task.future
                if future and not future.done() and future.status is Status.RETRY:
                    assert future.cancel(), task
                    task.cancelled_at = self.census.attempts[task.key]
        closer = threading.Thread(target=herd.shutdown, name="closer")
        closer.start()
        closer.join(10)
        assert not closer.is_alive(), f"shutdown(wait=True) hung: {herd.stats()}"
        for thread, _ in self.intake:
            thread.join(10)
            assert not thread.is_alive(), f"{thread.name} still in submit after shutdown"

    def check_the_end(self, herd: HerdExecutor) -> None:
        census = self.census
        assert census.violations == []
        assert census.errors == []
        assert census.running == set()
        accepted = [t for t in self.tasks.values() if t.future is not None]
        outcomes: Counter[str] = Counter()
        for task in self.tasks.values():
            if task.future is None:
                assert task.refused is not None, task
                assert census.attempts[task.key] == 0, task
                continue
            outcomes[self.check_work(task, task.future)] += 1
        stats = herd.stats()
        assert stats.submitted == len(accepted)
        assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled
        assert (outcomes["succeeded"], outcomes["failed"], outcomes["cancelled"]) == (
            stats.succeeded,
            stats.failed,
            stats.cancelled,
        )
        assert stats.retried == sum(t.future.retries for t in accepted if t.future)
        assert (stats.busy, stats.idle, stats.backlog) == (0, 0, 0)
        assert (stats.pending_retries, stats.waiting_submitters) == (0, 0)
        # The output holds every work that ended, once; cancelled ones never.
        ended = Counter(t.future.id for t in accepted if t.future and not t.future.cancelled())
        assert Counter(work.id for work in herd.output_chan()) == ended

    def check_work(self, task: Task, future: HerdFuture[Any]) -> str:
        assert future.done(), task
        assert task.settled == 1, task
        attempts = self.census.attempts[task.key]
        if future.cancelled():
            assert attempts == future.retries, task
            if task.cancelled_at is not None:
                assert attempts == task.cancelled_at, task
            return "cancelled"
        assert task.cancelled_at is None, task
        assert attempts == 1 + future.retries, task
        kind = task.kind
        exc = future.exception()
        if kind in ("fail", "retry3", "interrupt"):
            assert future.status is Status.FAILURE, task
            assert future.retries == RETRIES.get(kind, 0), task
            expected: type[BaseException] = {
                "fail": ValueError if task.via == "submit" else WorkFailed,
                "retry3": Retry if task.via == "submit" else WorkFailed,
                "interrupt": KeyboardInterrupt,
            }[kind]
            assert isinstance(exc, expected), (task, exc)
            assert future.work.exception is (None if expected is WorkFailed else exc)
            return "failed"
        assert exc is None, (task, exc)
        assert future.status is Status.SUCCESS, task
        assert future.retries == RETRIES.get(kind, 0), task
        assert future.result() == task.key
        return "succeeded"


@pytest.mark.parametrize(
    ("backlog", "backoff"),
    [(0, None), (0, "long"), (2, "short"), (None, "long"), (None, None)],
    ids=lambda value: f"{value}",
)
def test_random_interleavings(backlog: int | None, backoff: str | None) -> None:
    run_state_machine_as_test(lambda: HerdMachine(backlog, backoff), settings=SETTINGS)


def test_growing_the_herd_as_it_winds_down_starts_no_stray_gopher() -> None:
    """Found by the machine, before settle() waited for gophers to leave a wound-down
    herd (now the machine resizes only once they have: this test keeps the race)."""
    herd = HerdExecutor(1, thread_name_prefix=PREFIX)
    try:
        herd.submit(int).result(timeout=10)
        herd.close_input()  # nothing left: the herd winds down, waking its idle gopher
        herd.herd_size = 2  # before that gopher has woken
        # A poll: nothing marks the moment the gophers have left.
        assert wait_until(lambda: not herd.stats().idle, timeout=3), herd.stats()
    finally:
        herd.herd_size = 0  # sends a stray gopher away, if there is one
        herd.shutdown()
