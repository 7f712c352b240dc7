"""Code as a user writes it, which must pass ``mypy --strict`` (tox's ``types`` env checks
it; nothing runs it): herd futures go wherever ``concurrent.futures`` takes a future."""

from __future__ import annotations

import asyncio
from concurrent import futures
from concurrent.futures import Executor, Future

from herdexec import (
    AIMD,
    Gradient,
    HerdExecutor,
    HerdFuture,
    HerdStats,
    LimitEstimate,
    ProcessRunner,
    Status,
    Work,
)


def square(n: int) -> int:
    return n * n


def process(work: Work) -> Status:
    work.set_result(work.body)
    return Status.SUCCESS


def squares(pool: Executor) -> list[int]:
    return list(pool.map(square, range(3)))


def use(herd: HerdExecutor) -> tuple[list[int], HerdStats]:
    future: HerdFuture[int] = herd.submit(square, 2)
    plain: Future[int] = future
    plain.add_done_callback(lambda done: print(done.result()))
    done, _ = futures.wait([future, plain], timeout=1)
    firsts = [f.result() for f in futures.as_completed([future, *done])]
    sent = herd.send_work(Work("w", 1))
    herd.herd_size += 1
    return [*firsts, *squares(herd), sent.result(), future.retries], herd.stats()


def default_executor(loop: asyncio.BaseEventLoop, herd: HerdExecutor) -> None:
    loop.set_default_executor(herd)  # typeshed asks for a ThreadPoolExecutor, as asyncio does


with HerdExecutor(2, process=process) as herd:
    use(herd)

with HerdExecutor(2, runner=ProcessRunner(timeout=5.0, max_tasks_per_child=100)) as herd:
    use(herd)


def adapt(limit: LimitEstimate) -> float | None:
    algorithm: Gradient | AIMD = Gradient(min_size=2, max_size=16, tolerance=1.5)
    estimate = algorithm.update(limit, [0.1, 0.2], drops=1, busy=True)
    with HerdExecutor(2, adapt=AIMD(max_size=8), overload_on=TimeoutError) as herd:
        herd.adapting = not herd.adapting
        stats = herd.stats()
        return None if stats.adapt is None else algorithm.size(estimate) + (stats.adapt_limit or 0)
