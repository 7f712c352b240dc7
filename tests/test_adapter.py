"""Adaptive herds end to end, against a capacity-limited service simulated in this process.

The service is deterministic: a call returns at once, but the herd's clock reports it as
having taken ``base * max(1, herd_size / capacity)`` seconds (the ``ServiceClock``), the
latency it would have if every gopher were in a call; past twice its capacity it refuses
with ``Overloaded``. So each attempt's duration is exact, every decision follows from the
count of attempts, and the tests drive the herd by events (the n-th call) and never by
time. The herd, its gophers and its adapter are the real ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import wait
from typing import Any

import pytest

import herdexec._adapter
import herdexec._executor
import herdexec._herd
from herdexec import AIMD, Gradient, HerdExecutor, Retry

Make = Callable[..., HerdExecutor]


class Overloaded(Exception):
    """The service refuses: too many callers."""


class ServiceClock:
    """The herd's ``perf_counter``: real time, but for the reading that ends a call the
    service took: that one is the thread's last reading (the attempt's start) plus what
    the service says the call took. So an attempt lasts exactly what the service says,
    however late the OS runs its thread, and which attempts began before a resize is
    still decided by real time."""

    def __init__(self) -> None:
        self._thread = threading.local()
        # Held while an attempt is written down, and while the adapter decides, if
        # decisions_wait: calls wait meanwhile (see Service).
        self.deciding = threading.Lock()
        self.decisions_wait = True

    def __call__(self) -> float:
        thread = self._thread
        taken: float | None = getattr(thread, "taken", None)
        if taken is None:
            now = thread.last = time.perf_counter()
            return now
        thread.taken = None
        start: float = thread.last
        return start + taken

    def spend(self, seconds: float) -> None:
        self._thread.taken = seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ServiceClock:
    clock = ServiceClock()
    monkeypatch.setattr(herdexec._herd, "perf_counter", clock)
    monkeypatch.setattr(herdexec._adapter, "perf_counter", clock)
    observe = herdexec._adapter.Adapter.observe

    def observe_held(adapter: herdexec._adapter.Adapter, *args: Any) -> None:
        if not clock.decisions_wait:
            observe(adapter, *args)
            return
        with clock.deciding:
            observe(adapter, *args)

    monkeypatch.setattr(herdexec._adapter.Adapter, "observe", observe_held)
    return clock


class Service:
    """See the module's docstring; ``at`` runs an action on the n-th call, under the
    service's lock, so that every later call sees what it did.

    A call waits while the herd's adapter decides, since a decision takes no time next
    to a call of a second: else a gopher that the OS holds up in the middle of one
    would leave the others calling at the old size, a thousand calls in a millisecond,
    and the count of calls would no longer tell where the herd stands. It waits on the
    clock's ``deciding`` lock, which each attempt's ``observe`` holds from before it
    takes the adapter's lock to after it has let it go: a gopher that finds the
    adapter's lock taken skips its turn to decide, and one held up just before it let
    the lock go would have others skip theirs for as long. ``decisions_wait=False``
    (the clock's) lets calls go on.
    """

    def __init__(self, clock: ServiceClock, capacity: int, base: float = 1.0) -> None:
        self.clock = clock
        self.capacity = capacity
        self.base = base
        self.herd: HerdExecutor | None = None
        self.sizes: list[int] = []  # the herd's size at each call
        self.threads: list[int] = []  # gopher threads alive, every tenth call
        self.at: dict[int, Callable[[], object]] = {}
        self._lock = threading.Lock()

    def __call__(self) -> None:
        assert self.herd is not None
        if self.clock.decisions_wait:
            with self.clock.deciding:
                pass
        with self._lock:
            size = self.herd.herd_size
            self.sizes.append(size)
            action = self.at.get(len(self.sizes))
            if action is not None:
                action()
            if len(self.sizes) % 10 == 0:
                self.threads.append(len(self.herd._threads))
            capacity = self.capacity
        if size > 2 * capacity:
            raise Overloaded
        self.clock.spend(self.base * max(1.0, size / capacity))


def serve(make: Make, service: Service, works: int, *args: Any, **kwargs: Any) -> HerdExecutor:
    """A herd on ``service`` that has run ``works`` works to the end (each retried until
    the service takes it), all submitted before the first call ends (it waits for them,
    under the service's lock) so that no gopher idles for want of work."""
    kwargs.setdefault("retry_on", Overloaded)
    herd = make(*args, backlog=None, registry=None, max_retries=10**6, **kwargs)
    service.herd = herd
    submitted = threading.Event()
    assert 1 not in service.at
    service.at[1] = submitted.wait
    try:
        futures = [herd.submit(service) for _ in range(works)]
    finally:
        submitted.set()
    done, _ = wait(futures, timeout=60)
    assert len(done) == works
    assert all(f.exception() is None for f in futures)
    return herd


def test_grows_from_one_to_the_knee_and_follows_it(make_herd: Make, clock: ServiceClock) -> None:
    service = Service(clock, capacity=8)

    def capacity(c: int) -> Callable[[], None]:
        return lambda: setattr(service, "capacity", c)

    service.at = {2000: capacity(4), 4000: capacity(16)}
    herd = serve(make_herd, service, 6000, 1, adapt=Gradient(max_size=64))
    stage = [service.sizes[1000:2000], service.sizes[3000:4000], service.sizes[5000:]]
    # Within reach of each capacity (C to 1.3 C, plus one for the rounding): the
    # latency stays within about a fifth of the base, and nothing is refused.
    for sizes, c in zip(stage, (8, 4, 16), strict=True):
        assert min(sizes) >= c, (c, sorted(set(sizes)))
        assert max(sizes) <= 1.3 * c + 1, (c, sorted(set(sizes)))
    assert service.sizes[0] == 1
    assert max(service.sizes[:2000]) <= 16  # slow start overshoots by a doubling at most
    assert herd.stats().adapting


def test_attempts_from_before_a_resize_stay_out_of_the_window_after_it(
    make_herd: Make, clock: ServiceClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gopher that decides to double the herd is held up before the resize, as the
    OS may hold it: the others go on at the old size meanwhile, and none of those
    attempts may pass for one at the new size, or the herd would double again.

    The first window is calls 1 to 10; call 11 waits for the decision to reach the
    resize, and call 51 for the resize to be done, so calls 11 to 51 are the others'
    at the old size. From then on calls wait for every decision, as in the other tests.
    """
    clock.decisions_wait = False
    service = Service(clock, capacity=8)
    resize = herdexec._executor._resize
    deciding, others_went_on, resized = threading.Event(), threading.Event(), threading.Event()
    service.at = {
        11: lambda: deciding.wait(timeout=30),
        51: lambda: others_went_on.set() or resized.wait(timeout=30),
    }

    def late(*args: Any) -> None:
        if not deciding.is_set():
            deciding.set()
            others_went_on.wait(timeout=30)
        resize(*args)
        clock.decisions_wait = True
        resized.set()

    monkeypatch.setattr(herdexec._executor, "_resize", late)
    serve(make_herd, service, 1000, 8, adapt=Gradient(max_size=64))
    assert service.sizes[:51] == [8] * 51
    assert max(service.sizes) == 16, sorted(set(service.sizes))
    assert 8 <= min(service.sizes[500:]) <= max(service.sizes[500:]) <= 1.3 * 8 + 1


def test_map_gives_an_adaptive_herd_the_work_to_grow_into(
    make_herd: Make, clock: ServiceClock
) -> None:
    """map() keeps twice max_size in flight, not twice the starting size of 1."""
    service = Service(clock, capacity=16)
    herd = make_herd(1, adapt=Gradient(max_size=64), backlog=None, registry=None)
    service.herd = herd
    assert list(herd.map(lambda n: service() or n, range(3000))) == list(range(3000))
    assert min(service.sizes[2000:]) >= 16


def test_aimd_climbs_to_where_the_service_refuses(make_herd: Make, clock: ServiceClock) -> None:
    service = Service(clock, capacity=8)
    herd = serve(make_herd, service, 3000, 1, adapt=AIMD(max_size=64))
    settled = service.sizes[2000:]
    assert min(settled) >= 12, sorted(set(settled))
    assert max(settled) <= 17, sorted(set(settled))
    assert herd.stats().retried > 0


def test_bounds_hold(make_herd: Make, clock: ServiceClock) -> None:
    service = Service(clock, capacity=40)
    service.at = {1500: lambda: setattr(service, "capacity", 2)}
    serve(make_herd, service, 3000, 3, adapt=Gradient(min_size=3, max_size=12))
    assert set(service.sizes[:1500]) >= {3, 12}  # it grew to its bound, and no further
    assert 3 in service.sizes[1500:]
    assert all(3 <= size <= 12 for size in service.sizes)


def test_never_above_max_herd_size(make_herd: Make, clock: ServiceClock) -> None:
    service = Service(clock, capacity=10_000)  # latency never rises: nothing stops it but the cap
    herd = serve(make_herd, service, 2000, 1, adapt=True, max_herd_size=12)
    stats = herd.stats()
    assert stats.adapt == Gradient(max_size=12)
    assert max(service.sizes) == 12 == stats.herd_size
    assert max(service.threads) <= 12


def test_setting_the_size_pins_it_until_adapting_again(
    make_herd: Make, clock: ServiceClock
) -> None:
    service = Service(clock, capacity=16)
    seen: dict[str, object] = {}

    def pin() -> None:
        herd = service.herd
        assert herd is not None
        herd.herd_size = 5
        seen["pinned"] = (herd.adapting, herd.stats().adapting, herd.herd_size)

    def resume() -> None:
        assert service.herd is not None
        service.herd.adapting = True

    service.at = {1000: pin, 3000: resume}
    herd = serve(make_herd, service, 5000, 1, adapt=Gradient(max_size=64))
    assert seen["pinned"] == (False, False, 5)
    assert max(service.sizes[:1000]) > 5
    assert set(service.sizes[1000:3000]) == {5}  # the algorithm no longer moves it
    assert 16 <= min(service.sizes[4500:]) <= max(service.sizes[4500:]) <= 21
    assert herd.adapting


def test_adapting_false_pauses_at_the_present_size(make_herd: Make, clock: ServiceClock) -> None:
    service = Service(clock, capacity=16)
    sizes: list[int] = []

    def pause() -> None:
        assert service.herd is not None
        service.herd.adapting = False
        sizes.append(service.herd.herd_size)

    service.at = {40: pause}
    herd = serve(make_herd, service, 1000, 1, adapt=Gradient(max_size=64))
    assert set(service.sizes[40:]) == set(sizes)
    assert not herd.adapting


def test_resuming_a_paused_herd_starts_it_again(make_herd: Make, clock: ServiceClock) -> None:
    """An operator pauses the herd (size 0) with work waiting; adapting again must not
    leave that work stranded: it resumes from min_size."""
    service = Service(clock, capacity=8)
    herd = make_herd(4, adapt=Gradient(min_size=2, max_size=16), backlog=None, registry=None)
    service.herd = herd
    herd.herd_size = 0
    futures = [herd.submit(service) for _ in range(500)]
    assert herd.stats().busy == 0
    assert not herd.adapting
    herd.adapting = True
    assert herd.herd_size == 2
    done, _ = wait(futures, timeout=60)
    assert len(done) == 500
    assert service.sizes[0] == 2
    assert max(service.sizes) > 2


def test_an_adaptive_herd_that_has_ended_is_neither_pinned_nor_resumed(make_herd: Make) -> None:
    herd = make_herd(4, adapt=Gradient(min_size=2, max_size=16), registry=None)
    herd.adapting = False
    herd.shutdown()
    with pytest.raises(RuntimeError, match=r"^cannot resize the herd after shutdown$"):
        herd.herd_size = 6
    with pytest.raises(RuntimeError, match=r"^cannot resize the herd after shutdown$"):
        herd.adapting = True
    assert (herd.herd_size, herd.adapting) == (4, False)
    herd.adapting = False  # pausing resizes nothing: still allowed


def test_drops_shrink_the_herd_to_min_size_and_no_work_is_stranded(
    make_herd: Make, clock: ServiceClock
) -> None:
    service = Service(clock, capacity=0)  # refuses every call at first
    service.at = {2000: lambda: setattr(service, "capacity", 4)}
    herd = serve(make_herd, service, 300, 16, adapt=Gradient(min_size=1, max_size=16))
    assert service.sizes[0] == 16
    assert 1 in service.sizes[:2000]
    herd.shutdown(wait=True)
    stats = herd.stats()
    assert stats.submitted == stats.succeeded == 300
    assert stats.busy == stats.idle == 0


@pytest.mark.parametrize(
    ("overload_on", "shrinks"), [((), True), (Overloaded, False)], ids=["failures", "named"]
)
def test_what_counts_as_a_drop(
    make_herd: Make, clock: ServiceClock, overload_on: Any, shrinks: bool
) -> None:
    """Without overload_on every failure is a drop; with it, only those exceptions."""
    service = Service(clock, capacity=10_000)
    calls = iter(range(10**6))

    def flaky() -> None:
        service()
        if next(calls) % 5 == 0:
            raise ValueError("not the service's fault")

    herd = make_herd(
        8, adapt=Gradient(max_size=64), overload_on=overload_on, backlog=None, registry=None
    )
    service.herd = herd
    wait([herd.submit(flaky) for _ in range(1000)], timeout=60)
    size = herd.herd_size
    assert size == 1 if shrinks else size == 64


def test_retries_are_drops(make_herd: Make, clock: ServiceClock) -> None:
    service = Service(clock, capacity=10_000)
    attempts = iter(range(10**6))

    def retried() -> None:
        service()
        if next(attempts) % 5 == 0:
            raise Retry

    herd = make_herd(8, adapt=AIMD(max_size=64), max_retries=3, backlog=None, registry=None)
    service.herd = herd
    wait([herd.submit(retried) for _ in range(1000)], timeout=60)
    assert herd.herd_size == 1


def test_stress_operators_and_algorithm_race(make_herd: Make) -> None:
    """Real calls that overlap, an algorithm that resizes, and an operator who pins and
    lets go as fast as it can: at no moment do more calls run than the largest size the
    herd may have, and every work ends exactly once."""
    running = 0
    most = 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.0002)
        with lock:
            running -= 1

    herd = make_herd(4, adapt=AIMD(max_size=24, window=2), max_herd_size=24, registry=None)
    stop = threading.Event()

    def operator() -> None:
        size = 0
        while not stop.is_set():
            size = size % 24 + 1
            herd.herd_size = size
            herd.adapting = True

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        futures = [herd.submit(call) for _ in range(3000)]
    finally:
        stop.set()
        thread.join()
    herd.adapting = True
    wait(futures, timeout=60)
    herd.shutdown(wait=True)
    stats = herd.stats()
    assert stats.submitted == stats.succeeded == 3000
    assert most <= 24


# -- the API ---------------------------------------------------------------------------


def test_stats_of_a_herd_that_does_not_adapt(make_herd: Make) -> None:
    herd = make_herd(2, registry=None)
    stats = herd.stats()
    assert (stats.adapt, stats.adapting, stats.adapt_limit) == (None, False, None)
    assert not herd.adapting


def test_stats_of_an_adaptive_herd(make_herd: Make) -> None:
    herd = make_herd(3, adapt=AIMD(min_size=2), registry=None, max_herd_size=50)
    stats = herd.stats()
    assert stats.adapt == AIMD(min_size=2, max_size=50)
    assert (stats.adapting, stats.adapt_limit) == (True, 3.0)


def test_the_default_size_moves_within_the_bounds(make_herd: Make) -> None:
    assert make_herd(adapt=Gradient(max_size=2), registry=None).herd_size == 2
    assert make_herd(adapt=Gradient(min_size=40), registry=None).herd_size == 40


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"adapt": "yes"}, TypeError, "adapt must be True, None, a herdexec.Gradient or"),
        ({"adapt": Gradient}, TypeError, "not type"),
        ({"adapt": AIMD(max_size=200)}, ValueError, r"max_size \(200\) must be <= max_herd_size"),
        ({"adapt": AIMD(min_size=200)}, ValueError, r"min_size \(200\) must be <= max_herd_size"),
        ({"adapt": Gradient(min_size=8), "max_workers": 4}, ValueError, "min_size 8 to max_size"),
        ({"adapt": Gradient(max_size=8), "max_workers": 9}, ValueError, "lie within adapt's"),
        ({"adapt": True, "max_workers": 0}, ValueError, r"max_workers \(0\) is where"),
        ({"overload_on": Overloaded}, ValueError, "give adapt= too"),
        ({"adapt": True, "overload_on": "429"}, TypeError, "overload_on must be an exception"),
        ({"adapt": True, "overload_on": (Overloaded, 1)}, TypeError, "overload_on must be"),
    ],
)
def test_bad_adapt_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        HerdExecutor(registry=None, max_herd_size=100, **kwargs)


def test_adapting_needs_an_algorithm_and_a_bool(make_herd: Make) -> None:
    plain = make_herd(1, registry=None)
    with pytest.raises(RuntimeError, match="does not adapt: make it with HerdExecutor"):
        plain.adapting = True
    adaptive = make_herd(1, adapt=True, registry=None)
    with pytest.raises(TypeError, match="adapting must be a bool, not int"):
        adaptive.adapting = 1  # type: ignore[assignment]
    assert adaptive.adapting
