"""The durable service on a real database (SQLite, and PostgreSQL where its binaries exist), with a scripted
invoker standing in for the function: token chaining and ClientToken replay, the operation state machine
(steps with retries and attempt accounting, waits, callbacks, contexts, EXECUTION updates), batch validation,
timers fired by the scheduler, idempotent start, stop, execution timeout, and invocation retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.specs import FunctionSnapshot, VersionSpec
from nimbus.durable import service as svc
from nimbus.durable.errors import CallbackTimeout, DurableExecutionAlreadyStarted
from nimbus.durable.service import DurableService
from nimbus.errors import InvalidParameterValue, ResourceNotFound
from nimbus.invoke.service import InvokeOutcome
from tests.invoke.test_queue_postgres import pg_url  # noqa: F401 - the PostgreSQL fixture

ARN = "arn:aws:lambda:us-east-1:000000000000:function:flow"


class FakeRegistry:
    def __init__(self, durable: bool = True, execution_timeout: int = 60) -> None:
        spec = VersionSpec(
            function_name="flow", version="$LATEST", function_arn=ARN, runtime="python3.12", handler="index.handler",
            memory_size=128, timeout=3, environment={}, ephemeral_storage=512, architectures=("x86_64",), layers=(),
            logging_config={}, code_sha256="0" * 64, code_dir=Path("/nonexistent"), revision_id="r",
            durable_config={"ExecutionTimeout": execution_timeout, "RetentionPeriodInDays": 1} if durable else None)
        self.snap = FunctionSnapshot("flow", ARN, None, {"$LATEST": spec}, {})

    def split_qualifier(self, name: str) -> tuple[str, str | None]:
        return name, None

    def snapshot(self, name: str) -> FunctionSnapshot:
        if name != "flow":
            raise ResourceNotFound(f"Function not found: {name}")
        return self.snap

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return f"{ARN}:{qualifier}" if qualifier else ARN


class _Metrics:
    registry = CollectorRegistry()


class _Observer:
    def __init__(self) -> None:
        self.metrics = _Metrics()
        self.metrics.registry = CollectorRegistry()


class ScriptedInvoker:
    """Answers each invocation with the next scripted output (a dict, or an exception's error document)."""

    def __init__(self) -> None:
        self.observer = _Observer()
        self.outputs: list[Any] = []
        self.events: list[dict[str, Any]] = []

    async def invoke(self, function: str, qualifier: str | None, payload: bytes, **_: Any) -> InvokeOutcome:
        self.events.append(json.loads(payload))
        out = self.outputs.pop(0) if self.outputs else {"Status": "PENDING"}
        if isinstance(out, Exception):
            return InvokeOutcome("sync", "r", "$LATEST", json.dumps({"errorType": "RuntimeError",
                                                                     "errorMessage": str(out)}).encode(), "Unhandled")
        return InvokeOutcome("sync", "r", "$LATEST", json.dumps(out).encode())


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    else:
        url = request.getfixturevalue("pg_url")
        engine = make_engine(url)
    migrate(engine)
    if request.param == "postgres":
        with engine.begin() as conn:
            for table in ("durable_events", "durable_operations", "durable_executions"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
    yield engine
    engine.dispose()


@pytest.fixture
def service(engine: Engine, tmp_path: Path) -> DurableService:
    return DurableService(Settings(data_dir=tmp_path), engine, FakeRegistry(), ScriptedInvoker())  # type: ignore[arg-type]


def start(service: DurableService, name: str | None = None, payload: bytes = b'{"a": 1}') -> tuple[str, str]:
    arn = service.start_execution("flow", None, payload, name).arn
    prepared = service._prepare(svc.execution_id_of(arn))
    assert prepared is not None
    return arn, prepared[1]


def step(op_id: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"Id": op_id, "Type": "STEP", "Action": action, "Name": op_id, "SubType": "Step", **extra}


def test_start_is_idempotent_by_name_and_payload(service: DurableService) -> None:
    first = service.start_execution("flow", None, b'{"a": 1}', "order-1")
    again = service.start_execution("flow", None, b'{"a": 1}', "order-1")
    assert again.arn == first.arn and again.existing
    assert "/durable-execution/order-1/" in first.arn and first.arn.startswith(ARN + ":$LATEST/")
    with pytest.raises(DurableExecutionAlreadyStarted):
        service.start_execution("flow", None, b'{"a": 2}', "order-1")
    with pytest.raises(InvalidParameterValue):
        service.start_execution("flow", None, b"{}", "bad name!")


def test_invocation_event_carries_the_execution_operation(service: DurableService) -> None:
    arn = service.start_execution("flow", None, b'{"a": 1}', None).arn
    prepared = service._prepare(svc.execution_id_of(arn))
    assert prepared is not None
    event = json.loads(prepared[2])
    assert event["DurableExecutionArn"] == arn and event["CheckpointToken"] == prepared[1]
    [execution] = event["InitialExecutionState"]["Operations"]
    assert execution["Id"] == arn.rsplit("/", 1)[-1] and execution["Type"] == "EXECUTION"
    assert execution["ExecutionDetails"]["InputPayload"] == '{"a": 1}'
    assert isinstance(execution["StartTimestamp"], int)  # epoch ms in the event


def test_token_chaining_and_client_token_replay(service: DurableService) -> None:
    arn, token = start(service)
    first = service.checkpoint(arn, token, [step("s1", "START")], "ct-1")
    assert first["CheckpointToken"] != token
    assert [(o["Id"], o["Status"]) for o in first["NewExecutionState"]["Operations"]] == [("s1", "STARTED")]
    assert service.checkpoint(arn, token, [step("s1", "START")], "ct-1") == first  # a retried request
    with pytest.raises(InvalidParameterValue, match="^Invalid checkpoint token"):
        service.checkpoint(arn, token, [], "ct-2")  # consumed
    with pytest.raises(InvalidParameterValue, match="^Invalid checkpoint token"):
        service.checkpoint(arn, "Zm9yZWlnbg==", [], None)
    second = service.checkpoint(arn, first["CheckpointToken"], [], None)
    assert second["NewExecutionState"]["Operations"] == []  # nothing changed since the last answer


def test_step_retry_attempt_accounting(service: DurableService) -> None:
    arn, token = start(service)
    error = {"ErrorType": "RuntimeError", "ErrorMessage": "boom"}
    r = service.checkpoint(arn, token, [step("s", "START"), step("s", "RETRY", Error=error,
                                                                  StepOptions={"NextAttemptDelaySeconds": 1})], None)
    [op] = r["NewExecutionState"]["Operations"]
    assert op["Status"] == "PENDING" and op["StepDetails"]["Attempt"] == 1 and op["StepDetails"]["Error"] == error
    assert op["StepDetails"]["NextAttemptTimestamp"] > op["StartTimestamp"]
    service._fire_due(svc.now_ms() + 1500)  # the scheduler, 1.5 s later
    ops = service.get_state(arn, r["CheckpointToken"], None, None)["Operations"]
    assert [o["Status"] for o in ops] == ["STARTED", "READY"]
    r = service.checkpoint(arn, r["CheckpointToken"], [step("s", "START"), step("s", "SUCCEED", Payload='"ok"')], None)
    [op] = r["NewExecutionState"]["Operations"]
    assert op["Status"] == "SUCCEEDED" and op["StepDetails"]["Attempt"] == 2 and op["StepDetails"]["Result"] == '"ok"'
    history = service.history(arn, True, None, None, False)["Events"]
    kinds = [e["EventType"] for e in history]
    assert kinds == ["ExecutionStarted", "StepStarted", "StepFailed", "StepStarted", "StepSucceeded"]
    assert history[2]["StepFailedDetails"]["RetryDetails"] == {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 1}


def test_wait_completes_lazily_and_by_the_scheduler(service: DurableService) -> None:
    arn, token = start(service)
    wait = {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 1}}
    r = service.checkpoint(arn, token, [wait],
                           None)
    [op] = r["NewExecutionState"]["Operations"]
    assert op["Status"] == "STARTED" and op["WaitDetails"]["ScheduledEndTimestamp"] >= op["StartTimestamp"] + 1
    exec_id = svc.execution_id_of(arn)
    service._fire_due(svc.now_ms() + 1100)
    with service._tx() as conn:
        row = svc.store.load_execution(conn, exec_id)
    assert row is not None and row["in_flight"]  # in flight: no second invocation; the change is noticed at its end
    r = service.checkpoint(arn, r["CheckpointToken"], [], None)
    assert [(o["Id"], o["Status"]) for o in r["NewExecutionState"]["Operations"]] == [("w", "SUCCEEDED")]


def test_callbacks(service: DurableService) -> None:
    arn, token = start(service)
    r = service.checkpoint(arn, token, [{"Id": "cb", "Type": "CALLBACK", "Action": "START", "Name": "approval",
                                         "CallbackOptions": {"TimeoutSeconds": 60, "HeartbeatTimeoutSeconds": 1}}],
                           None)
    [op] = r["NewExecutionState"]["Operations"]
    cid = op["CallbackDetails"]["CallbackId"]
    service.callback_heartbeat(cid)
    service.callback_success(cid, b'{"approved": true}')
    with pytest.raises(CallbackTimeout):
        service.callback_success(cid, b"again")
    with pytest.raises(ResourceNotFound):
        service.callback_failure(svc.callback_id(svc.execution_id_of(arn), "nope"), {})
    r = service.checkpoint(arn, r["CheckpointToken"], [], None)
    [op] = r["NewExecutionState"]["Operations"]
    assert op["Status"] == "SUCCEEDED" and op["CallbackDetails"]["Result"] == '{"approved": true}'


def test_callback_heartbeat_timeout(service: DurableService) -> None:
    arn, token = start(service)
    r = service.checkpoint(arn, token, [{"Id": "cb", "Type": "CALLBACK", "Action": "START",
                                         "CallbackOptions": {"TimeoutSeconds": 0, "HeartbeatTimeoutSeconds": 1}}],
                           None)
    service._fire_due(svc.now_ms() + 1500)
    [op] = service.checkpoint(arn, r["CheckpointToken"], [], None)["NewExecutionState"]["Operations"]
    assert op["Status"] == "TIMED_OUT" and op["CallbackDetails"]["Error"]["ErrorType"] == "Callback.Heartbeat"


@pytest.mark.parametrize("updates, message", [
    ([step("a", "START"), step("a", "SUCCEED"), step("a", "FAIL")], "same ID"),
    ([step("a", "SUCCEED")], "not started"),
    ([{"Id": "e", "Type": "EXECUTION", "Action": "SUCCEED"}, step("a", "START")], "last"),
    ([step("a", "START", ParentId="ghost")], "parent"),
    ([{"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 0}}], "WaitSeconds"),
    ([{"Id": "x", "Type": "STEP", "Action": "CANCEL"}], "Invalid action"),
    ([step("a", "SUCCEED", Error={"ErrorMessage": "x"})], "Error"),
])
def test_batch_validation(service: DurableService, updates: list[dict[str, Any]], message: str) -> None:
    arn, token = start(service)
    with pytest.raises(InvalidParameterValue, match=message):
        service.checkpoint(arn, token, updates, None)
    service.checkpoint(arn, token, [], None)  # a refused batch consumed nothing


def test_contexts_and_type_changes(service: DurableService) -> None:
    arn, token = start(service)
    ctx = {"Id": "c", "Type": "CONTEXT", "Name": "child", "SubType": "RunInChildContext"}
    r = service.checkpoint(arn, token, [{**ctx, "Action": "START"}, step("c1", "START", ParentId="c"),
                                        step("c1", "SUCCEED", ParentId="c", Payload="1")], None)
    with pytest.raises(InvalidParameterValue, match="Inconsistent operation name"):
        service.checkpoint(arn, r["CheckpointToken"], [{**ctx, "Name": "other", "Action": "SUCCEED"}], None)
    r = service.checkpoint(arn, r["CheckpointToken"], [{**ctx, "Action": "SUCCEED", "Payload": "1",
                                                        "ContextOptions": {"ReplayChildren": True}}], None)
    [op] = r["NewExecutionState"]["Operations"]
    assert op["ContextDetails"] == {"ReplayChildren": True, "Result": "1"}


def test_execution_update_ends_the_run(service: DurableService) -> None:
    arn, token = start(service)
    r = service.checkpoint(arn, token, [{"Id": "execution-result-1", "Type": "EXECUTION", "Action": "SUCCEED",
                                         "Payload": '"big"'}], None)
    assert "CheckpointToken" not in r
    ex = service.get_execution(arn)
    assert ex["Status"] == "SUCCEEDED" and ex["Result"] == '"big"'
    with pytest.raises(InvalidParameterValue, match="^Invalid checkpoint token"):
        service.checkpoint(arn, token, [], None)


def test_stop_and_timeout(service: DurableService) -> None:
    arn, _ = start(service)
    stopped = service.stop_execution(arn, None)
    assert service.get_execution(arn)["Status"] == "STOPPED"
    assert service.stop_execution(arn, None) == stopped  # idempotent
    other, _ = start(service, "slow")
    service._time_out(svc.now_ms() + 61_000)
    ex = service.get_execution(other)
    assert ex["Status"] == "TIMED_OUT" and ex["Error"]["ErrorType"] == "Execution.TimedOut"
    listed = service.list_executions("flow", None, None, ["TIMED_OUT"], None, None, False, None, None)
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [other]
    service.delete_execution(other)
    with pytest.raises(ResourceNotFound):
        service.get_execution(other)


async def test_scheduler_runs_invocations_until_the_end(service: DurableService) -> None:
    invoker: ScriptedInvoker = service._invoker  # type: ignore[assignment]
    invoker.outputs = [RuntimeError("crash"), {"Status": "SUCCEEDED", "Result": '"done"'}]
    arn = service.start_execution("flow", None, b"{}", None).arn
    await service.start()
    try:
        for _ in range(100):
            if service.get_execution(arn)["Status"] != "RUNNING":
                break
            await asyncio.sleep(0.05)
        # one failed invocation, retried after a 1 s back-off
        ex = service.get_execution(arn)
        assert ex["Status"] == "SUCCEEDED" and ex["Result"] == '"done"'
        assert len(invoker.events) == 2 and invoker.events[0]["CheckpointToken"] != invoker.events[1]["CheckpointToken"]
        kinds = [e["EventType"] for e in service.history(arn, False, None, None, False)["Events"]]
        assert kinds == ["ExecutionStarted", "InvocationCompleted", "InvocationCompleted", "ExecutionSucceeded"]
    finally:
        await service.stop()


def test_paging_of_state_and_history(service: DurableService) -> None:
    arn, token = start(service)
    r = service.checkpoint(arn, token, [step(f"s{i}", "START") for i in range(5)], None)
    page = service.get_state(arn, r["CheckpointToken"], None, 4)
    assert len(page["Operations"]) == 4 and page["NextMarker"] == "4"
    rest = service.get_state(arn, r["CheckpointToken"], page["NextMarker"], 4)
    assert len(rest["Operations"]) == 2 and "NextMarker" not in rest
    history = service.history(arn, False, None, 3, True)
    assert history["Events"][0]["EventType"] == "StepStarted" and history["NextMarker"] == "3"
