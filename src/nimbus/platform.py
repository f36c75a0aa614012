"""Assembles the components of one nimbus process from its settings: registry, code store, log store,
sandbox and invoker. The API reads them from `app.state.platform`."""

from __future__ import annotations

from dataclasses import dataclass

from nimbus.config import Settings
from nimbus.control.codestore import CodeStore
from nimbus.control.db import make_engine, migrate
from nimbus.control.registry import Registry
from nimbus.events.sources import EventSources
from nimbus.events.sqs import QueueService
from nimbus.invoke.asyncpipeline import AsyncPipeline
from nimbus.invoke.service import Invoker
from nimbus.observe.logstore import LogStore
from nimbus.sandbox.manager import SandboxManager


@dataclass
class Platform:
    settings: Settings
    registry: Registry
    codestore: CodeStore
    logstore: LogStore
    sandbox: SandboxManager
    invoker: Invoker
    asyncs: AsyncPipeline  # durable queue, event-invoke configs, dispatcher (issue 4)
    sqs: QueueService  # the SQS-compatible queue service (issue 15)
    sources: EventSources  # event source mappings, Scheduler, EventBridge rules and buses (issue 15)

    async def start(self) -> None:
        await self.logstore.start()
        await self.sqs.start()
        await self.sandbox.start()
        await self.invoker.start()
        await self.asyncs.start()
        await self.sources.start()  # after the async queue and the queue service it delivers to

    async def stop(self) -> None:
        """Stop taking work, fail what is in flight cleanly, flush logs, close the database."""
        await self.sources.stop()  # pollers and timers first: they feed the invoker and the async queue
        await self.asyncs.stop()  # before the sandbox: deliveries in flight finish or run again after restart
        await self.invoker.stop()
        await self.sandbox.stop()
        await self.logstore.stop()
        await self.sqs.stop()  # after every producer (destinations, pollers) has stopped
        self.registry.close()


def build_platform(settings: Settings) -> Platform:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    codestore = CodeStore(settings.data_dir / "code", settings)
    registry = Registry(settings, engine, codestore)
    logstore = LogStore(settings, engine)
    sandbox = SandboxManager(settings, log_sink=logstore.append)
    invoker = Invoker(settings, registry, sandbox, logstore)
    sqs = QueueService(settings, engine)
    sources = EventSources(settings, engine, registry, invoker, sqs, logstore)
    # Destinations may be queues and buses (issue 15): records for them go through the event sources' targets.
    asyncs = AsyncPipeline(settings, engine, registry, invoker, logstore, record_sink=sources.targets.send_record,
                           dead_letter_sink=sources.targets.send_dead_letter)
    return Platform(settings, registry, codestore, logstore, sandbox, invoker, asyncs, sqs, sources)
