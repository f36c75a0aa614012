"""Runs one poller per enabled mapping and finishes the state transitions the API started (Creating/Enabling/
Updating → Enabled, Disabling → Disabled, Deleting → gone), at start-up and on every change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from nimbus.events.mappings.poller import Invoke, PollerStats, Queues, SqsPoller
from nimbus.events.mappings.service import DELETING, DISABLED, ENABLED, Mapping, Mappings
from nimbus.observe.metrics import Sample

log = logging.getLogger("nimbus.events.mappings")


class PollerManager:
    def __init__(self, mappings: Mappings, queues: Queues, invoke: Invoke, region: str,
                 ceiling: Callable[[str], int | None],
                 before_delete: Callable[[], Awaitable[None]] | None = None,
                 visibility: Callable[[Mapping], int | None] | None = None) -> None:
        self.mappings = mappings
        self.queues = queues
        self.invoke = invoke
        self.region = region
        self.ceiling = ceiling
        self.before_delete = before_delete
        self.visibility = visibility or (lambda mapping: None)
        self.pollers: dict[str, SqsPoller] = {}
        self._lock = asyncio.Lock()
        # Counters that outlive a poller (a mapping's update replaces its poller).
        self.totals: dict[str, PollerStats] = {}
        self._applying: set[asyncio.Task[None]] = set()
        mappings.on_change.append(self.changed)

    async def start(self) -> None:
        for mapping in await asyncio.to_thread(self.mappings.all):
            await self.apply(mapping.uuid)

    async def changed(self, mapping_uuid: str) -> None:
        """The API changed a mapping: apply it in the background (stopping a poller waits for its batches in
        flight; the API answers at once with the transitional state, as AWS does)."""
        task = asyncio.create_task(self.apply(mapping_uuid))
        self._applying.add(task)
        task.add_done_callback(self._applying.discard)

    async def stop(self) -> None:
        if self._applying:
            await asyncio.wait(self._applying, timeout=30)
        async with self._lock:
            pollers, self.pollers = list(self.pollers.values()), {}
        await asyncio.gather(*(p.stop() for p in pollers))

    async def apply(self, mapping_uuid: str) -> None:
        """Bring the mapping's poller in line with its stored state."""
        async with self._lock:
            old = self.pollers.pop(mapping_uuid, None)
            if old is not None:
                await old.stop()
                self._fold(old)
            mapping = await asyncio.to_thread(self.mappings.mapping, mapping_uuid)
            if mapping is None:
                return
            if mapping.state == DELETING:
                await self.mappings.remove(mapping_uuid)
                return
            if not mapping.enabled:
                await self.mappings.settle(mapping_uuid, DISABLED)
                return
            poller = SqsPoller(mapping, self.queues, self.invoke, self.region, self.ceiling,
                               before_delete=self.before_delete, visibility_timeout=self.visibility(mapping))
            self.totals.setdefault(mapping_uuid, PollerStats())
            poller.start()
            self.pollers[mapping_uuid] = poller
            await self.mappings.settle(mapping_uuid, ENABLED)

    def _fold(self, poller: SqsPoller) -> None:
        total = self.totals.setdefault(poller.mapping.uuid, PollerStats())
        s = poller.stats
        total.batches += s.batches
        total.messages += s.messages
        total.failed_batches += s.failed_batches
        total.failed_items += s.failed_items
        total.filtered += s.filtered

    def stats(self, mapping_uuid: str) -> PollerStats:
        """Counters of the mapping since the server started (all its pollers)."""
        total = self.totals.get(mapping_uuid, PollerStats())
        live = self.pollers.get(mapping_uuid)
        if live is None:
            return total
        s = live.stats
        return PollerStats(total.batches + s.batches, total.messages + s.messages,
                           total.failed_batches + s.failed_batches, total.failed_items + s.failed_items,
                           total.filtered + s.filtered, s.workers, s.peak_workers, s.handler_latency_ms)

    def samples(self) -> Iterable[Sample]:
        """Metrics read at scrape time: batches, messages, failures, filtered messages, workers per mapping."""
        rows = []
        for mapping_uuid in set(self.totals) | set(self.pollers):
            poller = self.pollers.get(mapping_uuid)
            function = poller.function if poller else ""
            rows.append(((mapping_uuid, function), self.stats(mapping_uuid)))
        labels = ("mapping", "function")
        yield Sample("nimbus_mapping_batches", "Batches an event source mapping invoked its function with.",
                     labels, [(k, float(s.batches)) for k, s in rows], "counter")
        yield Sample("nimbus_mapping_messages", "Messages delivered to functions by event source mappings.",
                     labels, [(k, float(s.messages)) for k, s in rows], "counter")
        yield Sample("nimbus_mapping_failed_batches",
                     "Batches that failed (function error, throttle, or a partial batch failure).",
                     labels, [(k, float(s.failed_batches)) for k, s in rows], "counter")
        yield Sample("nimbus_mapping_filtered_messages", "Messages deleted because no filter matched them.",
                     labels, [(k, float(s.filtered)) for k, s in rows], "counter")
        yield Sample("nimbus_mapping_concurrent_batches", "Batch workers an event source mapping runs now.",
                     labels, [(k, float(s.workers)) for k, s in rows])
