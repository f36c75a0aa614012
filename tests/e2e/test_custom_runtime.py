"""Custom runtimes (`provided.al2023`, `provided.al2`) end to end: a real server, boto3, and bootstraps that
speak the Runtime API unchanged: bash + curl, AWS's own Python client (awslambdaric, vendored in the zip),
a compiled C program, and a Python probe of the API's wrong-usage errors."""

from __future__ import annotations

import base64
import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nimbus.sandbox.runtimes import available_runtimes
from tests.conftest import ROLE, NimbusServer

pytestmark = pytest.mark.skipif(
    "provided.al2023" not in available_runtimes(), reason="no Python interpreter to run the launcher"
)

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the server's: on PATH in its sandboxes

BASH_BOOTSTRAP = r'''#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
echo "bash init: handler=$_HANDLER task_root=$LAMBDA_TASK_ROOT exec_env=${AWS_EXECUTION_ENV:-unset}"
echo "bash init: api=$AWS_LAMBDA_RUNTIME_API runtime_dir=$LAMBDA_RUNTIME_DIR cwd=$PWD"
if [ "${FAIL_INIT:-}" = 1 ]; then
  curl -sS -X POST "$API/init/error" -H "Lambda-Runtime-Function-Error-Type: Runtime.ConfigInvalid" \
    -d '{"errorMessage":"bad config","errorType":"Runtime.ConfigInvalid","stackTrace":[]}' >/dev/null
  exit 1
fi
HEADERS="$(mktemp)"
while true; do
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  header() { grep -Fi "$1:" "$HEADERS" | head -1 | cut -d' ' -f2- | tr -d '\r\n'; }
  ID=$(header Lambda-Runtime-Aws-Request-Id)
  echo "bash handling $ID"
  case "$EVENT" in
    *fail*)
      curl -sS -X POST "$API/invocation/$ID/error" -H "Lambda-Runtime-Function-Error-Type: Unhandled" \
        -d '{"errorMessage":"it failed","errorType":"MyError","stackTrace":["bootstrap line 1"]}' >/dev/null ;;
    *exit*) exit 7 ;;
    *)
      BODY="{\"event\":$EVENT,\"deadline\":\"$(header Lambda-Runtime-Deadline-Ms)\","
      BODY+="\"arn\":\"$(header Lambda-Runtime-Invoked-Function-Arn)\","
      BODY+="\"trace\":\"$(header Lambda-Runtime-Trace-Id)\",\"id\":\"$ID\"}"
      curl -sS -X POST "$API/invocation/$ID/response" -d "$BODY" >/dev/null ;;
  esac
done
'''

# Exercises the Runtime API's refusals with the standard library's HTTP client (one keep-alive connection).
PROBE_BOOTSTRAP = f'''#!/bin/sh
exec {PY} -c '
import http.client, json, os
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
seen = {{}}
def call(method, path, body=None, headers=None):
    conn.request(method, "/2018-06-01/runtime" + path, body=body, headers=headers or {{}})
    r = conn.getresponse()
    return r.status, r.read().decode(), dict(r.getheaders())
while True:
    status, event, headers = call("GET", "/invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    mode = json.loads(event)["mode"]
    if mode == "bad-id":
        seen["bad-id"] = call("POST", "/invocation/not-a-request/response", b"{{}}")[:2]
        seen["ok"] = call("POST", f"/invocation/{{rid}}/response", b"1")[:2]
    elif mode == "double":
        call("POST", f"/invocation/{{rid}}/response", b"\\"first\\"")
        seen["double"] = call("POST", f"/invocation/{{rid}}/response", b"\\"second\\"")[:2]
        seen["double-error"] = call("POST", f"/invocation/{{rid}}/error", b"{{}}")[:2]
    elif mode == "oversize":
        seen["oversize"] = call("POST", f"/invocation/{{rid}}/response", b"x" * (7 * 1024 * 1024))[:2]
    elif mode == "bad-mode":
        seen["bad-mode"] = call("POST", f"/invocation/{{rid}}/response", b"1",
                                {{"Lambda-Runtime-Function-Response-Mode": "nonsense"}})[:2]
    elif mode == "report":
        call("POST", f"/invocation/{{rid}}/response", json.dumps(seen).encode())
'
'''

RIC_HANDLER = '''
import os

def fn(event, context):
    print("ric handler got", event)
    if event.get("raise"):
        raise ValueError("bad value: " + event["raise"])
    return {
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": int(context.memory_limit_in_mb),
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }
'''

C_BOOTSTRAP = r'''
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int connect_api(void) {
    char host[256];
    snprintf(host, sizeof host, "%s", getenv("AWS_LAMBDA_RUNTIME_API"));
    char *colon = strchr(host, ':');
    *colon = 0;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
    inet_pton(AF_INET, host, &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); exit(1); }
    return fd;
}

/* Reads one response; returns the body (static buffer) and copies the request id header if present. */
static char *read_response(int fd, char *request_id) {
    static char buf[1 << 20];
    size_t n = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) exit(2);
        n += r; buf[n] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    long length = 0;
    for (char *line = buf; line < end; line = strstr(line, "\r\n") + 2) {
        if (!strncasecmp(line, "Content-Length:", 15)) length = atol(line + 15);
        if (request_id && !strncasecmp(line, "Lambda-Runtime-Aws-Request-Id:", 30))
            sscanf(line + 30, " %127[^\r]", request_id);
    }
    char *body = end + 4;
    while ((long)(n - (body - buf)) < length) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) exit(2);
        n += r; buf[n] = 0;
    }
    body[length] = 0;
    return body;
}

int main(void) {
    int fd = connect_api();
    printf("c bootstrap ready\n");
    fflush(stdout);
    for (;;) {
        char req[4096], id[128] = "", out[1 << 16];
        dprintf(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n");
        char *event = read_response(fd, id);
        int len = snprintf(out, sizeof out, "{\"from\":\"c\",\"event\":%s}", event);
        int head = snprintf(req, sizeof req,
            "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
            id, len);
        write(fd, req, head);
        write(fd, out, len);
        read_response(fd, NULL);
    }
}
'''


def zip_files(files: dict[str, bytes | str], executable: tuple[str, ...] = ("bootstrap",)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            zf.writestr(info, content)
    return buf.getvalue()


def vendored_awslambdaric() -> dict[str, bytes]:
    """awslambdaric and its dependencies as installed for this interpreter (the sandbox runs the same
    version), ready to be put at the root of a function's zip."""
    files: dict[str, bytes] = {}
    for dist in ("awslambdaric", "simplejson", "snapshot-restore-py"):
        try:
            found = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        for path in found.files or []:
            if ".dist-info" in str(path) or "__pycache__" in str(path) or str(path).startswith(".."):
                continue
            files[str(path)] = Path(str(found.locate_file(path))).read_bytes()
    return files


def create(lam: Any, code: bytes, runtime: str = "provided.al2023", **config: Any) -> str:
    name = f"cr-{uuid.uuid4().hex[:10]}"
    lam.create_function(
        FunctionName=name, Runtime=runtime, Role=ROLE, Handler=config.pop("Handler", "function.handler"),
        Code={"ZipFile": code}, Timeout=config.pop("Timeout", 30), MemorySize=config.pop("MemorySize", 512),
        **config,
    )
    return name


def invoke(lam: Any, name: str, event: Any, **kw: Any) -> tuple[dict[str, Any], Any, str]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail", **kw)
    raw = r["Payload"].read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw
    return r, body, base64.b64decode(r.get("LogResult", "")).decode()


@pytest.fixture(scope="module")
def bash_fn(lam: Any) -> str:
    return create(lam, zip_files({"bootstrap": BASH_BOOTSTRAP}))


def test_bash_curl_bootstrap_echoes_events_with_aws_headers(lam: Any, bash_fn: str) -> None:
    r, body, logs = invoke(lam, bash_fn, {"hello": "world"})
    assert r["StatusCode"] == 200 and "FunctionError" not in r, body
    assert body["event"] == {"hello": "world"}
    fn_arn = lam.get_function(FunctionName=bash_fn)["Configuration"]["FunctionArn"]
    assert body["arn"] == fn_arn
    assert body["id"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert int(body["deadline"]) > time.time() * 1000 + 20_000  # 30 s timeout
    assert body["trace"].startswith("Root=1-")
    assert f"bash handling {body['id']}" in logs
    # Warm: the same environment answers again.
    r2, body2, logs2 = invoke(lam, bash_fn, [1, 2, 3])
    assert body2["event"] == [1, 2, 3]
    assert "Init Duration" not in logs2 and "bash init" not in logs2


def isolated(server: NimbusServer) -> bool:
    """The server sandboxes functions (else the process backend runs them where they lie, without /var/task)."""
    with server.http() as http:
        return bool(http.get("/nimbus/v1/health").json()["isolation"] == "namespaces")


def function_logs(server: NimbusServer, name: str, until: str) -> str:
    """The function's log group (all streams) once it holds `until`."""
    logs = server.client("logs")
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = "\n".join(e["message"].rstrip("\n") for e in
                         logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"])
        if until in text:
            break
        time.sleep(0.2)
    return text


def test_bash_bootstrap_sees_lambda_environment(lam: Any, server: NimbusServer) -> None:
    name = create(lam, zip_files({"bootstrap": BASH_BOOTSTRAP}), runtime="provided.al2")
    _, _, tail = invoke(lam, name, {})
    assert "Init Duration" in tail
    assert "bash init" not in tail  # INIT's output precedes the invocation in the stream
    logs = function_logs(server, name, "REPORT RequestId")
    assert logs.index("bash init") < logs.index("START RequestId")
    if not isolated(server):
        assert "exec_env=unset" in logs and "api=127.0.0.1:" in logs
        return
    assert "bash init: handler=function.handler task_root=/var/task exec_env=unset" in logs
    assert "bash init: api=127.0.0.1:9001 runtime_dir=/var/runtime cwd=/var/task" in logs


def test_error_from_the_runtime_reaches_the_caller_in_aws_shape(lam: Any, bash_fn: str) -> None:
    r, body, logs = invoke(lam, bash_fn, "fail")
    assert r["FunctionError"] == "Unhandled"
    assert body == {"errorMessage": "it failed", "errorType": "MyError", "stackTrace": ["bootstrap line 1"]}
    assert "REPORT RequestId" in logs
    # The environment stays usable after a reported error.
    r2, body2, _ = invoke(lam, bash_fn, "again")
    assert "FunctionError" not in r2 and body2["event"] == "again"


def test_runtime_exit_is_runtime_exit_error(lam: Any) -> None:
    name = create(lam, zip_files({"bootstrap": BASH_BOOTSTRAP}))
    r, body, logs = invoke(lam, name, "exit")
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: exit status 7")
    # A fresh environment takes over.
    r2, body2, _ = invoke(lam, name, "ok")
    assert body2["event"] == "ok"


def test_init_error_is_returned_to_the_caller(lam: Any) -> None:
    name = create(lam, zip_files({"bootstrap": BASH_BOOTSTRAP}), Environment={"Variables": {"FAIL_INIT": "1"}})
    r, body, logs = invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled"
    assert body == {"errorMessage": "bad config", "errorType": "Runtime.ConfigInvalid", "stackTrace": []}


def test_missing_bootstrap_is_invalid_entrypoint(lam: Any, server: NimbusServer) -> None:
    name = create(lam, zip_files({"handler.sh": "echo hi"}))
    r, body, _ = invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert body["errorMessage"].startswith(f"RequestId: {r['ResponseMetadata']['HTTPHeaders']['x-amzn-requestid']}")
    where = "/var/task/bootstrap /opt/bootstrap" if isolated(server) else "/bootstrap /opt/bootstrap"
    assert "Error: Couldn't find valid bootstrap(s): [" in body["errorMessage"]
    assert f"{where}]" in body["errorMessage"]


def test_bootstrap_that_cannot_be_executed_is_invalid_entrypoint(lam: Any) -> None:
    name = create(lam, zip_files({"bootstrap": "echo no interpreter line\n"}))  # no #!: exec format error
    r, body, _ = invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert body["errorMessage"].endswith("/bootstrap: exec format error")


def test_timeout_kills_the_runtime(lam: Any) -> None:
    hang = "#!/bin/bash\ncurl -sS http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/next\nsleep 600\n"
    name = create(lam, zip_files({"bootstrap": hang}), Timeout=1)
    r, body, logs = invoke(lam, name, {})
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert "Status: timeout" in logs


def test_runtime_api_wrong_usage_errors(lam: Any) -> None:
    name = create(lam, zip_files({"bootstrap": PROBE_BOOTSTRAP}))
    r, body, _ = invoke(lam, name, {"mode": "bad-id"})
    assert body == 1, body
    r, body, _ = invoke(lam, name, {"mode": "double"})
    assert body == "first"
    r, body, _ = invoke(lam, name, {"mode": "oversize"})
    assert r["FunctionError"] == "Unhandled"
    assert body == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
    r, body, _ = invoke(lam, name, {"mode": "bad-mode"})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidResponseModeHeader"
    _, seen, _ = invoke(lam, name, {"mode": "report"})
    assert seen["ok"] == [202, '{"status":"OK"}']
    assert seen["bad-id"] == [400, '{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}']
    status, text = seen["double"]
    assert status == 403
    assert json.loads(text) == {
        "errorType": "InvalidStateTransition",
        "errorMessage": "State transition from RuntimeResponseSentState to InvocationResponse failed for runtime. "
        "Error: State transition is not allowed",
    }
    assert seen["double-error"][0] == 403
    assert seen["oversize"] == [413, json.dumps(
        {"errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
         "errorType": "RequestEntityTooLarge"}, separators=(",", ":"))]
    assert seen["bad-mode"] == [400, json.dumps(
        {"errorMessage": "Invalid function response mode", "errorType": "InvalidFunctionResponseMode"},
        separators=(",", ":"))]


@pytest.fixture(scope="module")
def ric_fn(lam: Any) -> str:
    files: dict[str, bytes | str] = {**vendored_awslambdaric(), "app.py": RIC_HANDLER}
    if "awslambdaric/__main__.py" not in files:
        pytest.skip("awslambdaric is not installed (pip install awslambdaric)")
    files["bootstrap"] = f'#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec {PY} -m awslambdaric "$_HANDLER"\n'
    return create(lam, zip_files(files), Handler="app.fn")


def test_official_python_runtime_interface_client(lam: Any, ric_fn: str) -> None:
    r, body, logs = invoke(lam, ric_fn, {"k": "v"})
    assert "FunctionError" not in r, body
    assert body["event"] == {"k": "v"}
    assert body["function_name"] == ric_fn
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"].endswith(f":function:{ric_fn}")
    assert body["memory_limit_in_mb"] == 512
    assert body["aws_request_id"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["log_group_name"] == f"/aws/lambda/{ric_fn}"
    assert 20_000 < body["remaining_ms"] <= 30_000
    assert body["trace"].startswith("Root=1-")
    assert "ric handler got {'k': 'v'}" in logs


def test_official_python_client_error_shape(lam: Any, ric_fn: str) -> None:
    r, body, logs = invoke(lam, ric_fn, {"raise": "boom"})
    assert r["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad value: boom"
    assert body["requestId"] == r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert any("app.py" in line for line in body["stackTrace"])
    assert "[ERROR] ValueError: bad value: boom" in logs


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc) on this host")
def test_compiled_bootstrap(lam: Any, tmp_path: Path) -> None:
    (tmp_path / "bootstrap.c").write_text(C_BOOTSTRAP)
    subprocess.run(["gcc", "-O2", "-o", str(tmp_path / "bootstrap"), str(tmp_path / "bootstrap.c")], check=True)
    name = create(lam, zip_files({"bootstrap": (tmp_path / "bootstrap").read_bytes()}))
    for i in range(3):
        r, body, logs = invoke(lam, name, {"n": i})
        assert "FunctionError" not in r, body
        assert body == {"from": "c", "event": {"n": i}}
    assert "c bootstrap ready" not in logs  # printed once, during the first invocation's INIT


# Streams its response over a raw socket: chunked transfer encoding, then (for "fail") the error trailers.
STREAM_BOOTSTRAP = f'''#!/bin/sh
exec {PY} -c '
import base64, json, os, socket, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
def request(head, body=b""):
    s = socket.create_connection((host, int(port)))
    s.sendall(head + body)
    return s
def read(s):
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    length = int([l.split(b":")[1] for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += s.recv(65536)
    return head, body
while True:
    s = request(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    head, event = read(s)
    lines = head.split(b"\\r\\n")
    rid = [l.split(b":")[1].strip() for l in lines if l.lower().startswith(b"lambda-runtime-aws-request-id")][0]
    s.close()
    s = request(b"POST /2018-06-01/runtime/invocation/" + rid + b"/response HTTP/1.1\\r\\nHost: x\\r\\n"
                b"Lambda-Runtime-Function-Response-Mode: streaming\\r\\nTransfer-Encoding: chunked\\r\\n"
                b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\\r\\n\\r\\n")
    for part in (b"first ", b"second"):
        s.sendall(b"%x\\r\\n%s\\r\\n" % (len(part), part))
        time.sleep(0.3)
    if json.loads(event) == "fail":
        doc = base64.b64encode(b"{{\\"errorMessage\\":\\"broke\\",\\"errorType\\":\\"Stream.Broke\\"}}")
        s.sendall(b"0\\r\\nLambda-Runtime-Function-Error-Type: Stream.Broke\\r\\n"
                  b"Lambda-Runtime-Function-Error-Body: " + doc + b"\\r\\n\\r\\n")
    else:
        s.sendall(b"0\\r\\n\\r\\n")
    read(s)
    s.close()
'
'''


def test_streamed_response_from_a_custom_runtime(lam: Any) -> None:
    if not hasattr(lam, "invoke_with_response_stream"):
        pytest.skip("botocore without InvokeWithResponseStream")
    name = create(lam, zip_files({"bootstrap": STREAM_BOOTSTRAP}))
    r = lam.invoke_with_response_stream(FunctionName=name, Payload=b'"ok"')
    arrivals = []
    complete: dict[str, Any] = {}
    for event in r["EventStream"]:
        if "PayloadChunk" in event:
            arrivals.append((time.monotonic(), event["PayloadChunk"]["Payload"]))
        if "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert b"".join(p for _, p in arrivals) == b"first second"
    assert len(arrivals) == 2 and arrivals[1][0] - arrivals[0][0] > 0.15  # each chunk as it was sent
    assert not complete.get("ErrorCode")
    r = lam.invoke_with_response_stream(FunctionName=name, Payload=b'"fail"')
    events = list(r["EventStream"])
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e) == b"first second"
    complete = events[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Stream.Broke"
    assert json.loads(complete["ErrorDetails"]) == {"errorMessage": "broke", "errorType": "Stream.Broke"}
    # A buffered invoke of the same function gets the whole stream as its payload.
    r, body, _ = invoke(lam, name, "ok")
    assert body == b"first second"
