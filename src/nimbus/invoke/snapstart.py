"""The State a SnapStart version reports while its snapshot is made: Pending until the zygote's INIT is done,
Failed when it failed, Active once it is ready (AWS: PublishVersion leaves the version Pending meanwhile).
Rendering a version this server never prepared (e.g. after a restart) prepares it. The registry calls
`state` (its `version_state`) from whichever thread renders a FunctionConfiguration."""

from __future__ import annotations

import asyncio

from nimbus.control.registry import Registry
from nimbus.errors import ResourceNotFound
from nimbus.sandbox.types import Snapshots

PENDING = ("Pending", "The function is being created.", "Creating")


class SnapStartStates:
    """Answers `Registry(version_state=...)` from the sandbox's snapshots, preparing missing ones."""

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots
        self._registry: Registry | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self, registry: Registry) -> None:
        """Prepare snapshots of `registry`'s versions (the registry is built with this object's `state`, so it
        comes in here) on the running, serving loop."""
        self._registry = registry
        self._loop = asyncio.get_running_loop()

    def state(self, name: str, version: str, revision_id: str) -> tuple[str, str, str] | None:
        known = self._snapshots.snapshot_state((name, version, revision_id))
        if not isinstance(known, bool):  # False: never prepared here
            return known
        loop = self._loop
        if loop is None or not loop.is_running():
            return None  # not serving (a tool reading the registry): nothing can be prepared
        # Rendered by PublishVersion before its transaction commits: look the version up from the loop.

        def begin() -> None:
            task = loop.create_task(self._prepare(name, version, revision_id))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        loop.call_soon_threadsafe(begin)
        return PENDING

    async def _prepare(self, name: str, version: str, revision_id: str) -> None:
        assert self._registry is not None
        for _ in range(100):
            try:
                spec = self._registry.snapshot(name).versions.get(version)
            except ResourceNotFound:
                return
            if spec is not None and spec.revision_id == revision_id:
                if spec.snap_start:
                    self._snapshots.prepare_snapshot(spec)
                return
            await asyncio.sleep(0.05)
