"""InvokeWithResponseStream end to end: boto3's `invoke_with_response_stream` against a real server, Python
handlers that stream by returning a generator."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

SOURCE = '''
import json, time

def handler(event, context):
    action = event.get("action")
    if action == "plain":
        return {"hello": "world"}
    if action == "bytes":
        return b"raw bytes"
    return stream(event, action)

def stream(event, action):
    yield "first:%r\\n" % time.time()
    if action == "fail":
        raise ValueError("boom after one chunk")
    if action == "forever":
        time.sleep(60)
    time.sleep(event.get("pause", 2.0))
    yield b"second:%r\\n" % time.time()
    print("streamed two chunks")
    yield "third"
'''


def create(lam: Any, **config: Any) -> str:
    name = f"stream-{uuid.uuid4().hex[:10]}"
    lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})}, **config,
    )
    return name


@pytest.fixture(scope="module")
def fn(lam: Any) -> str:
    return create(lam)


def stream(lam: Any, name: str, event: Any, **kw: Any) -> tuple[dict[str, Any], list[tuple[float, dict[str, Any]]]]:
    out = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(event), **kw)
    events = [(time.time(), e) for e in out["EventStream"]]
    return out, events


def chunks(events: list[tuple[float, dict[str, Any]]]) -> list[bytes]:
    return [e["PayloadChunk"]["Payload"] for _, e in events if "PayloadChunk" in e]


def complete(events: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    last = events[-1][1]
    assert "InvokeComplete" in last, events
    return last["InvokeComplete"]  # type: ignore[no-any-return]


def test_generator_chunks_arrive_as_they_are_produced(lam: Any, fn: str) -> None:
    out, events = stream(lam, fn, {"pause": 2.0})
    assert out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    assert out["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    got = chunks(events)
    assert len(got) == 3 and got[0].startswith(b"first:") and got[1].startswith(b"second:") and got[2] == b"third"
    assert complete(events) == {}
    # The first chunk reached this client before the handler even produced the second one: nothing on the
    # way (sandbox, invoker, HTTP) buffered it. Both clocks are this host's.
    received_first = next(t for t, e in events if "PayloadChunk" in e)
    produced_second = float(got[1].split(b":", 1)[1])
    assert received_first < produced_second


def test_a_plain_return_value_is_one_chunk(lam: Any, fn: str) -> None:
    _, events = stream(lam, fn, {"action": "plain"})
    assert chunks(events) == [b'{"hello": "world"}']
    _, events = stream(lam, fn, {"action": "bytes"})
    assert chunks(events) == [b"raw bytes"]
    assert complete(events) == {}


def test_error_mid_stream_ends_with_invoke_complete_error(lam: Any, fn: str) -> None:
    out, events = stream(lam, fn, {"action": "fail"}, LogType="Tail")
    assert out["StatusCode"] == 200
    assert len(chunks(events)) == 1
    done = complete(events)
    assert done["ErrorCode"] == "ValueError"
    details = json.loads(done["ErrorDetails"])
    assert details["errorType"] == "ValueError" and details["errorMessage"] == "boom after one chunk"
    log = base64.b64decode(done["LogResult"]).decode()
    assert "[ERROR] ValueError: boom after one chunk" in log and "REPORT RequestId:" in log


def test_log_tail_on_success(lam: Any, fn: str) -> None:
    _, events = stream(lam, fn, {"pause": 0}, LogType="Tail")
    log = base64.b64decode(complete(events)["LogResult"]).decode()
    assert "streamed two chunks" in log and "START RequestId:" in log


def test_timeout_mid_stream(lam: Any) -> None:
    name = create(lam, Timeout=2)
    _, events = stream(lam, name, {"action": "forever"})
    assert len(chunks(events)) == 1
    done = complete(events)
    assert done["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in done["ErrorDetails"]


def test_dry_run_and_errors_before_running(lam: Any, fn: str) -> None:
    out = lam.invoke_with_response_stream(FunctionName=fn, InvocationType="DryRun")
    assert out["StatusCode"] == 204
    with pytest.raises(ClientError) as err:
        lam.invoke_with_response_stream(FunctionName=f"missing-{uuid.uuid4().hex[:8]}", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        lam.invoke_with_response_stream(FunctionName=fn, Payload=b"{not json")
    assert err.value.response["Error"]["Code"] == "InvalidRequestContentException"
    with pytest.raises(ClientError) as err:
        lam.invoke_with_response_stream(FunctionName=fn, InvocationType="Event", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_buffered_invoke_of_a_streaming_handler_joins_its_chunks(lam: Any, fn: str) -> None:
    out = lam.invoke(FunctionName=fn, Payload=json.dumps({"pause": 0}))
    body = out["Payload"].read()
    assert "FunctionError" not in out
    assert body.startswith(b"first:") and body.endswith(b"third") and b"second:" in body


def test_versions_and_qualifiers(lam: Any, fn: str) -> None:
    version = lam.publish_version(FunctionName=fn)["Version"]
    out, events = stream(lam, fn, {"action": "plain"}, Qualifier=version)
    assert out["ExecutedVersion"] == version
    assert chunks(events) == [b'{"hello": "world"}']


def test_raw_event_stream_over_http(server: NimbusServer, fn: str) -> None:
    with server.http() as http:
        resp = http.post(f"/2021-11-15/functions/{fn}/response-streaming-invocations",
                         content=json.dumps({"action": "plain"}))
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert resp.headers["x-amz-executed-version"] == "$LATEST"
    assert b":event-type" in resp.content and b"InvokeComplete" in resp.content


def test_client_going_away_mid_stream_leaves_the_function_usable(server: NimbusServer, lam: Any, fn: str) -> None:
    with server.http() as http, http.stream(
        "POST", f"/2021-11-15/functions/{fn}/response-streaming-invocations", content=json.dumps({"pause": 1.0})
    ) as resp:
        assert resp.status_code == 200
        next(resp.iter_raw())  # the first event, then hang up while the handler sleeps
    _, events = stream(lam, fn, {"pause": 0})
    assert len(chunks(events)) == 3 and complete(events) == {}


def test_response_size_limit(tmp_path: Any) -> None:
    srv = NimbusServer(tmp_path / "data", env={"NIMBUS_STREAM_RESPONSE_MAX_BYTES": "1000"}).start()
    try:
        lam = srv.client("lambda")
        source = "def handler(event, context):\n    yield b'a' * 600\n    yield b'b' * 600\n    yield b'c'\n"
        name = f"limit-{uuid.uuid4().hex[:8]}"
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"app.py": source})})
        _, events = stream(lam, name, {})
        assert chunks(events) == [b"a" * 600]
        done = complete(events)
        assert done["ErrorCode"] == "Function.ResponseSizeTooLarge"
        assert "(1000 bytes)" in json.loads(done["ErrorDetails"])["errorMessage"]
    finally:
        srv.stop()
