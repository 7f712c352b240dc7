"""HerdFuture with the rest of concurrent.futures, and with asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable

import pytest

from herdexec import HerdExecutor, Retry

from .helpers import wait_until

MakeHerd = Callable[..., HerdExecutor]


def test_wait_first_completed(make_herd: MakeHerd) -> None:
    herd = make_herd(2)
    gate = threading.Event()
    slow = herd.submit(gate.wait)
    fast = herd.submit(int, "1")
    done, not_done = concurrent.futures.wait([slow, fast], return_when="FIRST_COMPLETED")
    assert done == {fast}
    assert not_done == {slow}
    gate.set()
    done, _ = concurrent.futures.wait([slow, fast], timeout=10)
    assert done == {slow, fast}


def test_as_completed(make_herd: MakeHerd) -> None:
    herd = make_herd(4)
    futures = [herd.submit(pow, 3, n) for n in range(20)]
    results = {f.result() for f in concurrent.futures.as_completed(futures, timeout=10)}
    assert results == {3**n for n in range(20)}


def test_wait_sees_a_cancelled_retry(make_herd: MakeHerd) -> None:
    attempted = threading.Event()
    herd = make_herd(1, max_retries=1, backoff=lambda attempt: 3600.0)

    def task() -> None:
        attempted.set()
        raise Retry()

    future = herd.submit(task)
    attempted.wait(10)
    # The attempt has begun; cancel only once its retry waits (until then it runs).
    assert wait_until(lambda: herd.stats().pending_retries == 1)
    waiter = threading.Thread(target=concurrent.futures.wait, args=([future],))
    waiter.start()
    assert future.cancel()
    waiter.join(timeout=10)
    assert not waiter.is_alive()


def test_asyncio_run_in_executor(make_herd: MakeHerd) -> None:
    herd = make_herd(3)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(herd, abs, -n) for n in range(10))))

    assert asyncio.run(main()) == list(range(10))


# -- a herd as asyncio's executor --------------------------------------------------------

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def _gopher_and_request() -> tuple[str, str]:
    return threading.current_thread().name, _request_id.get()


def test_a_herd_passes_for_a_thread_pool_executor_with_none_of_its_machinery() -> None:
    herd = HerdExecutor(2)
    try:
        assert isinstance(herd, concurrent.futures.ThreadPoolExecutor)
        # Every public method that ThreadPoolExecutor or Executor defines is the herd's
        # own, so no call reaches the pool's machinery, which a herd never sets up; a
        # later Python that adds one fails here rather than in a user's hands.
        for base in (concurrent.futures.Executor, concurrent.futures.ThreadPoolExecutor):
            public = {name for name in vars(base) if not name.startswith("_")}
            assert public <= set(vars(HerdExecutor)), (base, public - set(vars(HerdExecutor)))
        # The pool's state that code written for it reads follows the herd.
        assert (herd._max_workers, herd._shutdown, herd._broken) == (2, False, False)
        herd.herd_size = 3
        herd.submit(int).result(timeout=10)
        assert (herd._max_workers, len(herd._threads)) == (3, 1)
    finally:
        herd.shutdown()
    assert herd._shutdown


def test_asyncio_run_with_a_herd_as_the_default_executor() -> None:
    """set_default_executor() takes nothing but a ThreadPoolExecutor from Python 3.11 on
    (3.10 warns). to_thread() and run_in_executor(None, ...) then run on the herd, the
    coroutine's context comes along, and asyncio.run() shuts the herd down at its end."""
    herd = HerdExecutor(2, thread_name_prefix="default-herd")

    async def main() -> list[tuple[str, str]]:
        asyncio.get_running_loop().set_default_executor(herd)
        _request_id.set("r-17")
        calls = [asyncio.to_thread(_gopher_and_request) for _ in range(5)]
        calls.append(asyncio.get_running_loop().run_in_executor(None, _gopher_and_request))
        return list(await asyncio.gather(*calls))

    ran = asyncio.run(main())
    assert {request for _, request in ran[:5]} == {"r-17"}
    assert all(name.startswith("default-herd_") for name, _ in ran), ran
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        herd.submit(int)
    assert herd._threads == frozenset()  # shut down with wait=True: joined
    assert herd.stats().succeeded == 6


def test_loop_shutdown_shuts_its_default_herd_down() -> None:
    """shutdown_default_executor() waits for the herd (on a thread of its own), after
    which the loop refuses the default executor; loop.close() shuts it down too."""
    herd = HerdExecutor(1)
    other = HerdExecutor(1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(herd)
        assert await asyncio.to_thread(abs, -4) == 4
        await loop.shutdown_default_executor()
        assert herd._shutdown
        assert herd._threads == frozenset()
        with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
            await asyncio.to_thread(abs, -5)

    asyncio.run(main())
    loop = asyncio.new_event_loop()
    try:
        loop.set_default_executor(other)
        assert loop.run_until_complete(asyncio.to_thread(abs, -6)) == 6
        threads = other._threads
    finally:
        loop.close()  # shutdown(wait=False)
    assert other._shutdown
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.mark.parametrize("via", ["run_in_executor", "to_thread"])
def test_a_submit_from_the_event_loop_never_blocks_it(make_herd: MakeHerd, via: str) -> None:
    """The herd's one gopher runs a work that waits for the event loop (as a
    thread-sensitive sync_to_async call does), and the loop then hands the herd a second
    work. With no backlog, a submit that waited for a gopher on the loop's thread would
    stall the loop that the first work waits for: it is queued instead."""
    herd = make_herd(1)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()

        def call(fn: Callable[..., str], *args: object) -> Awaitable[str]:
            if via == "run_in_executor":
                return loop.run_in_executor(herd, fn, *args)
            return asyncio.to_thread(fn, *args)

        def needs_the_loop() -> str:
            coroutine = asyncio.sleep(0, result="first")
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

        if via == "to_thread":
            loop.set_default_executor(herd)
        first = asyncio.ensure_future(call(needs_the_loop))
        await asyncio.sleep(0)  # to_thread's task submits now; run_in_executor did
        second = asyncio.ensure_future(call(str, "second"))  # the one gopher is busy
        return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == ["first", "second"]
    stats = herd.stats()
    assert (stats.submitted, stats.succeeded) == (2, 2)
