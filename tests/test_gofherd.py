"""gofherd's own interface: send_work, close_input and output_chan."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import pytest

from herdexec import HerdExecutor, Status, Work

from .helpers import wait_until

MakeHerd = Callable[..., HerdExecutor]


def add_ten(work: Work) -> Status:
    work.set_result(work.body + 10)
    return Status.SUCCESS


def test_the_gofherd_example(make_herd: MakeHerd) -> None:
    herd = make_herd(0, process=add_ten, max_retries=0)

    def load() -> None:
        for i in range(10):
            herd.send_work(Work(f"workID:{i}", i))
        herd.close_input()

    loader = threading.Thread(target=load)
    loader.start()
    assert wait_until(lambda: herd.stats().waiting_submitters == 1)
    herd.herd_size = 10
    seen = {work.id: (str(work.status), work.result) for work in herd.output_chan()}
    loader.join(timeout=10)
    assert seen == {f"workID:{i}": ("success", i + 10) for i in range(10)}


def test_send_work_result_is_the_works(make_herd: MakeHerd) -> None:
    herd = make_herd(2, process=add_ten)
    work = Work("w", 5)
    future = herd.send_work(work)
    assert future.result(timeout=10) == 15
    assert future.work is work
    assert future.id == "w"


def test_send_work_needs_a_process(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    with pytest.raises(RuntimeError, match=r"send_work\(\) needs a process function"):
        herd.send_work(Work("w"))


def test_send_work_takes_only_work(make_herd: MakeHerd) -> None:
    herd = make_herd(1, process=add_ten)
    with pytest.raises(TypeError, match=r"send_work\(\) takes a herdexec.Work, not int"):
        herd.send_work(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("timeout", "error"), [(-1, ValueError), ("1", TypeError)])
def test_send_work_timeout_validation(make_herd: MakeHerd, timeout: object, error: type) -> None:
    herd = make_herd(1, process=add_ten)
    with pytest.raises(error, match="timeout must be"):
        herd.send_work(Work("w", 1), timeout=timeout)  # type: ignore[arg-type]


def test_send_work_timeout_leaves_the_work_untouched(make_herd: MakeHerd) -> None:
    ran: list[str] = []

    def process(work: Work) -> Status:
        ran.append(work.id)
        return Status.SUCCESS

    herd = make_herd(0, process=process)
    with pytest.raises(futures.TimeoutError, match=r"no gopher took the work within 0\.05 seconds"):
        herd.send_work(Work("late"), timeout=0.05)
    herd.herd_size = 1
    herd.send_work(Work("on time"), timeout=10).result(timeout=10)
    herd.shutdown()
    assert ran == ["on time"]
    stats = herd.stats()
    assert (stats.submitted, stats.succeeded) == (1, 1)


def test_work_validation_and_repr() -> None:
    with pytest.raises(TypeError, match="Work id must be a str, not int"):
        Work(3)  # type: ignore[arg-type]
    work = Work("a", body=[1])
    assert (work.status, work.retries, work.result, work.exception) == (None, 0, None, None)
    assert repr(work) == "<Work 'a' pending retries=0>"
    work.set_result(4)
    assert work.result == 4


def test_close_input_refuses_new_work_but_finishes_the_rest(make_herd: MakeHerd) -> None:
    gate = threading.Event()

    def slow(work: Work) -> Status:
        gate.wait()
        return Status.SUCCESS

    herd = make_herd(1, process=slow, backlog=3)
    futures = [herd.send_work(Work(str(n))) for n in range(4)]
    herd.close_input()
    with pytest.raises(RuntimeError, match=r"after close_input\(\)"):
        herd.send_work(Work("late"))
    with pytest.raises(RuntimeError, match=r"after close_input\(\)"):
        herd.submit(int)
    gate.set()
    assert [f.result(timeout=10) for f in futures] == [None] * 4
    assert [w.id for w in herd.output_chan()] == ["0", "1", "2", "3"]


def test_close_input_refuses_a_blocked_sender(make_herd: MakeHerd) -> None:
    herd = make_herd(0, process=add_ten)
    errors: list[Exception] = []

    def send() -> None:
        try:
            herd.send_work(Work("w", 1))
        except RuntimeError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    assert wait_until(lambda: herd.stats().waiting_submitters == 1)
    herd.close_input()
    sender.join(timeout=10)
    assert [str(e) for e in errors] == ["cannot schedule new futures after close_input()"]
    assert list(herd.output_chan()) == []


def test_output_chan_keeps_everything_for_a_late_reader(make_herd: MakeHerd) -> None:
    herd = make_herd(4, process=add_ten)
    futures = [herd.send_work(Work(str(n), n)) for n in range(50)]
    for future in futures:
        future.result(timeout=10)
    herd.close_input()
    assert sorted(w.result for w in herd.output_chan()) == [n + 10 for n in range(50)]


def test_output_chan_is_in_completion_order(make_herd: MakeHerd) -> None:
    gates = {name: threading.Event() for name in "abc"}

    def process(work: Work) -> Status:
        gates[work.id].wait()
        return Status.SUCCESS

    herd = make_herd(3, process=process)
    for name in "abc":
        herd.send_work(Work(name))
    herd.close_input()
    output = herd.output_chan()
    for name in "cab":
        gates[name].set()
        assert next(output).id == name
    assert list(output) == []


def test_output_chan_includes_failures_but_not_cancelled(make_herd: MakeHerd) -> None:
    herd = make_herd(1, output=True, backlog=None)
    gate, started = threading.Event(), threading.Event()
    herd.submit(lambda: started.set() or gate.wait())
    started.wait(10)
    herd.submit(divmod, 1, 0)
    cancelled = herd.submit(int)
    assert cancelled.cancel()
    gate.set()
    herd.shutdown()
    statuses = sorted(str(w.status) for w in herd.output_chan())
    assert statuses == ["failure", "success"]
    assert herd.stats().cancelled == 1


def test_output_is_off_for_plain_submit(make_herd: MakeHerd) -> None:
    herd = make_herd(1)
    with pytest.raises(RuntimeError, match="output_chan\\(\\) needs the output on"):
        herd.output_chan()
    assert not make_herd(1, process=add_ten, output=False)._herd.output_enabled


def test_a_bounded_output_holds_the_gophers_back(make_herd: MakeHerd) -> None:
    herd = make_herd(4, output=2, backlog=None)
    futures = [herd.submit(int, str(n)) for n in range(10)]
    # Two works fit in the output; the four gophers holding the next ones wait for a
    # reader, and count as busy while they do.
    assert wait_until(lambda: herd.stats().busy == 4)
    assert sum(f.done() for f in futures) == 2
    herd.close_input()
    assert sorted(w.result for w in herd.output_chan()) == list(range(10))
    assert all(f.done() for f in futures)


def test_several_readers_share_the_output(make_herd: MakeHerd) -> None:
    herd = make_herd(4, process=add_ten)
    got: list[list[int]] = [[], []]

    def read(into: list[int]) -> None:
        into.extend(w.result for w in herd.output_chan())

    readers = [threading.Thread(target=read, args=(into,)) for into in got]
    for reader in readers:
        reader.start()
    for n in range(100):
        herd.send_work(Work(str(n), n))
    herd.close_input()
    for reader in readers:
        reader.join(timeout=10)
    assert sorted(got[0] + got[1]) == [n + 10 for n in range(100)]
