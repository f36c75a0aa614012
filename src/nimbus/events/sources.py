"""The event sources besides the queue service, assembled: event source mappings and their pollers, the
EventBridge Scheduler, EventBridge buses and rules, and the timer loop that fires schedules and scheduled
rules. The platform builds one (after the queue service and the invoker), starts it after the async pipeline
and stops it before."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, select

from nimbus.config import Settings
from nimbus.control.models import AsyncEventRow
from nimbus.control.registry import Registry
from nimbus.errors import LambdaError
from nimbus.events.bus.service import EventBus
from nimbus.events.mappings.manager import PollerManager
from nimbus.events.mappings.service import Mapping, Mappings
from nimbus.events.schedules.service import Scheduler
from nimbus.events.schedules.timers import Timer, TimerLoop
from nimbus.events.targets import Targets
from nimbus.invoke.service import Invoker
from nimbus.observe.logstore import LogStore

log = logging.getLogger("nimbus.events")


class EventSources:
    def __init__(self, settings: Settings, engine: Engine, registry: Registry, invoker: Invoker,
                 queues: Any, logstore: LogStore) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = registry
        self.queues = queues
        self.timers = TimerLoop(engine, self._deliver_tick, self._after_last, already_queued=self._already_queued)
        self.targets = Targets(settings, registry, invoker, queues, self._put_to_bus)
        self.bus = EventBus(settings, engine, self.targets, self.timers)
        self.scheduler = Scheduler(settings, engine, self.targets, self.timers)
        self.mappings = Mappings(settings, engine, registry, queues)
        self.pollers = PollerManager(self.mappings, queues, invoker.invoke, settings.region, self._reserved,
                                     before_delete=logstore.flush, visibility=self._visibility)
        metrics = invoker.observer.metrics
        metrics.add_source(self.pollers.samples)
        metrics.add_source(self.timers.samples)

    async def start(self) -> None:
        await self.timers.start()
        await self.pollers.start()

    async def stop(self) -> None:
        await self.pollers.stop()
        await self.timers.stop()

    async def of_function(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """What sends events to the function `name`: its event source mappings, the schedules and the rules
        whose target it is (any of its versions or aliases). For the dashboard's function page."""
        arn = f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:function:{name}"
        mappings = (await self.mappings.list_mappings(None, name, None, 100))["EventSourceMappings"]
        schedules = [s for s in await self.scheduler.overview()
                     if s["Target"] == arn or str(s["Target"]).startswith(arn + ":")]
        return {
            "mappings": [{k: m.get(k) for k in ("UUID", "EventSourceArn", "State", "BatchSize", "FunctionArn")}
                         for m in mappings],
            "schedules": schedules,
            "rules": await self.bus.rules_targeting(arn),
        }

    def _visibility(self, mapping: Mapping) -> int | None:
        """window + function timeout + 30 s when that exceeds the queue's visibility timeout (Lambda's rule)."""
        queue = self.queues.get_queue_by_arn(mapping.queue_arn)
        try:
            snapshot = self.registry.snapshot(mapping.function_name)
        except LambdaError:
            return None
        spec = snapshot.versions.get(mapping.qualifier or "$LATEST") or snapshot.versions["$LATEST"]
        if queue is None or mapping.window + spec.timeout <= queue.visibility_timeout:
            return None
        return min(43200, mapping.window + spec.timeout + 30)

    def _reserved(self, function: str) -> int | None:
        return self.registry.snapshot(function).reserved_concurrency

    async def _put_to_bus(self, bus_arn: str, entries: list[dict[str, Any]]) -> Any:
        return await self.bus.put_to_bus(bus_arn, entries)

    async def _deliver_tick(self, timer: Timer, tick_ms: int, attempts: int, _doc: dict[str, Any]) -> bool:
        if timer.kind == "rule":
            return await self.bus.fire_rule(timer, tick_ms, attempts)
        return await self.scheduler.deliver(timer, tick_ms, attempts)

    async def _after_last(self, timer: Timer) -> None:
        if timer.kind == "schedule":
            await self.scheduler.after_last(timer)

    def _already_queued(self, request_ids: list[str]) -> set[str]:
        """Which of these async request ids invoke/'s durable queue holds (ticks delivered before a crash)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(AsyncEventRow.request_id).where(AsyncEventRow.request_id.in_(request_ids)))
            return {r[0] for r in rows}
