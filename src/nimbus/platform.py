"""Assembles the components of one nimbus process from its settings: registry, code store, log store,
sandbox and invoker. The API reads them from `app.state.platform`."""

from __future__ import annotations

from dataclasses import dataclass

from nimbus.config import Settings
from nimbus.control.codestore import CodeStore
from nimbus.control.db import make_engine, migrate
from nimbus.control.registry import Registry
from nimbus.durable.service import DurableService
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
    durable: DurableService  # durable executions: checkpoints, timers, callbacks, re-invocation (issue 18)

    async def start(self) -> None:
        await self.logstore.start()
        await self.sandbox.start()
        await self.invoker.start()
        await self.asyncs.start()
        await self.durable.start()

    async def stop(self) -> None:
        """Stop taking work, fail what is in flight cleanly, flush logs, close the database."""
        await self.durable.stop()  # no new re-invocations; in-flight ones run again after a restart
        await self.asyncs.stop()  # before the sandbox: deliveries in flight finish or run again after restart
        await self.invoker.stop()
        await self.sandbox.stop()
        await self.logstore.stop()
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
    asyncs = AsyncPipeline(settings, engine, registry, invoker, logstore)
    durable = DurableService(settings, engine, registry, invoker)
    return Platform(settings, registry, codestore, logstore, sandbox, invoker, asyncs, durable)
