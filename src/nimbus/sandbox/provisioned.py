"""Provisioned concurrency in the sandbox: keep N initialized environments of a version ready ahead of
demand. They start with AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency, sit in the version's pool
like warm environments (taken first: see Pool.take), are never reaped for idleness, and are replaced when
one dies. The count per pool key is the sum of the configs of the version and of aliases pointing to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from nimbus.control.specs import VersionSpec

log = logging.getLogger(__name__)
CHECK_INTERVAL = 1.0  # seconds between checks that every target is met (dead environments are replaced)


class ProvisionedPools(Protocol):
    """What the provisioner needs of the sandbox manager (which owns it): counting, starting and demoting the
    provisioned environments of a pool key."""

    def provisioned_count(self, pool_key: tuple[str, str, str]) -> int: ...

    async def provision_one(self, spec: VersionSpec) -> str | None: ...

    def unprovision(self, pool_key: tuple[str, str, str], keep: int) -> None: ...


class Provisioner:
    """Targets per pool key, and the task that meets them."""

    def __init__(self, manager: ProvisionedPools) -> None:
        self.manager = manager
        self.targets: dict[tuple[str, str, str], tuple[VersionSpec, int]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures: dict[tuple[str, str, str], str] = {}  # why a target could not be met

    def set_target(self, spec: VersionSpec, count: int) -> None:
        """Keep `count` initialized environments of `spec` (0 drops the target; extra ones become ordinary)."""
        if count <= 0:
            self.targets.pop(spec.pool_key, None)
            self.manager.unprovision(spec.pool_key, 0)
        else:
            self.targets[spec.pool_key] = (spec, count)
            self.manager.unprovision(spec.pool_key, count)
        self.failures.pop(spec.pool_key, None)
        self._ensure_task()
        self._wake.set()

    def apply(self, function_name: str, targets: list[tuple[VersionSpec, int]]) -> None:
        """Make `targets` the provisioned counts of `function_name`'s versions (versions left out drop theirs)."""
        wanted = {spec.pool_key for spec, _ in targets}
        for key in [k for k in self.targets if k[0] == function_name and k not in wanted]:
            self.set_target(self.targets[key][0], 0)
        for spec, count in targets:
            self.set_target(spec, count)

    def allocated(self, pool_key: tuple[str, str, str]) -> int:
        return self.manager.provisioned_count(pool_key)

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for key, (spec, count) in list(self.targets.items()):
                missing = count - self.manager.provisioned_count(key)
                if missing > 0:
                    results = await asyncio.gather(
                        *(self.manager.provision_one(spec) for _ in range(missing)), return_exceptions=True
                    )
                    errors = [r for r in results if r is not None]
                    if errors:
                        self.failures[key] = str(errors[0])
                        log.warning("provisioned concurrency of %s:%s: %s", spec.function_name, spec.version,
                                    errors[0])
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_INTERVAL)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
