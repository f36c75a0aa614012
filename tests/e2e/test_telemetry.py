"""The Telemetry API end to end: an extension written as AWS's Python samples are (urllib for the Extensions
API, http.server listening on sandbox.localdomain) subscribes from a layer and receives the platform events
and the function's output of its environment; SHUTDOWN tells it why the environment ends (`timeout`).
Run for a custom runtime (bash bootstrap) and a managed Python function."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from typing import Any

import pytest

from nimbus.sandbox.runtimes import available_runtimes
from tests.conftest import ROLE, RUNTIME, NimbusServer
from tests.e2e.test_custom_runtime import zip_files

pytestmark = [
    pytest.mark.skipif("provided.al2023" not in available_runtimes() or RUNTIME not in available_runtimes(),
                       reason="no Python interpreter to run the launcher and the extension"),
    # sandbox.localdomain resolves in a sandbox's /etc/hosts, and delivery enters its network namespace.
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("bwrap"), reason="needs root and bubblewrap"),
]

EXTENSION = r'''#!/usr/bin/python3
import json, os, sys, threading, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

NAME = os.path.basename(sys.argv[0])
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"]
OUT = "/tmp/telemetry.jsonl"
LOCK = threading.Lock()
PATH = "/2020-08-15/logs" if os.environ.get("SUBSCRIBE_TO") == "logs" else "/2022-07-01/telemetry"


class Listener(BaseHTTPRequestHandler):
    def do_POST(self):
        batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with LOCK, open(OUT, "a") as f:
            for event in batch:
                f.write(json.dumps(event) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("sandbox.localdomain", 4243), Listener)
threading.Thread(target=server.serve_forever, daemon=True).start()


def call(path, body=None, headers=None, method="GET"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, headers=headers or {}, method=method)
    with urllib.request.urlopen(req) as r:
        return r.headers, r.read()


headers, _ = call("/2020-01-01/extension/register", {"events": ["INVOKE", "SHUTDOWN"]},
                  {"Lambda-Extension-Name": NAME}, "POST")
ext_id = headers["Lambda-Extension-Identifier"]
sub = {"schemaVersion": "2022-12-13", "types": ["platform", "function", "extension"],
       "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
       "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/telemetry"}}
for bad in ({**sub, "buffering": {"timeoutMs": 10}}, {**sub, "types": ["everything"]},
            {**sub, "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:9001/"}}):
    try:
        call(PATH, bad, {"Lambda-Extension-Identifier": ext_id}, "PUT")
        print(f"[{NAME}] bad subscription accepted", flush=True)
    except urllib.error.HTTPError as e:
        with open("/tmp/refusals.jsonl", "a") as f:
            f.write(json.dumps({"status": e.code, "body": json.loads(e.read())}) + "\n")
if "logs" in PATH:
    del sub["schemaVersion"]
_, answer = call(PATH, sub, {"Lambda-Extension-Identifier": ext_id}, "PUT")
print(f"[{NAME}] subscribed: {answer.decode()}", flush=True)
while True:
    _, body = call("/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    event = json.loads(body)
    if event["eventType"] == "SHUTDOWN":
        with LOCK:
            seen = [json.loads(line) for line in open(OUT)] if os.path.exists(OUT) else []
        statuses = [e["record"]["status"] for e in seen if e["type"] == "platform.runtimeDone"]
        print(f"[{NAME}] SHUTDOWN {event['shutdownReason']} {json.dumps(statuses)}", flush=True)
        sys.exit(0)
'''

BOOTSTRAP = r'''#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
echo "bootstrap init"
HEADERS="$(mktemp)"
while true; do
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id: "$HEADERS" | cut -d' ' -f2 | tr -d '\r\n')
  echo "handling $ID"
  echo '{"level":"INFO","message":"structured"}'
  case "$EVENT" in
    *sleep*) sleep 30 ;;
    *crash*) exit 3 ;;
    *read*) T=/tmp/telemetry.jsonl  # wait for the previous invocation's report and this one's start
            for _ in $(seq 100); do grep -qs platform.report $T && grep -qs "$ID" $T && break; sleep 0.05; done
            cat /tmp/telemetry.jsonl /tmp/refusals.jsonl > /tmp/out
            curl -sS -X POST "$API/invocation/$ID/response" --data-binary @/tmp/out >/dev/null ;;
    *) curl -sS -X POST "$API/invocation/$ID/response" -d '{"ok":true}' >/dev/null ;;
  esac
done
'''

HANDLER = '''
import json, os, sys, time
print("python init")


def handler(event, context):
    print("handling", context.aws_request_id)
    print(json.dumps({"level": "INFO", "message": "structured"}))
    if event.get("sleep"):
        time.sleep(30)
    if event.get("crash"):
        sys.stdout.flush()
        os._exit(3)
    if event.get("read"):
        for _ in range(100):  # until the previous invocation's report and this one's start have arrived
            seen = open("/tmp/telemetry.jsonl").read() if os.path.exists("/tmp/telemetry.jsonl") else ""
            if "platform.report" in seen and context.aws_request_id in seen:
                break
            time.sleep(0.05)
        return open("/tmp/telemetry.jsonl").read() + open("/tmp/refusals.jsonl").read()
    return {"ok": True}
'''


def make_function(lam: Any, runtime: str, environment: dict[str, str] | None = None) -> str:
    layer = lam.publish_layer_version(
        LayerName=f"tel-{uuid.uuid4().hex[:8]}",
        Content={"ZipFile": zip_files({"extensions/telemetry-ext": EXTENSION},
                                      executable=("extensions/telemetry-ext",))})
    name = f"tel-{uuid.uuid4().hex[:8]}"
    if runtime == "provided.al2023":
        code, handler = zip_files({"bootstrap": BOOTSTRAP}), "function.handler"
    else:
        code, handler = zip_files({"app.py": HANDLER}), "app.handler"
    lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler, Timeout=2, MemorySize=256,
                        Code={"ZipFile": code}, Layers=[layer["LayerVersionArn"]],
                        Environment={"Variables": environment or {}})
    return name


def invoke(lam: Any, name: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any], bytes]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(payload))
    return r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"], r, r["Payload"].read()


def wait_for_log(server: NimbusServer, name: str, needle: str) -> str:
    logs = server.client("logs")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        found = [e["message"].rstrip("\n") for e in events if needle in e["message"]]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} in the logs of {name}")


@pytest.mark.parametrize("runtime", ["provided.al2023", RUNTIME])
def test_telemetry_subscriber_gets_platform_and_function_events(server: NimbusServer, lam: Any,
                                                                runtime: str) -> None:
    name = make_function(lam, runtime)
    first, r, body = invoke(lam, name, {})
    assert "FunctionError" not in r, body
    second, r, body = invoke(lam, name, {"read": True})
    assert "FunctionError" not in r, body
    text = json.loads(body) if runtime != "provided.al2023" else body.decode()
    lines = [json.loads(line) for line in text.splitlines() if line]
    refusals = [e for e in lines if "status" in e]
    events = [e for e in lines if "type" in e]
    # Bad subscriptions are refused with AWS's 400 ValidationError.
    assert [e["status"] for e in refusals] == [400, 400, 400], refusals
    assert all(e["body"]["errorType"] == "ValidationError" for e in refusals), refusals
    assert "timeoutMs" in refusals[0]["body"]["errorMessage"]
    for event in events:
        assert event["time"].endswith("Z") and "T" in event["time"], event
    types = [e["type"] for e in events]
    # INIT's events were kept for the subscriber (it subscribed during INIT).
    assert types[0] == "platform.initStart", types
    init_start = events[0]["record"]
    assert init_start["initializationType"] == "on-demand" and init_start["phase"] == "init"
    assert init_start["functionName"] == name and init_start["functionVersion"] == "$LATEST"
    sub = next(e["record"] for e in events if e["type"] == "platform.telemetrySubscription")
    assert sub == {"name": "telemetry-ext", "state": "Subscribed", "types": ["extension", "function", "platform"]}
    # The extension's own output is an `extension` record (and no `function` one).
    assert "[telemetry-ext] subscribed: OK" in [e["record"] for e in events if e["type"] == "extension"], events
    assert not any("subscribed" in str(e["record"]) for e in events if e["type"] == "function")
    ext = next(e["record"] for e in events if e["type"] == "platform.extension")
    assert ext == {"name": "telemetry-ext", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}
    init_report = next(e["record"] for e in events if e["type"] == "platform.initReport")
    assert init_report["status"] == "success" and init_report["metrics"]["durationMs"] > 0
    assert types.index("platform.initRuntimeDone") < types.index("platform.initReport") < types.index(
        "platform.start")
    # The first invocation: start, its output, runtimeDone, report, in that order, with its request id.
    starts = [e["record"] for e in events if e["type"] == "platform.start"]
    assert [s["requestId"] for s in starts] == [first, second]
    assert starts[0]["version"] == "$LATEST"
    done = next(e["record"] for e in events if e["type"] == "platform.runtimeDone")
    assert done["requestId"] == first and done["status"] == "success", done
    assert done["metrics"]["durationMs"] > 0 and done["metrics"]["producedBytes"] > 0
    report = next(e["record"] for e in events if e["type"] == "platform.report")
    assert report["requestId"] == first and report["status"] == "success"
    metrics = report["metrics"]
    assert metrics["memorySizeMB"] == 256 and metrics["billedDurationMs"] >= 1 and metrics["maxMemoryUsedMB"] > 0
    assert metrics["initDurationMs"] > 0
    i_start = types.index("platform.start")
    i_done = types.index("platform.runtimeDone")
    between = [e["record"] for e in events[i_start:i_done] if e["type"] == "function"]
    assert f"handling {first}" in between, events[i_start:i_done]
    assert {"level": "INFO", "message": "structured"} in between  # JSON lines are objects
    init_lines = [e["record"] for e in events[:i_start] if e["type"] == "function"]
    assert any("init" in str(line) for line in init_lines), init_lines


@pytest.mark.parametrize("runtime", ["provided.al2023", RUNTIME])
def test_shutdown_reason_timeout(server: NimbusServer, lam: Any, runtime: str) -> None:
    name = make_function(lam, runtime)
    _, r, body = invoke(lam, name, {"sleep": True})
    assert r["FunctionError"] == "Unhandled" and json.loads(body)["errorType"] == "Sandbox.Timedout", body
    line = wait_for_log(server, name, "[telemetry-ext] SHUTDOWN")
    reason, statuses = line.split(" ", 3)[2:]
    assert reason == "timeout", line
    assert json.loads(statuses) == ["timeout"], line  # runtimeDone of the timed-out invocation came first
    # The next invocation gets a fresh environment.
    _, r, body = invoke(lam, name, {})
    assert "FunctionError" not in r, body


@pytest.mark.parametrize("runtime", ["provided.al2023", RUNTIME])
def test_shutdown_reason_failure_after_a_runtime_crash(server: NimbusServer, lam: Any, runtime: str) -> None:
    name = make_function(lam, runtime)
    rid, r, body = invoke(lam, name, {"crash": True})
    error = json.loads(body)
    assert r["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError", body
    assert error["errorMessage"] == f"RequestId: {rid} Error: Runtime exited with error: exit status 3", error
    line = wait_for_log(server, name, "[telemetry-ext] SHUTDOWN")
    reason, statuses = line.split(" ", 3)[2:]
    assert reason == "failure", line
    assert json.loads(statuses) == ["failure"], line
    wait_for_log(server, name, f"handling {rid}")  # output written just before the crash is kept


def test_logs_api_subscriber_gets_the_older_shapes(lam: Any) -> None:
    name = make_function(lam, "provided.al2023", {"SUBSCRIBE_TO": "logs"})
    first, r, body = invoke(lam, name, {})
    assert "FunctionError" not in r, body
    _, r, body = invoke(lam, name, {"read": True})
    events = [e for e in (json.loads(line) for line in body.decode().splitlines() if line) if "type" in e]
    types = [e["type"] for e in events]
    assert not any(t.startswith("platform.init") for t in types), types  # Telemetry API only
    assert "platform.extension" in types and "platform.logsDropped" not in types, types
    sub = next(e["record"] for e in events if e["type"] == "platform.logsSubscription")
    assert sub == {"name": "telemetry-ext", "state": "Subscribed", "types": ["extension", "function", "platform"]}
    assert next(e["record"] for e in events if e["type"] == "platform.start") == {
        "requestId": first, "version": "$LATEST"}
    assert next(e["record"] for e in events if e["type"] == "platform.end") == {"requestId": first}
    report = next(e["record"] for e in events if e["type"] == "platform.report")
    assert report["requestId"] == first and set(report) == {"requestId", "metrics"}
    assert report["metrics"]["memorySizeMB"] == 256
    assert f"handling {first}" in [e["record"] for e in events if e["type"] == "function"]


def test_delivery_into_a_loopback_only_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    """NIMBUS_NETWORK=none: the sandbox's namespace is its own (made by bubblewrap), not a prepared one."""
    srv = NimbusServer(tmp_path_factory.mktemp("nimbus-none") / "data", env={"NIMBUS_NETWORK": "none"}).start()
    try:
        lam = srv.client("lambda")
        name = make_function(lam, "provided.al2023")
        first, r, body = invoke(lam, name, {})
        assert "FunctionError" not in r, body
        _, r, body = invoke(lam, name, {"read": True})
        events = [json.loads(line) for line in body.decode().splitlines() if line]
        done = [e["record"] for e in events if e.get("type") == "platform.runtimeDone"]
        assert [d["requestId"] for d in done] == [first], events
    finally:
        srv.stop()
