"""Ctrl-C on the main thread while it is inside the herd.

A KeyboardInterrupt from a real SIGINT lands wherever the interpreter looks for pending
signals: as a Python function starts, after a call returns, at the end of a loop's pass,
inside a blocking wait. Wherever it lands in submit(), a resize, shutdown(), close_input(),
a cancel() or an output read, the herd must go on: later calls work, shutdown() returns,
no slot and no work is lost, every accepted work ends once, the counts add up and no
thread is left. ThreadPoolExecutor survives the same interrupts, and code that supports
Ctrl-C relies on it.

Two kinds of test. The first sends the signal from a work, at whatever moment the work
gets to it, as real programs do. The second is exhaustive: a profile hook on the main
thread counts the interpreter's events inside one herd call (a function starting or
returning, a C function called or returning) and sends SIGINT at the k-th, for every k
until the call runs to its end, so that every point where an interrupt can land is tried.
"""

from __future__ import annotations

import concurrent.futures
import gc
import inspect
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

import pytest

import herdexec._lifecycle
from herdexec import HerdExecutor, HerdFuture, Retry, Status, Work

from . import runner_work as rw
from .helpers import assert_capacity, wait_until

pytestmark = pytest.mark.usefixtures("sigint_raises")

MAIN = threading.main_thread().ident


def interrupt_main() -> None:
    assert MAIN is not None
    signal.pthread_kill(MAIN, signal.SIGINT)


def herd_threads(herd: HerdExecutor) -> list[threading.Thread]:
    """The herd's gopher and timer threads that run, or will: a thread whose start() an
    interrupt cut short before it was made stays in threading's list, never to run
    (CPython's own, and ThreadPoolExecutor's alike), and is no thread."""
    prefix = herd._thread_name_prefix + "_"
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith(prefix) and (thread.is_alive() or thread.ident is not None)
    ]


def shut_down(herd: HerdExecutor) -> None:
    """shutdown() and its threads, bounded: a herd that cannot shut down fails the test
    instead of hanging it, and is sent away so that the interpreter can still exit."""
    closer = threading.Thread(target=herd.shutdown, daemon=True)
    closer.start()
    closer.join(10)
    if closer.is_alive():
        stats = herd.stats()
        herd.herd_size = 0  # idle gophers leave, whatever is outstanding
        for thread in herd._threads:
            thread.join(5)
        herdexec._lifecycle.forget(herd._herd)  # the exit hook would wait for ever
        pytest.fail(f"shutdown() hung: {stats}")
    for thread in herd_threads(herd):  # one that start() counted out may still be ending
        thread.join(10)
    assert not [thread for thread in herd_threads(herd) if thread.is_alive()]


def assert_settled(herd: HerdExecutor) -> None:
    """The herd's counts add up once it is shut down, and so do its tokens: no idle
    token is left, and the markers it counts are the ones on its queue."""
    stats = herd.stats()
    assert stats.submitted == stats.succeeded + stats.failed + stats.cancelled, stats
    assert (stats.busy, stats.idle, stats.waiting_submitters) == (0, 0, 0), stats
    assert (stats.backlog, stats.pending_retries) == (0, 0), stats
    inner = herd._herd
    assert inner._idle.empty()
    assert inner._marks == inner._ready.qsize()


# -- an interrupt sent from a work -------------------------------------------------------


def submit_until_interrupted(
    executor: Executor, work: Callable[[int], object], count: int
) -> list[concurrent.futures.Future[Any]]:
    """Submit ``work(n)`` for n up to ``count``, which must bring a KeyboardInterrupt
    before long; the futures of the submits that returned."""
    futures: list[concurrent.futures.Future[Any]] = []
    try:
        for n in range(count):
            futures.append(executor.submit(work, n))
        time.sleep(10)  # the signal is on its way: it lands here at the latest
    except KeyboardInterrupt:
        return futures
    pytest.fail("no KeyboardInterrupt came")


@pytest.mark.parametrize("pool", [ThreadPoolExecutor, HerdExecutor])
def test_ctrl_c_during_a_submit_loop_leaves_a_pool_that_shuts_down(
    pool: Callable[[int], Executor],
) -> None:
    """The report's case: the first work interrupts the main thread while it submits
    2,000 works to a pool of 20, and the interrupt lands in Thread.start() as often as
    not. ThreadPoolExecutor is here to show what the herd must match."""
    for _ in range(5):
        executor = pool(20)
        gate = threading.Event()
        ran: list[int] = []

        def work(n: int, gate: threading.Event = gate, ran: list[int] = ran) -> None:
            if n == 0:
                interrupt_main()
            gate.wait()
            ran.append(n)

        futures = submit_until_interrupted(executor, work, 2000)
        gate.set()
        if isinstance(executor, HerdExecutor):
            shut_down(executor)
            assert_settled(executor)
            assert executor.stats().succeeded == len(ran)
        else:
            executor.shutdown()
        assert all(future.done() for future in futures)
        assert Counter(ran) == Counter(range(len(ran)))  # each ran once, none lost


@pytest.mark.parametrize("backlog", [0, None])
def test_ctrl_c_at_varying_moments_of_submits_and_shutdowns(backlog: int | None) -> None:
    """A work that interrupts the main thread after a varying spin, so that the signal
    lands at a different moment of the main thread's submits, or of the shutdown that
    cancels the rest, in each round."""
    for spin in range(0, 60_000, 1_500):
        herd = HerdExecutor(3, backlog=backlog, registry=None)
        ran: list[int] = []

        def work(n: int, spin: int = spin, ran: list[int] = ran) -> None:
            if n == 5:
                for _ in range(spin):
                    pass
                interrupt_main()
            ran.append(n)

        futures: list[HerdFuture[None]] = []
        try:
            for n in range(60):
                futures.append(herd.submit(work, n))
            herd.shutdown(cancel_futures=True)
            if not futures[5].cancelled():  # else no signal comes
                time.sleep(10)  # the signal is on its way: it lands here at the latest
                pytest.fail("no KeyboardInterrupt came")
        except KeyboardInterrupt:
            pass
        shut_down(herd)
        assert_settled(herd)
        assert herd.stats().succeeded == len(ran)
        assert Counter(ran) == Counter(set(ran))
        assert all(future.done() for future in futures)


def test_ctrl_c_while_a_process_herd_takes_work_leaves_no_worker_behind() -> None:
    """A work in a worker process sends the parent SIGINT while its main thread submits:
    the herd machinery is the thread herd's, and no worker process nor count is left."""
    before = set(multiprocessing.active_children())
    for at in (0, 3, 7):
        herd = HerdExecutor(2, runner="process", backlog=1, registry=None)
        work = partial(rw.interrupt_at, at=at, pid=os.getpid())
        futures = submit_until_interrupted(herd, work, 40)
        shut_down(herd)
        assert_settled(herd)
        assert all(future.done() for future in futures)
        assert set(multiprocessing.active_children()) == before


def test_ctrl_c_in_shutdowns_wait_releases_the_server_once_the_work_is_done() -> None:
    """A Ctrl-C cuts shutdown(wait=True) short while a work runs: the work goes on, and
    the control server stays until it is done and then closes, as after wait=False."""
    herd = HerdExecutor(1, registry=None)
    server = herd.serve("127.0.0.1:0")
    gate = threading.Event()
    future = herd.submit(gate.wait, 30)

    def interrupt_once_waiting() -> None:
        if wait_until(lambda: herd._herd._state.value == "shutdown"):
            interrupt_main()

    threading.Thread(target=interrupt_once_waiting, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        herd.shutdown()  # waits for the work, held until the signal has come
    assert not server.closed
    gate.set()
    assert future.result(timeout=10) is True
    assert wait_until(lambda: server.closed)
    shut_down(herd)


# -- an interrupt at every point of one call ---------------------------------------------


# C functions that may block, and that an interrupt can therefore cut short before they
# have done anything. Any other C function runs to its end once called.
BLOCKING = frozenset({"lock.acquire", "RLock.acquire", "SimpleQueue.get", "sleep"})
WEAKREF_CALLBACKS = ("/weakref.py", "/_weakrefset.py")


def interruptible(frame: FrameType, event: str, arg: object) -> bool:
    """True if CPython could raise a pending KeyboardInterrupt at this profile event.

    It does so as a Python function starts ("call"), after a C function returns
    ("c_return"), inside a blocking C function ("c_call" of one of BLOCKING), and, on
    3.10 only, after a Python function called from bytecode returns ("return"): never
    as a ``with`` statement's ``__enter__`` returns, nor as a generator yields.
    """
    if frame.f_code.co_filename.endswith(WEAKREF_CALLBACKS):
        return False  # Python reports what a weakref callback raises, never raises it
    if event == "call":
        return True
    name = getattr(arg, "__qualname__", "")
    if event == "c_call":
        return name in BLOCKING
    if event == "c_return":
        return not name.endswith("__enter__")
    generator = bool(frame.f_code.co_flags & inspect.CO_GENERATOR)
    return (
        event == "return"
        and sys.version_info < (3, 11)
        and frame.f_code.co_name != "__enter__"
        and not generator
    )


def raised_by_the_interrupt(exc: BaseException) -> bool:
    """A KeyboardInterrupt, or what it caused: on 3.10 an interrupt just after
    Condition.wait() released its lock makes the ``with`` around it raise RuntimeError
    (CPython's own flaw, not the herd's)."""
    return isinstance(exc, KeyboardInterrupt) or isinstance(exc.__context__, KeyboardInterrupt)


class InterruptAt:
    """Send the main thread SIGINT at its ``at``-th interruptible event from now on.

    Events in this file's own frames do not count, so that only the herd's code (and
    what it calls: threading, queue, the Future it settles) is interrupted.
    """

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen = 0
        self.fired = ""  # where it was sent

    def __enter__(self) -> InterruptAt:
        sys.setprofile(self._event)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.setprofile(None)

    def _event(self, frame: FrameType, event: str, arg: object) -> None:
        if frame.f_code.co_filename == __file__ or not interruptible(frame, event, arg):
            return
        self.seen += 1
        if self.seen == self.at:
            sys.setprofile(None)
            code = frame.f_code
            name = getattr(arg, "__qualname__", "")
            self.fired = f"{event} {name} in {code.co_name}:{frame.f_lineno} of {code.co_filename}"
            interrupt_main()  # raised here, so in the herd's frame at this event


@dataclass
class Case:
    """One herd, one call to interrupt, and what must hold afterwards."""

    herd: HerdExecutor
    call: Callable[[], object]
    gate: threading.Event = field(default_factory=threading.Event)
    ran: list[str] = field(default_factory=list)
    futures: list[HerdFuture[Any]] = field(default_factory=list)
    capacity: int | None = None  # slots the herd must have once idle again
    # Whether the interrupt left the call undone, so that a user would make it again:
    # one cut short after it took effect must have finished on its own.
    undone: Callable[[], bool] = lambda: False
    expect: Callable[[], object] = lambda: None  # what else must hold after the call

    def work(self, tag: str) -> HerdFuture[Any]:
        """Submit a work that records its run and waits at the gate."""

        def run() -> str:
            self.ran.append(tag)
            self.gate.wait()
            return tag

        future = self.herd.submit(run)
        self.futures.append(future)
        return future


def herd(*args: Any, **kwargs: Any) -> HerdExecutor:
    return HerdExecutor(*args, process=hold, registry=None, **kwargs)


def hold(work: Work) -> Status:
    if isinstance(work.body, threading.Event):
        work.body.wait()
    return Status.SUCCESS


def check(case: Case) -> None:
    herd = case.herd
    if case.undone():
        case.call()
    case.expect()
    case.gate.set()
    for future in case.futures:  # each ends: none is left with no gopher to run it
        assert wait_until(future.done), future
    if case.capacity is not None:
        assert wait_until(lambda: herd.stats().outstanding == 0), herd.stats()
        assert herd.stats().waiting_submitters == 0
        assert_capacity(herd, case.capacity)
    shut_down(herd)
    assert not multiprocessing.active_children(), "a worker process is left"
    assert_settled(herd)
    _, not_told = concurrent.futures.wait(case.futures, timeout=10)
    assert not not_told, "wait() was not told of these"
    assert Counter(case.ran) == Counter(set(case.ran)), "a work ran twice"
    assert herd.stats().succeeded >= len(case.ran)


def every_interrupt(make: Callable[[], Case]) -> int:
    """Run the case once per event of its call, interrupted at that event, and check
    it; returns how many events the call had."""
    for at in itertools.count(1):
        case = make()
        gc.collect()  # earlier cases' finalizers run now, not inside the call
        interrupt = InterruptAt(at)
        try:
            with interrupt:
                case.call()
        except BaseException as exc:
            if not (interrupt.fired and raised_by_the_interrupt(exc)):
                raise
        print(f"event {at}: {interrupt.fired}" if interrupt.fired else "not interrupted")
        check(case)
        if not interrupt.fired:
            return at - 1
    raise AssertionError("unreachable")


def spawning_submit() -> Case:
    """The first submit, which starts a gopher (the report's Thread.start())."""
    case = Case(herd(2, backlog=1), lambda: case.work("new"), capacity=3)
    return case


def spawning_submit_to_a_process_herd() -> Case:
    """The same where the gopher runs its works in a worker process: the gopher's side
    is the thread herd's, and a gopher counted out leaves no worker process either."""
    process_herd = HerdExecutor(1, runner="process", backlog=0, registry=None)
    case = Case(process_herd, lambda: case.futures.append(process_herd.submit(rw.square, 3)))
    case.expect = lambda: case.futures and case.futures[0].result(timeout=30)
    return case


def submit_to_an_idle_gopher() -> Case:
    case = Case(herd(2, backlog=1), lambda: case.work("new"), capacity=3)
    case.herd.submit(int).result(timeout=10)
    return case


def blocked_submit() -> Case:
    """A submit that waits for a slot, which a gopher gives back meanwhile."""
    case = Case(herd(1, backlog=0), lambda: case.work("blocked"), capacity=1)
    case.work("first")

    def release() -> None:
        if wait_until(lambda: case.herd.stats().waiting_submitters == 1):
            case.gate.set()

    threading.Thread(target=release, daemon=True).start()
    return case


def timed_send_work() -> Case:
    case = Case(herd(1, backlog=1), lambda: None, capacity=2)
    case.call = lambda: case.herd.send_work(Work("timed", case.gate), timeout=5)
    case.work("first")
    return case


def grow_a_paused_herd() -> Case:
    case = Case(herd(0, backlog=None), lambda: setattr(case.herd, "herd_size", 3))
    case.undone = lambda: case.herd.herd_size != 3
    for n in range(4):
        case.work(f"queued{n}")
    return case


def shrink_a_herd() -> Case:
    case = Case(herd(3, backlog=1), lambda: setattr(case.herd, "herd_size", 1), capacity=2)
    case.undone = lambda: case.herd.herd_size != 1
    for _ in range(3):
        case.herd.submit(int).result(timeout=10)
    return case


def shrink_a_busy_herd() -> Case:
    """Shrinking below the works in hand owes slots, paid as they come back."""
    case = Case(herd(3, backlog=1), lambda: setattr(case.herd, "herd_size", 1), capacity=2)
    case.undone = lambda: case.herd.herd_size != 1
    for n in range(3):
        case.work(f"busy{n}")
    return case


def resume_an_adaptive_herd() -> Case:
    """adapting = True on an adaptive herd pinned at 0 starts it again."""
    case = Case(
        HerdExecutor(2, adapt=True, backlog=None, registry=None),
        lambda: setattr(case.herd, "adapting", True),
    )
    case.herd.herd_size = 0
    for n in range(2):
        case.work(f"queued{n}")
    case.undone = lambda: not case.herd.adapting
    return case


def shutdown_cancelling_the_backlog() -> Case:
    case = Case(
        herd(1, backlog=3, max_retries=1, backoff=lambda attempt: 3600.0),
        lambda: case.herd.shutdown(wait=False, cancel_futures=True),
    )
    case.undone = lambda: case.herd._herd._state.value == "open"
    attempted = threading.Event()

    def ask_for_retry() -> None:
        if not attempted.is_set():
            attempted.set()
            raise Retry()

    case.futures.append(case.herd.submit(ask_for_retry))
    assert attempted.wait(10)
    assert wait_until(lambda: case.herd.stats().pending_retries == 1)
    for n in range(4):
        case.work(f"w{n}")
    return case


def shutdown_waiting_for_work() -> Case:
    made = herd(2, backlog=1)
    case = Case(made, made.shutdown)
    case.work("running")
    case.work("queued")

    def release() -> None:
        if wait_until(lambda: case.herd._herd._state.value == "shutdown"):
            case.gate.set()

    threading.Thread(target=release, daemon=True).start()
    return case


def shutdown_of_a_paused_herd_with_cancelled_work() -> Case:
    made = herd(0, backlog=None)
    case = Case(made, made.shutdown)
    for n in range(3):
        case.work(f"w{n}").cancel()
    return case


def close_input_with_a_blocked_submitter() -> Case:
    made = herd(1, backlog=0)
    case = Case(made, made.close_input)
    case.work("running")
    refused: list[BaseException] = []

    def blocked() -> None:
        try:
            case.work("blocked")
        except RuntimeError as exc:
            refused.append(exc)

    submitter = threading.Thread(target=blocked)
    submitter.start()
    assert wait_until(lambda: case.herd.stats().waiting_submitters == 1)
    case.gate.set()  # the blocked submit gets the slot, or is refused: either is fine
    submitter.join(10)
    case.gate.clear()
    return case


def close_input_of_a_paused_herd_with_a_blocked_submitter() -> Case:
    """Only the refusal frees a caller that waits for a slot of a paused herd."""
    made = herd(0, backlog=0)
    case = Case(made, made.close_input)
    refused: list[BaseException] = []

    def blocked() -> None:
        try:
            case.herd.send_work(Work("blocked"))
        except RuntimeError as exc:
            refused.append(exc)

    submitter = threading.Thread(target=blocked)
    submitter.start()
    assert wait_until(lambda: case.herd.stats().waiting_submitters == 1)

    def was_refused() -> None:
        submitter.join(10)
        assert refused, "the caller waiting for a slot was not refused"

    case.expect = was_refused
    case.undone = lambda: case.herd._herd._state.value == "open"
    return case


def cancel_a_waiting_retry() -> Case:
    attempted = threading.Event()

    def ask_for_retry() -> None:
        attempted.set()
        raise Retry()

    case = Case(herd(1, backlog=1, max_retries=1, backoff=lambda a: 3600.0), lambda: None)
    future = case.herd.submit(ask_for_retry)
    assert attempted.wait(10)
    assert wait_until(lambda: case.herd.stats().pending_retries == 1)
    case.call = future.cancel
    case.futures.append(future)
    case.capacity = 2
    case.undone = lambda: not future.cancelled()
    return case


def cancel_a_due_retry() -> Case:
    """A retry with no backoff waits in the due queue of a paused herd."""
    gate = threading.Event()

    def ask_for_retry() -> None:
        gate.wait()
        raise Retry()

    case = Case(herd(1, max_retries=2), lambda: None)
    future = case.herd.submit(ask_for_retry)
    case.herd.herd_size = 0  # the gopher leaves after this attempt
    gate.set()
    assert wait_until(lambda: case.herd.stats().pending_retries == 1)
    case.call = future.cancel
    case.futures.append(future)
    case.undone = lambda: not future.cancelled()
    return case


CALLS = [
    spawning_submit,
    spawning_submit_to_a_process_herd,
    submit_to_an_idle_gopher,
    blocked_submit,
    timed_send_work,
    grow_a_paused_herd,
    shrink_a_herd,
    shrink_a_busy_herd,
    resume_an_adaptive_herd,
    shutdown_cancelling_the_backlog,
    shutdown_waiting_for_work,
    shutdown_of_a_paused_herd_with_cancelled_work,
    close_input_with_a_blocked_submitter,
    close_input_of_a_paused_herd_with_a_blocked_submitter,
    cancel_a_waiting_retry,
    cancel_a_due_retry,
]


@pytest.mark.parametrize("make", CALLS, ids=[make.__name__ for make in CALLS])
def test_an_interrupt_anywhere_in_a_herd_call_leaves_it_consistent(
    make: Callable[[], Case],
) -> None:
    events = every_interrupt(make)
    assert events > 5  # the hook saw the call


def test_an_interrupt_anywhere_in_an_output_read_loses_no_work() -> None:
    for at in itertools.count(1):
        herd = HerdExecutor(2, process=hold, backlog=None, output=2, registry=None)
        for n in range(6):
            herd.send_work(Work(f"w{n}"))
        assert wait_until(lambda herd=herd: herd.stats().succeeded >= 2)
        read: list[str] = []
        reader = herd.output_chan()
        gc.collect()  # earlier herds' finalizers run now, not inside the read
        interrupt = InterruptAt(at)
        try:
            with interrupt:
                for work in reader:  # not next(): on 3.10 a value it returns can be lost
                    read.append(work.id)
                    break
        except BaseException as exc:
            if not (interrupt.fired and raised_by_the_interrupt(exc)):
                raise
        herd.close_input()
        read += [work.id for work in herd.output_chan()]  # a fresh reader takes the rest
        shut_down(herd)
        assert Counter(read) == Counter(f"w{n}" for n in range(6)), f"event {at}"
        assert_settled(herd)
        if not interrupt.fired:
            assert at > 1  # the hook saw the read: a generator that starts, and little else
            return
