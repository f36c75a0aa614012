"""The Invoker driven with a fake sandbox (the `Sandbox` Protocol) over a real registry: routing, the typed
outcome, the concurrency lease around every run, the log lines the observer writes, throttling."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.config import Settings
from nimbus.control.registry import Registry
from nimbus.control.specs import VersionSpec
from nimbus.errors import InvalidRequestContent, ResourceNotFound, TooManyRequests
from nimbus.invoke.queue import NewEvent
from nimbus.invoke.service import Invoker
from nimbus.observe.observer import Observer
from nimbus.observe.tracing import Tracer
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogLine
from tests.conftest import RUNTIME
from tests.control.conftest import ROLE, open_registry


class FakeSandbox:
    """Answers every invocation with `answer(request)`; records what it ran and what the lease counted."""

    backend_name = "fake"
    backend_reason = "tests"

    def __init__(self, invoker_ref: list[Invoker]) -> None:
        self.ran: list[tuple[VersionSpec, InvokeRequest, int]] = []
        self.retired: list[tuple[str, set[tuple[str, str]]]] = []
        self.idle = 0
        self.error: str | None = None
        self.payload = b'{"ok":true}'
        self._invoker = invoker_ref

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def invoke(self, spec: VersionSpec, request: InvokeRequest) -> InvokeResult:
        in_flight = self._invoker[0].concurrency.in_flight(spec.function_name)
        self.ran.append((spec, request, in_flight))
        await asyncio.sleep(0)
        logs: list[LogLine] = [(1, "hello from the handler")]
        return InvokeResult(self.payload, "Unhandled" if self.error else None, self.error, logs, 12.3, 40, 100.0,
                            "2026/01/01/[$LATEST]abc", "env-1")

    def retire(self, function_name: str, keep: set[tuple[str, str]]) -> None:
        self.retired.append((function_name, keep))

    def environment_count(self) -> int:
        return 0

    def idle_count(self, pool_key: tuple[str, str, str]) -> int:
        return self.idle


class FakeQueue:
    def __init__(self) -> None:
        self.events: list[NewEvent] = []

    async def enqueue(self, events: Any) -> None:
        self.events.extend(events)


def code() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return e\n")
    return buf.getvalue()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = open_registry(tmp_path / "data")
    reg.create_function({"FunctionName": "fn", "Role": ROLE, "Runtime": RUNTIME, "Handler": "app.handler",
                         "Publish": True}, code())
    yield reg
    reg.close()


class Rig:
    def __init__(self, registry: Registry, **settings: Any) -> None:
        self.settings = Settings(data_dir=registry.settings.data_dir, **settings)
        ref: list[Invoker] = []
        self.sandbox = FakeSandbox(ref)
        self.queue = FakeQueue()
        self.logs: list[tuple[str, str, list[LogLine]]] = []
        self.observer = Observer(self.settings, registry.engine, tracer=Tracer(None),
                                 log_sink=lambda g, s, lines: self.logs.append((g, s, lines)))
        self.invoker = Invoker(self.settings, registry, self.sandbox, self.observer, self.queue)  # type: ignore[arg-type]
        ref.append(self.invoker)


def test_a_synchronous_invocation_runs_under_a_lease_and_is_logged(registry: Registry) -> None:
    rig = Rig(registry)
    outcome = asyncio.run(rig.invoker.invoke("fn", "1", b'{"a":1}', log_type="Tail"))
    assert (outcome.kind, outcome.executed_version, outcome.payload) == ("sync", "1", b'{"ok":true}')
    assert outcome.function_error is None and outcome.duration_ms == 12.3 and outcome.init_duration_ms == 100.0
    spec, request, in_flight = rig.sandbox.ran[0]
    assert (spec.version, request.request_id, in_flight) == ("1", outcome.request_id, 1)
    assert rig.invoker.concurrency.in_flight("fn") == 0  # the lease ended with the run
    group, stream, lines = rig.logs[0]
    texts = [text for _, text in lines]
    assert (group, stream) == ("/aws/lambda/fn", "2026/01/01/[$LATEST]abc")
    assert texts[0] == f"START RequestId: {outcome.request_id} Version: 1"
    assert texts[1] == "hello from the handler" and texts[2].startswith("END RequestId")
    assert "Billed Duration: 113 ms" in texts[3]  # INIT is billed with the handler's time
    assert outcome.log_result is not None
    assert base64.b64decode(outcome.log_result).decode().splitlines() == texts


def test_function_errors_and_oversized_answers_are_outcomes_not_exceptions(registry: Registry) -> None:
    rig = Rig(registry, sync_payload_max_bytes=50)
    rig.sandbox.error = "KeyError"
    rig.sandbox.payload = b'{"errorType":"KeyError"}'
    failed = asyncio.run(rig.invoker.invoke("fn", None, b"{}"))
    assert (failed.function_error, failed.payload, failed.log_result) == ("Unhandled", b'{"errorType":"KeyError"}',
                                                                          None)
    rig.sandbox.error = None
    rig.sandbox.payload = b'"' + b"x" * 200 + b'"'
    big = asyncio.run(rig.invoker.invoke("fn", None, b"{}"))
    assert big.function_error == "Unhandled"
    assert json.loads(big.payload)["errorType"] == "Function.ResponseSizeTooLarge"


def test_dry_run_and_event_do_not_run(registry: Registry) -> None:
    rig = Rig(registry)
    dry = asyncio.run(rig.invoker.invoke("fn", "1", b"{}", invocation_type="DryRun"))
    queued = asyncio.run(rig.invoker.invoke("fn", None, b"{}", invocation_type="Event"))
    assert (dry.kind, dry.executed_version) == ("dry_run", "1")
    assert (queued.kind, queued.executed_version) == ("accepted", None)
    assert [e.request_id for e in rig.queue.events] == [queued.request_id]
    assert rig.sandbox.ran == [] and rig.logs == []


def test_throttles_are_counted_for_synchronous_calls_only(registry: Registry) -> None:
    registry.put_concurrency("fn", 0)
    rig = Rig(registry)
    with pytest.raises(TooManyRequests):
        asyncio.run(rig.invoker.invoke("fn", None, b"{}"))
    with pytest.raises(TooManyRequests):
        asyncio.run(rig.invoker.run_event("fn", None, "rid", b"{}", None, None))
    assert rig.observer.metrics.stats("fn", "$LATEST").throttles == 1
    assert rig.sandbox.ran == []


def test_queued_events_keep_their_request_id(registry: Registry) -> None:
    rig = Rig(registry)
    spec, result = asyncio.run(rig.invoker.run_event("fn", "1", "my-request", b"{}", None, None))
    assert spec.version == "1" and result.payload == b'{"ok":true}'
    assert rig.sandbox.ran[0][1].request_id == "my-request"


def test_bad_input_is_refused_before_the_sandbox(registry: Registry) -> None:
    rig = Rig(registry)
    with pytest.raises(InvalidRequestContent):
        asyncio.run(rig.invoker.invoke("fn", None, b"{not json"))
    with pytest.raises(ResourceNotFound):
        asyncio.run(rig.invoker.invoke("nope", None, b"{}"))
    assert rig.sandbox.ran == []


def test_a_changed_function_retires_what_it_no_longer_has(registry: Registry) -> None:
    rig = Rig(registry)
    rig.invoker.function_changed("fn")
    name, keep = rig.sandbox.retired[0]
    assert name == "fn" and {v for v, _ in keep} == {"$LATEST", "1"}
