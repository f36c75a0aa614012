"""Fixtures for the sandbox layer: code directories, VersionSpecs and SandboxManagers driven directly."""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.sandbox.backends import BackendUnavailable
from nimbus.sandbox.manager import SandboxManager
from nimbus.sandbox.runtimes import available_runtimes
from nimbus.sandbox.types import EnvironHook, InvokeRequest, LogLine

RUNTIME = next(iter(sorted(available_runtimes(), reverse=True)), "python3.12")
if "python3.12" in available_runtimes():
    RUNTIME = "python3.12"


def write_code(root: Path, source: str, filename: str = "app.py") -> Path:
    """A code directory holding `source` as `filename` (world-readable, as Lambda requires)."""
    code = root / f"code-{uuid.uuid4().hex[:8]}"
    code.mkdir(parents=True)
    target = code / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(source))
    for path in [code, *code.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return code


def make_spec(code_dir: Path, **overrides: object) -> VersionSpec:
    name = str(overrides.pop("function_name", f"fn-{uuid.uuid4().hex[:8]}"))
    fields: dict[str, object] = dict(
        function_name=name,
        version="$LATEST",
        function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        runtime=RUNTIME,
        handler="app.handler",
        memory_size=256,
        timeout=5,
        environment={},
        ephemeral_storage=512,
        architectures=("x86_64",),
        layers=(),
        logging_config={},
        code_sha256="0" * 64,
        code_dir=code_dir,
        revision_id=uuid.uuid4().hex,
    )
    fields.update(overrides)
    return VersionSpec(**fields)  # type: ignore[arg-type]


def make_request(spec: VersionSpec, payload: bytes = b"{}", **overrides: object) -> InvokeRequest:
    fields: dict[str, object] = dict(
        request_id=str(uuid.uuid4()),
        payload=payload,
        deadline_ms=int(time.time() * 1000) + spec.timeout * 1000,
        invoked_arn=spec.function_arn,
    )
    fields.update(overrides)
    return InvokeRequest(**fields)  # type: ignore[arg-type]


class Sink:
    """Collects what the manager sends to the log sink."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, list[LogLine]]] = []

    def __call__(self, group: str, stream: str, lines: list[LogLine]) -> None:
        self.records.append((group, stream, lines))

    def texts(self) -> list[str]:
        return [text for _, _, lines in self.records for _, text in lines]


async def started(isolation: str, sink: Sink, environ_hook: EnvironHook | None = None,
                  **settings: object) -> SandboxManager:
    manager = SandboxManager(Settings(isolation=isolation, **settings), sink,  # type: ignore[arg-type]
                             environ_hook=environ_hook)
    await manager.start()
    return manager


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
async def process_manager(sink: Sink) -> AsyncIterator[SandboxManager]:
    manager = await started("process", sink)
    yield manager
    await manager.stop()


def namespaces_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "namespaces backend needs root (cgroups, bubblewrap as root)"
    return None


@pytest.fixture
async def ns_manager(sink: Sink) -> AsyncIterator[SandboxManager]:
    reason = namespaces_skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        manager = await started("namespaces", sink)
    except BackendUnavailable as e:
        pytest.skip(f"namespaces backend unavailable: {e}")
    yield manager
    await manager.stop()


@pytest.fixture(params=["process", "namespaces"])
async def manager(request: pytest.FixtureRequest, sink: Sink) -> AsyncIterator[SandboxManager]:
    """Both backends (namespaces skipped where unusable)."""
    if request.param == "namespaces":
        reason = namespaces_skip_reason()
        if reason:
            pytest.skip(reason)
    try:
        manager = await started(request.param, sink)
    except BackendUnavailable as e:
        pytest.skip(f"namespaces backend unavailable: {e}")
    yield manager
    await manager.stop()
