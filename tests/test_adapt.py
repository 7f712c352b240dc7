"""The algorithms' arithmetic, on windows fed by hand: no herd, no clock, no sleep."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable

import pytest

from herdexec import AIMD, Gradient, LimitEstimate

FLAT = [0.1] * 10  # a window of ten attempts of 100 ms


def run(
    algorithm: Gradient | AIMD,
    estimate: LimitEstimate,
    windows: int,
    latency: Callable[[int], float],
    refuse_above: float = math.inf,
) -> tuple[LimitEstimate, list[int]]:
    """Feed ``windows`` windows from a model backend: each attempt takes ``latency(size)``
    and, past ``refuse_above`` gophers, the ones above it are refused (dropped)."""
    sizes = []
    for _ in range(windows):
        size = algorithm.size(estimate)
        count = algorithm.samples(estimate)
        served = min(count, int(count * refuse_above / size)) if size > refuse_above else count
        estimate = algorithm.update(estimate, [latency(size)] * served, count - served)
        sizes.append(algorithm.size(estimate))
    return estimate, sizes


def knee(capacity: int, base: float = 0.1) -> Callable[[int], float]:
    """BASE while at most ``capacity`` run, proportionally longer beyond."""
    return lambda size: base * max(1.0, size / capacity)


# -- Gradient --------------------------------------------------------------------------


def test_gradient_defaults() -> None:
    g = Gradient()
    assert (g.min_size, g.max_size, g.window, g.backoff_ratio) == (1, None, 10, 0.9)
    assert (g.tolerance, g.smoothing) == (1.2, 0.2)
    assert g.name == "gradient"


def test_start_is_the_size_within_bounds_in_slow_start() -> None:
    g = Gradient(min_size=2, max_size=8)
    assert g.start(4) == LimitEstimate(4.0, probing=True, baseline=None)
    assert g.start(1).limit == 2.0
    assert g.start(100).limit == 8.0


def test_slow_start_doubles_while_latency_is_flat() -> None:
    g = Gradient()
    estimate = g.start(1)
    limits = []
    for _ in range(5):
        estimate = g.update(estimate, FLAT)
        limits.append(estimate.limit)
    assert limits == [2, 4, 8, 16, 32]
    assert estimate.probing
    assert estimate.baseline == 0.1


def test_slow_start_waits_while_the_herd_is_idle() -> None:
    g = Gradient()
    assert g.update(g.start(4), FLAT, busy=False) == LimitEstimate(4.0, True, 0.1)


def test_slow_start_ends_where_latency_would_be_within_tolerance() -> None:
    g = Gradient()
    estimate = LimitEstimate(32.0, probing=True, baseline=0.1)
    # Twice the baseline: gradient = 1.2 * 0.1 / 0.2 = 0.6, so 32 -> 19.2.
    after = g.update(estimate, [0.2] * 32)
    assert after.limit == pytest.approx(19.2)
    assert after == LimitEstimate(after.limit, False, 0.1, (32.0, 0.2))


def test_slow_start_ends_on_a_drop() -> None:
    g = Gradient()
    after = g.update(LimitEstimate(32.0, True, 0.1), [0.1] * 30, drops=2)
    assert after.limit == pytest.approx(32 * 0.9)
    assert not after.probing


def test_within_tolerance_the_limit_grows_by_the_smoothed_allowance() -> None:
    g = Gradient()
    after = g.update(LimitEstimate(16.0, False, 0.1), [0.11] * 16)  # 1.1x: within 1.2x
    assert after.limit == pytest.approx(16 + 0.2 * 4)
    assert after.baseline == 0.1


def test_an_idle_herd_does_not_grow() -> None:
    g = Gradient()
    assert g.update(LimitEstimate(16.0, False, 0.1), FLAT, busy=False).limit == 16.0


def test_beyond_tolerance_the_limit_shrinks_in_proportion() -> None:
    g = Gradient()
    # 1.5x the baseline: gradient = 1.2 / 1.5 = 0.8; 20 - 0.2 * (1 - 0.8) * 20.
    after = g.update(LimitEstimate(20.0, False, 0.1), [0.15] * 20)
    assert after.limit == pytest.approx(19.2)


def test_the_gradient_never_cuts_more_than_half() -> None:
    g = Gradient(smoothing=1.0)
    after = g.update(LimitEstimate(20.0, False, 0.1), [10.0] * 20)  # 100x slower
    assert after.limit == 10.0


def test_a_drop_cuts_at_least_by_the_backoff_ratio() -> None:
    g = Gradient(backoff_ratio=0.5)
    after = g.update(LimitEstimate(20.0, False, 0.1), FLAT, drops=1)
    assert after.limit == 10.0
    only_drops = g.update(LimitEstimate(20.0, False, 0.1), [], drops=10)
    assert only_drops == LimitEstimate(10.0, False, 0.1)


def test_the_baseline_is_the_lowest_median() -> None:
    g = Gradient()
    estimate = LimitEstimate(10.0, False, 0.1)
    estimate = g.update(estimate, [0.08] * 9 + [5.0])  # one straggler: the median is 0.08
    assert estimate.baseline == 0.08
    estimate = g.update(estimate, [0.09] * 10)
    assert estimate.baseline == 0.08


def test_a_backend_slower_for_everyone_moves_the_baseline_up() -> None:
    """Latency that stays up while the limit halves was not the herd's doing."""
    g = Gradient()
    estimate = LimitEstimate(40.0, False, 0.1)
    limits = []
    while estimate.baseline == 0.1:
        estimate = g.update(estimate, [0.3] * 40)  # three times slower, whatever the size
        limits.append(estimate.limit)
        assert len(limits) < 100
    assert estimate.baseline == 0.3
    assert 19 <= limits[-1] <= 21  # halved, then no further
    assert estimate.backed_off_from is None
    assert g.update(estimate, [0.3] * 20).limit > estimate.limit  # and it grows again


def test_latency_that_falls_as_the_limit_falls_keeps_the_baseline() -> None:
    g = Gradient()
    estimate, sizes = run(g, LimitEstimate(64.0, False, 0.1), 60, knee(16))
    assert estimate.baseline == 0.1
    assert 16 <= sizes[-1] <= 21


def test_bounds_hold_whatever_the_latency() -> None:
    g = Gradient(min_size=3, max_size=12)
    _, sizes = run(g, g.start(3), 30, lambda size: 0.1)
    assert max(sizes) == 12
    _, sizes = run(g, g.start(3), 60, lambda size: 0.1 * size**3)
    assert min(sizes) == 3
    assert all(3 <= s <= 12 for s in sizes)


@pytest.mark.parametrize("capacity", [4, 16, 64])
def test_gradient_settles_at_the_knee_and_follows_it(capacity: int) -> None:
    """From size 1, against a backend whose latency grows past ``capacity`` gophers:
    the size settles between C and tolerance x C (one more for the rounding), where the
    latency is within 1.2x the base, and strays at most one allowance step above; then
    C halves, and doubles back."""
    g = Gradient()
    estimate = g.start(1)
    for c in (capacity, capacity // 2, capacity):
        estimate, sizes = run(g, estimate, 80, knee(c))
        settled = sizes[-20:]
        assert c <= statistics.median(settled) <= 1.2 * c + 1
        assert c <= min(settled)
        assert max(settled) <= 1.3 * c + 1
        assert estimate.baseline == 0.1


def test_samples_is_one_round_of_the_herd() -> None:
    g = Gradient(window=10)
    assert g.samples(LimitEstimate(3.0)) == 10
    assert g.samples(LimitEstimate(50.4)) == 50


def test_size_rounds_half_up() -> None:
    g = Gradient()
    assert [g.size(LimitEstimate(x)) for x in (0.2, 2.5, 3.49, 3.5)] == [1, 3, 3, 4]


# -- AIMD ------------------------------------------------------------------------------


def test_aimd_defaults() -> None:
    a = AIMD()
    assert (a.min_size, a.max_size, a.window, a.backoff_ratio, a.increase) == (
        1,
        None,
        10,
        0.9,
        1.0,
    )
    assert a.name == "aimd"


def test_aimd_slow_start_then_additive_increase_and_multiplicative_decrease() -> None:
    a = AIMD()
    estimate = a.start(1)
    for expected in (2, 4, 8):
        estimate = a.update(estimate, FLAT)
        assert (estimate.limit, estimate.probing) == (expected, True)
    estimate = a.update(estimate, FLAT, drops=1)
    assert (estimate.limit, estimate.probing) == (pytest.approx(7.2), False)
    estimate = a.update(estimate, FLAT)
    assert estimate.limit == pytest.approx(8.2)
    assert a.update(estimate, FLAT, busy=False) == estimate
    assert a.update(estimate, []) == estimate  # an empty window says nothing


def test_aimd_ignores_latency() -> None:
    a = AIMD()
    estimate = LimitEstimate(10.0, False)
    assert a.update(estimate, [100.0] * 10).limit == 11.0


def test_aimd_saw_tooths_under_the_refusal_point() -> None:
    """The loss-only algorithm finds where the backend refuses (2 x C), not C."""
    a = AIMD()
    _, sizes = run(a, a.start(1), 200, knee(16), refuse_above=32)
    assert min(sizes[100:]) >= 26
    assert max(sizes[100:]) <= 33


# -- parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Gradient(min_size=0), ValueError, "min_size must be >= 1, not 0"),
        (lambda: Gradient(min_size=1.5), TypeError, "min_size must be an int, not float"),
        (lambda: Gradient(min_size=True), TypeError, "min_size must be an int, not bool"),
        (lambda: AIMD(min_size=4, max_size=2), ValueError, "max_size must be >= min_size (4)"),
        (lambda: Gradient(window=0), ValueError, "window must be >= 1"),
        (lambda: Gradient(tolerance=0.9), ValueError, "tolerance must be >= 1, not 0.9"),
        (lambda: Gradient(tolerance="2"), TypeError, "tolerance must be a number, not str"),
        (lambda: Gradient(tolerance=math.nan), ValueError, "tolerance must be >= 1"),
        (lambda: Gradient(smoothing=0), ValueError, "smoothing must be in (0, 1], not 0"),
        (lambda: Gradient(smoothing=1.5), ValueError, "smoothing must be in (0, 1]"),
        (lambda: AIMD(backoff_ratio=0.0), ValueError, "backoff_ratio must be in (0, 1]"),
        (lambda: AIMD(backoff_ratio=math.nan), ValueError, "backoff_ratio must be in (0, 1]"),
        (lambda: AIMD(increase=0), ValueError, "increase must be > 0, not 0"),
        (lambda: AIMD(increase=None), TypeError, "increase must be a number, not NoneType"),
    ],
)
def test_bad_parameters(make: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_algorithms_are_frozen_values() -> None:
    g = Gradient(max_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.max_size = 9  # type: ignore[misc]
    assert g == Gradient(max_size=8)
    assert hash(g) == hash(Gradient(max_size=8))
    assert g != AIMD(max_size=8)
    assert (
        repr(AIMD())
        == "AIMD(min_size=1, max_size=None, window=10, backoff_ratio=0.9, increase=1.0)"
    )
    with pytest.raises(TypeError):
        Gradient(1)  # type: ignore[misc]  # keyword-only: Gradient(1) would mean nothing
