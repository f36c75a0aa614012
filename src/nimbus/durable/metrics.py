"""Prometheus metrics of durable executions, registered in the process's own metrics registry (the one
`/metrics` exposes): executions started/succeeded/failed/stopped, suspended now, timer lateness."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DurableMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.started = Counter("nimbus_durable_executions_started", "Durable executions started",
                               ["function"], registry=registry)
        self.succeeded = Counter("nimbus_durable_executions_succeeded", "Durable executions that succeeded",
                                 ["function"], registry=registry)
        self.failed = Counter("nimbus_durable_executions_failed", "Durable executions that failed or timed out",
                              ["function"], registry=registry)
        self.stopped = Counter("nimbus_durable_executions_stopped", "Durable executions stopped",
                               ["function"], registry=registry)
        self.suspended = Gauge("nimbus_durable_executions_suspended",
                               "Running durable executions with no invocation in flight or due", registry=registry)
        self.lateness = Histogram("nimbus_durable_timer_lateness_seconds",
                                  "How late a due timer (wait, step retry, callback timeout) was completed",
                                  buckets=LATENESS_BUCKETS, registry=registry)
