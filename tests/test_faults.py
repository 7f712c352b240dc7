"""Faults: what the herd does when the code it runs, or the code that drives it, fails.

Each test checks that the herd is left working (or broken, in the documented way), that
no work is lost or reported twice (one settlement per future, counted once in stats()),
and that shutdown returns. Where a fault kills a thread, the ``deaths`` fixture catches
it instead of pytest's hook, so the test can say so; ``close_or_forget`` then makes
sure that a herd a bug left with stranded work hangs neither the test nor the
interpreter's exit.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import itertools
import math
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any

import pytest

import herdexec._lifecycle
from herdexec import BrokenHerd, HerdExecutor, HerdFuture, Retry, Status, Work, WorkFailed

from .helpers import assert_capacity, wait_until

BASE_EXCEPTIONS = [KeyboardInterrupt, SystemExit, GeneratorExit]


class Deaths:
    """Threads that ended with an exception, and an event set at each."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, type[BaseException]]] = []
        self.event = threading.Event()

    def hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        self.seen.append((name, args.exc_type))
        self.event.set()


@pytest.fixture
def deaths(monkeypatch: pytest.MonkeyPatch) -> Deaths:
    found = Deaths()
    monkeypatch.setattr(threading, "excepthook", found.hook)
    return found


def close_or_forget(herd: HerdExecutor, deaths: Deaths | None = None) -> None:
    """Shut the herd down and wait; if a bug stranded work in it (a gopher died, or the
    wait does not end), send its idle gophers away and forget it instead."""
    herd.shutdown(wait=False, cancel_futures=True)
    if deaths is None or not deaths.seen:
        closer = threading.Thread(target=herd.shutdown, daemon=True)
        closer.start()
        closer.join(10)
        if not closer.is_alive():
            return
    herd.herd_size = 0  # idle gophers leave, whatever is outstanding
    for thread in herd._threads:
        thread.join(5)
    herdexec._lifecycle.forget(herd._herd)  # the exit hook would wait for ever


def ask_for_retry() -> None:
    raise Retry()


def settle_count(future: Future[Any]) -> list[int]:
    """A list whose length is how many times the future settled."""
    calls: list[int] = []
    future.add_done_callback(lambda _: calls.append(1))
    return calls


def settled_or_died(future: Future[Any], deaths: Deaths, timeout: float = 10) -> None:
    """Wait until the future settles or a thread dies, whichever comes first."""
    future.add_done_callback(lambda _: deaths.event.set())
    deaths.event.wait(timeout)


def assert_counts_add_up(herd: HerdExecutor) -> None:
    stats = herd.stats()
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled, stats


# -- a task raises a BaseException -------------------------------------------------------


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS)
def test_a_base_exception_in_a_task_fails_only_that_work(
    kind: type[BaseException], deaths: Deaths
) -> None:
    herd = HerdExecutor(2, backlog=None, output=True)
    try:

        def task() -> None:
            raise kind("from the task")

        future = herd.submit(task)
        calls = settle_count(future)
        others = [herd.submit(pow, 2, n) for n in range(20)]
        assert isinstance(future.exception(timeout=10), kind)
        assert future.work.exception is future.exception()
        assert future.status is Status.FAILURE
        assert [f.result(timeout=10) for f in others] == [2**n for n in range(20)]
        herd.shutdown()
        assert calls == [1]
        stats = herd.stats()
        assert (stats.submitted, stats.succeeded, stats.failed) == (21, 20, 1)
        assert Counter(w.id for w in herd.output_chan()) == Counter(f.id for f in [future, *others])
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS)
def test_a_base_exception_in_process_fails_only_that_work(
    kind: type[BaseException], deaths: Deaths
) -> None:
    def process(work: Work) -> Status:
        if work.body:
            raise kind(work.id)
        return Status.SUCCESS

    herd = HerdExecutor(1, process=process, backlog=None)
    try:
        futures = [herd.send_work(Work(f"w{n}", n % 3 == 0)) for n in range(9)]
        for n, future in enumerate(futures):
            if n % 3 == 0:
                assert isinstance(future.exception(timeout=10), kind)
            else:
                assert future.result(timeout=10) is None
        herd.close_input()
        outputs = {w.id: w.status for w in herd.output_chan()}
        assert outputs == {
            f"w{n}": Status.FAILURE if n % 3 == 0 else Status.SUCCESS for n in range(9)
        }
        herd.shutdown()
        stats = herd.stats()
        assert (stats.succeeded, stats.failed) == (6, 3)
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_a_base_exception_in_retry_on_is_retried(deaths: Deaths) -> None:
    attempts = itertools.count(1)

    def task() -> int:
        n = next(attempts)
        if n < 3:
            raise KeyboardInterrupt(n)
        return n

    herd = HerdExecutor(1, max_retries=2, retry_on=KeyboardInterrupt)
    try:
        future = herd.submit(task)
        assert future.result(timeout=10) == 3
        assert future.retries == 2
        herd.shutdown()
        assert herd.stats().retried == 2
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


# -- callbacks that raise ----------------------------------------------------------------


def callback_herd(which: str, callback: Callable[[Work], object], **kwargs: Any) -> HerdExecutor:
    return HerdExecutor(1, max_retries=1, backlog=None, output=True, **{which: callback}, **kwargs)


def work_for(which: str) -> Callable[[], str]:
    """A task whose outcome calls the callback ``which``: on_retry retries, then succeeds."""
    attempts = itertools.count()

    def task() -> str:
        n = next(attempts)
        if which == "on_failure":
            raise ValueError("fails")
        if which == "on_retry" and n == 0:
            raise Retry()
        return "ok"

    return task


def expect_outcome(which: str, future: Future[str]) -> None:
    if which == "on_failure":
        assert isinstance(future.exception(timeout=10), ValueError)
    else:
        assert future.result(timeout=10) == "ok"


@pytest.mark.parametrize("which", ["on_success", "on_retry", "on_failure"])
def test_a_callback_raising_an_exception_is_logged_and_changes_nothing(
    which: str, caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    def explode(work: Work) -> None:
        raise RuntimeError(f"{which} bug")

    herd = callback_herd(which, explode)
    try:
        with caplog.at_level("ERROR", logger="herdexec"):
            futures = [herd.submit(work_for(which)) for _ in range(3)]
            calls = [settle_count(f) for f in futures]
            for future in futures:
                expect_outcome(which, future)
            herd.shutdown()
        assert calls == [[1]] * 3
        assert caplog.text.count(f"{which} bug") == 3
        assert len(list(herd.output_chan())) == 3
        assert_counts_add_up(herd)
        assert herd.stats().retried == (3 if which == "on_retry" else 0)
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("which", ["on_success", "on_retry", "on_failure"])
def test_a_callback_raising_a_base_exception_loses_no_work(
    which: str, kind: type[BaseException], caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    """Decided: a callback runs on a gopher, where a BaseException can only be a bug in
    the callback (signals go to the main thread), so it is logged like any other
    exception; the work keeps its own outcome and the gopher goes on."""

    def explode(work: Work) -> None:
        raise kind(f"{which} bug")

    herd = callback_herd(which, explode)
    try:
        with caplog.at_level("ERROR", logger="herdexec"):
            future = herd.submit(work_for(which))
            settled_or_died(future, deaths)
            assert deaths.seen == []
            expect_outcome(which, future)
            assert herd.submit(int, "5").result(timeout=10) == 5  # the herd still works
            herd.shutdown()
        assert f"{which} bug" in caplog.text
        assert_counts_add_up(herd)
    finally:
        close_or_forget(herd, deaths)


def test_a_done_callback_raising_an_exception_is_logged_as_the_stdlib_does(
    caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    herd = HerdExecutor(1, backlog=None)
    try:
        gate = threading.Event()
        first = herd.submit(gate.wait)
        first.add_done_callback(lambda f: 1 / 0)
        rest = [herd.submit(int, str(n)) for n in range(5)]
        with caplog.at_level("ERROR", logger="concurrent.futures"):
            gate.set()
            assert [f.result(timeout=10) for f in rest] == list(range(5))
        assert "exception calling callback" in caplog.text
        herd.shutdown()
        assert herd.stats().succeeded == 6
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_a_done_callback_raising_a_base_exception_loses_no_other_work(
    deaths: Deaths,
) -> None:
    """ThreadPoolExecutor loses its worker thread too, but never a queued work it had
    not started. Here the next work must still run."""
    herd = HerdExecutor(1, backlog=None)
    try:
        gate = threading.Event()
        first = herd.submit(gate.wait)

        def leave(_: object) -> None:
            raise SystemExit

        first.add_done_callback(leave)
        second = herd.submit(int, "2")
        gate.set()
        settled_or_died(second, deaths)
        assert second.result(timeout=1) == 2
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


# -- an initializer that raises ----------------------------------------------------------


@pytest.mark.parametrize("kind", [OSError, KeyboardInterrupt, SystemExit])
def test_a_failing_initializer_fails_each_waiting_work_once(
    kind: type[BaseException], caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    gate = threading.Event()

    def init() -> None:
        gate.wait()
        raise kind("no database")

    herd = HerdExecutor(2, initializer=init, backlog=None, output=True)
    try:
        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            futures = [herd.submit(int, str(n)) for n in range(10)]
            calls = [settle_count(f) for f in futures]
            assert futures[3].cancel()  # a cancelled one stays cancelled
            gate.set()
            for n, future in enumerate(futures):
                if n == 3:
                    with pytest.raises(CancelledError):
                        future.result(timeout=10)
                else:
                    assert isinstance(future.exception(timeout=10), BrokenHerd)
                    assert future.status is Status.FAILURE
        with pytest.raises(BrokenHerd):
            herd.submit(int)
        herd.shutdown()
        assert calls == [[1]] * 10
        stats = herd.stats()
        assert (stats.submitted, stats.failed, stats.cancelled, stats.succeeded) == (10, 9, 1, 0)
        outputs = Counter(w.id for w in herd.output_chan())
        assert outputs == Counter(f.id for n, f in enumerate(futures) if n != 3)
        assert "Exception in initializer" in caplog.text
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_a_failing_initializer_refuses_blocked_submitters(
    caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    gate = threading.Event()

    def init() -> None:
        gate.wait()
        raise OSError("no database")

    ran: list[int] = []
    herd = HerdExecutor(1, initializer=init)
    try:
        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            first = herd.submit(ran.append, 0)  # takes the only slot
            errors: queue.SimpleQueue[BaseException] = queue.SimpleQueue()

            def submit(n: int) -> None:
                try:
                    herd.submit(ran.append, n)
                except BaseException as exc:
                    errors.put(exc)

            submitters = [threading.Thread(target=submit, args=(n,)) for n in range(1, 4)]
            for thread in submitters:
                thread.start()
            assert wait_until(lambda: herd.stats().waiting_submitters == 3)
            gate.set()
            for thread in submitters:
                thread.join(10)
            assert isinstance(first.exception(timeout=10), BrokenHerd)
        refused = [errors.get_nowait() for _ in range(3)]
        assert all(isinstance(e, BrokenHerd) for e in refused), refused
        herd.shutdown()
        assert ran == []
        stats = herd.stats()
        assert (stats.submitted, stats.failed, stats.waiting_submitters) == (1, 1, 0)
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def broken_on_the_second_gopher() -> Callable[[], None]:
    gophers = itertools.count()

    def init() -> None:
        if next(gophers) == 1:
            raise OSError("second gopher")

    return init


def test_work_running_when_the_herd_breaks_finishes(
    caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    started, gate = threading.Event(), threading.Event()
    herd = HerdExecutor(1, initializer=broken_on_the_second_gopher(), backlog=None, output=True)
    try:
        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            running = herd.submit(lambda: started.set() or gate.wait())
            started.wait(10)
            herd.herd_size = 2
            queued = herd.submit(int)  # starts the second gopher, which breaks the herd
            assert isinstance(queued.exception(timeout=10), BrokenHerd)
            with pytest.raises(BrokenHerd):
                herd.submit(int)
            gate.set()
            assert running.result(timeout=10) is True  # it was running: it finishes
        herd.shutdown()
        stats = herd.stats()
        assert (stats.submitted, stats.succeeded, stats.failed) == (2, 1, 1)
        assert sorted(w.id for w in herd.output_chan()) == sorted([running.id, queued.id])
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_retries_waiting_when_the_herd_breaks_fail_once(
    caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    attempted = threading.Event()
    herd = HerdExecutor(
        1,
        initializer=broken_on_the_second_gopher(),
        max_retries=1,
        backoff=lambda n: 3600.0,
        backlog=None,
    )
    try:

        def task() -> None:
            attempted.set()
            raise Retry()

        gate, started = threading.Event(), threading.Event()
        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            waiting = herd.submit(task)
            calls = settle_count(waiting)
            attempted.wait(10)
            assert wait_until(lambda: herd.stats().pending_retries == 1)
            busy = herd.submit(lambda: started.set() or gate.wait())
            started.wait(10)  # the first gopher stays busy
            herd.herd_size = 2
            trigger = herd.submit(int)  # starts the second gopher, which breaks the herd
            assert isinstance(waiting.exception(timeout=10), BrokenHerd)
            assert isinstance(trigger.exception(timeout=10), BrokenHerd)
            gate.set()
            assert busy.result(timeout=10) is True
        herd.shutdown()
        assert calls == [1]
        stats = herd.stats()
        assert (stats.submitted, stats.failed, stats.succeeded) == (3, 2, 1)
        assert stats.pending_retries == 0
        assert stats.retried == waiting.retries == 1
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_a_retry_asked_for_as_the_herd_breaks_is_counted_consistently(
    caplog: pytest.LogCaptureFixture, deaths: Deaths
) -> None:
    started, gate = threading.Event(), threading.Event()
    retried: list[str] = []
    herd = HerdExecutor(
        1,
        initializer=broken_on_the_second_gopher(),
        max_retries=2,
        backlog=None,
        on_retry=lambda work: retried.append(work.id),
    )
    try:

        def task() -> None:
            started.set()
            gate.wait()
            raise Retry()

        with caplog.at_level("CRITICAL", logger="concurrent.futures"):
            future = herd.submit(task)
            started.wait(10)
            herd.herd_size = 2
            assert isinstance(herd.submit(int).exception(timeout=10), BrokenHerd)
            gate.set()
            assert isinstance(future.exception(timeout=10), BrokenHerd)
        herd.shutdown()
        # One attempt was made; whichever way retries are counted, the two agree.
        assert herd.stats().retried == future.retries == len(retried)
    finally:
        close_or_forget(herd, deaths)


# -- output readers that stop early ------------------------------------------------------


def test_a_reader_that_stops_early_leaves_the_rest_to_another(deaths: Deaths) -> None:
    def process(work: Work) -> Status:
        work.set_result(work.body * 2)
        return Status.SUCCESS

    herd = HerdExecutor(3, process=process, backlog=None, output=2)  # gophers wait for readers
    try:
        futures = [herd.send_work(Work(f"w{n}", n)) for n in range(30)]
        first = herd.output_chan()
        early = [next(first).id for _ in range(3)]
        first.close()  # type: ignore[attr-defined]
        with pytest.raises(StopIteration):
            next(first)
        later: list[str] = []
        reader = threading.Thread(target=lambda: later.extend(w.id for w in herd.output_chan()))
        reader.start()
        herd.close_input()
        reader.join(10)
        assert not reader.is_alive()
        herd.shutdown()
        assert Counter(early + later) == Counter(f"w{n}" for n in range(30))
        assert [f.result(timeout=0) for f in futures] == [2 * n for n in range(30)]
        assert list(herd.output_chan()) == []  # the end stays the end, for every reader
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_a_reader_that_breaks_out_of_its_loop_loses_nothing(deaths: Deaths) -> None:
    herd = HerdExecutor(2, output=True, backlog=None)
    try:
        for n in range(10):
            herd.submit(int, str(n))
        got: list[int] = []
        for work in herd.output_chan():  # the generator is dropped at the break
            got.append(work.result)
            if len(got) == 4:
                break
        herd.shutdown()
        got += [w.result for w in herd.output_chan()]
        assert sorted(got) == list(range(10))
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


# -- backoff callables that raise or return garbage --------------------------------------


def test_a_backoff_that_raises_fails_the_work_once(deaths: Deaths) -> None:
    def backoff(attempt: int) -> float:
        raise LookupError("no schedule")

    herd = HerdExecutor(1, max_retries=3, backoff=backoff, output=True)
    try:
        future = herd.submit(ask_for_retry)
        calls = settle_count(future)
        error = future.exception(timeout=10)
        assert isinstance(error, LookupError)
        assert (future.status, future.retries) == (Status.FAILURE, 0)
        assert herd.submit(int, "3").result(timeout=10) == 3
        herd.shutdown()
        assert calls == [1]
        stats = herd.stats()
        assert (stats.submitted, stats.failed, stats.succeeded, stats.retried) == (2, 1, 1, 0)
        assert [w.status for w in herd.output_chan()] == [Status.FAILURE, Status.SUCCESS]
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


@pytest.mark.parametrize("delay", [True, [1], -0.5, float("-inf"), complex(1, 0)])
def test_a_backoff_returning_garbage_fails_the_work_clearly(delay: object, deaths: Deaths) -> None:
    herd = HerdExecutor(1, max_retries=1, backoff=lambda attempt: delay)
    try:
        future = herd.submit(ask_for_retry)
        error = future.exception(timeout=10)
        assert isinstance(error, ValueError)
        assert "backoff(1) returned" in str(error)
        assert herd.submit(int, "1").result(timeout=10) == 1
        herd.shutdown()
        assert_counts_add_up(herd)
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_a_backoff_raising_a_base_exception_loses_no_work(deaths: Deaths) -> None:
    def backoff(attempt: int) -> float:
        raise KeyboardInterrupt

    herd = HerdExecutor(1, max_retries=1, backoff=backoff)
    try:
        future = herd.submit(ask_for_retry)
        settled_or_died(future, deaths)
        assert deaths.seen == []
        assert isinstance(future.exception(timeout=0), KeyboardInterrupt)
    finally:
        close_or_forget(herd, deaths)


@pytest.mark.parametrize("delay", [math.inf, 1e10])
def test_a_huge_backoff_still_lets_the_retry_be_cancelled(delay: float, deaths: Deaths) -> None:
    """Decided: a delay this long is allowed (it passes the check), so it must behave
    as a long wait: cancel() takes the retry back and shutdown returns."""
    attempted = threading.Event()
    herd = HerdExecutor(1, max_retries=1, backoff=lambda attempt: delay)
    try:

        def task() -> None:
            attempted.set()
            raise Retry()

        future = herd.submit(task)
        attempted.wait(10)
        assert wait_until(lambda: herd.stats().pending_retries == 1)
        [timer] = [t for t in herd._threads if t.name.endswith("_retries")]
        # Cancel only once the timer has begun its wait (or died trying): before that,
        # cancel() would empty its heap and it would never wait at all.
        assert wait_until(lambda: in_wait_or_gone(timer))
        assert future.cancel()
        timer.join(10)  # with nothing left to wait for, the timer ends
        assert deaths.seen == []
        closer = threading.Thread(target=herd.shutdown, daemon=True)
        closer.start()
        closer.join(10)
        assert not closer.is_alive(), "shutdown(wait=True) hangs"
    finally:
        close_or_forget(herd, deaths)


def in_wait_or_gone(thread: threading.Thread) -> bool:
    """The thread has ended, or is inside threading.Condition.wait()."""
    frame = sys._current_frames().get(thread.ident or -1)
    return frame is None or frame.f_code is threading.Condition.wait.__code__


# -- process() returning something that is not a Status ----------------------------------


@pytest.mark.parametrize("returned", [None, "success", 1, True, Status])
def test_process_returning_a_non_status_fails_that_work_once(
    returned: object, deaths: Deaths
) -> None:
    def process(work: Work) -> Status:
        return returned if work.body else Status.SUCCESS  # type: ignore[return-value]

    herd = HerdExecutor(1, process=process, max_retries=2)
    try:
        bad = herd.send_work(Work("bad", True))
        calls = settle_count(bad)
        good = herd.send_work(Work("good", False))
        error = bad.exception(timeout=10)
        assert isinstance(error, TypeError)
        assert "process() must return a herdexec.Status" in str(error)
        assert (bad.status, bad.retries) == (Status.FAILURE, 0)  # never retried
        assert good.result(timeout=10) is None
        herd.close_input()
        assert {w.id: w.status for w in herd.output_chan()} == {
            "bad": Status.FAILURE,
            "good": Status.SUCCESS,
        }
        herd.shutdown()
        assert calls == [1]
        stats = herd.stats()
        assert (stats.failed, stats.succeeded, stats.retried) == (1, 1, 0)
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_process_asking_for_a_retry_without_retries_left_fails(deaths: Deaths) -> None:
    herd = HerdExecutor(1, process=lambda work: Status.RETRY)
    try:
        future = herd.send_work(Work("w"))
        error = future.exception(timeout=10)
        assert isinstance(error, WorkFailed)
        assert error.work is future.work
        herd.shutdown()
        assert_counts_add_up(herd)
    finally:
        close_or_forget(herd, deaths)


# -- a submit interrupted while it blocks ------------------------------------------------


def hold(work: Work) -> Status:
    """A process function: a work whose body is an event waits for it."""
    if isinstance(work.body, threading.Event):
        work.body.wait()
    return Status.SUCCESS


def full_herd(backlog: int) -> tuple[HerdExecutor, threading.Event, list[HerdFuture[Any]]]:
    """A herd of one gopher, busy until the event is set, with its backlog full."""
    gate = threading.Event()
    herd = HerdExecutor(1, process=hold, backlog=backlog)
    futures: list[HerdFuture[Any]] = [herd.submit(gate.wait)]
    futures += [herd.submit(int) for _ in range(backlog)]
    return herd, gate, futures


def interrupt_when_blocked(herd: HerdExecutor, interrupt: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        if wait_until(lambda: herd.stats().waiting_submitters == 1):
            interrupt()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_timed_wait_takes_a_slot_that_is_already_back() -> None:
    """The non-blocking get that a timed wait starts with (see the next test) takes a
    slot that came back after submit's own look, and then does not wait."""
    with HerdExecutor(1, process=hold) as herd:
        slots = herd._herd._slots
        assert slots is not None
        held: list[object] = []
        slots.wait(10, held)
        assert held == [None]
        assert slots._tokens.empty()
        assert herd.stats().waiting_submitters == 0
        slots.put_back(held)  # as accept() would have used it


def test_a_timed_wait_for_a_slot_ends_on_a_busy_machine() -> None:
    """Slots.wait says how a timed wait could block for good on CPython 3.10:
    a thread that loses its CPU at one moment. Processes that keep every CPU busy make
    that likely. Each round a slot comes back and a work takes it at once, which leaves
    the queue empty with its lock free, as assert_capacity's probes leave it; then a
    send_work(timeout=0) finds no slot, and must say so at once."""
    herd = HerdExecutor(1, process=hold)
    slots = herd._herd._slots
    assert slots is not None
    gates = [threading.Event()]
    rounds: list[int] = []

    def run() -> None:
        herd.send_work(Work("first", gates[-1]))
        for n in range(2000):
            gates[-1].set()
            assert wait_until(lambda: not slots._tokens.empty())  # the slot is back
            gates.append(threading.Event())
            herd.send_work(Work(str(n), gates[-1]), timeout=0)
            with pytest.raises(concurrent.futures.TimeoutError):
                herd.send_work(Work("one too many", gates[-1]), timeout=0)
            rounds.append(n)

    runner = threading.Thread(target=run)
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        runner.start()
        runner.join(30)
        assert not runner.is_alive(), f"a timed send_work() hung after {len(rounds)} rounds"
    finally:
        for process in busy:
            process.kill()
            process.wait()
        for gate in gates:
            gate.set()
        runner.join(30)
        herd.shutdown()
    assert len(rounds) == 2000


@pytest.mark.usefixtures("sigint_raises")
@pytest.mark.parametrize("backlog", [0, 2])
def test_a_signal_interrupts_a_blocked_submit_cleanly(backlog: int, deaths: Deaths) -> None:
    main = threading.main_thread().ident
    assert main is not None
    for _ in range(10):  # each round: a different moment in the blocking wait
        herd, gate, futures = full_herd(backlog)
        ran: list[str] = []
        try:
            helper = interrupt_when_blocked(herd, lambda: signal.pthread_kill(main, signal.SIGINT))
            with pytest.raises(KeyboardInterrupt):
                herd.submit(ran.append, "must not run")
            helper.join(10)
            stats = herd.stats()
            assert (stats.submitted, stats.waiting_submitters) == (1 + backlog, 0)
            gate.set()
            for future in futures:
                future.result(timeout=10)
            assert_capacity(herd, 1 + backlog)  # the interrupted wait took no slot
            herd.shutdown()
            assert ran == []
            assert_counts_add_up(herd)
            assert deaths.seen == []
        finally:
            gate.set()
            close_or_forget(herd, deaths)


@pytest.mark.usefixtures("sigint_raises")
def test_an_interrupt_pending_while_blocked_gives_the_slot_back(deaths: Deaths) -> None:
    """_thread.interrupt_main() sets the interrupt without waking the blocked wait, so
    KeyboardInterrupt is raised just after the wait ends: the moment a real Ctrl-C hits
    when it comes as a gopher frees the slot."""
    herd, gate, futures = full_herd(0)
    ran: list[str] = []
    try:

        def interrupt_then_free() -> None:
            _thread.interrupt_main()
            gate.set()  # the gopher finishes and gives its slot to the blocked submit

        helper = interrupt_when_blocked(herd, interrupt_then_free)
        with pytest.raises(KeyboardInterrupt):
            herd.submit(ran.append, "must not run")
        helper.join(10)
        futures[0].result(timeout=10)
        assert herd.stats().submitted == 1
        assert herd.stats().waiting_submitters == 0
        assert_capacity(herd, 1)
    finally:
        gate.set()
        close_or_forget(herd, deaths)
    assert ran == []


# -- cancel() racing with the gophers ----------------------------------------------------


def test_cancel_racing_with_pickup(deaths: Deaths) -> None:
    """A second thread cancels each work just as the gophers pick the works up."""
    ran: Counter[str] = Counter()
    lock = threading.Lock()

    def record(key: str) -> None:
        with lock:
            ran[key] += 1

    herd = HerdExecutor(2, backlog=None)
    try:
        futures: queue.SimpleQueue[HerdFuture[Any] | None] = queue.SimpleQueue()
        cancelled: dict[str, bool] = {}

        def cancel_them() -> None:
            while (future := futures.get()) is not None:
                cancelled[future.id] = future.cancel()

        canceller = threading.Thread(target=cancel_them)
        canceller.start()
        submitted = []
        for n in range(2000):
            future = herd.submit(record, f"{n}")
            submitted.append((f"{n}", future, settle_count(future)))
            futures.put(future)
        futures.put(None)
        canceller.join(30)
        herd.shutdown()
        for key, future, calls in submitted:
            assert calls == [1], key
            assert future.cancelled() == cancelled[future.id], key
            assert ran[key] == (0 if future.cancelled() else 1), key
        stats = herd.stats()
        n_cancelled = sum(cancelled.values())
        assert (stats.submitted, stats.cancelled, stats.succeeded) == (
            2000,
            n_cancelled,
            2000 - n_cancelled,
        )
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


def test_cancel_racing_with_a_retry(deaths: Deaths) -> None:
    """Cancel each work just as its first attempt asks for a retry: the future goes
    RUNNING -> PENDING under the cancel, which must take it back exactly once."""
    attempts: Counter[str] = Counter()
    lock = threading.Lock()
    started: queue.SimpleQueue[str] = queue.SimpleQueue()

    def task(key: str) -> str:
        with lock:
            attempts[key] += 1
            first = attempts[key] == 1
        if first:
            started.put(key)
            raise Retry()
        return key

    herd = HerdExecutor(2, backlog=None, max_retries=1)
    try:
        futures: dict[str, tuple[HerdFuture[str], list[int]]] = {}
        for n in range(300):
            future = herd.submit(task, f"{n}")
            futures[f"{n}"] = (future, settle_count(future))
        for _ in range(300):
            futures[started.get(timeout=10)][0].cancel()
        herd.shutdown()
        outcomes: Counter[str] = Counter()
        for key, (future, calls) in futures.items():
            assert calls == [1], key
            if future.cancelled():
                outcomes["cancelled"] += 1
                assert attempts[key] == future.retries == 1, key
            else:
                outcomes["succeeded"] += 1
                assert future.result() == key
                assert attempts[key] == 1 + future.retries == 2, key
        stats = herd.stats()
        assert (stats.cancelled, stats.succeeded) == (outcomes["cancelled"], outcomes["succeeded"])
        assert stats.retried == sum(f.retries for f, _ in futures.values()) == 300
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


# -- shutdown(cancel_futures=True) racing with submitters and retries --------------------


@pytest.mark.parametrize("backlog", [0, 3, None])
def test_shutdown_cancel_futures_racing_with_submitters_and_retries(
    backlog: int | None, deaths: Deaths
) -> None:
    attempts: Counter[str] = Counter()
    lock = threading.Lock()

    def task(key: str) -> str:
        with lock:
            attempts[key] += 1
            n = attempts[key]
        if n < 3 and int(key.split("-")[1]) % 2:
            raise Retry()
        return key

    herd = HerdExecutor(3, backlog=backlog, max_retries=2, backoff=lambda n: 0.0005 * (n % 2))
    try:
        futures: list[tuple[str, HerdFuture[str], list[int]]] = []
        refused: list[BaseException] = []
        enough = threading.Event()

        def submit(who: int) -> None:
            for n in range(10**6):
                key = f"{who}-{n}"
                try:
                    future = herd.submit(task, key)
                except RuntimeError as exc:
                    with lock:
                        refused.append(exc)
                    return
                with lock:
                    futures.append((key, future, settle_count(future)))
                    if len(futures) >= 400:
                        enough.set()

        submitters = [threading.Thread(target=submit, args=(k,)) for k in range(4)]
        for thread in submitters:
            thread.start()
        assert enough.wait(30)
        herd.shutdown(wait=False, cancel_futures=True)
        herd.shutdown(wait=True)
        for thread in submitters:
            thread.join(10)
            assert not thread.is_alive()
        assert len(refused) == 4
        assert all("after shutdown" in str(e) for e in refused)
        outcomes: Counter[str] = Counter()
        for key, future, calls in futures:
            assert calls == [1], key
            if future.cancelled():
                outcomes["cancelled"] += 1
                assert attempts[key] == future.retries, key
            else:
                outcomes["succeeded"] += 1
                assert future.result() == key
                assert attempts[key] == 1 + future.retries, key
        stats = herd.stats()
        assert stats.submitted == len(futures)
        assert (stats.cancelled, stats.succeeded, stats.failed) == (
            outcomes["cancelled"],
            outcomes["succeeded"],
            0,
        )
        assert stats.retried == sum(f.retries for _, f, _ in futures)
        assert (stats.busy, stats.idle, stats.pending_retries) == (0, 0, 0)
        assert not [t for t in herd._threads if t.is_alive()]
        assert deaths.seen == []
    finally:
        close_or_forget(herd, deaths)


# -- close_input() while senders are blocked ---------------------------------------------


@pytest.mark.parametrize("backlog", [0, 2])
def test_close_input_refuses_every_blocked_sender(backlog: int, deaths: Deaths) -> None:
    gate = threading.Event()
    ran: list[str] = []

    def process(work: Work) -> Status:
        ran.append(work.id)
        gate.wait()
        return Status.SUCCESS

    herd = HerdExecutor(1, process=process, backlog=backlog)
    try:
        accepted = [herd.send_work(Work(f"in{n}")) for n in range(1 + backlog)]
        errors: queue.SimpleQueue[BaseException] = queue.SimpleQueue()

        def send(n: int, timeout: float | None) -> None:
            try:
                herd.send_work(Work(f"out{n}"), timeout=timeout)
            except BaseException as exc:
                errors.put(exc)

        senders = [
            threading.Thread(target=send, args=(n, None if n % 2 else 60.0)) for n in range(6)
        ]
        for thread in senders:
            thread.start()
        assert wait_until(lambda: herd.stats().waiting_submitters == 6)
        herd.close_input()
        for thread in senders:
            thread.join(10)
            assert not thread.is_alive()
        refused = [errors.get_nowait() for _ in range(6)]
        assert [str(e) for e in refused] == ["cannot schedule new futures after close_input()"] * 6
        gate.set()
        assert [f.result(timeout=10) for f in accepted] == [None] * (1 + backlog)
        assert sorted(w.id for w in herd.output_chan()) == [f"in{n}" for n in range(1 + backlog)]
        herd.shutdown()
        assert sorted(ran) == [f"in{n}" for n in range(1 + backlog)]
        stats = herd.stats()
        assert (stats.submitted, stats.succeeded, stats.waiting_submitters) == (
            1 + backlog,
            1 + backlog,
            0,
        )
        assert deaths.seen == []
    finally:
        gate.set()
        close_or_forget(herd, deaths)
