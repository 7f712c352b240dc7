"""Statuses, retries, backoff and the callbacks that report them."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

import pytest

from herdexec import ExponentialBackoff, HerdExecutor, Retry, Status, Work, WorkFailed

from .helpers import wait_until

MakeHerd = Callable[..., HerdExecutor]


def failing(times: int, exc: BaseException, result: object = "done") -> Callable[[], object]:
    """A task that raises ``exc`` on its first ``times`` calls."""
    calls = itertools.count()

    def task() -> object:
        if next(calls) < times:
            raise exc
        return result

    return task


def test_retry_then_success(make_herd: MakeHerd) -> None:
    herd = make_herd(2, max_retries=3)
    future = herd.submit(failing(2, Retry()))
    assert future.result(timeout=10) == "done"
    assert (future.status, future.retries) == (Status.SUCCESS, 2)
    assert future.work.exception is None
    stats = herd.stats()
    assert (stats.succeeded, stats.retried, stats.failed) == (1, 2, 0)


def test_retries_run_out_into_failure_with_the_last_exception(make_herd: MakeHerd) -> None:
    herd = make_herd(2, max_retries=2, retry_on=(ConnectionError,))
    last = ConnectionError("third")
    errors = iter([ConnectionError("first"), ConnectionError("second"), last])

    def task() -> None:
        raise next(errors)

    future = herd.submit(task)
    assert future.exception(timeout=10) is last
    assert (future.status, future.retries) == (Status.FAILURE, 2)


def test_other_exceptions_fail_at_once(make_herd: MakeHerd) -> None:
    herd = make_herd(1, max_retries=5, retry_on=(ConnectionError,))
    future = herd.submit(failing(1, ValueError("no")))
    assert isinstance(future.exception(timeout=10), ValueError)
    assert future.retries == 0


def test_no_retries_by_default(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    future = herd.submit(failing(1, Retry()))
    assert isinstance(future.exception(timeout=10), Retry)
    assert herd.stats().retried == 0


def test_process_statuses(make_herd: MakeHerd) -> None:
    outcomes: dict[str, list[Status]] = {
        "ok": [Status.SUCCESS],
        "flaky": [Status.RETRY, Status.RETRY, Status.SUCCESS],
        "hopeless": [Status.RETRY] * 10,
        "broken": [Status.FAILURE],
    }

    def process(work: Work) -> Status:
        work.set_result(f"{work.id}#{work.retries}")
        return outcomes[work.id][work.retries]

    herd = make_herd(2, process=process, max_retries=3)
    futures = {name: herd.send_work(Work(name)) for name in outcomes}
    assert futures["ok"].result(timeout=10) == "ok#0"
    assert futures["flaky"].result(timeout=10) == "flaky#2"
    for name in ("hopeless", "broken"):
        error = futures[name].exception(timeout=10)
        assert isinstance(error, WorkFailed)
        assert error.work is futures[name].work
        assert futures[name].status is Status.FAILURE
    assert futures["hopeless"].retries == 3


def test_process_raising_is_like_submit(make_herd: MakeHerd) -> None:
    calls = itertools.count()

    def process(work: Work) -> Status:
        if next(calls) == 0:
            raise Retry()
        raise KeyError(work.id)

    herd = make_herd(1, process=process, max_retries=3)
    future = herd.send_work(Work("w"))
    assert isinstance(future.exception(timeout=10), KeyError)
    assert future.retries == 1


def test_process_returning_a_non_status_fails_clearly(make_herd: MakeHerd) -> None:
    herd = make_herd(1, process=lambda work: "success")  # type: ignore[arg-type,return-value]
    error = herd.send_work(Work("w")).exception(timeout=10)
    assert isinstance(error, TypeError)
    assert str(error) == "process() must return a herdexec.Status, not str"


def test_backoff_delays_retries_without_holding_a_gopher(make_herd: MakeHerd) -> None:
    """While one work waits out a long backoff, the only gopher runs other work."""
    first_attempt = threading.Event()
    herd = make_herd(1, max_retries=1, backoff=lambda attempt: 3600.0)

    def task() -> None:
        first_attempt.set()
        raise Retry()

    waiting = herd.submit(task)
    first_attempt.wait(10)
    assert herd.submit(int, "4").result(timeout=10) == 4
    stats = herd.stats()
    assert (stats.pending_retries, stats.busy) == (1, 0)
    assert waiting.cancel()  # cancelling cancels the retry
    assert waiting.cancelled()
    stats = herd.stats()
    assert (stats.pending_retries, stats.cancelled) == (0, 1)
    herd.shutdown()  # returns: nothing waits for the hour-long backoff


def test_backoff_is_called_with_the_retry_number(make_herd: MakeHerd) -> None:
    attempts: list[int] = []

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.001

    herd = make_herd(1, max_retries=3, backoff=backoff)
    herd.submit(failing(3, Retry())).result(timeout=10)
    assert attempts == [1, 2, 3]


@pytest.mark.parametrize("delay", [-1, "soon", None, float("nan")])
def test_a_bad_backoff_fails_the_work_clearly(make_herd: MakeHerd, delay: object) -> None:
    herd = make_herd(1, max_retries=1, backoff=lambda attempt: delay)
    error = herd.submit(failing(1, Retry())).exception(timeout=10)
    assert isinstance(error, ValueError)
    assert "backoff(1) returned" in str(error)


def test_due_retries_go_before_the_backlog(make_herd: MakeHerd) -> None:
    order: list[str] = []
    gate = threading.Event()
    herd = make_herd(1, backlog=None, max_retries=1)
    calls = itertools.count()

    def flaky() -> None:
        order.append("flaky")
        if next(calls) == 0:
            gate.wait()
            raise Retry()

    herd.submit(flaky)
    later = [herd.submit(order.append, f"later{n}") for n in range(3)]
    gate.set()
    for future in later:
        future.result(timeout=10)
    assert order == ["flaky", "flaky", "later0", "later1", "later2"]


def test_cancel_a_retry_waiting_in_the_due_queue(make_herd: MakeHerd) -> None:
    """A retry with no backoff waits in the due queue while the herd is paused."""
    gate = threading.Event()
    herd = make_herd(1, max_retries=2)

    def task() -> None:
        gate.wait()
        raise Retry()

    future = herd.submit(task)
    herd.herd_size = 0  # the gopher leaves after this attempt
    gate.set()
    assert wait_until(lambda: herd.stats().pending_retries == 1)
    assert future.cancel()
    assert herd.stats().cancelled == 1


def test_callbacks_run_before_the_future_settles(make_herd: MakeHerd) -> None:
    seen: list[tuple[str, str, Status | None, int]] = []

    def record(kind: str) -> Callable[[Work], None]:
        return lambda work: seen.append((kind, work.id, work.status, work.retries))

    herd = make_herd(
        1,
        max_retries=1,
        on_success=record("success"),
        on_retry=record("retry"),
        on_failure=record("failure"),
    )
    ok = herd.submit(failing(1, Retry()))
    ok.result(timeout=10)
    bad = herd.submit(failing(5, Retry()))
    bad.exception(timeout=10)
    assert seen == [
        ("retry", ok.id, Status.RETRY, 1),
        ("success", ok.id, Status.SUCCESS, 1),
        ("retry", bad.id, Status.RETRY, 1),
        ("failure", bad.id, Status.FAILURE, 1),
    ]


def test_a_raising_callback_is_logged_and_harms_nothing(
    make_herd: MakeHerd, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(work: Work) -> None:
        raise RuntimeError("callback bug")

    herd = make_herd(1, on_success=explode)
    with caplog.at_level("ERROR", logger="herdexec"):
        assert herd.submit(int, "8").result(timeout=10) == 8
    assert "raised for work" in caplog.text
    assert "callback bug" in caplog.text  # with its traceback
    assert herd.submit(int, "9").result(timeout=10) == 9


def test_done_callbacks_still_work(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    done = threading.Event()
    future = herd.submit(int, "1")
    future.add_done_callback(lambda f: done.set())
    assert done.wait(10)


def test_custom_logger(make_herd: MakeHerd, caplog: pytest.LogCaptureFixture) -> None:

    logger = logging.getLogger("my.app.herd")
    herd = make_herd(1, on_failure=lambda work: 1 / 0, logger=logger)
    with caplog.at_level("ERROR", logger="my.app.herd"):
        herd.submit(failing(1, ValueError())).exception(timeout=10)
    assert [r.name for r in caplog.records] == ["my.app.herd"]


# -- ExponentialBackoff ------------------------------------------------------------------


def test_exponential_schedule_without_jitter() -> None:
    backoff = ExponentialBackoff(initial=0.5, factor=2, maximum=3, jitter=0)
    assert [backoff.delay(n, 0.7) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_band() -> None:
    backoff = ExponentialBackoff(initial=1, factor=2, maximum=100, jitter=0.25)
    assert backoff.delay(3, 0.0) == 4.0
    assert backoff.delay(3, 0.999999) == pytest.approx(3.0, abs=1e-5)
    assert all(3.0 <= backoff(3) <= 4.0 for _ in range(100))


def test_huge_attempts_stay_capped() -> None:
    assert ExponentialBackoff(maximum=7, jitter=0).delay(10_000, 0.5) == 7


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1}, {"factor": 0.5}, {"maximum": -2}, {"jitter": 1.5}, {"jitter": -0.1}],
)
def test_backoff_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ExponentialBackoff(**kwargs)


def test_backoff_attempt_validation() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        ExponentialBackoff().delay(0, 0.5)
