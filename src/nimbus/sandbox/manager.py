"""SandboxManager: the sandbox layer's front door (implements `nimbus.sandbox.types.Sandbox`).

Chooses the isolation backend at start-up, keeps a warm pool per function version, creates environments on
demand (concurrently: each concurrent invocation gets its own), reaps idle ones, retires stale ones, and
turns every failure of user code into an `InvokeResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.errors import InvalidRuntime
from nimbus.sandbox.apienvironment import ApiEnvironment  # Runtime API runtimes (custom, Node.js)
from nimbus.sandbox.apiruntimes import exec_wrapper, has_extensions, is_api_runtime
from nimbus.sandbox.backends import Backend, BackendUnavailable
from nimbus.sandbox.backends.chooser import choose
from nimbus.sandbox.deadlines import Deadlines
from nimbus.sandbox.environment import Environment, error_result
from nimbus.sandbox.imageenv import check_ready
from nimbus.sandbox.network import NetworkProvider
from nimbus.sandbox.pool import Pool
from nimbus.sandbox.provisioned import Provisioner
from nimbus.sandbox.runtimes import available_runtimes
from nimbus.sandbox.types import (
    EnvironHook,
    EnvironmentStats,
    InvokeRequest,
    InvokeResult,
    LogSink,
    PlatformApi,
    ProvisionedStats,
    StartFormatter,
)
from nimbus.sandbox.zygote import Zygote, zygotes_enabled

log = logging.getLogger(__name__)


class SandboxManager:
    """Runs invocations in isolated execution environments, pooled per function version."""

    def __init__(
        self,
        settings: Settings,
        log_sink: LogSink,
        network: NetworkProvider | None = None,
        format_start: StartFormatter | None = None,
        *,
        environ_hook: EnvironHook | None = None,
        platform_api: PlatformApi | None = None,
    ) -> None:
        self.settings = settings
        self.format_start = format_start  # an environment's first log lines (observe/ formats them)
        self.network = network  # prepared network namespaces for new environments (None: loopback only)
        self.log_sink = log_sink
        self.backend_name = "unstarted"
        self.backend_reason = "not started"
        self._backend: Backend | None = None
        self._pools: dict[tuple[str, str, str], Pool] = {}
        self._draining: set[Pool] = set()  # retired pools with busy environments
        self._envs: set[Environment] = set()  # every environment whose processes may still exist
        self._reaper: asyncio.Task[None] | None = None
        self._deadlines: Deadlines | None = None  # the timeouts of all environments, on the serving loop
        self._stopping = False
        self.start_failures: dict[str, int] = {}  # function -> environments that failed to start (metrics)
        self._zygotes: dict[tuple[str, str, str], Zygote] = {}  # pool key -> its fork server (issue 5)
        self._old_zygotes: set[Zygote] = set()  # retired, alive while environments forked from them are
        self._background: set[asyncio.Task[None]] = set()
        # Per-environment variables (e.g. short-lived credentials), given (spec, environment id); applied to
        # fresh and forked environments alike before any user code of theirs runs.
        self.environ_hook = environ_hook
        self.platform_api = platform_api  # served on every environment's 127.0.0.1:9001
        self.provisioner = Provisioner(self)
        # SnapStart versions: (State, StateReason, StateReasonCode) while their snapshot is made or failed
        self._snapshots: dict[tuple[str, str, str], tuple[str, str, str] | None] = {}

    async def start(self) -> None:
        """Choose the backend (probing namespaces once) and start the idle reaper.

        Raises BackendUnavailable when isolation=namespaces and namespaces cannot work here.
        """
        if self._backend is None:
            await asyncio.to_thread(self.prepare)
        self._stopping = False
        loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(loop)
        self._reaper = loop.create_task(self._reap_forever())
        log.info("sandbox backend: %s (%s)", self.backend_name, self.backend_reason)

    def prepare(self) -> None:
        """Choose the isolation backend now (the server announces it before serving).

        Raises BackendUnavailable when isolation=namespaces and namespaces cannot work here.
        """
        backend, reason = choose(self.settings)
        self._backend = backend
        self.backend_name = backend.name
        self.backend_reason = reason

    async def stop(self) -> None:
        """Kill every environment; in-flight invocations come back as clean errors."""
        self._stopping = True
        await self.provisioner.stop()
        for task in list(self._background):
            task.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        envs = list(self._envs)
        for env in envs:
            env.kill("stop")
        zygotes = [*self._zygotes.values(), *self._old_zygotes]
        self._zygotes.clear()
        self._old_zygotes.clear()
        for zygote in zygotes:
            zygote.close()
        await asyncio.gather(*(z.wait_closed() for z in zygotes))
        await asyncio.gather(*(env.wait_closed() for env in envs))
        # Let in-flight invocations observe the kill before the backend's resources disappear.
        for _ in range(100):
            if not any(p.busy for p in [*self._pools.values(), *self._draining]):
                break
            await asyncio.sleep(0.01)
        self._pools.clear()
        self._draining.clear()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def environment_count(self) -> int:
        return sum(1 for env in self._envs if env.alive)

    def environment_stats(self) -> list[EnvironmentStats]:
        """Every live environment (metrics, the dashboard)."""
        return [
            EnvironmentStats(e.spec.function_name, e.spec.version, e.id, e.busy,
                             e.handle.peak_memory_mb(0) if e.handle is not None else 0)
            for e in list(self._envs) if e.alive
        ]

    def live_environment_ids(self) -> list[str]:
        """The ids of the environments running now (their session keys work while they do)."""
        return [e.id for e in list(self._envs) if e.alive]

    def idle_count(self, pool_key: tuple[str, str, str]) -> int:
        """Warm environments idle right now for `pool_key` (0 means the next invoke is cold)."""
        pool = self._pools.get(pool_key)
        return 0 if pool is None else pool.idle_count()

    def retire(self, function_name: str, keep: set[tuple[str, str]]) -> None:
        """Shut down environments of `function_name` whose (version, revision_id) is not in `keep`."""
        for key, pool in list(self._pools.items()):
            if key[0] != function_name or (key[1], key[2]) in keep:
                continue
            del self._pools[key]
            pool.retire()
            if pool.busy:
                self._draining.add(pool)
        for key in list(self.provisioner.targets):
            if key[0] == function_name and (key[1], key[2]) not in keep:
                del self.provisioner.targets[key]
        for key, zygote in list(self._zygotes.items()):
            if key[0] == function_name and (key[1], key[2]) not in keep:
                del self._zygotes[key]  # never forks again: a code or configuration change means new INIT
                zygote.retired = True
                self._old_zygotes.add(zygote)
        self._retire_zygotes(time.monotonic(), self._zygote_idle())

    def _interpreter(self, spec: VersionSpec) -> Path:
        interpreter = available_runtimes().get(spec.runtime)
        if interpreter is None:
            raise InvalidRuntime(f"The runtime parameter of {spec.runtime} is not supported on this host.")
        return interpreter

    async def invoke(self, spec: VersionSpec, request: InvokeRequest) -> InvokeResult:
        """Run one invocation in a warm environment of `spec`, creating one if none is idle."""
        if self._stopping or self._backend is None:
            return error_result(
                request.request_id, "Runtime.ExitError", "Runtime exited with error: nimbus is shutting down",
                log_stream="", env_id="",
            )
        pool = self._pools.get(spec.pool_key)
        if pool is None:
            pool = self._pools[spec.pool_key] = Pool(spec)
        env = pool.take()
        if env is None:
            env = self._new_environment(spec)
            self._envs.add(env)
            pool.add_busy(env)
        keep = False
        fresh = not env.started
        try:
            result = await env.invoke(request)
            keep = not self._stopping
            if fresh and (env.init_duration_ms is None or env.kill_reason in ("init-error", "limits")):
                self.start_failures[spec.function_name] = self.start_failures.get(spec.function_name, 0) + 1
            return result
        finally:
            # Cancelled mid-invocation (keep is False): the environment's state is unknown, so it goes.
            pool.release(env, keep)
            if pool.retired and not pool.busy:
                self._draining.discard(pool)

    def _new_environment(self, spec: VersionSpec, init_type: str = "on-demand") -> Environment:
        """A new, unstarted environment of `spec`: forked from the version's zygote where the runtime allows."""
        assert self._backend is not None
        hook = self.environ_hook
        # Managed Python with external extensions in its layers, or with an exec wrapper: the launcher of the
        # Runtime API environment starts them.
        if spec.image is not None:  # a container image (issue 19): refused here until it is unpacked
            check_ready(spec, self._backend.task_root_inside is not None)
        if is_api_runtime(spec.runtime) or has_extensions(spec.opt_dir) or exec_wrapper(spec.runtime,
                                                                                         spec.environment):
            return ApiEnvironment(
                spec, self._backend, self.settings, self.log_sink, self._interpreter(spec), self._deadlines,
                init_type=init_type, environ_hook=(lambda env_id: hook(spec, env_id)) if hook is not None else None,
                platform_api=self.platform_api,
                network=self.network, format_start=self.format_start,
            )
        return Environment(
            spec, self._backend, self.settings, self.log_sink, self._interpreter(spec), self._deadlines,
            zygote=self._zygote(spec), init_type=init_type,
            environ_hook=(lambda env_id: hook(spec, env_id)) if hook is not None else None,
            platform_api=self.platform_api,
            network=self.network,  # (fresh starts; forks take theirs from the zygote)
            format_start=self.format_start,
        )

    async def provision_one(self, spec: VersionSpec) -> str | None:
        """Start one provisioned-concurrency environment of `spec` and park it warm: None, or why it failed."""
        if self._stopping or self._backend is None:
            return "stopping"
        pool = self._pools.get(spec.pool_key)
        if pool is None:
            pool = self._pools[spec.pool_key] = Pool(spec)
        env = self._new_environment(spec, "provisioned-concurrency")
        self._envs.add(env)
        pool.add_busy(env)
        failure = None
        try:
            failure = await env.prestart()
        finally:
            pool.release(env, failure is None and not self._stopping)
        return None if failure is None else (failure.error_type or "the environment failed to start")

    def provisioned_stats(self) -> list[ProvisionedStats]:
        """Every version with provisioned environments (metrics and metering)."""
        out = []
        for (function, version, _), pool in list(self._pools.items()):
            envs = [e for e in (*pool.idle, *pool.busy) if getattr(e, "provisioned", False) and e.alive]
            if envs:
                busy = sum(1 for e in envs if e in pool.busy)
                arch = pool.spec.architectures[0] if pool.spec.architectures else "x86_64"
                out.append(ProvisionedStats(function, version, len(envs), busy, pool.spec.memory_size, arch))
        return out

    def provisioned_count(self, pool_key: tuple[str, str, str]) -> int:
        pool = self._pools.get(pool_key)
        return 0 if pool is None else pool.provisioned()

    def unprovision(self, pool_key: tuple[str, str, str], keep: int) -> None:
        """Provisioned environments beyond `keep` become ordinary ones (reaped when idle)."""
        pool = self._pools.get(pool_key)
        if pool is None:
            return
        extra = pool.provisioned() - keep
        for env in [*pool.idle, *pool.busy]:
            if extra <= 0:
                break
            if env.provisioned:
                env.provisioned = False
                extra -= 1

    def snapshot_state(self, pool_key: tuple[str, str, str]) -> tuple[str, str, str] | None | bool:
        """A SnapStart version's (State, StateReason, StateReasonCode) override, None when Active, False when
        its snapshot was never prepared by this server (safe from any thread)."""
        return self._snapshots.get(pool_key, False)

    def prepare_snapshot(self, spec: VersionSpec) -> None:
        """Make a SnapStart version's snapshot (its zygote's INIT) now, as PublishVersion does on AWS."""
        if spec.pool_key in self._snapshots or self._stopping:
            return
        zygote = self._zygote(spec)
        if zygote is None:
            self._snapshots[spec.pool_key] = None
            return
        self._snapshots[spec.pool_key] = ("Pending", "The function is being created.",
                                          "Creating")

        async def run() -> None:
            try:
                failure = await zygote.ready()
            except Exception as e:  # noqa: BLE001 (reported through the version's state)
                self._snapshots[spec.pool_key] = ("Failed", f"The snapshot could not be created: {e}", "InternalError")
                return
            if failure is None:
                self._snapshots[spec.pool_key] = None
            else:
                reason = failure.payload.decode("utf-8", "replace")[:1024]
                self._snapshots[spec.pool_key] = ("Failed", reason, "FunctionError.RuntimeInitError")

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _zygote(self, spec: VersionSpec) -> Zygote | None:
        """The fork server of `spec`'s pool key (created on first use; INIT runs when it is first needed)."""
        if (not zygotes_enabled(self.settings, spec) or self._backend is None or has_extensions(spec.opt_dir)
                or exec_wrapper(spec.runtime, spec.environment)):
            return None  # (with external extensions or a wrapper, environments start fresh: _new_environment)
        zygote = self._zygotes.get(spec.pool_key)
        if zygote is None or zygote.closed:
            zygote = self._zygotes[spec.pool_key] = Zygote(
                spec, self._backend, self.settings, self._interpreter(spec), self._zygote_environment,
                log_sink=self.log_sink, snapstart=spec.snap_start, snapshot=self.settings.zygote_snapshots,
                network=self.network,
            )
        return zygote

    def _zygote_environment(self, zygote: Zygote) -> Environment:
        assert self._backend is not None
        hook, spec = self.environ_hook, zygote.spec
        return Environment(
            zygote.spec, self._backend, self.settings, zygote.capture, zygote.interpreter, self._deadlines,
            launcher=zygote.launcher, role="zygote", init_type="snap-start" if zygote.snapstart else "on-demand",
            # INIT needs credentials too (clients made at import time keep the zygote's, as with SnapStart)
            environ_hook=(lambda env_id: hook(spec, env_id)) if hook is not None else None,
            platform_api=self.platform_api,
            format_start=self.format_start,
        )

    def _zygote_idle(self) -> float:
        idle = self.settings.zygote_idle_timeout
        return self.settings.idle_timeout if idle is None else idle

    def _retire_zygotes(self, now: float, idle_timeout: float) -> None:
        """Close zygotes nothing needs any more: retired ones once their environments are gone, idle ones
        (no environment, no fork for idle_timeout) like idle environments."""
        for key, zygote in list(self._zygotes.items()):
            if zygote.closed or zygote.idle_since(now, idle_timeout):
                del self._zygotes[key]
                zygote.close()
        for zygote in list(self._old_zygotes):
            if zygote.live == 0 or zygote.closed:
                self._old_zygotes.discard(zygote)
                zygote.close()

    async def _reap_forever(self) -> None:
        idle_timeout = self.settings.idle_timeout
        interval = max(0.05, min(idle_timeout / 4, 10.0))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for key, pool in list(self._pools.items()):
                pool.reap(now, idle_timeout)
                if not pool.idle and not pool.busy:
                    del self._pools[key]
            self._retire_zygotes(time.monotonic(), self._zygote_idle())
            self._envs = {e for e in self._envs if e.alive or not e.closed}


__all__ = ["BackendUnavailable", "SandboxManager"]
