"""The composition root: builds every component of one nimbus process from its settings and hands each its
dependencies through its constructor. Nothing sets attributes on another component afterwards; every
registry subscription is in one list here. The API reads the parts from `app.state.platform`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from nimbus.config import Settings
from nimbus.control.codestore import CodeStore
from nimbus.control.credentials import EnvironmentLiveness, FunctionCredentials
from nimbus.control.db import make_engine, migrate
from nimbus.control.eventconfigs import EventConfigs
from nimbus.control.garbage import CodeCollector
from nimbus.control.httpapis import HttpApis
from nimbus.control.images import ImageStore
from nimbus.control.keys import KeyStore
from nimbus.control.provisioned import ProvisionedConfigs
from nimbus.control.registry import Registry
from nimbus.control.specs import VersionSpec
from nimbus.control.urls import FunctionUrls
from nimbus.durable.service import DurableService
from nimbus.events.sources import EventSources
from nimbus.events.sqs import QueueService
from nimbus.events.sqs.metrics import queue_samples
from nimbus.invoke.asyncpipeline import AsyncPipeline
from nimbus.invoke.queue import make_queue
from nimbus.invoke.service import Invoker
from nimbus.invoke.snapstart import SnapStartStates
from nimbus.observe import platformlog
from nimbus.observe.collector import PlatformCollector, Readers
from nimbus.observe.logstore import LogStore
from nimbus.observe.observer import Observer
from nimbus.sandbox.manager import SandboxManager
from nimbus.sandbox.network import NetworkProvider
from nimbus.sandbox.network.chooser import choose_provider
from nimbus.sandbox.types import PlatformApi

FunctionChanged = Callable[[str], None]


@dataclass
class Platform:
    settings: Settings
    registry: Registry
    codestore: CodeStore
    logstore: LogStore
    sandbox: SandboxManager
    observer: Observer  # metrics, metering, tracing
    invoker: Invoker
    asyncs: AsyncPipeline  # durable queue, event-invoke configs, dispatcher
    keys: KeyStore  # access keys (SigV4), session keys of environments
    function_urls: FunctionUrls
    http_apis: HttpApis  # API Gateway HTTP APIs: routes to functions (control/httpapis.py)
    credentials: FunctionCredentials
    provisioned_configs: ProvisionedConfigs
    snapstart: SnapStartStates
    durable: DurableService  # durable executions: checkpoints, timers, callbacks, re-invocation
    sqs: QueueService  # the SQS-compatible queue service (events/sqs)
    sources: EventSources  # event source mappings, Scheduler, EventBridge rules and buses (events/)
    collector: PlatformCollector  # the platform's gauges for /metrics
    network: NetworkProvider  # environments' network namespaces (sandbox/network)
    platform_api: PlatformApi  # the API app as environments reach it at 127.0.0.1:9001 (bound by create_app)
    images: ImageStore | None = None  # container images of PackageType Image functions (issue 19)
    garbage: CodeCollector | None = None  # unused zip blobs, trees and images (issue 19)
    # Registry subscribers, called after a change to a function commits: `on_commit` in the committing thread
    # (cache invalidation, database clean-up: thread-safe, quick), then `on_loop` on the serving event loop
    # (they touch state the loop owns: routes, environments, provisioned targets).
    on_commit: list[FunctionChanged] = field(default_factory=list)
    on_loop: list[FunctionChanged] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)  # set by start()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.logstore.start()
        await self.network.start()  # before the sandbox: its first environments take prepared namespaces
        await self.sqs.start()
        await self.sandbox.start()
        await self.observer.start()
        await self.asyncs.start()
        self.snapstart.start(self.registry)  # SnapStart versions: Pending until their snapshot is made
        if self.images is not None:
            self.images.resume()  # image pulls a previous server left Pending
        if self.garbage is not None:
            self.garbage.start()
        for name in sorted({c.function_name for c in self.provisioned_configs.list()}):
            self.reconcile_provisioned(name)  # provisioned concurrency survives restarts
        await self.sources.start()  # after the async queue and the queue service it delivers to
        await self.durable.start()

    async def stop(self) -> None:
        """Stop taking work, fail what is in flight cleanly, flush logs, close the database."""
        await self.durable.stop()  # no new re-invocations; in-flight ones run again after a restart
        await self.sources.stop()  # pollers and timers first: they feed the invoker and the async queue
        await self.asyncs.stop()  # before the sandbox: deliveries in flight finish or run again after restart
        await self.observer.stop()
        await self.sandbox.stop()
        await self.network.stop()  # after the sandbox: no environment uses a namespace any more
        await self.logstore.stop()
        await self.sqs.stop()  # after every producer (destinations, pollers) has stopped
        self._loop = None
        if self.garbage is not None:
            self.garbage.stop()
        if self.images is not None:
            self.images.close()
        self.registry.close()

    def reconcile_provisioned(self, function_name: str) -> None:
        """Give the sandbox the provisioned environments the stored configs ask for (call on the loop)."""
        self.sandbox.provisioner.apply(function_name, self.provisioned_configs.targets_for(function_name))

    def function_changed(self, name: str) -> None:
        """The one registry subscription: runs `on_commit` here, then `on_loop` on the serving loop."""
        for callback in self.on_commit:
            callback(name)
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._changed_on_loop, name)

    def _changed_on_loop(self, name: str) -> None:
        for callback in self.on_loop:
            callback(name)


def build_platform(settings: Settings) -> Platform:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url(), settings.database_busy_timeout)
    migrate(engine)
    codestore = CodeStore(settings.data_dir / "code", settings)
    logstore = LogStore(settings, engine)
    platform_api = PlatformApi()

    # The sandbox and the registry need each other at run time (credentials read the registry and go into
    # every environment; SnapStart states read the sandbox): the hooks below close over `credentials` and
    # `sandbox`, which exist before any environment starts or any key is checked.
    def environ_hook(spec: VersionSpec, environment_id: str) -> dict[str, str]:
        # Every environment of a namespace sandbox has its endpoint at 127.0.0.1:9001 (Runtime API runtimes:
        # runtimeapi.py; managed Python: sandbox/platformendpoint.py). Elsewhere (the process backend) a
        # Runtime API runtime's port varies (AWS_LAMBDA_RUNTIME_API says where) and Python has none, so no
        # fixed endpoint variable is set.
        endpoint = "http://127.0.0.1:9001" if sandbox.backend_name == "namespaces" else None
        return credentials.environ_hook(spec, environment_id, endpoint)

    network = choose_provider(settings)
    sandbox = SandboxManager(
        settings, log_sink=logstore.append, environ_hook=environ_hook, platform_api=platform_api, network=network,
        # LoggingConfig JSON: an environment's INIT_START / RESTORE_START become platform records (observe/)
        format_start=lambda spec, lines: platformlog.start_lines(spec, lines) if platformlog.is_json(spec) else lines,
    )
    snapstart = SnapStartStates(sandbox)
    images = ImageStore(settings, engine)
    registry = Registry(settings, engine, codestore, version_state=snapstart.state, images=images)
    observer = Observer(settings, engine, provisioned=sandbox.provisioned_stats, log_sink=logstore.append)
    queue = make_queue(engine, settings.async_queue_synchronous)
    invoker = Invoker(settings, registry, sandbox, observer, queue)
    event_configs = EventConfigs(settings, registry)
    sqs = QueueService(settings, engine)
    sources = EventSources(settings, engine, registry, invoker, sqs, logstore)
    # Destinations may be queues and buses: records for them go through the event sources' targets.
    asyncs = AsyncPipeline(settings, registry, queue, event_configs, invoker, observer, logstore,
                           record_sink=sources.targets.send_record, dead_letter_sink=sources.targets.send_dead_letter)
    observer.metrics.add_source(lambda: queue_samples(sqs))  # SQS queues
    durable = DurableService(settings, engine, registry, invoker)
    live_ids = EnvironmentLiveness(sandbox.live_environment_ids)
    keys = KeyStore(settings, engine, session_alive=live_ids)
    credentials = FunctionCredentials(keys, registry)
    function_urls = FunctionUrls(registry, settings)
    http_apis = HttpApis(engine, settings)
    provisioned_configs = ProvisionedConfigs(registry)
    concurrency = invoker.concurrency
    collector = PlatformCollector(observer.metrics, Readers(
        in_flight=lambda: concurrency.snapshot().in_flight,
        account_limit=settings.account_concurrency,
        environments=sandbox.environment_stats,
        start_failures=lambda: sandbox.start_failures,
        provisioned=sandbox.provisioned_stats,
        dispatcher=asyncs.dispatcher.outcome_counts,
        queue_stats=queue.stats,
        egress=network.egress_bytes,
    ))
    platform = Platform(
        settings, registry, codestore, logstore, sandbox, observer, invoker, asyncs, keys, function_urls, http_apis,
        credentials, provisioned_configs, snapstart, durable, sqs, sources, collector, network, platform_api,
        images=images,
        garbage=CodeCollector(engine, codestore, images, settings.code_gc_interval, settings.code_gc_min_age),
        on_commit=[
            event_configs.invalidate,  # event-invoke configs
            asyncs.function_changed,  # a deleted function's queued events go
            function_urls.forget_function,  # URL configs and the policies that open them
            credentials.forget_role,  # the role session keys carry; a deleted function's keys are revoked
            provisioned_configs.prune,  # configs of deleted versions and aliases go with them
        ],
        on_loop=[
            invoker.function_changed,  # routes, limits, environments of changed versions
        ],
    )
    platform.on_loop.append(platform.reconcile_provisioned)  # an alias moved: its environments follow
    registry.subscribe(platform.function_changed)
    return platform
