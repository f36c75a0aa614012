"""The async invocation pipeline assembled: the durable queue, the event-invoke configs and the dispatcher,
wired to the Invoker (which enqueues accepted `Event` invocations and runs each delivery attempt). The
platform builds one, starts it after the sandbox and stops it before."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from typing import Any

from nimbus.config import Settings
from nimbus.control.eventconfigs import EventConfigs
from nimbus.control.registry import Registry
from nimbus.errors import ResourceNotFound
from nimbus.invoke import router
from nimbus.invoke.destinations import AttemptResult, DeadLetterSink, RecordSink
from nimbus.invoke.dispatcher import Dispatcher, lease_ms
from nimbus.invoke.queue import EventQueue, LeasedEvent, QueueStats, now_ms
from nimbus.invoke.service import Invoker
from nimbus.observe.logstore import LogStore
from nimbus.observe.observer import Observer

log = logging.getLogger("nimbus.invoke.async")


class InvokerTarget:
    """The dispatcher's view of the data plane (see `dispatcher.Target`)."""

    def __init__(self, settings: Settings, registry: Registry, invoker: Invoker, observer: Observer) -> None:
        self.settings = settings
        self.registry = registry
        self.invoker = invoker
        self.observer = observer

    def reserved_concurrency(self, function_name: str) -> int | None:
        return self.registry.snapshot(function_name).reserved_concurrency

    def in_flight(self, function_name: str) -> int:
        return self.invoker.concurrency.in_flight(function_name)

    def lease_ms(self, function_name: str) -> int:
        versions = self.registry.snapshot(function_name).versions.values()
        return lease_ms(max((v.timeout for v in versions), default=self.settings.timeout_max), self.settings)

    async def run(self, event: LeasedEvent) -> AttemptResult:
        age = (now_ms() - event.enqueued_ms) / 1000  # AsyncEventAge: accepted -> invoked (metrics, issue 8)
        spec, result = await self.invoker.run_event(
            event.function_name, event.qualifier, event.request_id, event.payload, event.client_context,
            event.trace_id,
        )
        self.observer.metrics.async_event_age(event.function_name, max(0.0, age))
        return AttemptResult(spec.version, spec.qualified_arn, result.payload, result.function_error)

    def function_arn(self, function_name: str, qualifier: str | None) -> str:
        try:
            return router.resolve(self.registry.snapshot(function_name), qualifier).spec.qualified_arn
        except ResourceNotFound:
            return self.registry.arn(function_name, qualifier or router.LATEST)

    def split_destination(self, arn: str) -> tuple[str, str | None]:
        return self.registry.split_qualifier(arn)

    def new_request_id(self) -> str:
        return str(uuid.uuid4())


class AsyncPipeline:
    """Queue + configs + dispatcher, and the figures the API shows about them."""

    def __init__(self, settings: Settings, registry: Registry, queue: EventQueue, configs: EventConfigs,
                 invoker: Invoker, observer: Observer, logstore: LogStore, record_sink: RecordSink | None = None,
                 dead_letter_sink: DeadLetterSink | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.queue = queue  # built first by the platform: the Invoker enqueues accepted `Event` invocations
        self.configs = configs
        self.target = InvokerTarget(settings, registry, invoker, observer)
        metrics = observer.metrics
        self.dispatcher = Dispatcher(settings, self.queue, self.target, self.configs.lookup,
                                     before_ack=logstore.flush, shortest_age=self.configs.shortest_age,
                                     on_dropped=metrics.async_event_dropped,
                                     on_destination_failure=lambda fn: metrics.destination_failure(fn, "lambda"),
                                     record_sink=record_sink, dead_letter=self._dead_letter_arn,
                                     dead_letter_sink=dead_letter_sink,
                                     on_dead_letter_failure=metrics.dead_letter_error)

    def _dead_letter_arn(self, function_name: str, qualifier: str | None) -> str | None:
        """The DeadLetterConfig.TargetArn of the version `qualifier` resolves to (issue 15)."""
        config = self.registry.get_function_configuration(function_name, qualifier)
        arn = (config.get("DeadLetterConfig") or {}).get("TargetArn")
        return str(arn) if arn else None

    async def start(self) -> None:
        await self.queue.start()
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.queue.stop()

    def function_changed(self, name: str) -> None:
        """A registry subscriber, called in the thread that committed the change (platform.py): a deleted
        function's queued events are dropped."""
        try:
            self.registry.snapshot(name)
        except ResourceNotFound:
            dropped = self.queue.purge_function(name)
            if dropped:
                log.warning("dropped %d queued async events of deleted function %s", dropped, name)

    async def queue_figures(self, function_name: str | None = None) -> list[dict[str, Any]]:
        """Per function: depth (queued + in delivery), in flight, delayed (retry/backoff), oldest event age."""
        rows: list[QueueStats] = await self.queue.stats(function_name)
        now = now_ms()
        out = []
        for r in rows:
            doc = asdict(r)
            oldest = doc.pop("oldest_enqueued_ms")
            doc["oldest_event_age_ms"] = None if oldest is None else max(0, now - oldest)
            out.append(doc)
        return out
