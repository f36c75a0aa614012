"""Issue 21: the runtime environment as AWS's gives it, seen from inside a function."""

from __future__ import annotations

import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

PRINTER = """
def handler(event, context):
    print("line one\\nline two\\nline three")
    print("single")
    return "ok"
"""


def events(logs: Any, name: str) -> list[str]:
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}")
        return [e["message"] for page in pages for e in page["events"]]
    except ClientError:
        return []


def test_multi_line_print_is_one_log_event(server: NimbusServer, lam: Any) -> None:
    """AWS's Python runtime writes one print() as one CloudWatch log event, newlines inside it (issue 21:
    found by a conformance run against AWS); the platform's START/END/REPORT lines stay separate."""
    logs = server.client("logs")
    name = f"print-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": PRINTER})})
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    deadline = time.monotonic() + 30
    while not any(m.startswith("REPORT") for m in events(logs, name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    messages = [m.rstrip("\n") for m in events(logs, name)
                if not m.startswith(("START", "END", "REPORT", "INIT_START"))]
    assert messages == ["line one\nline two\nline three", "single"]


SDK_USER = """
import os
import boto3, botocore, jmespath

def handler(event, context):
    runtime_dir = os.environ["LAMBDA_RUNTIME_DIR"]
    client = boto3.client("lambda", region_name="us-east-1")  # builds from botocore's bundled models
    return {"boto3": boto3.__version__, "from_runtime": boto3.__file__.startswith(runtime_dir),
            "botocore_from_runtime": botocore.__file__.startswith(runtime_dir),
            "own_jmespath": getattr(jmespath, "MINE", False), "service": client.meta.service_model.service_name}
"""


def test_boto3_is_in_the_python_runtime_below_the_functions_code(lam: Any) -> None:
    """AWS's Python runtimes include boto3/botocore (in the runtime directory, after the function's code and
    layers on sys.path): a function that imports boto3 without bundling it works, and a module the function
    bundles itself (here `jmespath`) wins over the runtime's."""
    import json

    import boto3

    name = f"sdk-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=30,
                        Code={"ZipFile": make_zip({"app.py": SDK_USER, "jmespath.py": "MINE = True\n"})})
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in out, out["Payload"].read()
    result = json.loads(out["Payload"].read())
    assert result == {"boto3": boto3.__version__, "from_runtime": True, "botocore_from_runtime": True,
                      "own_jmespath": True, "service": "lambda"}


LIMITS = """
import os, resource

def handler(event, context):
    return {"nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
            "env": {k: os.environ.get(k) for k in ("LANG", "TZ", "PATH", "LD_LIBRARY_PATH", "PYTHONPATH",
                                                    "AWS_XRAY_CONTEXT_MISSING", "AWS_XRAY_DAEMON_ADDRESS",
                                                    "_AWS_XRAY_DAEMON_ADDRESS", "_AWS_XRAY_DAEMON_PORT")}}
"""


def test_open_files_limit_and_environment_variables(lam: Any) -> None:
    """AWS's documented execution environment: 1,024 file descriptors (Lambda quotas page), and the
    variables AWS sets (developer guide, configuration-envvars: LANG en_US.UTF-8, TZ :UTC, the X-Ray
    daemon address variables and AWS_XRAY_CONTEXT_MISSING=LOG_ERROR)."""
    import json

    name = f"env-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": LIMITS})})
    result = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert result["nofile"] == [1024, 1024]
    env = result["env"]
    assert (env["LANG"], env["TZ"]) == ("en_US.UTF-8", ":UTC")
    assert env["AWS_XRAY_CONTEXT_MISSING"] == "LOG_ERROR"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == "169.254.79.129:2000"
    assert (env["_AWS_XRAY_DAEMON_ADDRESS"], env["_AWS_XRAY_DAEMON_PORT"]) == ("169.254.79.129", "2000")
    assert env["PATH"].endswith("/usr/local/bin:/usr/bin/:/bin:/opt/bin")


SH_BOOTSTRAP = r'''#!/bin/sh
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -D "$HEADERS" "$API/invocation/next" >/dev/null
  ID=$(grep -Fi "Lambda-Runtime-Aws-Request-Id:" "$HEADERS" | head -1 | cut -d' ' -f2- | tr -d '\r\n')
  ENTRY=no; [ -f /lambda-entrypoint.sh ] && ENTRY=yes
  SHELL_NAME=$(/bin/sh -c 'echo "${BASH_VERSION:+bash}"')
  curl -sS -X POST "$API/invocation/$ID/response" -d "{\"entrypoint\":\"$ENTRY\",\"sh\":\"$SHELL_NAME\"}" >/dev/null
done
'''


def test_provided_runtime_sh_is_bash_and_entrypoint_exists(server: NimbusServer, lam: Any) -> None:
    """AWS's provided.al2023 image: /bin/sh is bash (so `set -o pipefail` under #!/bin/sh works) and
    /lambda-entrypoint.sh exists (AWS's base images start through it)."""
    import json
    import shutil

    import pytest

    from nimbus.sandbox.runtimes import available_runtimes

    if "provided.al2023" not in available_runtimes() or shutil.which("curl") is None:
        pytest.skip("custom runtimes or curl unavailable here")
    name = f"sh-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="x", Timeout=30,
                        Code={"ZipFile": make_zip({"bootstrap": SH_BOOTSTRAP})})
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read()) == {"entrypoint": "yes", "sh": "bash"}


NODE_PRINTER = """
exports.handler = async () => {
  console.log("line one\\nline two");
  return "ok";
};
"""


def test_node_console_log_of_several_lines_is_one_event(server: NimbusServer, lam: Any) -> None:
    """AWS's Node.js runtime writes one console.log() as one log event (its runtime client keeps the newlines
    inside the event), as for Python's print()."""
    import pytest

    from nimbus.sandbox.apiruntimes import NODE_RUNTIMES, find_node, node_ric_dir

    node = next((r for r in NODE_RUNTIMES if find_node(r) is not None), None)
    if node is None or node_ric_dir() is None:
        pytest.skip("no node / aws-lambda-ric here")
    logs = server.client("logs")
    name = f"nodeprint-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=node, Role=ROLE, Handler="index.handler", Timeout=30,
                        Code={"ZipFile": make_zip({"index.js": NODE_PRINTER})})
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    deadline = time.monotonic() + 30
    while not any(m.startswith("REPORT") for m in events(logs, name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    mine = [m for m in events(logs, name) if "line one" in m or "line two" in m]
    assert len(mine) == 1 and "line one" in mine[0] and "line two" in mine[0], mine
