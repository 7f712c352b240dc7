"""HerdFuture with the rest of concurrent.futures, and with asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable

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
