"""The Invoke API end to end: a real server, boto3, real execution environments."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

PROBE = '''
import json, os, time, uuid
ENV_ID = uuid.uuid4().hex
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "raise":
        raise KeyError(event.get("key", "missing"))
    if action == "exit":
        os._exit(3)
    if action == "big":
        return "x" * event["size"]
    if action == "print":
        print(event["text"])
    return {
        "env_id": context.log_stream_name,  # one per environment (INIT's ENV_ID is shared by forks of a zygote)
        "count": COUNT,
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "env": {k: v for k, v in os.environ.items()},
    }
'''


def create(lam: Any, source: str = PROBE, **config: Any) -> str:
    name = config.pop("FunctionName", f"fn-{uuid.uuid4().hex[:10]}")
    lam.create_function(
        FunctionName=name,
        Runtime=config.pop("Runtime", RUNTIME),
        Handler=config.pop("Handler", "app.handler"),
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": source})},
        **config,
    )
    return name


def call(lam: Any, name: str, event: Any = None, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event if event is not None else {}), **kwargs)
    return out, json.loads(out["Payload"].read() or b"null")


def test_request_response_returns_handler_json_and_context(lam: Any) -> None:
    name = create(lam, MemorySize=256, Environment={"Variables": {"GREETING": "hi"}})
    out, body = call(lam, name, {"a": 1})
    assert out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in out
    assert body["event"] == {"a": 1}
    assert body["function_name"] == name
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert str(body["memory_limit_in_mb"]) == "256"
    assert body["log_group_name"] == f"/aws/lambda/{name}"
    assert "[$LATEST]" in body["log_stream_name"]
    assert 0 < body["remaining_ms"] <= 3000
    uuid.UUID(body["aws_request_id"])
    env = body["env"]
    assert env["GREETING"] == "hi"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert env["LAMBDA_TASK_ROOT"]
    assert "NIMBUS_IDLE_TIMEOUT" not in env  # nothing of the server's environment leaks in


def test_empty_payload_is_an_empty_object(lam: Any) -> None:
    name = create(lam)
    out = lam.invoke(FunctionName=name)
    assert json.loads(out["Payload"].read())["event"] == {}


def test_warm_environment_is_reused_for_sequential_invokes(lam: Any) -> None:
    name = create(lam)
    bodies = [call(lam, name)[1] for _ in range(3)]
    assert len({b["env_id"] for b in bodies}) == 1
    assert [b["count"] for b in bodies] == [1, 2, 3]


def test_concurrent_invokes_get_separate_environments(lam: Any) -> None:
    name = create(lam)
    results: list[dict[str, Any]] = []

    def worker() -> None:
        results.append(call(lam, name, {"action": "sleep", "seconds": 1.0})[1])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["env_id"] for r in results}) == 3


def test_update_retires_old_environments(lam: Any) -> None:
    name = create(lam)
    first = call(lam, name)[1]
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"V2": "2"}})
    second = call(lam, name)[1]
    assert second["env_id"] != first["env_id"]
    assert second["env"]["V2"] == "2"
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v3'\n"}))
    assert call(lam, name)[1] == "v3"


def test_event_and_dry_run(lam: Any, server: NimbusServer) -> None:
    name = create(lam)
    out = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert out["StatusCode"] == 204
    marker = uuid.uuid4().hex
    out = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps({"action": "print", "text": marker})
    )
    assert out["StatusCode"] == 202
    logs = server.client("logs")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except ClientError:
            events = []
        if sum(marker in e["message"] for e in events) == 1 and any(
            e["message"].startswith("REPORT") for e in events
        ):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the Event invocation did not run")


def test_tail_log_has_platform_lines_and_output(lam: Any) -> None:
    name = create(lam)
    out, _ = call(lam, name, {"action": "print", "text": "hello from the handler"}, LogType="Tail")
    tail = base64.b64decode(out["LogResult"]).decode()
    rid = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert f"START RequestId: {rid} Version: $LATEST" in tail
    assert "hello from the handler" in tail
    assert f"END RequestId: {rid}" in tail
    assert f"REPORT RequestId: {rid}\tDuration: " in tail
    assert "\tBilled Duration: " in tail and "\tMemory Size: 128 MB\tMax Memory Used: " in tail
    assert "Init Duration: " in tail  # first invoke of a new environment
    out, _ = call(lam, name, LogType="Tail")
    assert "Init Duration" not in base64.b64decode(out["LogResult"]).decode()


def test_tail_is_at_most_4kb(lam: Any) -> None:
    name = create(lam)
    out, _ = call(lam, name, {"action": "print", "text": "y" * 20000}, LogType="Tail")
    assert len(base64.b64decode(out["LogResult"])) <= 4096


def test_handler_exception_is_a_function_error(lam: Any) -> None:
    name = create(lam)
    out, body = call(lam, name, {"action": "raise", "key": "action"})
    assert out["StatusCode"] == 200
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "KeyError"
    assert body["errorMessage"] == "'action'"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    uuid.UUID(body["requestId"])


@pytest.mark.parametrize(
    ("files", "handler", "error_type"),
    [
        ({"app.py": "import nonexistent_module\n"}, "app.handler", "Runtime.ImportModuleError"),
        ({"app.py": "def handler(:\n"}, "app.handler", "Runtime.UserCodeSyntaxError"),
        ({"app.py": "x = 1\n"}, "app.handler", "Runtime.HandlerNotFound"),
        ({"app.py": "x = 1\n"}, "nomodule.handler", "Runtime.ImportModuleError"),
    ],
)
def test_init_errors_have_aws_error_types(lam: Any, files: dict[str, str], handler: str, error_type: str) -> None:
    name = f"fn-{uuid.uuid4().hex[:10]}"
    lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler=handler, Role=ROLE, Code={"ZipFile": make_zip(files)}
    )
    out, body = call(lam, name)
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == error_type


def test_timeout_kills_the_environment(lam: Any) -> None:
    name = create(lam, Timeout=1)
    out, body = call(lam, name, {"action": "sleep", "seconds": 30}, LogType="Tail")
    rid = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert out["FunctionError"] == "Unhandled"
    assert body == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {rid} Error: Task timed out after 1.00 seconds",
    }
    out, body = call(lam, name)
    assert "FunctionError" not in out and body["count"] == 1  # a fresh environment


def test_crash_and_out_of_memory_are_reported_and_replaced(lam: Any) -> None:
    name = create(lam)
    out, body = call(lam, name, {"action": "exit"})
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in body["errorMessage"]
    out, body = call(lam, name)
    assert body["count"] == 1


def test_request_payload_over_6mb_is_413(lam: Any) -> None:
    name = create(lam)
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=name, Payload=json.dumps({"x": "a" * (6 * 1024 * 1024)}))
    assert info.value.response["Error"]["Code"] == "RequestTooLargeException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_response_over_6mb_is_a_function_error(lam: Any) -> None:
    name = create(lam, MemorySize=512)
    out, body = call(lam, name, {"action": "big", "size": 7 * 1024 * 1024})
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"


def test_bad_json_payload_is_rejected(lam: Any) -> None:
    name = create(lam)
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    assert info.value.response["Error"]["Code"] == "InvalidRequestContentException"


def test_unknown_function_and_qualifier_are_404(lam: Any) -> None:
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName="does-not-exist")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    name = create(lam)
    for qualifier in ("7", "nope"):
        with pytest.raises(ClientError) as info:
            lam.invoke(FunctionName=name, Qualifier=qualifier)
        assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_qualifier_routing_versions_aliases_and_weights(lam: Any) -> None:
    name = create(lam, source="def handler(e, c):\n    return 'one'\n")
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'two'\n"}))
    v2 = lam.publish_version(FunctionName=name)["Version"]
    assert call(lam, name, Qualifier=v1)[1] == "one"
    out, body = call(lam, name, Qualifier=v2)
    assert body == "two" and out["ExecutedVersion"] == v2
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    out, body = call(lam, name, Qualifier="live")
    assert body == "one" and out["ExecutedVersion"] == v1
    assert call(lam, f"{name}:live")[1] == "one"  # qualifier inside the name
    lam.update_alias(
        FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}}
    )
    seen = {call(lam, name, Qualifier="live")[0]["ExecutedVersion"] for _ in range(40)}
    assert seen == {v1, v2}


def _parallel(n: int, fn: Callable[[], Any]) -> list[Any]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(fn())
        except ClientError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_reserved_concurrency_throttles(lam: Any) -> None:
    name = create(lam)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    results = _parallel(3, lambda: call(lam, name, {"action": "sleep", "seconds": 1.5}))
    errors = [r for r in results if isinstance(r, ClientError)]
    assert len(errors) == 2
    for e in errors:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert e.response["Error"]["Code"] == "TooManyRequestsException"
        assert e.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as info:
        call(lam, name)
    assert info.value.response["Error"]["Code"] == "TooManyRequestsException"


def test_account_concurrency_limit_throttles(tmp_path: Any) -> None:
    srv = NimbusServer(
        tmp_path / "data",
        env={"NIMBUS_ACCOUNT_CONCURRENCY": "2", "NIMBUS_MIN_UNRESERVED_CONCURRENCY": "1"},
    ).start()
    try:
        lam = srv.client()
        name = create(lam)
        results = _parallel(3, lambda: call(lam, name, {"action": "sleep", "seconds": 1.5}))
        errors = [r for r in results if isinstance(r, ClientError)]
        assert len(errors) == 1
        assert errors[0].response["Reason"] == "ConcurrentInvocationLimitExceeded"
    finally:
        srv.stop()


def test_idle_environments_are_shut_down(tmp_path: Any) -> None:
    import httpx

    srv = NimbusServer(tmp_path / "data", env={"NIMBUS_IDLE_TIMEOUT": "1"}).start()
    try:
        lam = srv.client()
        name = create(lam)
        call(lam, name)
        health = lambda: httpx.get(f"{srv.endpoint}/nimbus/v1/health").json()["environments"]  # noqa: E731
        assert health() == 1
        deadline = time.monotonic() + 15
        while health() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health() == 0
        assert call(lam, name)[1]["count"] == 1  # a new environment starts on demand
    finally:
        srv.stop()


def test_event_is_accepted_even_when_throttled(lam: Any) -> None:
    name = create(lam)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert out["StatusCode"] == 202  # AWS queues it; with reserved 0 it goes to the failure destination


def test_every_invoke_answer_has_a_request_id(server: NimbusServer) -> None:
    with server.http() as http:
        missing = http.post("/2015-03-31/functions/nope/invocations", content=b"{}")
    assert missing.status_code == 404 and missing.headers["x-amzn-requestid"]
    lam = server.client()
    name = create(lam)
    out = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert out["ResponseMetadata"]["RequestId"]


def test_bad_invocation_type_is_a_validation_error(server: NimbusServer) -> None:
    lam = server.client()
    name = create(lam)
    with server.http() as http:
        r = http.post(
            f"/2015-03-31/functions/{name}/invocations",
            content=b"{}",
            headers={"X-Amz-Invocation-Type": "Sometimes"},
        )
    assert r.status_code == 400 and r.headers["x-amzn-errortype"] == "ValidationException"


def test_timeout_writes_lambdas_log_line(lam: Any) -> None:
    name = create(lam, Timeout=1)
    out, _ = call(lam, name, {"action": "sleep", "seconds": 10}, LogType="Tail")
    rid = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    tail = base64.b64decode(out["LogResult"]).decode()
    assert f"{rid} Task timed out after 1.00 seconds" in tail
    assert "Status: timeout" in tail


def test_output_before_a_timeout_is_kept(lam: Any) -> None:
    source = (
        "import logging, sys, time\n"
        "def handler(event, context):\n"
        "    print('printed before the timeout')\n"
        "    sys.stderr.write('partial line on stderr')\n"
        "    logging.getLogger().warning('logged before the timeout')\n"
        "    time.sleep(30)\n"
    )
    name = create(lam, source=source, Timeout=1)
    out, body = call(lam, name, LogType="Tail")
    assert body["errorType"] == "Sandbox.Timedout"
    tail = base64.b64decode(out["LogResult"]).decode()
    assert "printed before the timeout" in tail
    assert "partial line on stderr" in tail
    assert "logged before the timeout" in tail
    assert tail.index("printed before the timeout") < tail.index("Task timed out after 1.00 seconds")


@pytest.mark.parametrize(
    "source",
    [
        "import sys\ndef handler(event, context):\n    print('said before exiting')\n    sys.exit(2)\n",
        "import sys\nprint('said before exiting')\nsys.exit(2)\ndef handler(event, context):\n    return 1\n",
    ],
    ids=["in-handler", "in-init"],
)
def test_output_before_sys_exit_is_kept(lam: Any, source: str) -> None:
    name = create(lam, source=source)
    out, body = call(lam, name, LogType="Tail")
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 2" in body["errorMessage"]
    logs = base64.b64decode(out["LogResult"]).decode()
    deadline = time.monotonic() + 10
    while "said before exiting" not in logs and time.monotonic() < deadline:  # INIT output goes to the stream
        time.sleep(0.2)
        logs += "".join(
            e["message"]
            for e in _logs_client(lam).filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        )
    assert "said before exiting" in logs


def _logs_client(lam: Any) -> Any:
    import boto3

    return boto3.client(
        "logs", endpoint_url=lam.meta.endpoint_url, region_name="us-east-1",
        aws_access_key_id=lam._request_signer._credentials.access_key,
        aws_secret_access_key=lam._request_signer._credentials.secret_key,
    )
