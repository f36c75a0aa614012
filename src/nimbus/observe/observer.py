"""The one object the invoke path reports to: it fans an invocation out to the function's log stream
(START/END/REPORT), metrics, metering and tracing.

`Invoker` calls `begin` when it builds a request (tracing decides sampling and the header the function
sees), `finished` when a result is back, and `throttled` on a 429. Everything here is in-memory and cheap;
the database is written by the meter's background flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.observe.invocationlog import invocation_lines
from nimbus.observe.metering import Meter
from nimbus.observe.metrics import SAMPLE_INTERVAL, Metrics, Stats
from nimbus.observe.tracing import Tracer
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogSink, ProvisionedStats

log = logging.getLogger("nimbus.observe")

RECENT_INVOCATIONS = 50  # per function, for the dashboard


def qualifier_of(invoked_arn: str) -> str:
    """The qualifier the caller named (`arn:aws:lambda:r:a:function:name[:qualifier]`), `$LATEST` if none."""
    parts = invoked_arn.split(":")
    return parts[7] if len(parts) > 7 and parts[7] else "$LATEST"


class Observer:
    """Metrics + metering + tracing of one server."""

    def __init__(self, settings: Settings, engine: Engine, tracer: Tracer | None = None,
                 provisioned: Callable[[], list[ProvisionedStats]] | None = None,
                 log_sink: LogSink | None = None) -> None:
        self._log_sink = log_sink  # the log store: where an invocation's platform lines go
        self.enabled = settings.metrics
        self.metrics = Metrics(enabled=self.enabled)
        self.meter = Meter(engine, flush_interval=settings.metering_flush_interval, enabled=self.enabled)
        self.tracer = tracer if tracer is not None else Tracer.from_env(settings.tracing_sample_ratio)
        self._stats: dict[tuple[str, str], Stats] = {}  # (function, invoked ARN) -> counters
        self._sampler: asyncio.Task[None] | None = None
        self._provisioned = provisioned  # the sandbox's provisioned environments, metered while allocated
        # function -> its last invocations (time, request id, invoked ARN, duration, billed ms, memory, init, error)
        self._recent: dict[str, deque[tuple[float, str, str, float, int, int, float | None, str | None]]] = {}

    async def start(self) -> None:
        await self.meter.start()
        self._sampler = asyncio.create_task(self._sample_forever(), name="metrics-sampler")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        await self.meter.stop()
        await asyncio.to_thread(self.tracer.shutdown)

    async def _sample_forever(self) -> None:
        last = time.monotonic()
        while True:
            self.metrics.sample()
            await asyncio.sleep(SAMPLE_INTERVAL)
            now = time.monotonic()
            if self._provisioned is not None and self.enabled:
                try:
                    for p in self._provisioned():
                        self.meter.provisioned(p.function_name, p.architecture, p.memory_mb,
                                               p.allocated * (now - last) * 1000)
                except Exception:  # metering must never stop the sampler
                    log.exception("metering provisioned concurrency failed")
            last = now

    # ------------------------------------------------------------------------------------- hot path

    def begin(self, spec: VersionSpec, request: InvokeRequest, upstream: str | None) -> None:
        """A request was built: trace it (sets `request.trace_id` as the function will see it)."""
        if self.enabled and (upstream is not None or spec.tracing_mode == "Active"):
            self.tracer.begin(spec, request, upstream, spec.tracing_mode)

    def finished(self, spec: VersionSpec, log_group: str, request: InvokeRequest, result: InvokeResult) -> list[str]:
        """An invocation finished (successfully or not): write its platform lines (START/END/REPORT or the
        JSON records) to its log stream, count, meter and trace it. Returns the lines of its log tail."""
        self.record(spec, request, result)
        stamped, lines = invocation_lines(spec, request, result)
        if self._log_sink is not None:
            self._log_sink(log_group, result.log_stream, stamped)
        return lines

    def record(self, spec: VersionSpec, request: InvokeRequest, result: InvokeResult) -> None:
        """An invocation finished (successfully or not): count it, meter it, end its span."""
        if not self.enabled:
            return
        key = (spec.function_name, request.invoked_arn)
        stats = self._stats.get(key)
        if stats is None:
            if len(self._stats) > 10_000:
                self._stats.clear()
            stats = self._stats[key] = self.metrics.stats(spec.function_name, qualifier_of(request.invoked_arn))
        init_ms = result.init_duration_ms
        restore_ms = _restore_ms(result.extra_report) if result.extra_report else None
        self.metrics.invocation(stats, result.duration_ms, result.function_error is not None, init_ms, restore_ms)
        now = time.time()
        billed = self.meter.record(spec.function_name, spec.architectures[0] if spec.architectures else "x86_64",
                                   spec.memory_size, result.duration_ms, init_ms if restore_ms is None else restore_ms,
                                   now)
        recent = self._recent.get(spec.function_name)
        if recent is None:
            recent = self._recent[spec.function_name] = deque(maxlen=RECENT_INVOCATIONS)
        recent.append((now, request.request_id, request.invoked_arn, result.duration_ms, billed,
                       result.max_memory_mb, init_ms, result.error_type if result.function_error else None))
        if self.tracer.recording:
            self.tracer.finish(request, result)

    def throttled(self, function: str, qualifier: str | None) -> None:
        """An invocation was refused with 429."""
        if self.enabled:
            self.metrics.throttle(function, qualifier or "$LATEST")

    def recent(self, function: str) -> list[dict[str, Any]]:
        """The function's last invocations, newest first (the dashboard's list)."""
        return [
            {"time": int(t * 1000), "requestId": rid, "qualifier": qualifier_of(arn), "durationMs": duration,
             "billedMs": billed, "maxMemoryMB": memory, "initMs": init, "errorType": error,
             "status": "success" if error is None else ("timeout" if error == "Sandbox.Timedout" else "error")}
            for t, rid, arn, duration, billed, memory, init, error in reversed(self._recent.get(function, ()))
        ]

    def forget(self, function: str) -> None:
        """A function was deleted: drop its live series (its metering stays for the bill)."""
        self.metrics.forget(function)
        self._recent.pop(function, None)
        for key in [k for k in self._stats if k[0] == function]:
            del self._stats[key]


def _restore_ms(extra: dict[str, str]) -> float | None:
    """A SnapStart environment's first REPORT carries `Restore Duration: 12.34 ms` (billed like INIT)."""
    text = extra.get("Restore Duration")
    if not text:
        return None
    try:
        return float(text.split()[0])
    except ValueError:
        return None
