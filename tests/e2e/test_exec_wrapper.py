"""AWS_LAMBDA_EXEC_WRAPPER end to end: AWS runs the wrapper script for its managed runtimes with the
runtime's command line as arguments (docs: "Modifying the runtime environment" — wrapper scripts); the
script can set variables and add interpreter options before it execs the runtime. OS-only runtimes
(provided.*) ignore it, as on AWS."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from nimbus.sandbox.runtimes import available_runtimes
from tests.conftest import ROLE, RUNTIME
from tests.e2e.test_custom_runtime import zip_files

pytestmark = pytest.mark.skipif(RUNTIME not in available_runtimes(), reason=f"no {RUNTIME} on this host")

# AWS's own example: insert `-X importtime`-style options before the last argument (the runtime's script).
WRAPPER = r'''#!/bin/bash
args=("$@")
extra_args=("-X" "utf8")
args=("${args[@]:0:$#-1}" "${extra_args[@]}" "${args[@]: -1}")
export WRAPPED_BY="$0"
exec "${args[@]}"
'''

HANDLER = '''
import os, sys
def handler(event, context):
    return {"wrapped_by": os.environ.get("WRAPPED_BY"), "utf8_mode": sys.flags.utf8_mode,
            "echo": event, "request_id": context.aws_request_id}
'''


def test_python_function_runs_through_its_wrapper(lam: Any) -> None:
    name = f"wrapped-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=30,
                        Code={"ZipFile": zip_files({"app.py": HANDLER, "wrapper.sh": WRAPPER},
                                                   executable=("wrapper.sh",))},
                        Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrapper.sh"}})
    for i in range(2):
        out = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}))
        body = json.loads(out["Payload"].read())
        assert "FunctionError" not in out, body
        assert body["wrapped_by"] == "/var/task/wrapper.sh"
        assert body["utf8_mode"] == 1 and body["echo"] == {"i": i}
        assert body["request_id"] == out["ResponseMetadata"]["RequestId"]


def test_a_missing_wrapper_fails_init(lam: Any) -> None:
    name = f"wrapped-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=30,
                        Code={"ZipFile": zip_files({"app.py": HANDLER}, executable=())},
                        Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/nope.sh"}})
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert out["FunctionError"] == "Unhandled"
    error = json.loads(out["Payload"].read())
    assert error["errorType"] == "Runtime.InvalidEntrypoint"
    assert error["errorMessage"].endswith("Error: fork/exec /var/task/nope.sh: no such file or directory")
