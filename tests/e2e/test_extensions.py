"""The Extensions API end to end: a bash extension shipped in a layer (/opt/extensions), started before the
runtime, registered, logging every INVOKE and SHUTDOWN event into the function's logs."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest

from nimbus.sandbox.runtimes import available_runtimes
from tests.conftest import ROLE, NimbusServer
from tests.e2e.test_custom_runtime import BASH_BOOTSTRAP, zip_files

pytestmark = pytest.mark.skipif(
    "provided.al2023" not in available_runtimes(), reason="no Python interpreter to run the launcher"
)

EXTENSION = r'''#!/bin/bash
set -eu
NAME=$(basename "$0")
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
H=$(mktemp)
REG=$(curl -sS -D "$H" -X POST "$API/register" -H "Lambda-Extension-Name: $NAME" -d '{"events":["INVOKE","SHUTDOWN"]}')
ID=$(grep -Fi Lambda-Extension-Identifier "$H" | cut -d' ' -f2 | tr -d '\r\n')
echo "[$NAME] registered $REG"
while true; do
  EVENT=$(curl -sS "$API/event/next" -H "Lambda-Extension-Identifier: $ID")
  echo "[$NAME] event $EVENT"
  case "$EVENT" in *SHUTDOWN*) exit 0 ;; esac
done
'''


def publish_extension_layer(lam: Any) -> str:
    code = zip_files({"extensions/event-logger": EXTENSION}, executable=("extensions/event-logger",))
    layer = lam.publish_layer_version(LayerName=f"ext-{uuid.uuid4().hex[:8]}", Content={"ZipFile": code},
                                      CompatibleRuntimes=["provided.al2023"])
    return str(layer["LayerVersionArn"])


def test_extension_from_a_layer_sees_invoke_and_shutdown(server: NimbusServer, lam: Any) -> None:
    name = f"ext-fn-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="function.handler",
                        Code={"ZipFile": zip_files({"bootstrap": BASH_BOOTSTRAP})}, Timeout=30, MemorySize=512,
                        Layers=[publish_extension_layer(lam)])
    request_ids = []
    tails = []
    for i in range(2):
        r = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}), LogType="Tail")
        assert "FunctionError" not in r, r["Payload"].read()
        assert json.loads(r["Payload"].read())["event"] == {"i": i}
        request_ids.append(r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])
        tails.append(base64.b64decode(r["LogResult"]).decode())
    assert "Init Duration" in tails[0] and "[event-logger] registered" not in tails[0]  # INIT's, not START's
    # A configuration change retires the environment: the extension gets SHUTDOWN before it is killed.
    lam.update_function_configuration(FunctionName=name, Description="retire the environment")
    logs = server.client("logs")
    deadline = time.monotonic() + 30
    messages: list[str] = []
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        messages = [e["message"].rstrip("\n") for e in events]
        if any("SHUTDOWN" in m for m in messages):
            break
        time.sleep(0.2)
    registered = next(m for m in messages if m.startswith("[event-logger] registered"))
    assert json.loads(registered.split(" ", 2)[2]) == {
        "functionName": name, "functionVersion": "$LATEST", "handler": "function.handler"}
    events = [json.loads(m.split(" ", 2)[2]) for m in messages if m.startswith("[event-logger] event")]
    assert [e["eventType"] for e in events] == ["INVOKE", "INVOKE", "SHUTDOWN"], messages
    assert [e["requestId"] for e in events[:2]] == request_ids
    assert events[0]["invokedFunctionArn"].endswith(f":function:{name}")
    assert events[0]["tracing"]["type"] == "X-Amzn-Trace-Id"
    assert events[0]["deadlineMs"] > int(time.time() * 1000) - 60_000
    assert events[2]["shutdownReason"] == "spindown"


def test_custom_runtime_bootstrap_from_a_layer(lam: Any) -> None:
    """No bootstrap in the function's zip: /opt/bootstrap from a layer runs it, as on AWS."""
    code = zip_files({"bootstrap": BASH_BOOTSTRAP})
    layer = lam.publish_layer_version(LayerName=f"rt-{uuid.uuid4().hex[:8]}", Content={"ZipFile": code})
    name = f"layer-rt-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="function.handler",
                        Code={"ZipFile": zip_files({"README": "code only"})}, Timeout=30,
                        Layers=[layer["LayerVersionArn"]])
    r = lam.invoke(FunctionName=name, Payload=b'{"from": "layer"}')
    assert "FunctionError" not in r, r["Payload"].read()
    assert json.loads(r["Payload"].read())["event"] == {"from": "layer"}


def extension_function(lam: Any, extension: str) -> str:
    code = zip_files({"extensions/ext": extension}, executable=("extensions/ext",))
    layer = lam.publish_layer_version(LayerName=f"ext-{uuid.uuid4().hex[:8]}", Content={"ZipFile": code})
    name = f"ext-fn-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="function.handler",
                        Code={"ZipFile": zip_files({"bootstrap": BASH_BOOTSTRAP})}, Timeout=5,
                        Layers=[layer["LayerVersionArn"]])
    return name


def test_an_extension_exiting_during_init_fails_it_with_extension_crash(lam: Any) -> None:
    # AWS: "RequestId: … Error: exit code 0" / Extension.Crash, even for a clean exit before registering
    # (without the exit being noticed, INIT would wait for the extension until its timeout).
    name = extension_function(lam, "#!/bin/sh\necho one-shot extension exits\nexit 0\n")
    for _ in range(2):  # each invocation gets a fresh environment, which fails the same way
        r = lam.invoke(FunctionName=name, Payload=b"{}")
        body = json.loads(r["Payload"].read())
        assert r["FunctionError"] == "Unhandled"
        assert body["errorType"] == "Extension.Crash", body
        rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        assert body["errorMessage"].startswith(f"RequestId: {rid} Error: extension ext exited"), body


CRASHER = r'''#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
ID=$(curl -sS -D - -o /dev/null -X POST "$API/register" -H "Lambda-Extension-Name: ext" \
  -d '{"events":["INVOKE"]}' | grep -Fi Lambda-Extension-Identifier | cut -d' ' -f2 | tr -d '\r\n')
curl -sS "$API/event/next" -H "Lambda-Extension-Identifier: $ID" >/dev/null
curl -sS "$API/event/next" -H "Lambda-Extension-Identifier: $ID" >/dev/null
echo "[ext] crashing while it holds an INVOKE event"
exit 3
'''


def test_an_extension_that_dies_after_init_does_not_hold_up_the_environment(lam: Any) -> None:
    # The extension exits while busy with an INVOKE event: the environment must not wait for its `next`
    # (until the next invocation's timeout) before taking more work.
    name = extension_function(lam, CRASHER)
    for i in range(3):
        r = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}))
        assert "FunctionError" not in r, r["Payload"].read()
        assert json.loads(r["Payload"].read())["event"] == {"i": i}


URLLIB_EXTENSION = r'''#!/usr/bin/env python3
# Written the way AWS's Python extension samples are: urllib.request, which sends `Connection: close`.
import json, os, sys, urllib.request
API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"
NAME = os.path.basename(__file__)
req = urllib.request.Request(f"{API}/register", data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
                             headers={"Lambda-Extension-Name": NAME}, method="POST")
with urllib.request.urlopen(req) as resp:
    ext_id = resp.headers["Lambda-Extension-Identifier"]
print(f"[{NAME}] registered", flush=True)
while True:
    req = urllib.request.Request(f"{API}/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    with urllib.request.urlopen(req) as resp:
        event = json.load(resp)
    print(f"[{NAME}] event {event['eventType']}", flush=True)
    if event["eventType"] == "SHUTDOWN":
        sys.exit(0)
'''


def test_an_extension_using_urllib_gets_its_events(server: NimbusServer, lam: Any) -> None:
    """urllib sends `Connection: close` on the long poll of `event/next`: it must still get its answer."""
    code = zip_files({"extensions/urllib-ext": URLLIB_EXTENSION}, executable=("extensions/urllib-ext",))
    layer = lam.publish_layer_version(LayerName=f"ext-{uuid.uuid4().hex[:8]}", Content={"ZipFile": code},
                                      CompatibleRuntimes=["provided.al2023"])["LayerVersionArn"]
    name = f"ext-urllib-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="function.handler",
                        Code={"ZipFile": zip_files({"bootstrap": BASH_BOOTSTRAP})}, Timeout=30, MemorySize=512,
                        Layers=[layer])
    for i in range(2):
        r = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}))
        assert "FunctionError" not in r, r["Payload"].read()
    lam.update_function_configuration(FunctionName=name, Description="retire the environment")
    logs = server.client("logs")
    deadline = time.monotonic() + 30
    messages: list[str] = []
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        messages = [e["message"].rstrip("\n") for e in events if e["message"].startswith("[urllib-ext]")]
        if any("SHUTDOWN" in m for m in messages):
            break
        time.sleep(0.2)
    assert messages == ["[urllib-ext] registered", "[urllib-ext] event INVOKE", "[urllib-ext] event INVOKE",
                        "[urllib-ext] event SHUTDOWN"], messages
