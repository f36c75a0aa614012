"""`GET /metrics` (Prometheus text format, unauthenticated like a health probe) and `GET /nimbus/v1/cost`
(metered usage priced with AWS's price table; signed like the rest of the API, used by `nimbus cost`).

Gauges whose truth lives in other components (concurrency, environments, start failures, provisioned
concurrency, async queue) are registered here as scrape-time sources of the process's metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.errors import InvalidParameterValue
from nimbus.events.sqs.metrics import queue_samples
from nimbus.observe.cost import AWS_PRICES, bill
from nimbus.observe.metering import month_range
from nimbus.observe.metrics import Sample
from nimbus.platform import Platform

log = logging.getLogger("nimbus.api.metrics")


def find_queue(platform: Platform) -> Any:
    """The durable async event queue (issue 4) if this build has one."""
    for owner in (platform.invoker, getattr(platform, "asyncs", None), platform):
        for attr in ("events", "queue", "event_queue", "async_queue"):
            queue = getattr(owner, attr, None)
            if queue is not None and hasattr(queue, "stats"):
                return queue
    return None


def install_sources(platform: Platform) -> None:
    """Register the platform's gauges with its metrics (once)."""
    observer = platform.invoker.observer
    if getattr(observer, "_sources_installed", False):
        return
    observer._sources_installed = True  # type: ignore[attr-defined]
    observer.metrics.add_source(lambda: _platform_samples(platform))
    observer.metrics.add_source(lambda: queue_samples(platform.sqs))  # SQS queues (issue 15)


def _platform_samples(platform: Platform) -> Iterable[Sample]:
    settings = platform.settings
    concurrency = platform.invoker.concurrency
    in_flight: dict[str, int] = dict(getattr(concurrency, "_in_flight", {}))
    # Every function seen since the start has a series, 0 when idle (a series that vanishes between
    # invocations breaks avg_over_time and alerts on it).
    known = set(platform.invoker.observer.metrics.functions()) | set(in_flight)
    yield Sample("nimbus_concurrent_executions", "Invocations running now (ConcurrentExecutions).", ("function",),
                 [((fn, ), float(in_flight.get(fn, 0))) for fn in sorted(known)])
    yield Sample("nimbus_account_concurrent_executions", "Invocations running now on the whole server.", (),
                 [((), float(sum(in_flight.values())))])
    yield Sample("nimbus_account_concurrency_limit", "The account concurrency limit.", (),
                 [((), float(settings.account_concurrency))])
    sandbox = platform.sandbox
    stats = sandbox.environment_stats() if hasattr(sandbox, "environment_stats") else []
    busy = sum(1 for s in stats if s[3])
    yield Sample("nimbus_environments", "Execution environments alive, by state.", ("state",),
                 [(("busy",), float(busy)), (("idle",), float(len(stats) - busy))])
    yield Sample("nimbus_environment_memory_bytes", "Peak memory used by each live execution environment.",
                 ("function", "version", "environment"),
                 [((fn, ver, env), float(mb) * 1024 * 1024) for fn, ver, env, _, mb in stats])
    failures: dict[str, int] = dict(getattr(sandbox, "start_failures", {}))
    yield Sample("nimbus_sandbox_start_failures", "Execution environments that failed to start (spawn or INIT).",
                 ("function",), [((fn,), float(n)) for fn, n in sorted(failures.items())], kind="counter")
    # Provisioned concurrency (issue 5) and the async queue (issue 4) report through duck-typed hooks.
    provisioned = getattr(sandbox, "provisioned_stats", None)
    if callable(provisioned):
        rows = list(provisioned())  # (function, version, allocated, in use, memory, architecture)
        yield Sample("nimbus_provisioned_concurrency", "Provisioned environments allocated.",
                     ("function", "qualifier"), [((r[0], r[1]), float(r[2])) for r in rows])
        yield Sample("nimbus_provisioned_concurrency_utilization",
                     "Share of provisioned environments busy (ProvisionedConcurrencyUtilization).",
                     ("function", "qualifier"), [((r[0], r[1]), (r[3] / r[2] if r[2] else 0.0)) for r in rows])
    dispatcher = getattr(getattr(platform, "asyncs", None), "dispatcher", None)
    if dispatcher is not None:  # the async dispatcher's own tallies (server-wide)
        outcomes = ("delivered", "retried", "throttled", "failed", "dropped")
        yield Sample("nimbus_async_dispatcher_events", "Async event attempts by outcome (failed: retries or age "
                     "exhausted, dropped: function gone).", ("outcome",),
                     [((o,), float(getattr(dispatcher, o, 0))) for o in outcomes if hasattr(dispatcher, o)],
                     kind="counter")
    depths: dict[str, tuple[int, int | None]] = getattr(platform.invoker.observer, "queue_depths", {})
    if depths:
        now_ms = time.time() * 1000
        yield Sample("nimbus_async_queue_depth", "Async events accepted and not yet processed.", ("function",),
                     [((fn,), float(n)) for fn, (n, _) in sorted(depths.items())])
        yield Sample("nimbus_async_oldest_event_age_seconds", "Age of the oldest queued async event.",
                     ("function",),
                     [((fn,), max(0.0, (now_ms - oldest) / 1000)) for fn, (_, oldest) in sorted(depths.items())
                      if oldest is not None])


async def metrics(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    install_sources(platform)
    queue = find_queue(platform)
    if queue is not None:  # the async queue's depth is a database query: read it here, not in the collector
        try:
            stats = await queue.stats()
            platform.invoker.observer.queue_depths = {  # type: ignore[attr-defined]
                s.function_name: (int(s.depth), s.oldest_enqueued_ms) for s in stats}
        except Exception:  # noqa: BLE001 (the scrape goes on without it)
            log.exception("reading the async queue for /metrics failed")
    body = await asyncio.to_thread(platform.invoker.observer.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def cost_report(platform: Platform, month: str | None, function: str | None,
                      free_tier: bool = True) -> dict[str, Any]:
    """The priced usage of `month` (YYYY-MM, default the current one), optionally of one function."""
    try:
        start, end = month_range(month)
    except ValueError as exc:
        raise InvalidParameterValue(str(exc)) from None
    meter = platform.invoker.observer.meter
    await meter.flush()
    usage = await asyncio.to_thread(meter.usage, start, end, function)
    priced = bill(usage, AWS_PRICES, free_tier=free_tier)
    doc = priced.to_dict()
    doc["month"] = month or _month_of(start)
    doc["function"] = function
    doc["prices"] = {
        "perMillionRequests": AWS_PRICES.per_million_requests,
        "gbSecond": dict(AWS_PRICES.gb_second),
        "provisionedGbSecond": dict(AWS_PRICES.provisioned_gb_second),
        "freeRequests": AWS_PRICES.free_requests,
        "freeGbSeconds": AWS_PRICES.free_gb_seconds,
    }
    return doc


def _month_of(epoch: int) -> str:
    return time.strftime("%Y-%m", time.gmtime(epoch))


async def cost(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    q = request.query_params
    function = q.get("function")
    # The free tier is the account's: credited on the whole bill, not on one function's share of it.
    free = q.get("freeTier", "false" if function else "true").lower() != "false"
    return JSONResponse(await cost_report(platform, q.get("month"), function, free))


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/nimbus/v1/cost", cost, methods=["GET"]),
]
