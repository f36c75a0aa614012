"""The platform's gauges for /metrics: figures whose truth lives in other components (concurrency in flight,
environments, start failures, provisioned concurrency, the async dispatcher and queue, network egress), read at
scrape time from the typed snapshots those components publish. Built by the composition root (platform.py), which hands
it the readers; the API only asks for the exposition."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from nimbus.observe.metrics import Metrics, Sample
from nimbus.sandbox.types import EnvironmentStats, ProvisionedStats

log = logging.getLogger("nimbus.observe.collector")

DISPATCHER_OUTCOMES = ("delivered", "retried", "throttled", "failed", "dropped")


class QueueFigures(Protocol):
    """One function's row of the async queue's statistics (invoke/queue.py `QueueStats`)."""

    @property
    def function_name(self) -> str: ...

    @property
    def depth(self) -> int: ...

    @property
    def oldest_enqueued_ms(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Readers:
    """Where each figure comes from (all cheap, in-memory, called on the event loop), and the async queue's
    statistics (a database query, read once per scrape before the exposition)."""

    in_flight: Callable[[], Mapping[str, int]]  # function -> invocations running now
    account_limit: int
    environments: Callable[[], Sequence[EnvironmentStats]]
    start_failures: Callable[[], Mapping[str, int]]  # function -> environments that failed to start
    provisioned: Callable[[], Sequence[ProvisionedStats]]
    dispatcher: Callable[[], Mapping[str, int]]  # async attempts by outcome, server-wide
    queue_stats: Callable[[], Awaitable[Sequence[QueueFigures]]]
    egress: Callable[[], Mapping[str, int]] = dict  # function -> bytes its environments sent out (network)


class PlatformCollector:
    """Registers the platform's gauges with `metrics` and serves the exposition."""

    def __init__(self, metrics: Metrics, readers: Readers) -> None:
        self.metrics = metrics
        self.readers = readers
        self._queue_depths: dict[str, tuple[int, int | None]] = {}  # function -> (depth, oldest enqueued ms)
        metrics.add_source(self.samples)

    async def exposition(self) -> bytes:
        """The Prometheus text of every metric, with the async queue read fresh."""
        try:
            stats = await self.readers.queue_stats()
            self._queue_depths = {s.function_name: (int(s.depth), s.oldest_enqueued_ms) for s in stats}
        except Exception:  # noqa: BLE001 (the scrape goes on without it)
            log.exception("reading the async queue for /metrics failed")
        return await asyncio.to_thread(self.metrics.exposition)

    def samples(self) -> Iterable[Sample]:
        r = self.readers
        in_flight = dict(r.in_flight())
        # Every function seen since the start has a series, 0 when idle (a series that vanishes between
        # invocations breaks avg_over_time and alerts on it).
        known = set(self.metrics.functions()) | set(in_flight)
        yield Sample("nimbus_concurrent_executions", "Invocations running now (ConcurrentExecutions).",
                     ("function",), [((fn,), float(in_flight.get(fn, 0))) for fn in sorted(known)])
        yield Sample("nimbus_account_concurrent_executions", "Invocations running now on the whole server.", (),
                     [((), float(sum(in_flight.values())))])
        yield Sample("nimbus_account_concurrency_limit", "The account concurrency limit.", (),
                     [((), float(r.account_limit))])
        envs = r.environments()
        busy = sum(1 for e in envs if e.busy)
        yield Sample("nimbus_environments", "Execution environments alive, by state.", ("state",),
                     [(("busy",), float(busy)), (("idle",), float(len(envs) - busy))])
        yield Sample("nimbus_environment_memory_bytes", "Peak memory used by each live execution environment.",
                     ("function", "version", "environment"),
                     [((e.function_name, e.version, e.environment_id), float(e.peak_memory_mb) * 1024 * 1024)
                      for e in envs])
        failures = dict(r.start_failures())
        yield Sample("nimbus_sandbox_start_failures", "Execution environments that failed to start (spawn or "
                     "INIT).", ("function",), [((fn,), float(n)) for fn, n in sorted(failures.items())],
                     kind="counter")
        provisioned = r.provisioned()
        yield Sample("nimbus_provisioned_concurrency", "Provisioned environments allocated.",
                     ("function", "qualifier"), [((p.function_name, p.version), float(p.allocated))
                                                 for p in provisioned])
        yield Sample("nimbus_provisioned_concurrency_utilization",
                     "Share of provisioned environments busy (ProvisionedConcurrencyUtilization).",
                     ("function", "qualifier"),
                     [((p.function_name, p.version), (p.busy / p.allocated if p.allocated else 0.0))
                      for p in provisioned])
        egress = r.egress()
        yield Sample("nimbus_network_egress_bytes", "Bytes sent by a function's environments out of their network "
                     "namespaces (DNS included).", ("function",),
                     [((fn,), float(n)) for fn, n in sorted(egress.items())], kind="counter")
        counts = r.dispatcher()
        yield Sample("nimbus_async_dispatcher_events", "Async event attempts by outcome (failed: retries or age "
                     "exhausted, dropped: function gone).", ("outcome",),
                     [((o,), float(counts.get(o, 0))) for o in DISPATCHER_OUTCOMES], kind="counter")
        depths = self._queue_depths
        if depths:
            now_ms = time.time() * 1000
            yield Sample("nimbus_async_queue_depth", "Async events accepted and not yet processed.", ("function",),
                         [((fn,), float(n)) for fn, (n, _) in sorted(depths.items())])
            yield Sample("nimbus_async_oldest_event_age_seconds", "Age of the oldest queued async event.",
                         ("function",),
                         [((fn,), max(0.0, (now_ms - oldest) / 1000)) for fn, (_, oldest) in sorted(depths.items())
                          if oldest is not None])
