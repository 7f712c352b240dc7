"""HerdFuture's cheaper insides (its condition, its callback list): the Future contract
they must keep."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future

import pytest

from herdexec import HerdFuture, Work
from herdexec._condition import FutureCondition

from .helpers import wait_until


def settle(future: Future[int], value: int) -> None:
    assert future.set_running_or_notify_cancel()
    future.set_result(value)


def settle_when(ready: Callable[[], bool], *outcomes: tuple[Future[int], int]) -> threading.Thread:
    """A started thread that settles the futures once ``ready()``: once wait() watches."""

    def run() -> None:
        if wait_until(ready):
            for future, value in outcomes:
                settle(future, value)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_herd_future_has_the_fields_of_this_pythons_future() -> None:
    """HerdFuture sets Future's fields itself: a Python that adds one must fail here."""
    future: HerdFuture[int] = HerdFuture(Work("w"))
    mine = {name for name in HerdFuture.__slots__ if hasattr(future, name)}
    assert not vars(future)  # every field is a slot, so it never makes a __dict__
    future.tag = "mine"  # type: ignore[attr-defined]  # but takes attributes, as a Future does
    assert vars(future) == {"tag": "mine"}
    herds_own = {"_work", "_fn", "_args", "_kwargs", "_process", "_holds_slot", "_withdraw"}
    assert mine - herds_own == set(vars(Future())) - {"_waiters"} | {"_waiter_list"}


def test_future_init_still_applies_to_a_herd_future() -> None:
    """A subclass may call Future.__init__: it gets the stdlib's fields, a plain waiter
    list among them, and a future that works."""
    future: HerdFuture[int] = HerdFuture(Work("w"))
    Future.__init__(future)
    assert isinstance(future._condition, threading.Condition)
    assert future._waiters == []
    assert future._waiters is future._waiter_list
    settle(future, 1)
    assert future.result(timeout=0) == 1


def test_it_is_a_reentrant_lock_that_excludes_other_threads() -> None:
    condition = FutureCondition()
    with condition, condition:
        other = threading.Thread(target=lambda: taken.append(condition.acquire(timeout=0)))
        taken: list[bool] = []
        other.start()
        other.join()
        assert taken == [False]
    assert condition.acquire(blocking=False)
    condition.release()


def test_wait_releases_every_level_and_restores_them() -> None:
    condition = FutureCondition()
    notified: list[bool] = []

    def waiter() -> None:
        with condition, condition:
            notified.append(condition.wait(timeout=10))
            condition.release()  # held twice again, as before the wait
            condition.release()
            with pytest.raises(RuntimeError):
                condition.release()
            condition.acquire()
            condition.acquire()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert wait_until(lambda: bool(condition._waiters))
    with condition:  # taken while the waiter, which held it twice, waits
        condition.notify_all()
    thread.join(10)
    assert notified == [True]
    assert not condition._waiters


@pytest.mark.parametrize("timeout", [0, -1, 0.01])
def test_a_wait_that_times_out_leaves_no_waiter(timeout: float) -> None:
    condition = FutureCondition()
    with condition:
        assert condition.wait(timeout) is False
    assert not condition._waiters


def test_notify_all_wakes_every_waiter() -> None:
    condition = FutureCondition()
    woken: list[bool] = []

    def waiter() -> None:
        with condition:
            woken.append(condition.wait(timeout=10))

    threads = [threading.Thread(target=waiter) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(condition._waiters or ()) == len(threads))
    with condition:
        condition.notify_all()
        condition.notify_all()  # a second one finds no one and does nothing
    for thread in threads:
        thread.join(10)
    assert woken == [True] * len(threads)


def test_wait_without_the_lock_is_an_error() -> None:
    condition = FutureCondition()
    with pytest.raises(RuntimeError):
        condition.wait(0)
    assert not condition._waiters


@pytest.mark.usefixtures("sigint_raises")
def test_an_interrupted_result_leaves_the_future_usable() -> None:
    future: HerdFuture[int] = HerdFuture(Work("w"))
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        if wait_until(lambda: bool(future._condition._waiters)):  # type: ignore[attr-defined]
            signal.pthread_kill(main, signal.SIGINT)

    helper = threading.Thread(target=interrupt)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        future.result(timeout=10)
    helper.join(10)
    assert not future._condition._waiters  # type: ignore[attr-defined]
    settle(future, 7)
    assert future.result(timeout=0) == 7


def test_stdlib_waits_take_herd_and_stdlib_futures_together() -> None:
    """wait() and as_completed() lock every future they watch, of either kind."""
    herd: HerdFuture[int] = HerdFuture(Work("herd"))
    stdlib: Future[int] = Future()

    # Once wait() has locked both and hung its waiter on each.
    thread = settle_when(lambda: bool(herd._waiters and stdlib._waiters), (stdlib, 1), (herd, 2))
    done, not_done = futures.wait([herd, stdlib], timeout=10)
    thread.join(10)
    assert (done, not_done) == ({herd, stdlib}, set())
    assert sorted(f.result() for f in futures.as_completed([herd, stdlib], timeout=10)) == [1, 2]
    assert "state=finished returned int" in repr(herd)


def test_only_a_wait_on_an_unfinished_future_makes_it_a_waiter_list() -> None:
    """wait() and as_completed() hang a waiter on each future they watch, finished or
    not; a future that ended unwatched takes it and lets go of it without a list."""
    watched: HerdFuture[int] = HerdFuture(Work("watched"))
    ended: HerdFuture[int] = HerdFuture(Work("ended"))
    settle(ended, 1)
    assert ended._waiter_list is None
    assert not ended._waiters  # and it looks empty, as Future's own list would
    assert list(ended._waiters) == []

    thread = settle_when(lambda: bool(watched._waiter_list), (watched, 2))
    done, not_done = futures.wait([ended, watched], timeout=10)
    thread.join(10)
    assert (done, not_done) == ({ended, watched}, set())
    assert watched._waiter_list == []  # its waiter taken back out
    assert ended._waiter_list is None
    assert set(futures.as_completed([ended, watched], timeout=0)) == {ended, watched}
    assert futures.wait([ended], timeout=0, return_when=futures.FIRST_COMPLETED)[0] == {ended}
    assert ended._waiter_list is None


def test_a_wait_on_a_cancelled_future_ends_when_the_herd_notices() -> None:
    """Cancelled but not yet seen by the herd is not done for wait(): its waiter must be
    kept, and told when set_running_or_notify_cancel() comes."""
    future: HerdFuture[int] = HerdFuture(Work("w"))
    assert future.cancel()
    waited: list[set[Future[int]]] = []
    thread = threading.Thread(target=lambda: waited.append(futures.wait([future], 10)[0]))
    thread.start()
    assert wait_until(lambda: bool(future._waiter_list))
    assert not future.set_running_or_notify_cancel()
    thread.join(10)
    assert waited == [{future}]


def test_done_callbacks_run_once_in_order_before_or_after_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: HerdFuture[int] = HerdFuture(Work("w"))
    calls: list[tuple[str, int]] = []
    future.add_done_callback(lambda f: calls.append(("first", f.result())))
    future.add_done_callback(lambda f: 1 // 0)  # logged; the others still run
    future.add_done_callback(lambda f: calls.append(("second", f.result())))
    with caplog.at_level("ERROR", logger="concurrent.futures"):
        settle(future, 3)
        assert calls == [("first", 3), ("second", 3)]
        future.add_done_callback(lambda f: calls.append(("late", f.result())))
        future.add_done_callback(lambda f: 1 // 0)
    assert calls == [("first", 3), ("second", 3), ("late", 3)]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ZeroDivisionError] * 2


def test_a_cancelled_future_calls_its_callbacks() -> None:
    future: HerdFuture[int] = HerdFuture(Work("w"))
    calls: list[bool] = []
    future.add_done_callback(lambda f: calls.append(f.cancelled()))
    assert future.cancel()
    future.add_done_callback(lambda f: calls.append(f.cancelled()))
    assert calls == [True, True]


def test_futures_share_no_callbacks() -> None:
    first: HerdFuture[int] = HerdFuture(Work("a"))
    second: HerdFuture[int] = HerdFuture(Work("b"))
    calls: list[str] = []
    first.add_done_callback(lambda f: calls.append("a"))
    settle(second, 1)
    settle(first, 1)
    assert calls == ["a"]


def test_a_settled_future_refuses_a_second_outcome() -> None:
    future: HerdFuture[int] = HerdFuture(Work("w"))
    settle(future, 1)
    with pytest.raises(futures.InvalidStateError, match=r"FINISHED: <HerdFuture at 0x"):
        future.set_result(2)
    with pytest.raises(futures.InvalidStateError, match="returned int"):
        future.set_exception(ValueError())
    assert future.result(timeout=0) == 1
    assert repr(future).endswith("state=finished returned int>")


def test_waiters_with_and_without_timeouts_race_the_settling_thread() -> None:
    """Bounded stress: each future has waiters that time out over and over, waiters that
    block, and a wait() over all of them, while another thread settles them one by one.
    Every waiter sees its result, and no waiter is left behind on any lock."""
    count = 200
    herd_futures: list[HerdFuture[int]] = [HerdFuture(Work(str(n))) for n in range(count)]
    seen: list[list[int]] = [[] for _ in range(4)]

    def impatient(into: list[int]) -> None:
        for n, future in enumerate(herd_futures):
            while True:
                try:
                    into.append(future.result(timeout=0.0005 * (n % 3)))
                    break
                except futures.TimeoutError:
                    continue

    def patient(into: list[int]) -> None:
        into.extend(future.result(timeout=30) for future in herd_futures)

    def all_at_once(into: list[int]) -> None:
        done, not_done = futures.wait(herd_futures, timeout=30)
        into.extend(sorted(f.result() for f in done))
        assert not not_done

    threads = [
        threading.Thread(target=impatient, args=(seen[0],)),
        threading.Thread(target=impatient, args=(seen[1],)),
        threading.Thread(target=patient, args=(seen[2],)),
        threading.Thread(target=all_at_once, args=(seen[3],)),
    ]
    for thread in threads:
        thread.start()
    for n, future in enumerate(herd_futures):
        settle(future, n)
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert seen == [list(range(count))] * 4
    assert not any(f._condition._waiters for f in herd_futures)  # type: ignore[attr-defined]
    assert not any(f._waiters for f in herd_futures)
