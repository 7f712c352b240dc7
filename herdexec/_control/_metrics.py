"""Prometheus metrics: one collector per registry, reading every live herd at scrape time.

Why a collector and not a ``Counter`` and ``Gauge`` per herd: a herd already keeps its
figures, and :meth:`HerdExecutor.stats` reads them all in one consistent snapshot. A
collector that turns that snapshot into samples when Prometheus asks keeps no second set
of counters in step, registers nothing per herd (so herds never collide at registration,
however many come and go) and holds the herds weakly: a herd that is shut down, or
dropped, leaves nothing behind.

Herds are told apart by the ``herd`` label, which is :attr:`HerdExecutor.name`. Live herds
that share a name in one registry are reported as one: their counters, gauges and
histograms add up, which is what ``sum by (herd)`` would show, and keeps the scrape free of
the duplicate series Prometheus would reject. The second one to arrive logs a warning.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from .._executor import HerdExecutor
    from .._stats import HerdStats

__all__ = ["track", "untrack"]

# (metric name, HerdStats attribute, help). gofherd's three counters come first.
_COUNTERS = (
    ("herdexec_success_total", "succeeded", "Works that ended in SUCCESS."),
    ("herdexec_retry_total", "retried", "Retries granted; a work retried twice counts twice."),
    ("herdexec_failure_total", "failed", "Works that ended in FAILURE."),
    ("herdexec_cancelled_total", "cancelled", "Works cancelled before they ran."),
    ("herdexec_submitted_total", "submitted", "Works the herd accepted."),
)
_GAUGES = (
    ("herdexec_herd_size", "herd_size", "Gophers asked for; 0 means paused."),
    ("herdexec_busy_gophers", "busy", "Gophers running a work."),
    ("herdexec_idle_gophers", "idle", "Gophers waiting for work."),
    ("herdexec_waiting_submitters", "waiting_submitters", "Callers blocked in submit."),
    ("herdexec_backlog_works", "backlog", "Accepted works waiting in the backlog."),
    ("herdexec_pending_retries", "pending_retries", "Works waiting for a retry."),
    ("herdexec_outstanding_works", "outstanding", "Accepted works that have not ended."),
)
_DURATION = ("herdexec_work_duration_seconds", "How long attempts at a work took.")
# Adaptive herds only (HerdExecutor(adapt=...)); the others have no sample in these.
_ADAPT_LIMIT = (
    "herdexec_adapt_limit",
    "The adaptive algorithm's concurrency limit; herd_size is it rounded while it adapts.",
)
_ADAPTING = ("herdexec_adapting", "1 while the algorithm sets the size, 0 while it is pinned.")

# Formats a bucket bound as Prometheus does ("0.005", "+Inf"); untyped upstream.
_bound: Callable[[float], str] = floatToGoString

_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _HerdCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def track(executor: HerdExecutor, registry: CollectorRegistry) -> None:
    """Report ``executor`` in ``registry`` until :func:`untrack`, or until it is collected."""
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _HerdCollector()
            registry.register(collector)  # raises if the registry has these names already
            _collectors[registry] = collector
    if not collector.add(executor):
        executor.logger.warning(
            "another live herd in this registry is named %r: their metrics add up under"
            " herd=%r; give each herd its own name= to tell them apart",
            executor.name,
            executor.name,
        )


def untrack(executor: HerdExecutor, registry: CollectorRegistry) -> None:
    """Stop reporting ``executor``: a herd that is shut down drops out of the scrape."""
    with _collectors_lock:
        collector = _collectors.get(registry)
    if collector is not None:
        collector.discard(executor)


class _HerdCollector(Collector):
    """Every live herd of one registry, by name, read when the registry is scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Grouped by name, so that adding a herd costs the same however many are live.
        self._by_name: dict[str, weakref.WeakSet[HerdExecutor]] = {}

    def add(self, executor: HerdExecutor) -> bool:
        """Track ``executor``; False if another live herd already has its name."""
        with self._lock:
            herds = self._by_name.setdefault(executor.name, weakref.WeakSet())
            unique = not herds
            herds.add(executor)
        return unique

    def discard(self, executor: HerdExecutor) -> None:
        with self._lock:
            herds = self._by_name.get(executor.name)
            if herds is not None:
                herds.discard(executor)
                if not herds:
                    del self._by_name[executor.name]

    def describe(self) -> Iterator[Metric]:
        # Lets the registry check names without a scrape (prometheus_client calls
        # collect() at registration otherwise).
        return _families({})

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            live = {name: list(herds) for name, herds in self._by_name.items()}
            for name, herds in live.items():
                if not herds:  # all collected without shutdown(): forget the name
                    del self._by_name[name]
        # stats() takes each herd's lock: not under ours.
        return _families({name: [h.stats() for h in hs] for name, hs in live.items() if hs})


def _families(by_name: dict[str, list[HerdStats]]) -> Iterator[Metric]:
    """The metric families for these herds, one sample per name and series."""
    names = sorted(by_name)
    for metric, field, doc in _COUNTERS:
        counter = CounterMetricFamily(metric, doc, labels=["herd"])
        for name in names:
            counter.add_metric([name], _total(by_name[name], field))
        yield counter
    for metric, field, doc in _GAUGES:
        gauge = GaugeMetricFamily(metric, doc, labels=["herd"])
        for name in names:
            gauge.add_metric([name], _total(by_name[name], field))
        yield gauge
    histogram = HistogramMetricFamily(*_DURATION, labels=["herd"])
    for name in names:
        stats = by_name[name]
        # HerdStats counts each bucket on its own; Prometheus' buckets are cumulative.
        columns = zip(*(s.duration_counts for s in stats), strict=True)
        counts = accumulate(sum(column) for column in columns)
        bounds = stats[0].duration_buckets
        histogram.add_metric(
            [name],
            buckets=[(_bound(le), count) for le, count in zip(bounds, counts, strict=True)],
            sum_value=sum(s.duration_sum for s in stats),
        )
    yield histogram
    limit = GaugeMetricFamily(*_ADAPT_LIMIT, labels=["herd"])
    adapting = GaugeMetricFamily(*_ADAPTING, labels=["herd", "algorithm"])
    for name in names:
        by_algorithm: dict[str, list[HerdStats]] = {}
        for s in by_name[name]:
            if s.adapt is not None:
                by_algorithm.setdefault(s.adapt.name, []).append(s)
        if by_algorithm:
            adaptive = [s for group in by_algorithm.values() for s in group]
            limit.add_metric([name], sum(s.adapt_limit or 0.0 for s in adaptive))
        for algorithm, group in sorted(by_algorithm.items()):
            adapting.add_metric([name, algorithm], _total(group, "adapting"))
    yield limit
    yield adapting


def _total(stats: Sequence[HerdStats], field: str) -> float:
    return sum(float(getattr(s, field)) for s in stats)
