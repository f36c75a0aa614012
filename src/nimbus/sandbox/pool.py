"""The warm pool of one function version (one `VersionSpec.pool_key`): idle environments in a LIFO stack
(the most recently used one is the warmest), the busy set, and the rules for reuse, reaping and retiring.
"""

from __future__ import annotations

from nimbus.control.specs import VersionSpec
from nimbus.sandbox.environment import Environment


class Pool:
    """Environments of one (function, version, revision)."""

    def __init__(self, spec: VersionSpec) -> None:
        self.key = spec.pool_key
        self.spec = spec
        self.idle: list[Environment] = []
        self.busy: set[Environment] = set()
        self.retired = False

    def take(self) -> Environment | None:
        """The warmest idle environment still alive, or None (the caller creates one)."""
        idle = self.idle
        for i in range(len(idle) - 1, -1, -1):  # provisioned environments first, as Lambda uses them
            env = idle[i]
            if env.provisioned and env.alive:
                del idle[i]
                self.busy.add(env)
                return env
        while idle:
            env = idle.pop()
            if env.alive:
                self.busy.add(env)
                return env
        return None

    def provisioned(self) -> int:
        """Live, initialized provisioned-concurrency environments (idle or busy)."""
        return sum(1 for env in (*self.idle, *self.busy) if env.provisioned and env.alive and not env.prestarting)

    def idle_count(self) -> int:
        """Idle environments still alive. Dead ones are dropped on the way: an environment that dies
        while idle has been killed already (see Environment._on_eof), so nothing is left to do for it."""
        idle = self.idle
        for env in idle:
            if not env.alive:
                self.idle = idle = [e for e in idle if e.alive]
                break
        return len(idle)

    def add_busy(self, env: Environment) -> None:
        self.busy.add(env)

    def release(self, env: Environment, keep: bool) -> None:
        """An invocation finished: park the environment for reuse, or kill it."""
        self.busy.discard(env)
        if keep and env.alive and not self.retired:
            self.idle.append(env)
        else:
            env.kill("retire" if self.retired else "discard")

    def reap(self, now: float, idle_timeout: float) -> list[Environment]:
        """Kill idle environments unused for `idle_timeout` seconds (and dead ones); return them."""
        expired = [
            e for e in self.idle if not e.alive or (not e.provisioned and now - e.last_used >= idle_timeout)
        ]
        if expired:
            self.idle = [e for e in self.idle if e not in expired]
            for env in expired:
                env.kill("idle")
        return expired

    def retire(self) -> list[Environment]:
        """Kill idle environments now; busy ones are killed when they finish."""
        self.retired = True
        idle, self.idle = self.idle, []
        for env in idle:
            env.kill("retire")
        return idle

    def __len__(self) -> int:
        return len(self.idle) + len(self.busy)
