"""Node.js managed runtimes end to end: a real server, boto3, and AWS's own runtime interface client
(aws-lambda-ric from npm, installed by `make install`) running async and callback handlers."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nimbus.sandbox.apiruntimes import NODE_MAJORS, NODE_RUNTIMES, find_node, node_ric_dir, unavailable_reason
from tests.conftest import ROLE, NimbusServer, make_zip
from tests.e2e.test_custom_runtime import isolated

NODE = next((r for r in NODE_RUNTIMES if find_node(r) is not None), None)
pytestmark = pytest.mark.skipif(
    NODE is None or node_ric_dir(NODE) is None and not os.environ.get("CI"),
    reason="node or aws-lambda-ric not installed (make install runs scripts/install-node-ric.sh)",
)

ASYNC_HANDLER = """
export const handler = async (event, context) => {
  console.log("async handler got", JSON.stringify(event));
  if (event.throw) {
    throw new TypeError("bad input: " + event.throw);
  }
  await new Promise((resolve) => setTimeout(resolve, 5));
  return {
    event,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB,
    awsRequestId: context.awsRequestId,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    node: process.version,
    env: { handler: process.env._HANDLER, exec: process.env.AWS_EXECUTION_ENV, root: process.env.LAMBDA_TASK_ROOT },
  };
};
"""

CALLBACK_HANDLER = """
let count = 0;
exports.handler = function (event, context, callback) {
  count += 1;
  if (event.fail) {
    callback(new RangeError("out of range: " + event.fail));
    return;
  }
  setTimeout(() => callback(null, { count, event, requestId: context.awsRequestId }), 1);
};
"""


def create(lam: Any, files: dict[str, str], handler: str) -> str:
    name = f"node-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=NODE, Role=ROLE, Handler=handler,
                        Code={"ZipFile": make_zip(files)}, Timeout=30, MemorySize=512)
    return name


def invoke(lam: Any, name: str, event: Any) -> tuple[dict[str, Any], Any, str]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail")
    return r, json.loads(r["Payload"].read()), base64.b64decode(r["LogResult"]).decode()


@pytest.fixture(scope="module")
def async_fn(lam: Any) -> str:
    return create(lam, {"index.mjs": ASYNC_HANDLER}, "index.handler")


def test_async_handler_and_context(lam: Any, async_fn: str, server: NimbusServer) -> None:
    r, body, logs = invoke(lam, async_fn, {"a": 1})
    assert "FunctionError" not in r, body
    assert body["event"] == {"a": 1}
    assert body["functionName"] == async_fn
    assert body["functionVersion"] == "$LATEST"
    assert body["invokedFunctionArn"].endswith(f":function:{async_fn}")
    assert body["memoryLimitInMB"] == "512"
    assert body["awsRequestId"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["logGroupName"] == f"/aws/lambda/{async_fn}"
    assert 20_000 < body["remaining"] <= 30_000
    assert body["env"]["handler"] == "index.handler" and body["env"]["exec"] == f"AWS_Lambda_{NODE}"
    assert body["env"]["root"] == "/var/task" or not isolated(server)
    # console.log lines carry the request id, as on AWS: "<time>\t<request id>\tINFO\t<message>".
    assert f"\t{body['awsRequestId']}\tINFO\tasync handler got {{\"a\":1}}" in logs
    r2, body2, logs2 = invoke(lam, async_fn, {"a": 2})
    assert body2["event"] == {"a": 2} and "Init Duration" not in logs2


def test_invoke_without_a_payload_gives_the_handler_an_empty_object(lam: Any, async_fn: str) -> None:
    # AWS delivers `{}` when Invoke has no payload (the aws-lambda-ric would fail to JSON.parse "").
    r = lam.invoke(FunctionName=async_fn)
    body = json.loads(r["Payload"].read())
    assert "FunctionError" not in r, body
    assert body["event"] == {}


def test_async_handler_error_shape(lam: Any, async_fn: str) -> None:
    r, body, logs = invoke(lam, async_fn, {"throw": "x"})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "TypeError"
    assert body["errorMessage"] == "bad input: x"
    assert body["trace"][0] == "TypeError: bad input: x"
    assert "Invoke Error" in logs


def test_callback_handler(lam: Any) -> None:
    name = create(lam, {"index.js": CALLBACK_HANDLER}, "index.handler")
    r, body, _ = invoke(lam, name, {"b": 2})
    assert "FunctionError" not in r, body
    assert body["count"] == 1 and body["event"] == {"b": 2}
    assert body["requestId"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    _, body, _ = invoke(lam, name, {})
    assert body["count"] == 2  # warm: module state survives
    r, body, _ = invoke(lam, name, {"fail": "9"})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "RangeError" and body["errorMessage"] == "out of range: 9"


def test_missing_handler_is_runtime_error(lam: Any) -> None:
    name = create(lam, {"index.js": CALLBACK_HANDLER}, "nothere.handler")
    r, body, _ = invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"


VERSION_HANDLER = """
export const handler = async () => ({ version: process.version, exec: process.env.AWS_EXECUTION_ENV });
"""


@pytest.mark.parametrize("runtime", NODE_RUNTIMES)
def test_each_node_runtime_runs_on_its_own_major(lam: Any, runtime: str) -> None:
    """nodejs22.x runs Node 22, nodejs24.x Node 24, ... (make install brings the majors the host lacks)."""
    if (find_node(runtime) is None or node_ric_dir(runtime) is None) and not os.environ.get("CI"):
        pytest.skip(f"{runtime}: {unavailable_reason(runtime)}")
    name = f"node-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": make_zip({"index.mjs": VERSION_HANDLER})}, Timeout=30, MemorySize=256)
    r, body, _ = invoke(lam, name, {})
    assert "FunctionError" not in r, body
    assert body["version"].startswith(f"v{NODE_MAJORS[runtime]}.")
    assert body["exec"] == f"AWS_Lambda_{runtime}"


ESM_LAYER_HANDLER = """
import shout from "layer-shout";
import whisper from "layer-whisper";
export const handler = async (event) => ({ loud: shout(event.text), quiet: whisper(event.text) });
"""


def test_esm_handler_imports_packages_from_layers(lam: Any, server: NimbusServer) -> None:
    """ES modules ignore NODE_PATH; AWS's Node.js 18+ runtimes still resolve layer packages
    (`nodejs/node_modules` and `nodejs/nodeNN/node_modules`) for ESM imports."""
    if not isolated(server):
        pytest.skip("ESM imports from layers need the mounts of an isolating backend")
    major = NODE_MAJORS[str(NODE)]
    files = {
        "nodejs/node_modules/layer-shout/package.json": json.dumps({"name": "layer-shout", "main": "index.js"}),
        "nodejs/node_modules/layer-shout/index.js": "module.exports = (s) => s.toUpperCase();",
        f"nodejs/node{major}/node_modules/layer-whisper/package.json": json.dumps(
            {"name": "layer-whisper", "type": "module", "exports": "./index.js"}),
        f"nodejs/node{major}/node_modules/layer-whisper/index.js": "export default (s) => s.toLowerCase();",
    }
    layer = lam.publish_layer_version(LayerName=f"esm-{uuid.uuid4().hex[:8]}", Content={"ZipFile": make_zip(files)},
                                      CompatibleRuntimes=[NODE])["LayerVersionArn"]
    name = f"node-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=NODE, Role=ROLE, Handler="index.handler", Layers=[layer],
                        Code={"ZipFile": make_zip({"index.mjs": ESM_LAYER_HANDLER})}, Timeout=30, MemorySize=256)
    r, body, _ = invoke(lam, name, {"text": "Hello"})
    assert "FunctionError" not in r, body
    assert body == {"loud": "HELLO", "quiet": "hello"}


def test_unknown_node_runtime_is_refused(lam: Any) -> None:
    with pytest.raises(ClientError) as info:
        lam.create_function(FunctionName=f"n-{uuid.uuid4().hex[:8]}", Runtime="nodejs99.x", Role=ROLE,
                            Handler="index.handler", Code={"ZipFile": make_zip({"index.js": ""})})
    assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"


STREAM_HANDLER = """
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType("text/plain");
  responseStream.write("first ");
  await new Promise((resolve) => setTimeout(resolve, 300));
  responseStream.write("second");
  if (event.fail) {
    throw new Error("stream broke");
  }
  responseStream.end();
});
"""


def test_streamify_response(lam: Any) -> None:
    name = create(lam, {"index.mjs": STREAM_HANDLER}, "index.handler")
    r = lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
    arrivals = []
    complete: dict[str, Any] = {}
    for event in r["EventStream"]:
        if "PayloadChunk" in event:
            arrivals.append((time.monotonic(), event["PayloadChunk"]["Payload"]))
        if "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert b"".join(p for _, p in arrivals) == b"first second"
    assert arrivals[-1][0] - arrivals[0][0] > 0.15  # the first chunk came before the handler slept
    assert not complete.get("ErrorCode")
    r = lam.invoke_with_response_stream(FunctionName=name, Payload=b'{"fail": true}')
    events = list(r["EventStream"])
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e) == b"first second"
    complete = events[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Error"
    assert json.loads(complete["ErrorDetails"])["errorMessage"] == "stream broke"
