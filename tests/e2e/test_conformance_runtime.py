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
