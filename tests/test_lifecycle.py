"""Initializers, a broken herd, interpreter exit, fork, and resizing a herd that has ended."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

import pytest

from herdexec import BrokenHerd, HerdExecutor, Retry, Status, Work

from .helpers import wait_until

MakeHerd = Callable[..., HerdExecutor]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_initializer_runs_in_every_new_gopher(make_herd: MakeHerd) -> None:
    local = threading.local()
    initialized: list[str] = []
    lock = threading.Lock()

    def init(tag: str) -> None:
        local.tag = tag
        with lock:
            initialized.append(threading.current_thread().name)

    herd = make_herd(1, initializer=init, initargs=("ready",), backlog=None)
    assert herd.submit(lambda: local.tag).result(timeout=10) == "ready"
    herd.herd_size = 3
    gate = threading.Event()
    futures = [herd.submit(gate.wait) for _ in range(3)]
    assert wait_until(lambda: herd.stats().busy == 3)
    gate.set()
    assert all(f.result(timeout=10) for f in futures)
    assert len(initialized) == 3  # the grown herd's gophers ran it too


def test_a_failing_initializer_breaks_the_herd(
    make_herd: MakeHerd, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()

    def init() -> None:
        gate.wait()  # break only once all five are in
        raise OSError("no database")

    herd = make_herd(2, initializer=init, backlog=None)
    assert herd._broken is False
    with caplog.at_level("CRITICAL", logger="concurrent.futures"):
        futures = [herd.submit(int) for _ in range(5)]
        gate.set()
        for future in futures:
            assert isinstance(future.exception(timeout=10), BrokenHerd)
    # Reported where ThreadPoolExecutor reports it.
    assert {r.name for r in caplog.records} == {"concurrent.futures"}
    assert "Exception in initializer" in caplog.text
    assert "no database" in caplog.text
    assert herd._broken == "A gopher initializer failed, the herd is not usable anymore"
    with pytest.raises(BrokenHerd, match="the herd is not usable anymore"):
        herd.submit(int)
    herd.shutdown()
    stats = herd.stats()
    assert stats.submitted == stats.failed + stats.cancelled == 5


def test_a_failing_initializer_is_reported_on_the_herds_own_logger(
    make_herd: MakeHerd, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("my.app")
    herd = make_herd(1, initializer=lambda: 1 / 0, logger=logger)
    with caplog.at_level("CRITICAL"):
        herd.submit(int).exception(timeout=10)
    assert sorted(r.name for r in caplog.records) == ["concurrent.futures", "my.app"]


def test_broken_herd_failures_reach_the_output(make_herd: MakeHerd) -> None:
    def init() -> None:
        raise ValueError

    herd = make_herd(1, initializer=init, process=lambda w: Status.SUCCESS)
    future = herd.send_work(Work("w"))
    assert isinstance(future.exception(timeout=10), BrokenHerd)
    herd.shutdown()
    [work] = herd.output_chan()
    assert (work.id, work.status) == ("w", Status.FAILURE)
    assert isinstance(work.exception, BrokenHerd)


def test_interpreter_exit_finishes_accepted_work() -> None:
    result = run_python(
        """
        import sys, time
        from herdexec import HerdExecutor
        herd = HerdExecutor(2, backlog=None)
        for n in range(4):
            herd.submit(lambda n=n: (time.sleep(0.05), sys.stdout.write(f"done {n}\\n")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == [f"done {n}" for n in range(4)]
    assert result.stderr == ""


def test_submit_during_interpreter_exit_raises() -> None:
    result = run_python(
        """
        import atexit
        from herdexec import HerdExecutor

        @atexit.register
        def late():
            try:
                herd.submit(id, None)
            except RuntimeError as exc:
                print("refused:", exc)

        herd = HerdExecutor(2)
        herd.submit(id, 1).result()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "refused: cannot schedule new futures after interpreter shutdown\n"


def test_a_blocked_submit_is_refused_at_interpreter_exit() -> None:
    result = run_python(
        """
        import threading
        from herdexec import HerdExecutor

        herd = HerdExecutor(1)
        gate = threading.Event()
        herd.submit(gate.wait, 2)   # the only gopher waits, then finishes at exit

        def blocked():
            try:
                herd.submit(print, "must not run")
            except RuntimeError as exc:
                print("refused:", exc, flush=True)

        threading.Thread(target=blocked).start()
        while herd.stats().waiting_submitters == 0:
            gate.wait(0.001)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "refused: cannot schedule new futures after interpreter shutdown\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_exits_without_waiting_for_the_parents_gophers() -> None:
    result = run_python(
        """
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
        from herdexec import HerdExecutor
        herd = HerdExecutor(2)
        herd.submit(int).result()
        pid = os.fork()
        if pid == 0:
            raise SystemExit(0)  # a normal exit runs the interpreter's exit hooks
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child 0\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_while_a_herd_runs() -> None:
    result = run_python(
        """
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
        from herdexec import HerdExecutor
        with HerdExecutor(2) as herd:
            herd.submit(int).result()
            pid = os.fork()
            if pid == 0:
                with HerdExecutor(1) as child:
                    os._exit(0 if child.submit(int, "7").result(timeout=10) == 7 else 1)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child 0\n"


def test_shutdown_of_a_paused_herd_drops_cancelled_works(make_herd: MakeHerd) -> None:
    herd = make_herd(0, backlog=None)
    future = herd.submit(int)
    assert future.cancel()
    herd.shutdown()  # returns: nothing is left to wait for
    assert herd.stats().cancelled == 1


def test_cancelling_the_last_work_of_a_paused_herd_ends_its_shutdown(make_herd: MakeHerd) -> None:
    herd = make_herd(0, backlog=None)
    future = herd.submit(int)
    waiter = threading.Thread(target=herd.shutdown)
    waiter.start()
    waiter.join(0.05)
    assert waiter.is_alive()
    future.cancel()
    waiter.join(timeout=10)
    assert not waiter.is_alive()


def test_resizing_a_herd_that_has_ended_raises(make_herd: MakeHerd) -> None:
    herd = make_herd(2)
    herd.submit(int).result(timeout=10)
    herd.shutdown()
    for size in (3, 2, 0):
        with pytest.raises(RuntimeError, match=r"^cannot resize the herd after shutdown$"):
            herd.herd_size = size
    assert herd.stats().herd_size == 2
    assert herd._threads == frozenset()  # nothing started


def test_a_shut_down_herd_resizes_until_its_accepted_work_is_done(make_herd: MakeHerd) -> None:
    """A paused herd's shutdown goes on once the herd is resized; so resizing stops only
    once the herd has ended: shut down, and every work it accepted done."""
    herd = make_herd(0, backlog=None)
    release = threading.Event()  # so that no work ends, nor the herd, before the resizes
    futures = [herd.submit(release.wait, 10) for _ in range(2)]
    herd.shutdown(wait=False)
    herd.herd_size = 1  # accepted work remains: the resize runs it
    herd.herd_size = 2
    release.set()
    # A future settles after its work is counted: the second has ended the herd.
    assert [future.result(timeout=10) for future in futures] == [True, True]
    with pytest.raises(RuntimeError, match="after shutdown"):
        herd.herd_size = 1
    assert herd.herd_size == 2


def test_a_broken_herd_resizes_until_it_is_shut_down(make_herd: MakeHerd) -> None:
    def init() -> None:
        raise OSError("no database")

    herd = make_herd(1, initializer=init)
    assert isinstance(herd.submit(int).exception(timeout=10), BrokenHerd)
    herd.herd_size = 2  # it starts no gopher: a broken herd runs nothing more
    assert (herd.stats().busy, herd.stats().idle) == (0, 0)
    herd.shutdown()
    with pytest.raises(RuntimeError, match=r"^cannot resize the herd after shutdown$"):
        herd.herd_size = 3
    assert herd.herd_size == 2


@pytest.mark.parametrize("exc", [SystemExit(1), KeyboardInterrupt()])
def test_a_callback_raising_a_base_exception_harms_nothing(
    make_herd: MakeHerd, exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(work: Work) -> None:
        raise exc

    herd = make_herd(1, on_success=callback)
    with caplog.at_level("ERROR", logger="herdexec"):
        assert herd.submit(int, "3").result(timeout=10) == 3
        assert herd.submit(int, "4").result(timeout=10) == 4
    assert "raised for work" in caplog.text


def test_a_backoff_raising_a_base_exception_fails_the_work(make_herd: MakeHerd) -> None:
    def backoff(attempt: int) -> float:
        raise KeyboardInterrupt

    def task() -> None:
        raise Retry()

    herd = make_herd(1, max_retries=2, backoff=backoff)
    assert isinstance(herd.submit(task).exception(timeout=10), KeyboardInterrupt)
    assert herd.submit(int, "5").result(timeout=10) == 5
