"""HerdExecutor as a ThreadPoolExecutor: construction, submit, map, shutdown."""

from __future__ import annotations

import gc
import itertools
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent import futures

import pytest

from herdexec import HerdExecutor, HerdFuture, Retry, Work

from .helpers import wait_until

MakeHerd = Callable[..., HerdExecutor]


# -- construction ----------------------------------------------------------------------


def test_default_size_matches_thread_pool_executor(make_herd: MakeHerd) -> None:
    cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
    assert make_herd().herd_size == min(32, (cpu_count() or 1) + 4)


@pytest.mark.parametrize("bad", [1.5, "4", True, False, None.__class__])
def test_max_workers_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="max_workers must be an int"):
        HerdExecutor(bad)  # type: ignore[arg-type]


def test_max_workers_negative() -> None:
    with pytest.raises(ValueError, match="max_workers must be >= 0"):
        HerdExecutor(-1)


def test_zero_workers_is_a_paused_herd(make_herd: MakeHerd) -> None:
    herd = make_herd(0, backlog=None)
    future = herd.submit(int, "7")
    assert not future.done()
    assert herd.stats().backlog == 1
    herd.herd_size = 1
    assert future.result(timeout=10) == 7


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"thread_name_prefix": 3}, TypeError, "thread_name_prefix"),
        ({"initializer": 3}, TypeError, "initializer must be a callable"),
        ({"initargs": [1]}, TypeError, "initargs must be a tuple"),
        ({"process": "x"}, TypeError, "process must be a callable"),
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0"),
        ({"max_retries": 1.0}, TypeError, "max_retries must be an int"),
        ({"retry_on": (ValueError, 3)}, TypeError, "retry_on must be an exception type"),
        ({"retry_on": int}, TypeError, "retry_on must be an exception type"),
        ({"backoff": 0.5}, TypeError, "backoff must be a callable"),
        ({"backlog": -1}, ValueError, "backlog must be >= 0"),
        ({"backlog": "many"}, TypeError, "backlog must be an int"),
        ({"output": 0}, ValueError, "output must be True, False, None or an int >= 1"),
        ({"output": "yes"}, TypeError, "output must be a bool, an int or None"),
        ({"on_success": 1}, TypeError, "on_success must be a callable"),
        ({"on_retry": 1}, TypeError, "on_retry must be a callable"),
        ({"on_failure": 1}, TypeError, "on_failure must be a callable"),
        ({"logger": "herdexec"}, TypeError, "logger must be a logging.Logger"),
        ({"name": 5}, TypeError, "name must be a str"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        HerdExecutor(2, **kwargs)  # type: ignore[arg-type]


def test_retry_on_accepts_a_single_type(make_herd: MakeHerd) -> None:
    herd = make_herd(1, retry_on=KeyError, max_retries=1)
    calls = itertools.count()

    def flaky() -> int:
        if next(calls) == 0:
            raise KeyError("once")
        return 1

    assert herd.submit(flaky).result(timeout=10) == 1


def test_thread_names(make_herd: MakeHerd) -> None:
    names: list[str] = []
    herd = make_herd(2, thread_name_prefix="Pool")
    herd.submit(lambda: names.append(threading.current_thread().name)).result(timeout=10)
    assert names == ["Pool_0"]
    default = make_herd(1)
    name = default.submit(lambda: threading.current_thread().name).result(timeout=10)
    assert name.startswith("HerdExecutor-")
    assert name.endswith("_0")
    assert default.name == name.rsplit("_", 1)[0]


def test_name_and_repr(make_herd: MakeHerd) -> None:
    herd = make_herd(3, name="crawler")
    assert herd.name == "crawler"
    assert repr(herd) == "<HerdExecutor 'crawler' herd_size=3 busy=0>"


# -- submit ------------------------------------------------------------------------------


def test_submit_returns_a_herd_future_with_a_unique_id(make_herd: MakeHerd) -> None:
    herd = make_herd(4)
    futures = [herd.submit(pow, 2, n) for n in range(50)]
    assert all(isinstance(f, HerdFuture) for f in futures)
    assert [f.result(timeout=10) for f in futures] == [2**n for n in range(50)]
    assert len({f.id for f in futures}) == 50
    assert all(str(f.status) == "success" and f.retries == 0 for f in futures)
    assert futures[3].work.result == 8


def test_submit_keyword_arguments(make_herd: MakeHerd) -> None:
    herd = make_herd(1)

    def capture(*args: object, **kwargs: object) -> tuple[object, object]:
        return args, kwargs

    assert herd.submit(capture, 1, fn=2, self=3).result(timeout=10) == ((1,), {"fn": 2, "self": 3})
    with pytest.raises(TypeError):
        herd.submit()  # type: ignore[call-arg]


def test_exception_becomes_the_futures(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    future = herd.submit(divmod, 1, 0)
    assert isinstance(future.exception(timeout=10), ZeroDivisionError)
    assert str(future.status) == "failure"
    assert future.work.exception is future.exception()


def test_base_exceptions_are_caught_into_the_future(make_herd: MakeHerd) -> None:
    herd = make_herd(1)

    def interrupt() -> None:
        raise KeyboardInterrupt

    def leave() -> None:
        raise SystemExit(3)

    assert isinstance(herd.submit(interrupt).exception(timeout=10), KeyboardInterrupt)
    assert isinstance(herd.submit(leave).exception(timeout=10), SystemExit)
    assert herd.submit(int, "5").result(timeout=10) == 5  # the herd still works
    assert herd.stats().failed == 2


def test_submit_blocks_until_a_gopher_takes_the_work(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    release = threading.Event()
    first = herd.submit(release.wait)
    submitted = threading.Event()
    second: list[HerdFuture[int]] = []

    def submit() -> None:
        second.append(herd.submit(int, "2"))
        submitted.set()

    submitter = threading.Thread(target=submit)
    submitter.start()
    assert not submitted.wait(0.05)
    assert herd.stats().waiting_submitters == 1
    release.set()
    submitter.join(timeout=10)
    assert first.result(timeout=10) is True
    assert second[0].result(timeout=10) == 2


def test_bounded_backlog(make_herd: MakeHerd) -> None:
    herd = make_herd(1, backlog=2)
    release = threading.Event()
    running = herd.submit(release.wait)
    queued = [herd.submit(int, str(n)) for n in range(2)]  # these do not block
    assert herd.stats().backlog == 2
    blocked = threading.Thread(target=herd.submit, args=(int, "9"))
    blocked.start()
    blocked.join(0.05)
    assert blocked.is_alive()
    release.set()
    blocked.join(timeout=10)
    assert running.result(timeout=10)
    assert [f.result(timeout=10) for f in queued] == [0, 1]


def test_unbounded_backlog_never_blocks(make_herd: MakeHerd) -> None:
    herd = make_herd(1, backlog=None)
    release = threading.Event()
    futures = [herd.submit(release.wait) for _ in range(200)]
    assert herd.stats().backlog == 199
    release.set()
    assert all(f.result(timeout=10) for f in futures)


def test_idle_gophers_are_reused(make_herd: MakeHerd) -> None:
    herd = make_herd(8)
    for n in range(20):
        assert herd.submit(abs, -n).result(timeout=10) == n
    assert len(herd._threads) == 1


class Payload:
    """An argument whose end the tests watch for."""


def watch(obj: object) -> tuple[weakref.ref[object], threading.Event]:
    """A weak reference to ``obj``, and an event set once it is freed."""
    freed = threading.Event()
    return weakref.ref(obj, lambda _: freed.set()), freed


def test_references_are_freed_after_completion(make_herd: MakeHerd) -> None:
    herd = make_herd(2)
    payload = Payload()
    ref, collected = watch(payload)
    herd.submit(lambda p: None, payload)  # the future is dropped at once
    del payload
    assert collected.wait(10)
    assert ref() is None


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Only reference counting frees anything: what a cycle holds stays."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("end", ["result", "retried then result", "cancel", "shutdown"])
def test_a_future_kept_after_its_work_ends_lets_go_of_the_call(
    make_herd: MakeHerd, end: str
) -> None:
    """As ThreadPoolExecutor's work item is dropped once run: keeping futures for their
    results must not keep every function and argument they were submitted with."""
    herd = make_herd(0 if end in ("cancel", "shutdown") else 1, backlog=None, max_retries=1)
    payload = Payload()
    ref, freed = watch(payload)
    attempts: list[int] = []

    def task(p: Payload, *, retry: bool) -> int:
        attempts.append(1)
        if retry and len(attempts) == 1:
            raise Retry()
        return 7

    future = herd.submit(task, payload, retry=end == "retried then result")
    del payload
    if end == "cancel":
        assert future.cancel()
    elif end == "shutdown":
        herd.shutdown(wait=False, cancel_futures=True)
    else:
        assert future.result(timeout=10) == 7
    assert freed.wait(10)
    assert ref() is None
    assert future.done()
    assert len(attempts) == {"result": 1, "retried then result": 2}.get(end, 0)


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("how", ["raised", "retries ran out", "backoff raised"])
def test_a_failed_future_is_freed_without_the_garbage_collector(
    make_herd: MakeHerd, how: str
) -> None:
    """A thread pool's is: the exception's traceback holds the herd's frames, and those
    must not lead back to the future, or it and its arguments wait for a collection."""

    def task(p: Payload) -> None:
        raise ValueError("no") if how == "raised" else Retry()

    def backoff(attempt: int) -> float:
        raise OverflowError("no delay")

    herd = make_herd(1, max_retries=1, backoff=backoff if how == "backoff raised" else None)
    payload = Payload()
    payload_ref, payload_freed = watch(payload)
    future = herd.submit(task, payload)
    del payload
    exception = future.exception(timeout=10)
    expected = {"raised": ValueError, "backoff raised": OverflowError}
    assert isinstance(exception, expected.get(how, Retry))
    assert exception.__traceback__ is not None
    future_ref, future_freed = watch(future)
    del future, exception
    assert future_freed.wait(10)
    assert payload_freed.wait(10)
    assert future_ref() is None
    assert payload_ref() is None


def test_a_work_costs_the_garbage_collector_three_objects(make_herd: MakeHerd) -> None:
    """The future, its lock and its Work, queued or finished: the future is its own
    queue entry, and makes no list for callbacks or waiters until one is needed. Every
    tracked object is scanned again at each full collection, so a large backlog pays
    for each one."""

    def tracked() -> int:
        gc.collect()
        return len(gc.get_objects())

    count = 2000
    herd = make_herd(2, backlog=None)
    assert [f.result(timeout=10) for f in [herd.submit(abs, -n) for n in range(100)]]
    gate = threading.Event()
    blockers = [herd.submit(gate.wait, 10) for _ in range(2)]
    assert wait_until(lambda: herd.stats().busy == 2)
    before = tracked()
    queued = [herd.submit(abs, -n) for n in range(count)]
    assert tracked() - before <= 3 * count + 10  # + the list
    gate.set()
    assert [f.result(timeout=10) for f in queued] == list(range(count))
    assert all(f.result(timeout=10) for f in blockers)
    assert tracked() - before <= 3 * count + 10


@pytest.mark.parametrize("size", [1, 2])
def test_a_work_submits_to_its_own_busy_herd_without_waiting(
    make_herd: MakeHerd, size: int
) -> None:
    """Each work schedules its children on its own herd and returns, as a download task
    schedules its remaining chunks on its pool; two levels deep. Every gopher is busy
    and there is no backlog: a submit that waited for a slot would wait for one that
    only its own gopher could free. A gopher's submit is queued at once instead."""
    herd = make_herd(size)
    every_gopher_busy = threading.Barrier(size)
    gate = threading.Event()
    children: queue.SimpleQueue[HerdFuture[tuple[int, ...]]] = queue.SimpleQueue()

    def work(path: tuple[int, ...]) -> tuple[int, ...]:
        if len(path) == 1:
            every_gopher_busy.wait(10)  # no child may take a slot a root has not
        if len(path) < 3:
            for k in range(3):
                children.put(herd.submit(work, (*path, k)))
        if len(path) == 1:
            gate.wait(10)  # the roots keep every gopher busy while their children queue
        return path

    roots = [herd.submit(work, (n,)) for n in range(size)]
    assert wait_until(lambda: herd.stats().backlog == 3 * size), herd.stats()
    stats = herd.stats()
    assert (stats.busy, stats.waiting_submitters) == (size, 0)
    gate.set()
    found = roots + [children.get(timeout=10) for _ in range(size * (3 + 9))]
    paths = [future.result(timeout=10) for future in found]
    assert sorted(paths) == sorted(
        itertools.chain.from_iterable(
            itertools.product(range(size), *[range(3)] * depth) for depth in range(3)
        )
    )
    assert wait_until(lambda: herd.stats().succeeded == size * 13)
    # The queued works held no slot and gave none back: the herd still takes `size`
    # works, and the next caller waits.
    hold = threading.Event()
    submitters = [
        threading.Thread(target=herd.submit, args=(hold.wait, 10)) for _ in range(size + 1)
    ]
    for submitter in submitters:
        submitter.start()

    def full() -> bool:
        stats = herd.stats()
        return (stats.busy, stats.waiting_submitters) == (size, 1)

    assert wait_until(full), herd.stats()
    hold.set()
    for submitter in submitters:
        submitter.join(timeout=10)


def test_a_callback_on_a_gopher_submits_without_waiting(make_herd: MakeHerd) -> None:
    """on_success runs on the gopher while its work still holds the only slot."""
    followups: queue.SimpleQueue[HerdFuture[int]] = queue.SimpleQueue()

    def follow_up(work: Work) -> None:
        if work.result < 100:
            followups.put(herd.submit(abs, -10 * work.result))

    herd = make_herd(1, on_success=follow_up)
    assert herd.submit(abs, -5).result(timeout=10) == 5
    assert followups.get(timeout=10).result(timeout=10) == 50
    assert followups.get(timeout=10).result(timeout=10) == 500


def test_a_submit_from_another_herds_gopher_still_waits(make_herd: MakeHerd) -> None:
    """Only the herd's own gophers skip the wait: a gopher of another herd waits for a
    slot that this herd's gophers will free, so one herd feeding another keeps its
    backpressure."""
    herd = make_herd(1)
    other = make_herd(1)
    gate = threading.Event()
    herd.submit(gate.wait, 10)
    outer = other.submit(lambda: herd.submit(int, "5").result(timeout=10))
    assert wait_until(lambda: herd.stats().waiting_submitters == 1)
    gate.set()
    assert outer.result(timeout=10) == 5


# -- map ---------------------------------------------------------------------------------


def test_map_keeps_order(make_herd: MakeHerd) -> None:
    herd = make_herd(4)
    assert list(herd.map(pow, range(20), range(20))) == [n**n for n in range(20)]
    assert list(herd.map(abs, [])) == []


def test_map_raises_in_order(make_herd: MakeHerd) -> None:
    herd = make_herd(2)
    results = herd.map(divmod, [1, 1, 1], [2, 0, 5])
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_reads_an_endless_input_lazily(make_herd: MakeHerd) -> None:
    herd = make_herd(4)
    consumed = itertools.count()

    def numbers() -> itertools.count[int]:
        return (next(consumed) or n for n in itertools.count())  # type: ignore[return-value]

    results = herd.map(abs, numbers())
    assert [next(results) for _ in range(100)] == list(range(100))
    # Look-ahead is bounded: twice the herd size, plus what one step refills.
    assert next(consumed) <= 100 + 2 * 4 + 1
    results.close()  # type: ignore[attr-defined]


def test_map_submits_a_short_input_before_returning(make_herd: MakeHerd) -> None:
    herd = make_herd(5)
    seen: list[int] = []
    lock = threading.Lock()

    def record(n: int) -> None:
        with lock:
            seen.append(n)

    herd.map(record, range(10))
    herd.shutdown(wait=True)
    assert sorted(seen) == list(range(10))


def test_map_buffersize(make_herd: MakeHerd) -> None:
    herd = make_herd(4)
    with pytest.raises(TypeError, match="buffersize must be an integer or None"):
        herd.map(abs, [1], buffersize=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="buffersize must be None or > 0"):
        herd.map(abs, [1], buffersize=0)
    started = []
    results = herd.map(started.append, range(100), buffersize=3)
    herd_stats = herd.stats()
    assert herd_stats.submitted == 3
    assert len(list(results)) == 100


def test_map_timeout_counts_from_the_call(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    release = threading.Event()
    results = herd.map(lambda n: release.wait() and n, [1, 2], timeout=0.05)
    with pytest.raises(futures.TimeoutError):
        next(results)
    release.set()


def test_map_timeout_bounds_its_own_blocking_submits(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    release = threading.Event()
    busy = herd.submit(release.wait)  # the only gopher is taken
    log: list[str] = []
    results = herd.map(log.append, ["second", "third"], timeout=0)
    with pytest.raises(futures.TimeoutError):
        next(results)
    release.set()
    busy.result(timeout=10)
    herd.shutdown()
    assert log == []  # neither ran: the work that timed out was never accepted


def test_closing_map_early_cancels_what_has_not_started(make_herd: MakeHerd) -> None:
    herd = make_herd(1, backlog=None)
    gate = threading.Event()
    ran: list[int] = []

    def work(n: int) -> int:
        ran.append(n)
        if n:
            gate.wait()  # the one gopher stays busy, so 2.. cannot start
        return n

    results = herd.map(work, range(6), buffersize=6)
    assert next(results) == 0
    results.close()  # type: ignore[attr-defined]
    gate.set()
    herd.shutdown()
    assert ran in ([0], [0, 1])
    assert herd.stats().cancelled == 6 - len(ran)


def test_map_after_the_executor_is_gone_raises_where_the_input_stops() -> None:
    herd = HerdExecutor(2)
    results = herd.map(abs, range(-50, 0), buffersize=2)
    del herd
    assert [next(results), next(results)] == [50, 49]  # in flight before it went
    with pytest.raises(RuntimeError, match="collected during map"):
        next(results)


def test_map_after_shutdown_raises_where_the_input_stops(make_herd: MakeHerd) -> None:
    herd = make_herd(2)
    results = herd.map(abs, range(-50, 0), buffersize=2)
    herd.shutdown(wait=False)
    assert [next(results), next(results)] == [50, 49]
    with pytest.raises(RuntimeError, match="after shutdown"):
        next(results)


# -- shutdown ----------------------------------------------------------------------------


def test_submit_after_shutdown(make_herd: MakeHerd) -> None:
    herd = make_herd(2)
    herd.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        herd.submit(int)
    herd.shutdown()  # idempotent


def test_context_manager_waits(make_herd: MakeHerd) -> None:
    done: list[int] = []
    with make_herd(3) as herd:
        for n in range(10):
            herd.submit(done.append, n)
    assert sorted(done) == list(range(10))
    assert not herd._threads


def test_shutdown_without_wait_still_finishes_accepted_work() -> None:
    herd = HerdExecutor(2, backlog=None)
    gate = threading.Event()
    futures = [herd.submit(gate.wait) for _ in range(10)]
    threads = herd._threads
    herd.shutdown(wait=False)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert all(f.result(timeout=10) for f in futures)


def test_shutdown_cancel_futures(make_herd: MakeHerd) -> None:
    herd = make_herd(1, backlog=None)
    gate, started = threading.Event(), threading.Event()
    running = herd.submit(lambda: started.set() or gate.wait())
    started.wait(10)
    queued = [herd.submit(int) for _ in range(20)]
    herd.shutdown(wait=False, cancel_futures=True)
    gate.set()
    herd.shutdown()
    assert running.result() is True
    assert all(f.cancelled() for f in queued)
    stats = herd.stats()
    assert (stats.succeeded, stats.cancelled) == (1, 20)


def test_blocked_submitter_is_refused_at_shutdown(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    gate = threading.Event()
    herd.submit(gate.wait)
    errors: list[BaseException] = []
    ran: list[int] = []

    def submit() -> None:
        try:
            herd.submit(ran.append, 1)
        except RuntimeError as exc:
            errors.append(exc)

    submitter = threading.Thread(target=submit)
    submitter.start()
    assert wait_until(lambda: herd.stats().waiting_submitters == 1)
    herd.shutdown(wait=False)
    submitter.join(timeout=10)
    gate.set()
    herd.shutdown()
    assert [str(e) for e in errors] == ["cannot schedule new futures after shutdown"]
    assert ran == []
    assert herd.stats().submitted == 1


def test_shutdown_on_a_paused_herd_waits_and_warns(
    make_herd: MakeHerd, caplog: pytest.LogCaptureFixture
) -> None:
    herd = make_herd(0, backlog=None)
    future = herd.submit(int, "3")
    waiter = threading.Thread(target=herd.shutdown)
    with caplog.at_level("WARNING", logger="herdexec"):
        waiter.start()
        waiter.join(0.1)
        assert waiter.is_alive()
        herd.herd_size = 1  # another thread (or PATCH /herd) resumes the herd
        waiter.join(timeout=10)
    assert future.result() == 3
    assert "waiting for 1 accepted works on a paused herd" in caplog.text


def test_dropped_executor_winds_down() -> None:
    herd = HerdExecutor(3)
    herd.submit(int).result(timeout=10)
    threads = herd._threads
    ref = weakref.ref(herd)
    del herd
    assert ref() is None
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_gophers_do_not_keep_the_executor_alive_in_a_cycle() -> None:

    class Owner:
        def __init__(self) -> None:
            self.pool = HerdExecutor(2)
            self.me = self

    owner = Owner()
    owner.pool.submit(int).result(timeout=10)
    threads = owner.pool._threads
    del owner
    gc.collect()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
