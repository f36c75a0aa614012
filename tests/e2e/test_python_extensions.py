"""External extensions with managed Python functions end to end: a bash extension from a layer
(/opt/extensions) starts before a python3.x function's handler, gets every INVOKE and the SHUTDOWN, as on
AWS; the handler keeps its context, logs, errors and layer imports (bootstrap.py as a Runtime API client)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest

from nimbus.sandbox.runtimes import available_runtimes
from tests.conftest import ROLE, RUNTIME, NimbusServer
from tests.e2e.test_custom_runtime import zip_files
from tests.e2e.test_extensions import publish_extension_layer

pytestmark = pytest.mark.skipif(RUNTIME not in available_runtimes(), reason=f"no {RUNTIME} on this host")

HANDLER = '''
import json, logging, os
import layerlib

logging.getLogger().setLevel(logging.INFO)
print("init of", os.environ["AWS_LAMBDA_FUNCTION_NAME"])


def handler(event, context):
    print("handling", json.dumps(event))
    logging.info("remaining %s", context.get_remaining_time_in_millis() > 0)
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"event": event, "request_id": context.aws_request_id, "arn": context.invoked_function_arn,
            "lib": layerlib.VALUE, "extensions": sorted(os.listdir("/opt/extensions"))
            if os.path.isdir("/opt/extensions") else None}
'''


def test_python_function_with_an_extension_layer(server: NimbusServer, lam: Any) -> None:
    lib = lam.publish_layer_version(LayerName=f"pylib-{uuid.uuid4().hex[:8]}",
                                    Content={"ZipFile": zip_files({"python/layerlib.py": "VALUE = 42\n"})})
    name = f"pyext-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=30,
                        MemorySize=512, Code={"ZipFile": zip_files({"app.py": HANDLER})},
                        Layers=[publish_extension_layer(lam), lib["LayerVersionArn"]])
    try:
        request_ids = []
        for i in range(2):
            r = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}), LogType="Tail")
            body = r["Payload"].read()
            assert "FunctionError" not in r, body
            doc = json.loads(body)
            rid = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
            request_ids.append(rid)
            assert doc["event"] == {"i": i} and doc["request_id"] == rid and doc["lib"] == 42
            assert doc["arn"].endswith(f":function:{name}")
            tail = base64.b64decode(r["LogResult"]).decode()
            assert f'handling {{"i": {i}}}' in tail and "remaining True" in tail, tail
        failed = lam.invoke(FunctionName=name, Payload=json.dumps({"fail": True}))
        error = json.loads(failed["Payload"].read())
        assert failed["FunctionError"] == "Unhandled"
        assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail", error
        request_ids.append(failed["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])

        # Retire the environment: the extension gets SHUTDOWN before it is killed.
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
            "functionName": name, "functionVersion": "$LATEST", "handler": "app.handler"}
        events = [json.loads(m.split(" ", 2)[2]) for m in messages if m.startswith("[event-logger] event")]
        assert [e["eventType"] for e in events] == ["INVOKE", "INVOKE", "INVOKE", "SHUTDOWN"], messages
        assert [e["requestId"] for e in events[:3]] == request_ids
        assert any(m == f"init of {name}" for m in messages), messages
    finally:
        lam.delete_function(FunctionName=name)
