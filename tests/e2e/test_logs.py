"""Function logs end to end: invoke a function, then read its logs with boto3, the AWS CLI (v1) and
`nimbus logs`, the way users do."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

SOURCE = """
import json
import time

def handler(event, context):
    print("hello from", context.function_name)
    time.sleep(0.05)  # so START (stamped at the start) and END (at the end) differ from the prints
    print(json.dumps({"level": event.get("level", "INFO"), "n": event.get("n", 0)}))
    return {"stream": context.log_stream_name}
"""

STREAM_NAME = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")
REPORT = re.compile(
    r"^REPORT RequestId: (?P<rid>[0-9a-f-]{36})\tDuration: \d+\.\d{2} ms\tBilled Duration: \d+ ms\t"
    r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\t(Init Duration: \d+\.\d{2} ms\t)?$"
)
AWS = Path(sys.executable).with_name("aws")


@pytest.fixture(scope="module")
def logs(server: NimbusServer) -> Any:
    return server.client("logs")


def create(lam: Any) -> str:
    name = f"logs-{uuid.uuid4().hex[:10]}"
    lam.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
    )
    return name


def invoke(lam: Any, name: str, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail")
    return out, json.loads(out["Payload"].read())


def aws(server: NimbusServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **server.cli_env(),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        [str(AWS), *args, "--endpoint-url", server.endpoint, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_invocation_logs_are_readable_right_away(lam: Any, logs: Any) -> None:
    name = create(lam)
    out, body = invoke(lam, name, {"level": "ERROR", "n": 1})
    group = f"/aws/lambda/{name}"
    stream = body["stream"]
    assert STREAM_NAME.match(stream), stream

    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    messages = [e["message"] for e in events]
    # A cold start begins with INIT_START, like AWS's managed runtimes.
    assert messages[0].startswith("INIT_START Runtime Version: ")
    messages = messages[1:]
    # START is stamped when the invocation starts, so it sorts before what the function printed.
    assert messages[0].startswith("START RequestId: ") and messages[0].endswith(" Version: $LATEST")
    rid = messages[0].split()[2]
    assert f"hello from {name}" in messages
    assert messages[-2] == f"END RequestId: {rid}"
    report = REPORT.match(messages[-1])
    assert report and report["rid"] == rid
    assert "Init Duration" in messages[-1]  # the first invocation of an environment is a cold start

    tail = base64.b64decode(out["LogResult"]).decode()
    assert tail.splitlines() == messages

    (described,) = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert described["logStreamName"] == stream
    assert described["lastEventTimestamp"] >= described["firstEventTimestamp"]
    (group_doc,) = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert group_doc["logGroupName"] == group


def test_filter_log_events_across_invocations(lam: Any, logs: Any) -> None:
    name = create(lam)
    start = int(time.time() * 1000) - 1000
    for n in range(3):
        invoke(lam, name, {"level": "ERROR" if n == 1 else "INFO", "n": n})
    group = f"/aws/lambda/{name}"
    reports = logs.filter_log_events(logGroupName=group, startTime=start, filterPattern="REPORT", interleaved=True)
    assert len(reports["events"]) == 3 and "nextToken" not in reports
    errors = logs.filter_log_events(logGroupName=group, filterPattern='{ $.level = "ERROR" }')["events"]
    assert [json.loads(e["message"])["n"] for e in errors] == [1]
    pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, PaginationConfig={"PageSize": 2})
    everything = [e for page in pages for e in page["events"]]
    assert len({e["eventId"] for e in everything}) == len(everything)
    invocation_lines = [e for e in everything if not e["message"].startswith("INIT_START")]
    assert len(invocation_lines) == 3 * 5  # START, two prints, END, REPORT per invocation


def test_put_log_events_and_paginators(logs: Any) -> None:
    group = f"/custom/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": f"event {i}"} for i in range(25)],
    )
    pages = list(
        logs.get_paginator("filter_log_events").paginate(logGroupName=group, PaginationConfig={"PageSize": 10})
    )
    assert [len(p["events"]) for p in pages] == [10, 10, 5]
    streams = logs.get_paginator("describe_log_streams").paginate(logGroupName=group)
    assert [s["logStreamName"] for p in streams for s in p["logStreams"]] == ["s"]
    with pytest.raises(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    logs.delete_log_group(logGroupName=group)
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_log_events(logGroupName=group, logStreamName="s")


@pytest.mark.skipif(not AWS.exists(), reason="awscli is not installed in this venv")
def test_aws_cli_v1(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    _, body = invoke(lam, name, {})
    group = f"/aws/lambda/{name}"

    out = aws(server, "logs", "describe-log-groups", "--log-group-name-prefix", group)
    assert out.returncode == 0, out.stderr
    assert [g["logGroupName"] for g in json.loads(out.stdout)["logGroups"]] == [group]

    out = aws(server, "logs", "get-log-events", "--log-group-name", group, "--log-stream-name", body["stream"])
    assert out.returncode == 0, out.stderr
    assert any(e["message"].startswith("START RequestId:") for e in json.loads(out.stdout)["events"])

    out = aws(server, "logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", "hello")
    assert out.returncode == 0, out.stderr
    assert [e["message"] for e in json.loads(out.stdout)["events"]] == [f"hello from {name}"]

    out = aws(server, "logs", "describe-log-streams", "--log-group-name", "/aws/lambda/does-not-exist")
    assert out.returncode == 255
    assert "ResourceNotFoundException" in out.stderr


def test_nimbus_logs_command(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    invoke(lam, name, {})
    out = subprocess.run(
        [sys.executable, "-m", "nimbus", "logs", name, "--since", "5m"],
        env={**os.environ, **server.cli_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if " INIT_START " not in line]
    assert len(lines) == 5
    assert " START RequestId: " in lines[0] and f"hello from {name}" in lines[1]
    assert all(STREAM_NAME.match(line.split(" ", 2)[1]) for line in lines)
