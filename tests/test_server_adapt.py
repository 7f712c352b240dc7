"""An adaptive herd on the control server: GET /herd, PATCH /herd's ``adapt`` and the
operator's pin, and the metrics, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from herdexec import AIMD, ControlServer, Gradient, HerdExecutor

from .http_helpers import call, call_json
from .test_metrics import parse

Make = Callable[..., HerdExecutor]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def herd(make_herd: Make, registry: CollectorRegistry) -> HerdExecutor:
    adapt = Gradient(min_size=2, max_size=40)
    return make_herd(4, name="adaptive", registry=registry, adapt=adapt, max_herd_size=50)


@pytest.fixture
def server(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0") as server:
        yield server


def patch(server: ControlServer, body: bytes) -> tuple[int, object]:
    status, _, answer = call_json(server, "PATCH", "/herd", body)
    return status, answer


def test_get_herd_shows_the_algorithm_and_where_it_stands(server: ControlServer) -> None:
    status, _, body = call_json(server, "GET", "/herd")
    assert status == 200
    assert body["adapt"] == {
        "algorithm": "gradient",
        "adapting": True,
        "limit": 4.0,
        "min_size": 2,
        "max_size": 40,
        "window": 10,
        "backoff_ratio": 0.9,
        "tolerance": 1.2,
        "smoothing": 0.2,
    }


def test_a_herd_that_does_not_adapt_says_so(make_herd: Make) -> None:
    with make_herd(2, registry=None).serve("127.0.0.1:0") as server:
        assert call_json(server, "GET", "/herd")[2]["adapt"] is None
        status, answer = patch(server, b'{"adapt": true}')
        assert status == 409
        assert answer == {
            "num": 2,
            "msg": "this herd does not adapt: it was made without adapt= (or --adapt)",
        }
        # gofherd's answers are unchanged for such a herd.
        assert patch(server, b'{"num": 2}') == (200, {"num": 2, "msg": "Herd size already 2"})


def test_patch_num_pins_the_size(server: ControlServer, herd: HerdExecutor) -> None:
    assert patch(server, b'{"num": 7}') == (200, {"num": 7, "msg": "success", "adapting": False})
    assert (herd.herd_size, herd.adapting) == (7, False)
    assert call_json(server, "GET", "/herd")[2]["adapt"]["adapting"] is False


def test_patch_the_present_size_still_pins_it(server: ControlServer, herd: HerdExecutor) -> None:
    assert patch(server, b'{"num": 4}') == (200, {"num": 4, "msg": "success", "adapting": False})
    assert not herd.adapting
    assert patch(server, b'{"num": 4}') == (200, {"num": 4, "msg": "Herd size already 4"})


def test_patch_adapt_gives_control_back(server: ControlServer, herd: HerdExecutor) -> None:
    patch(server, b'{"num": 0}')  # paused by the operator
    assert patch(server, b'{"adapt": true}') == (
        200,
        {"num": 2, "msg": "success", "adapting": True},  # back within the bounds: min_size
    )
    assert herd.adapting
    assert patch(server, b'{"adapt": false}') == (
        200,
        {"num": 2, "msg": "success", "adapting": False},
    )
    assert (herd.herd_size, herd.adapting) == (2, False)


def test_patch_num_and_adapt_adapts_from_there(server: ControlServer, herd: HerdExecutor) -> None:
    assert patch(server, b'{"num": 9, "adapt": true}') == (
        200,
        {"num": 9, "msg": "success", "adapting": True},
    )
    assert herd.stats().adapt_limit == 9.0


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        (b'{"adapt": "yes"}', '"adapt" must be true or false, not "yes"'),
        (b'{"adapt": 1}', '"adapt" must be true or false, not 1'),
        (b'{"adapt": null}', '"adapt" must be true or false, not null'),
        (b'{"num": 3, "adapt": 0}', '"adapt" must be true or false, not 0'),
        (b"{}", 'the body has no "num": send {"num": N} (or {"adapt": true} to an adaptive herd)'),
        (b'{"num": 51, "adapt": true}', "Herd size cannot be above 50, the herd's max_herd_size"),
    ],
)
def test_bad_bodies_change_nothing(
    server: ControlServer, herd: HerdExecutor, body: bytes, msg: str | None
) -> None:
    status, answer = patch(server, body)
    assert status == 400
    assert isinstance(answer, dict)
    if msg is not None:
        assert answer == {"num": 4, "msg": msg}
    assert (herd.herd_size, herd.adapting) == (4, True)


def test_patch_above_max_size_pins_within_max_herd_size(
    server: ControlServer, herd: HerdExecutor
) -> None:
    """The operator may go past the algorithm's bounds, never past max_herd_size."""
    assert patch(server, b'{"num": 45}')[0] == 200
    assert herd.herd_size == 45
    assert patch(server, b'{"num": 51}')[0] == 400


def test_metrics_show_the_limit_and_whether_it_adapts(
    make_herd: Make, registry: CollectorRegistry, server: ControlServer, herd: HerdExecutor
) -> None:
    make_herd(1, name="plain", registry=registry)
    make_herd(3, name="loss", registry=registry, adapt=AIMD(max_size=8))
    samples = parse(call(server, "GET", "/metrics")[2].decode())
    assert samples[("herdexec_adapt_limit", (("herd", "adaptive"),))] == 4.0
    assert samples[("herdexec_adapt_limit", (("herd", "loss"),))] == 3.0
    assert samples[("herdexec_adapting", (("algorithm", "gradient"), ("herd", "adaptive")))] == 1
    assert samples[("herdexec_adapting", (("algorithm", "aimd"), ("herd", "loss")))] == 1
    assert not [key for key in samples if ("herd", "plain") in key[1] and "adapt" in key[0]]
    herd.herd_size = 6
    samples = parse(call(server, "GET", "/metrics")[2].decode())
    assert samples[("herdexec_adapting", (("algorithm", "gradient"), ("herd", "adaptive")))] == 0
    assert samples[("herdexec_herd_size", (("herd", "adaptive"),))] == 6
