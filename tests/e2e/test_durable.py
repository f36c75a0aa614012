"""Durable functions end to end: the official durable-execution SDK, installed from the package index into a
layer, runs unchanged against a real nimbus server (steps, retries, waits, callbacks approved and timed out,
parallel/map, child contexts, chained invokes), driven by boto3 and by the testing package's
`DurableFunctionCloudTestRunner`; negative checks; a kill -9 of the server while executions wait; and the same
handlers compared with the testing package's reference emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip
from tests.durable import handlers
from tests.durable.handlers import CHAINER, COMPOSITE, PLAIN, RAW_CHECKPOINTS, WAITER, WORKFLOW
from tests.durable.reference import shape
from tests.durable.sdk_layer import build_layer

pytestmark = pytest.mark.e2e
DURABLE = {"ExecutionTimeout": 600, "RetentionPeriodInDays": 1}


@pytest.fixture(scope="module")
def dserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    srv = NimbusServer(tmp_path_factory.mktemp("durable") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def dlam(dserver: NimbusServer):  # type: ignore[no-untyped-def]
    return dserver.client("lambda")


@pytest.fixture(scope="module")
def layer_arn(dlam: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    content = build_layer(tmp_path_factory.getbasetemp() / "durable-layer")
    return str(dlam.publish_layer_version(LayerName="durable-sdk", Content={"ZipFile": content})["LayerVersionArn"])


def deploy(lam: Any, layer: str, source: str, durable: bool = True, prefix: str = "dur") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    extra: dict[str, Any] = {"DurableConfig": DURABLE} if durable else {}
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler", Timeout=30,
                        MemorySize=256, Code={"ZipFile": make_zip({"index.py": source})}, Layers=[layer], **extra)
    return name


def wait_until(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def ended(lam: Any, arn: str, timeout: float = 60.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        return ex if ex["Status"] != "RUNNING" else None

    return wait_until(check, timeout)  # type: ignore[no-any-return]


def events(lam: Any, arn: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"DurableExecutionArn": arn, "IncludeExecutionData": True, "MaxItems": 1000}
    while True:
        page = lam.get_durable_execution_history(**kw)
        out.extend(page["Events"])
        if not page.get("NextMarker"):
            return out
        kw["Marker"] = page["NextMarker"]


def callback_id(lam: Any, arn: str) -> str:
    def check() -> str | None:
        found = [e for e in events(lam, arn) if e["EventType"] == "CallbackStarted"]
        return found[0]["CallbackStartedDetails"]["CallbackId"] if found else None

    return wait_until(check)  # type: ignore[no-any-return]


def test_config_shapes(dlam: Any, layer_arn: str) -> None:
    name = deploy(dlam, layer_arn, WAITER)
    assert dlam.get_function_configuration(FunctionName=name)["DurableConfig"] == DURABLE
    plain = deploy(dlam, layer_arn, PLAIN, durable=False)
    with pytest.raises(ClientError) as err:
        dlam.update_function_configuration(FunctionName=plain, DurableConfig={"ExecutionTimeout": 5})
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    dlam.update_function_configuration(FunctionName=name, DurableConfig={"ExecutionTimeout": 60})
    assert dlam.get_function_configuration(FunctionName=name)["DurableConfig"] == {**DURABLE, "ExecutionTimeout": 60}


def test_approval_workflow(dlam: Any, layer_arn: str) -> None:
    """The facts file's workflow: retry, wait, callback (heartbeat, then approved), parallel, map, child."""
    name = deploy(dlam, layer_arn, WORKFLOW)
    r = dlam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"name":"ada"}',
                    DurableExecutionName="approval-1")
    assert r["StatusCode"] == 202
    arn = r["DurableExecutionArn"]
    assert arn.endswith("/" + arn.rsplit("/", 1)[-1]) and "/durable-execution/approval-1/" in arn
    cid = callback_id(dlam, arn)
    dlam.send_durable_execution_callback_heartbeat(CallbackId=cid)
    dlam.send_durable_execution_callback_success(CallbackId=cid, Result=b'{"approved": true}')
    ex = ended(dlam, arn)
    assert ex["Status"] == "SUCCEEDED", ex
    assert json.loads(ex["Result"]) == {"greet": "hello ada", "flaky": "ok on attempt 2",
                                        "approval": '{"approved": true}', "par": [1, 2], "map": [10, 20, 30],
                                        "child": "inner"}
    history = events(dlam, arn)
    kinds = [e["EventType"] for e in history]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded"
    assert kinds.count("InvocationCompleted") == 4  # as observed against the reference
    flaky = [e for e in history if e.get("Name") == "flaky" and e["EventType"] in ("StepFailed", "StepSucceeded")]
    assert [e["EventType"] for e in flaky] == ["StepFailed", "StepSucceeded"]
    assert flaky[0]["StepFailedDetails"]["RetryDetails"]["CurrentAttempt"] == 1
    wait_started = next(e for e in history if e["EventType"] == "WaitStarted")
    wait_done = next(e for e in history if e["EventType"] == "WaitSucceeded")
    assert (wait_done["EventTimestamp"] - wait_started["EventTimestamp"]).total_seconds() >= 2
    # the callback is closed now
    with pytest.raises(ClientError) as err:
        dlam.send_durable_execution_callback_success(CallbackId=cid, Result=b"again")
    assert err.value.response["Error"]["Code"] == "CallbackTimeoutException"
    listed = dlam.list_durable_executions_by_function(FunctionName=name, Statuses=["SUCCEEDED"])
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [arn]
    assert dlam.list_durable_executions_by_function(FunctionName=name, Statuses=["FAILED"])["DurableExecutions"] == []


def test_metrics(dserver: NimbusServer, dlam: Any, layer_arn: str) -> None:
    name = deploy(dlam, layer_arn, WAITER)
    assert "FunctionError" not in dlam.invoke(FunctionName=name, Payload=b'{"seconds": 1}')
    with dserver.http() as http:
        text = http.get("/metrics").text
    assert f'nimbus_durable_executions_started_total{{function="{name}"}} 1.0' in text
    assert f'nimbus_durable_executions_succeeded_total{{function="{name}"}} 1.0' in text
    assert "nimbus_durable_timer_lateness_seconds_count" in text and "nimbus_durable_executions_suspended" in text


def nimbus(server: NimbusServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nimbus", *args], env={**os.environ, **server.cli_env(),
                                                                       "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=60)


def test_cli_lists_and_shows_a_timeline(dserver: NimbusServer, dlam: Any, layer_arn: str) -> None:
    name = deploy(dlam, layer_arn, WORKFLOW)
    arn = dlam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}",
                      DurableExecutionName="cli-1")["DurableExecutionArn"]
    cid = callback_id(dlam, arn)
    shown = nimbus(dserver, "executions", "show", arn)
    assert shown.returncode == 0, shown.stderr
    assert "RUNNING" in shown.stdout and "CallbackStarted" in shown.stdout and "WaitSucceeded" in shown.stdout
    approved = nimbus(dserver, "executions", "approve", cid, '{"ok": 1}')
    assert approved.returncode == 0, approved.stderr
    assert ended(dlam, arn)["Status"] == "SUCCEEDED"
    listed = nimbus(dserver, "executions", "list", name, "--status", "SUCCEEDED")
    assert listed.returncode == 0 and "cli-1" in listed.stdout and "SUCCEEDED" in listed.stdout


def test_callback_timed_out(dlam: Any, layer_arn: str) -> None:
    name = deploy(dlam, layer_arn, WORKFLOW)
    r = dlam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"callback_timeout": 1}')
    ex = ended(dlam, r["DurableExecutionArn"])
    assert ex["Status"] == "FAILED"
    assert "Callback" in json.dumps(ex["Error"])
    assert "CallbackTimedOut" in [e["EventType"] for e in events(dlam, r["DurableExecutionArn"])]


def test_sync_invoke_blocks_until_the_end(dlam: Any, layer_arn: str) -> None:
    name = deploy(dlam, layer_arn, WAITER)
    r = dlam.invoke(FunctionName=name, Payload=b'{"n": 4, "seconds": 1}')
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    assert json.loads(r["Payload"].read()) == {"n": 5}
    assert dlam.get_durable_execution(DurableExecutionArn=r["DurableExecutionArn"])["Status"] == "SUCCEEDED"


def test_chained_invokes(dlam: Any, layer_arn: str) -> None:
    plain = deploy(dlam, layer_arn, PLAIN, durable=False)
    child = deploy(dlam, layer_arn, WAITER)
    parent = deploy(dlam, layer_arn, CHAINER)
    r = dlam.invoke(FunctionName=parent, Payload=json.dumps({"plain": plain, "durable": child}).encode())
    assert "FunctionError" not in r, r["Payload"].read()
    assert json.loads(r["Payload"].read()) == {"plain": {"doubled": 40}, "durable": {"n": 42}}
    children = dlam.list_durable_executions_by_function(FunctionName=child)["DurableExecutions"]
    assert len(children) == 1 and children[0]["Status"] == "SUCCEEDED"


def test_negative_checks_on_the_wire(dlam: Any, layer_arn: str) -> None:
    """Inside an invocation (the function's own scoped credentials): a replayed ClientToken gets the same answer,
    a stale token the exact error the SDK retries on; outside, same name and payload is idempotent, another
    payload a conflict."""
    name = deploy(dlam, layer_arn, RAW_CHECKPOINTS)
    r = dlam.invoke(FunctionName=name, Payload=b"{}", DurableExecutionName="raw-1")
    assert "FunctionError" not in r
    seen = json.loads(r["Payload"].read())
    assert seen["replayed_same"] is True
    assert seen["stale"] == ["InvalidParameterValueException", "Invalid checkpoint token"]
    assert seen["echo"] == ["STEP", "STARTED"]
    again = dlam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}", DurableExecutionName="raw-1")
    assert again["DurableExecutionArn"] == r["DurableExecutionArn"]
    with pytest.raises(ClientError) as err:
        dlam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"other": 1}', DurableExecutionName="raw-1")
    assert err.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as err:
        dlam.checkpoint_durable_execution(DurableExecutionArn=r["DurableExecutionArn"], CheckpointToken="c3RhbGU=",
                                          Updates=[])
    assert err.value.response["Error"]["Message"].startswith("Invalid checkpoint token")


def test_stop_while_waiting(dlam: Any, layer_arn: str) -> None:
    name = deploy(dlam, layer_arn, WORKFLOW)
    arn = dlam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
    cid = callback_id(dlam, arn)
    invocations = [e["EventType"] for e in events(dlam, arn)].count("InvocationCompleted")
    stopped = dlam.stop_durable_execution(DurableExecutionArn=arn, Error={"ErrorMessage": "no longer needed"})
    assert stopped["StopTimestamp"]
    ex = dlam.get_durable_execution(DurableExecutionArn=arn)
    assert ex["Status"] == "STOPPED" and ex["Error"]["ErrorMessage"] == "no longer needed"
    with pytest.raises(ClientError) as err:
        dlam.send_durable_execution_callback_success(CallbackId=cid, Result=b"late")
    assert err.value.response["Error"]["Code"] == "CallbackTimeoutException"
    time.sleep(1.0)
    history = [e["EventType"] for e in events(dlam, arn)]
    assert history.count("InvocationCompleted") == invocations and history[-1] == "ExecutionStopped"
    with pytest.raises(ClientError) as err:
        dlam.get_durable_execution(DurableExecutionArn=arn.rsplit("/", 1)[0] + "/0" * 1)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_cloud_test_runner(dserver: NimbusServer, dlam: Any, layer_arn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_durable_execution_sdk_python.execution import InvocationStatus
    from aws_durable_execution_sdk_python_testing.runner import DurableFunctionCloudTestRunner

    name = deploy(dlam, layer_arn, COMPOSITE)
    key, secret = dserver.credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    runner = DurableFunctionCloudTestRunner(function_name=name, region="us-east-1", lambda_endpoint=dserver.endpoint,
                                            poll_interval=0.2)
    result = runner.run(input={"n": 2}, timeout=60)  # type: ignore[arg-type]
    assert result.status is InvocationStatus.SUCCEEDED
    assert json.loads(result.result or "null") == COMPOSITE_RESULT
    assert result.get_step("double").result == "4"


COMPOSITE_RESULT = {"double": 4, "par": [1, 2], "map": [10, 20], "child": "inner"}


def test_same_histories_as_the_reference_emulator(dserver: NimbusServer, dlam: Any, layer_arn: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_durable_execution_sdk_python_testing.runner import DurableFunctionCloudTestRunner

    key, secret = dserver.credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for handler, payload in (("COMPOSITE", {"n": 3}), ("WAITER", {"n": 1, "seconds": 1})):
        run = subprocess.run([sys.executable, "-m", "tests.durable.reference", handler, json.dumps(payload)],
                             capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2], check=True)
        reference = json.loads(run.stdout.strip().splitlines()[-1])
        name = deploy(dlam, layer_arn, getattr(handlers, handler))
        cloud = DurableFunctionCloudTestRunner(function_name=name, region="us-east-1",
                                               lambda_endpoint=dserver.endpoint, poll_interval=0.2)
        ours = cloud.run(input=payload, timeout=60)  # type: ignore[arg-type]
        assert ours.status.value == reference["status"]
        assert json.loads(ours.result or "null") == json.loads(reference["result"] or "null")
        assert json.loads(json.dumps(shape(ours.operations))) == reference["operations"]


def test_kill_9_while_executions_wait(tmp_path: Path, layer_arn: str, dlam: Any) -> None:
    """Executions waiting on timers survive a kill -9 of the server; each finishes once, its steps not re-run."""
    data = tmp_path / "data"
    srv = NimbusServer(data).start()
    try:
        lam = srv.client("lambda")
        content = build_layer(tmp_path.parent / "durable-layer-kill")
        layer = lam.publish_layer_version(LayerName="sdk", Content={"ZipFile": content})["LayerVersionArn"]
        name = deploy(lam, layer, WAITER)
        arns = [lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": i, "seconds": 3})
                           .encode())["DurableExecutionArn"] for i in range(5)]
        for arn in arns:  # all suspended in their wait
            wait_until(lambda arn=arn: any(e["EventType"] == "WaitStarted" for e in events(lam, arn)))
        srv.stop(signal.SIGKILL)
        time.sleep(3.5)  # the timers come due while the server is down
        srv = NimbusServer(data, port=srv.port).start()
        lam = srv.client("lambda")
        for i, arn in enumerate(arns):
            ex = ended(lam, arn)
            assert ex["Status"] == "SUCCEEDED", ex
            assert json.loads(ex["Result"]) == {"n": i + 1}
            history = events(lam, arn)
            assert [e.get("Name") for e in history if e["EventType"] == "StepSucceeded"] == ["before", "after"]
            assert [e["EventType"] for e in history].count("WaitSucceeded") == 1
    finally:
        srv.stop()
