"""`nimbus logs` against a real server; events are written through the Logs API's PutLogEvents."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner

from nimbus.cli.logs import parse_since
from nimbus.cli.main import app
from tests.conftest import ROLE, RUNTIME, NimbusServer, free_port, make_zip

runner = CliRunner()


def logs_call(server: NimbusServer, operation: str, **body: Any) -> dict[str, Any]:
    with server.http() as http:
        response = http.post(
            "/",
            json=body,
            headers={"X-Amz-Target": f"Logs_20140328.{operation}", "Content-Type": "application/x-amz-json-1.1"},
        )
    assert response.status_code == 200, response.text
    return response.json() if response.content else {}


def make_group(server: NimbusServer) -> tuple[str, str]:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    group = f"/aws/lambda/{name}"
    logs_call(server, "CreateLogGroup", logGroupName=group)
    logs_call(server, "CreateLogStream", logGroupName=group, logStreamName="2026/01/01/[$LATEST]" + "a" * 32)
    return name, group


def put(server: NimbusServer, group: str, messages: list[str], ts: int | None = None) -> None:
    ts = ts if ts is not None else int(time.time() * 1000)
    events = [{"timestamp": ts + i, "message": m} for i, m in enumerate(messages)]
    logs_call(
        server, "PutLogEvents", logGroupName=group, logStreamName="2026/01/01/[$LATEST]" + "a" * 32, logEvents=events
    )


def run_logs(server: NimbusServer, *args: str) -> Any:
    return runner.invoke(app, ["logs", *args], env={**server.cli_env(), "COLUMNS": "60"})


def test_prints_events_with_time_stream_and_literal_text(server: NimbusServer) -> None:
    name, group = make_group(server)
    put(server, group, ["first line", "[bold]not markup[/bold] and a very long line " + "x" * 200])
    result = run_logs(server, name)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2  # long lines are not wrapped
    when, stream, message = lines[0].split(" ", 2)
    assert when.endswith("+00:00") and "T" in when
    assert stream == "2026/01/01/[$LATEST]" + "a" * 32
    assert message == "first line"
    assert lines[1].endswith("[bold]not markup[/bold] and a very long line " + "x" * 200)


def test_piped_output_keeps_tabs(server: NimbusServer) -> None:
    name, group = make_group(server)
    report = "REPORT RequestId: r1\tDuration: 1.00 ms\tBilled Duration: 1 ms\t"
    put(server, group, [report])
    result = run_logs(server, name)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split(" ", 2)[2] == report.rstrip("\n")


def test_function_with_a_custom_log_group(server: NimbusServer) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    group = f"/custom/{name}"
    server.client().create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})},
        LoggingConfig={"LogFormat": "Text", "LogGroup": group},
    )
    logs_call(server, "CreateLogGroup", logGroupName=group)
    logs_call(server, "CreateLogStream", logGroupName=group, logStreamName="s")
    logs_call(server, "PutLogEvents", logGroupName=group, logStreamName="s",
              logEvents=[{"timestamp": int(time.time() * 1000), "message": "in the custom group"}])
    result = run_logs(server, name)
    assert result.exit_code == 0, result.output
    assert "in the custom group" in result.output


def test_since_limits_how_far_back(server: NimbusServer) -> None:
    name, group = make_group(server)
    now = int(time.time() * 1000)
    put(server, group, ["two hours ago"], ts=now - 2 * 3600 * 1000)
    put(server, group, ["just now"], ts=now)
    assert "two hours ago" not in run_logs(server, name).output  # default: 10 minutes
    assert "two hours ago" not in run_logs(server, name, "--since", "1h").output
    out = run_logs(server, name, "--since", "3h").output
    assert out.index("two hours ago") < out.index("just now")


def test_filter_option(server: NimbusServer) -> None:
    name, group = make_group(server)
    put(server, group, ["INFO fine", "ERROR broken"])
    result = run_logs(server, name, "--filter", "ERROR")
    assert result.exit_code == 0
    assert "ERROR broken" in result.output and "INFO fine" not in result.output


def test_missing_group_is_a_clear_error(server: NimbusServer) -> None:
    result = run_logs(server, f"nope-{uuid.uuid4().hex[:8]}")
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_unreachable_server_is_a_clear_error() -> None:
    result = runner.invoke(app, ["logs", "fn", "--endpoint", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1
    assert "cannot reach a nimbus server" in result.output


def test_bad_since_is_a_usage_error(server: NimbusServer) -> None:
    result = run_logs(server, "fn", "--since", "yesterday")
    assert result.exit_code == 2


def test_parse_since() -> None:
    assert parse_since("30s") == 30_000
    assert parse_since("10m") == 600_000
    assert parse_since("2h") == 7_200_000
    assert parse_since("1d") == 86_400_000
    assert parse_since("45") == 45_000


def _reader(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def _next_line(lines: queue.Queue[str], timeout: float = 20.0) -> str:
    return lines.get(timeout=timeout)


def test_follow_prints_new_events_once_and_stops_on_ctrl_c(server: NimbusServer) -> None:
    name, group = make_group(server)
    put(server, group, ["before follow"])
    with subprocess.Popen(
        [sys.executable, "-m", "nimbus", "logs", name, "--follow"],
        env={**os.environ, **server.cli_env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
        try:
            assert _next_line(lines).endswith("before follow")
            put(server, group, ["during follow 1", "during follow 2"])
            assert _next_line(lines).endswith("during follow 1")
            assert _next_line(lines).endswith("during follow 2")
            # Lines of a long invocation are stored when it ends, stamped earlier than lines already shown.
            put(server, group, ["stored late, stamped earlier"], ts=int(time.time() * 1000) - 10_000)
            assert _next_line(lines).endswith("stored late, stamped earlier")
            time.sleep(2.5)  # a few more polls: nothing is printed twice
            assert lines.empty()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIMBUS_ENDPOINT", raising=False)
