"""The Prometheus metrics: one collector per registry, read from each herd's stats()."""

from __future__ import annotations

import gc
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herdexec import ControlServer, HerdExecutor, HerdStats, Retry

from .http_helpers import call, call_json

RULES = Path(__file__).parent.parent / "contrib" / "prometheus"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

COUNTERS = {
    "herdexec_success_total": "succeeded",
    "herdexec_retry_total": "retried",
    "herdexec_failure_total": "failed",
    "herdexec_cancelled_total": "cancelled",
    "herdexec_submitted_total": "submitted",
}
GAUGES = {
    "herdexec_herd_size": "herd_size",
    "herdexec_busy_gophers": "busy",
    "herdexec_idle_gophers": "idle",
    "herdexec_waiting_submitters": "waiting_submitters",
    "herdexec_backlog_works": "backlog",
    "herdexec_pending_retries": "pending_retries",
    "herdexec_outstanding_works": "outstanding",
}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def herd(make_herd: Callable[..., HerdExecutor], registry: CollectorRegistry) -> HerdExecutor:
    return make_herd(1, name="worker", registry=registry, backlog=None, max_retries=2)


@pytest.fixture
def server(herd: HerdExecutor) -> Iterator[ControlServer]:
    with herd.serve("127.0.0.1:0") as server:
        yield server


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def scrape(server: ControlServer) -> Samples:
    status, headers, data = call(server, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(data.decode())


def herd_series(samples: Samples, name: str) -> Samples:
    return {key: value for key, value in samples.items() if ("herd", name) in key[1]}


def expected(stats: HerdStats, name: str) -> Samples:
    """What the scrape must say for a herd with these stats."""
    label = (("herd", name),)
    samples: Samples = {}
    for metric, field in {**COUNTERS, **GAUGES}.items():
        samples[(metric, label)] = getattr(stats, field)
    cumulative = 0
    for bound, count in zip(stats.duration_buckets, stats.duration_counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        key = ("herdexec_work_duration_seconds_bucket", (("herd", name), ("le", le)))
        samples[key] = cumulative
    samples[("herdexec_work_duration_seconds_count", label)] = cumulative
    samples[("herdexec_work_duration_seconds_sum", label)] = stats.duration_sum
    return samples


def run_mixed_work(herd: HerdExecutor) -> None:
    """Successes, a retry, a failure, a cancellation and a slow work, all ended."""
    attempts = iter([Retry(), None])

    def flaky() -> str:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return "done"

    def fail() -> None:
        raise ValueError("no")

    herd.herd_size = 0  # queue them all, and cancel one before it starts
    futures = [herd.submit(pow, 2, n) for n in range(3)]
    futures += [herd.submit(flaky), herd.submit(fail)]
    cancelled = herd.submit(pow, 2, 99)
    assert cancelled.cancel()
    slow = herd.submit(threading.Event().wait, 0.03)  # lands in a later bucket
    herd.herd_size = 1  # one gopher, first in first out: slow ends last
    assert slow.result() is False
    for future in futures:
        future.exception()


def test_metrics_match_stats_after_real_work(server: ControlServer, herd: HerdExecutor) -> None:
    run_mixed_work(herd)
    samples = herd_series(scrape(server), "worker")
    stats = herd.stats()
    assert (stats.succeeded, stats.retried, stats.failed, stats.cancelled) == (5, 1, 1, 1)
    assert samples == expected(stats, "worker")
    # The histogram is cumulative, and the slow work is past the first bound.
    bucket = samples[
        ("herdexec_work_duration_seconds_bucket", (("herd", "worker"), ("le", "0.005")))
    ]
    assert bucket < samples[("herdexec_work_duration_seconds_count", (("herd", "worker"),))]


def test_gofherds_three_counters_and_the_gauges_are_there(server: ControlServer) -> None:
    text = call(server, "GET", "/metrics")[2].decode()
    for metric in COUNTERS:
        assert f"# TYPE {metric} counter" in text
    for metric in GAUGES:
        assert f"# TYPE {metric} gauge" in text
    assert "# TYPE herdexec_work_duration_seconds histogram" in text


def test_live_gauges_while_work_runs(server: ControlServer, herd: HerdExecutor) -> None:
    release = threading.Event()
    running = threading.Event()

    def hold() -> None:
        running.set()
        release.wait()

    future = herd.submit(hold)
    queued = herd.submit(pow, 2, 2)
    running.wait()
    try:
        samples = herd_series(scrape(server), "worker")
        label = (("herd", "worker"),)
        assert samples[("herdexec_busy_gophers", label)] == 1
        assert samples[("herdexec_backlog_works", label)] == 1
        assert samples[("herdexec_outstanding_works", label)] == 2
    finally:
        release.set()
    future.result()
    queued.result()


def test_openmetrics_when_asked(server: ControlServer) -> None:
    accept = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    status, headers, data = call(server, "GET", "/metrics", headers={"Accept": accept})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = data.decode()
    assert text.endswith("# EOF\n")
    assert 'herdexec_success_total{herd="worker"} 0.0' in text


def test_text_format_by_default(server: ControlServer) -> None:
    headers = call(server, "GET", "/metrics")[1]
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


def test_head_metrics(server: ControlServer) -> None:
    status, _, data = call(server, "HEAD", "/metrics")
    assert (status, data) == (200, b"")


def test_a_shut_down_herd_drops_out(
    server: ControlServer, make_herd: Callable[..., HerdExecutor], registry: CollectorRegistry
) -> None:
    other = make_herd(2, name="other", registry=registry)
    assert herd_series(scrape(server), "other")
    other.shutdown()
    assert not herd_series(scrape(server), "other")
    assert herd_series(scrape(server), "worker")


def test_a_dropped_herd_drops_out(registry: CollectorRegistry) -> None:
    herd = HerdExecutor(1, name="dropped", registry=registry)
    assert b'herd="dropped"' in generate_latest(registry)
    del herd
    gc.collect()
    assert b'herd="dropped"' not in generate_latest(registry)


def test_thousands_of_herds_leave_nothing_behind(registry: CollectorRegistry) -> None:
    refs = []
    for n in range(2000):
        herd = HerdExecutor(1, name=f"h{n}", registry=registry)
        herd.submit(pow, 2, n).result()
        herd.shutdown()
        refs.append(weakref.ref(herd))
    del herd
    gc.collect()
    assert not [ref for ref in refs if ref() is not None]  # the registry holds none
    assert b"herd=" not in generate_latest(registry)


def test_same_name_adds_up_under_one_label(
    make_herd: Callable[..., HerdExecutor],
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = make_herd(1, name="twin", registry=registry)
    with caplog.at_level(logging.WARNING, logger="herdexec"):
        second = make_herd(3, name="twin", registry=registry)
    assert any("twin" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    for future in [first.submit(pow, 2, 1), *(second.submit(pow, 2, n) for n in range(4))]:
        future.result()
    with first.serve("127.0.0.1:0") as server:
        samples = herd_series(scrape(server), "twin")  # parse() refuses duplicate series
    label = (("herd", "twin"),)
    assert samples[("herdexec_success_total", label)] == 5
    assert samples[("herdexec_herd_size", label)] == 4
    assert samples[("herdexec_work_duration_seconds_count", label)] == 5
    second.shutdown()
    assert parse(generate_latest(registry).decode())[("herdexec_herd_size", label)] == 1


def test_the_global_registry_by_default(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(1, name="in-the-global-registry")
    assert b'herd="in-the-global-registry"' in generate_latest(REGISTRY)
    herd.shutdown()
    assert b'herd="in-the-global-registry"' not in generate_latest(REGISTRY)


def test_registry_none_reports_nowhere(make_herd: Callable[..., HerdExecutor]) -> None:
    herd = make_herd(1, name="unreported", registry=None)
    assert b'herd="unreported"' not in generate_latest(REGISTRY)
    with herd.serve("127.0.0.1:0") as server:
        status, _, body = call_json(server, "GET", "/metrics")
    assert status == 404
    assert "registry=None" in body["msg"]


def test_the_registrys_other_metrics_are_served(
    server: ControlServer, registry: CollectorRegistry
) -> None:
    Counter("app_requests", "The application's own.", registry=registry).inc(3)
    assert scrape(server)[("app_requests_total", ())] == 3


def test_a_registry_that_has_these_names_already_is_refused_every_time() -> None:
    registry = CollectorRegistry()
    Counter("herdexec_success", "Someone else's.", registry=registry)
    for _ in range(2):
        with pytest.raises(ValueError, match="Duplicated"):
            HerdExecutor(1, registry=registry)


def test_the_shipped_rules_read_only_series_a_herd_reports(
    herd: HerdExecutor, registry: CollectorRegistry
) -> None:
    # promtool checks the rules (tox -e rules) against made-up series; this holds the
    # names those series use to the ones a herd really reports, so a rename breaks here.
    exposed = {name for name, _ in parse(generate_latest(registry).decode())}
    used = set()
    for path in RULES.glob("*.yml"):
        # herdexec_x, but not the recording rules' job_herd:herdexec_x:rate5m.
        used |= set(re.findall(r"(?<![\w:])herdexec_\w+(?![\w:])", path.read_text()))
    assert len(used) >= 8
    assert sorted(used - exposed) == []
