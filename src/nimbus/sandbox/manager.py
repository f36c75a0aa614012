"""SandboxManager: the sandbox layer's front door (implements `nimbus.sandbox.types.Sandbox`).

Chooses the isolation backend at start-up, keeps a warm pool per function version, creates environments on
demand (concurrently: each concurrent invocation gets its own), reaps idle ones, retires stale ones, and
turns every failure of user code into an `InvokeResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.errors import InvalidRuntime
from nimbus.sandbox.backends import Backend, BackendUnavailable, choose
from nimbus.sandbox.environment import Deadlines, Environment, error_result
from nimbus.sandbox.pool import Pool
from nimbus.sandbox.runtimes import available_runtimes
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogSink

log = logging.getLogger(__name__)


class SandboxManager:
    """Runs invocations in isolated execution environments, pooled per function version."""

    def __init__(self, settings: Settings, log_sink: LogSink) -> None:
        self.settings = settings
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
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        envs = list(self._envs)
        for env in envs:
            env.kill("stop")
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
            env = Environment(
                spec, self._backend, self.settings, self.log_sink, self._interpreter(spec), self._deadlines
            )
            self._envs.add(env)
            pool.add_busy(env)
        keep = False
        try:
            result = await env.invoke(request)
            keep = not self._stopping
            return result
        finally:
            # Cancelled mid-invocation (keep is False): the environment's state is unknown, so it goes.
            pool.release(env, keep)
            if pool.retired and not pool.busy:
                self._draining.discard(pool)

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
            self._envs = {e for e in self._envs if e.alive or not e.closed}


__all__ = ["BackendUnavailable", "SandboxManager"]
