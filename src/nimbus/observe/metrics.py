"""Prometheus metrics of one nimbus process: per function and qualifier (invocations, errors, throttles,
duration, init/restore duration, async queue, destinations), plus server health.

The hot path only bumps plain ints in a per-(function, qualifier) `Stats` object; a custom Collector turns
them into metric families when `/metrics` is scraped, in a registry of this process (never prometheus-
client's global default registry, so several servers in one process, e.g. in tests, do not mix).
Gauges whose truth lives elsewhere (concurrency in flight, environments, async queue depth, provisioned
concurrency) are read at scrape time from `sources` other components register.

The same counters feed the dashboard's live charts: `sample()` (called every few seconds) appends one
cumulative point per function to a short in-memory history.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

# Seconds; close to the default Prometheus buckets, extended to Lambda's 900 s timeout.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0)  # fmt: skip
# Milliseconds, the unit results carry (bisect on them avoids a division per invocation).
_BUCKETS_MS = tuple(b * 1000 for b in DURATION_BUCKETS)
AGE_BUCKETS = (0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)

HISTORY_POINTS = 300  # dashboard history: 300 samples
SAMPLE_INTERVAL = 2.0  # seconds between samples (10 minutes of history)


class Histogram:
    """Bucket counts (non-cumulative, one slot per bound plus +Inf) and the sum, in the bounds' unit."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self, scale: float = 1.0) -> list[tuple[str, float]]:
        """Prometheus' `le` buckets (cumulative), bounds divided by `scale`."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_float_str(bound / scale), float(running)))
        out.append(("+Inf", float(running + self.counts[-1])))
        return out


def _float_str(value: float) -> str:
    text = repr(float(value))
    return text


class Stats:
    """Counters of one (function, qualifier)."""

    __slots__ = ("invocations", "errors", "throttles", "duration", "init", "restore", "cold_starts")

    def __init__(self) -> None:
        self.invocations = 0
        self.errors = 0
        self.throttles = 0
        self.cold_starts = 0
        self.duration = Histogram(_BUCKETS_MS)
        self.init = Histogram(_BUCKETS_MS)
        self.restore = Histogram(_BUCKETS_MS)


@dataclass
class FunctionCounters:
    """Counters kept per function (not per qualifier): async and destination outcomes."""

    event_age: Histogram = field(default_factory=lambda: Histogram(AGE_BUCKETS))
    async_events_dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    destination_failures: dict[str, int] = field(default_factory=dict)  # destination type -> count
    dead_letter_errors: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    """One family of gauge samples from a source: name, help, label names, [(label values, value)]."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    values: list[tuple[tuple[str, ...], float]]
    kind: str = "gauge"  # or "counter"


Source = Callable[[], Iterable[Sample]]


class Metrics:
    """The process's metrics. Single-threaded writers (the event loop); scrapes may come from a thread."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=False)
        self._stats: dict[tuple[str, str], Stats] = {}
        self._functions: dict[str, FunctionCounters] = {}
        self._sources: list[Source] = []
        self._history: dict[str, deque[tuple[float, int, int, int, float, int]]] = {}
        self.registry.register(_Collector(self))

    # ------------------------------------------------------------------------------------- writers

    def stats(self, function: str, qualifier: str) -> Stats:
        """The counters of (function, qualifier), created on first use (callers may cache the object)."""
        key = (function, qualifier)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = Stats()
        return stats

    def invocation(
        self,
        stats: Stats,
        duration_ms: float,
        error: bool,
        init_ms: float | None = None,
        restore_ms: float | None = None,
    ) -> None:
        """Count one finished invocation (hot path)."""
        stats.invocations += 1
        if error:
            stats.errors += 1
        duration = stats.duration
        duration.counts[bisect.bisect_left(_BUCKETS_MS, duration_ms)] += 1
        duration.total += duration_ms
        if init_ms is not None:
            stats.cold_starts += 1
            stats.init.observe(init_ms)
        if restore_ms is not None:  # a SnapStart environment's first invocation: a cold start too
            stats.cold_starts += 1
            stats.restore.observe(restore_ms)

    def throttle(self, function: str, qualifier: str) -> None:
        """Count one invocation refused with 429."""
        self.stats(function, qualifier).throttles += 1

    def function(self, function: str) -> FunctionCounters:
        counters = self._functions.get(function)
        if counters is None:
            counters = self._functions[function] = FunctionCounters()
        return counters

    def async_event_age(self, function: str, age_seconds: float) -> None:
        """An async event was taken from the queue `age_seconds` after it was accepted."""
        self.function(function).event_age.observe(age_seconds)

    def async_event_dropped(self, function: str, reason: str) -> None:
        """An async event was discarded (`reason`: e.g. EventAgeExceeded, RetriesExhausted, ZeroConcurrency)."""
        dropped = self.function(function).async_events_dropped
        dropped[reason] = dropped.get(reason, 0) + 1

    def destination_failure(self, function: str, destination_type: str) -> None:
        """Delivering an invocation record to a destination (sqs, sns, lambda, eventbridge, s3) failed."""
        failures = self.function(function).destination_failures
        failures[destination_type] = failures.get(destination_type, 0) + 1

    def dead_letter_error(self, function: str) -> None:
        """Sending an event to the function's dead-letter queue failed."""
        self.function(function).dead_letter_errors += 1

    def add_source(self, source: Source) -> None:
        """Register a callable read at scrape time (gauges owned by other components)."""
        self._sources.append(source)

    def forget(self, function: str) -> None:
        """Drop a deleted function's series."""
        for key in [k for k in self._stats if k[0] == function]:
            del self._stats[key]
        self._functions.pop(function, None)
        self._history.pop(function, None)

    # ------------------------------------------------------------------------------------- readers

    def exposition(self) -> bytes:
        """The text exposition format of everything (what `/metrics` answers)."""
        return generate_latest(self.registry)

    def totals(self, function: str) -> dict[str, float]:
        """Cumulative figures of one function over all its qualifiers."""
        inv = err = thr = cold = 0
        dsum = 0.0
        for (fn, _), s in list(self._stats.items()):
            if fn == function:
                inv += s.invocations
                err += s.errors
                thr += s.throttles
                cold += s.cold_starts
                dsum += s.duration.total
        return {"invocations": inv, "errors": err, "throttles": thr, "cold_starts": cold, "duration_ms_sum": dsum}

    def qualifiers(self, function: str) -> dict[str, dict[str, float]]:
        """Per-qualifier cumulative figures of one function."""
        out: dict[str, dict[str, float]] = {}
        for (fn, qualifier), s in list(self._stats.items()):
            if fn == function:
                out[qualifier] = {
                    "invocations": s.invocations,
                    "errors": s.errors,
                    "throttles": s.throttles,
                    "cold_starts": s.cold_starts,
                    "duration_ms_sum": s.duration.total,
                }
        return out

    def sample(self, now: float | None = None) -> None:
        """Append the current cumulative counters of every function to its history (for the dashboard)."""
        now = time.time() if now is None else now
        per_fn: dict[str, list[float]] = {}
        for (fn, _), s in list(self._stats.items()):
            acc = per_fn.setdefault(fn, [0, 0, 0, 0.0, 0])
            acc[0] += s.invocations
            acc[1] += s.errors
            acc[2] += s.throttles
            acc[3] += s.duration.total
            acc[4] += s.duration.count
        for fn, (inv, err, thr, dsum, dcount) in per_fn.items():
            series = self._history.get(fn)
            if series is None:
                series = self._history[fn] = deque(maxlen=HISTORY_POINTS)
            series.append((now, int(inv), int(err), int(thr), float(dsum), int(dcount)))

    def history(self, function: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Per-interval rates from the sampled history: {function: [{t, invocations, errors, throttles,
        avg_ms}]}, one entry per interval between consecutive samples."""
        names = [function] if function is not None else list(self._history)
        out: dict[str, list[dict[str, Any]]] = {}
        for fn in names:
            points = list(self._history.get(fn, ()))
            series: list[dict[str, Any]] = []
            for prev, cur in zip(points, points[1:], strict=False):
                span = max(cur[0] - prev[0], 1e-9)
                calls = cur[5] - prev[5]
                series.append(
                    {
                        "t": round(cur[0], 3),
                        "invocations": (cur[1] - prev[1]) / span,
                        "errors": (cur[2] - prev[2]) / span,
                        "throttles": (cur[3] - prev[3]) / span,
                        "avg_ms": (cur[4] - prev[4]) / calls if calls else None,
                    }
                )
            out[fn] = series
        return out

    def functions(self) -> list[str]:
        return sorted({fn for fn, _ in list(self._stats)} | set(self._functions))


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        labels = ["function", "qualifier"]
        invocations = CounterMetricFamily(
            "nimbus_invocations", "Invocations that ran (successful or not), as Lambda's Invocations.", labels=labels
        )
        errors = CounterMetricFamily("nimbus_errors", "Invocations that ended in a function error.", labels=labels)
        throttles = CounterMetricFamily("nimbus_throttles", "Invocation requests refused with 429.", labels=labels)
        cold = CounterMetricFamily("nimbus_cold_starts", "Invocations that started a new environment.", labels=labels)
        duration = HistogramMetricFamily(
            "nimbus_duration_seconds", "Time the handler ran (Lambda's Duration).", labels=labels
        )
        init = HistogramMetricFamily(
            "nimbus_init_duration_seconds", "INIT phase of new environments (Lambda's Init Duration).", labels=labels
        )
        restore = HistogramMetricFamily(
            "nimbus_restore_duration_seconds", "Restore phase of environments started from a snapshot.", labels=labels
        )
        for (fn, qualifier), s in list(m._stats.items()):
            values = [fn, qualifier]
            invocations.add_metric(values, s.invocations)
            errors.add_metric(values, s.errors)
            throttles.add_metric(values, s.throttles)
            cold.add_metric(values, s.cold_starts)
            duration.add_metric(values, s.duration.cumulative(1000.0), s.duration.total / 1000.0)
            if s.init.count:
                init.add_metric(values, s.init.cumulative(1000.0), s.init.total / 1000.0)
            if s.restore.count:
                restore.add_metric(values, s.restore.cumulative(1000.0), s.restore.total / 1000.0)
        yield from (invocations, errors, throttles, cold, duration, init, restore)

        age = HistogramMetricFamily(
            "nimbus_async_event_age_seconds", "Time from accepting an async event to invoking it (AsyncEventAge).",
            labels=["function"],
        )
        dropped = CounterMetricFamily(
            "nimbus_async_events_dropped", "Async events discarded (AsyncEventsDropped), by reason.",
            labels=["function", "reason"],
        )
        dest = CounterMetricFamily(
            "nimbus_destination_delivery_failures", "Failed deliveries to an on-success/on-failure destination.",
            labels=["function", "destination_type"],
        )
        dlq = CounterMetricFamily(
            "nimbus_dead_letter_errors", "Failed sends to a dead-letter queue (DeadLetterErrors).", labels=["function"]
        )
        for fn, c in list(m._functions.items()):
            if c.event_age.count:
                age.add_metric([fn], c.event_age.cumulative(), c.event_age.total)
            for reason, n in list(c.async_events_dropped.items()):
                dropped.add_metric([fn, reason], n)
            for kind, n in list(c.destination_failures.items()):
                dest.add_metric([fn, kind], n)
            if c.dead_letter_errors:
                dlq.add_metric([fn], c.dead_letter_errors)
        yield from (age, dropped, dest, dlq)

        for source in list(m._sources):
            try:
                samples = list(source())
            except Exception:  # noqa: S112 (a broken source must not break the scrape)
                continue
            for sample in samples:
                family: Any
                if sample.kind == "counter":
                    family = CounterMetricFamily(sample.name, sample.documentation, labels=list(sample.labels))
                else:
                    family = GaugeMetricFamily(sample.name, sample.documentation, labels=list(sample.labels))
                for label_values, value in sample.values:
                    family.add_metric(list(label_values), value)
                yield family
