"""Observability end to end: /metrics, metering and `nimbus cost`, JSON structured logs, tracing exported to a
real OTLP/HTTP endpoint, and the deployment history — against one server of this module."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

APP = """
import json, logging, os
log = logging.getLogger("app")

def handler(event, context):
    if event.get("raise"):
        raise ValueError("bad input")
    log.info("info from the handler")
    log.warning("warning from the handler", extra={"order": 7})
    print("plain print")
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID")}
"""


class OtlpReceiver:
    """A tiny OTLP/HTTP endpoint: keeps every ExportTraceServiceRequest POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.paths.append(self.path)
                if self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf":
                    msg = ExportTraceServiceRequest()
                    msg.ParseFromString(body)
                    receiver.requests.append(msg)
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[Any]:
        return [span for req in list(self.requests) for rs in req.resource_spans for ss in rs.scope_spans
                for span in ss.spans]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[NimbusServer]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "nimbus-test",
        "NIMBUS_METERING_FLUSH_INTERVAL": "0.2",
    }
    server = NimbusServer(tmp_path_factory.mktemp("observability") / "data", env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lam(srv: NimbusServer) -> Any:
    return srv.client("lambda")


def create(lam: Any, **config: Any) -> str:
    name = f"obs-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": APP})}, **config)
    return name


def scrape(srv: NimbusServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with srv.http() as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(response.text) for s in fam.samples}


def tail(response: dict[str, Any]) -> list[str]:
    return base64.b64decode(response["LogResult"]).decode().splitlines()


def test_metrics_count_invocations_errors_throttles_and_environments(srv: NimbusServer, lam: Any) -> None:
    name = create(lam)
    for _ in range(3):
        assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    assert lam.invoke(FunctionName=name, Payload=b'{"raise": true}')["FunctionError"] == "Unhandled"
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with srv.http() as http:  # one request (boto3 would retry a 429)
        throttled = http.post(f"/2015-03-31/functions/{name}/invocations", content=b"{}")
    assert throttled.status_code == 429 and throttled.json()["Type"] == "User"

    got = scrape(srv)
    latest = frozenset({("function", name), ("qualifier", "$LATEST")})
    assert got[("nimbus_invocations_total", latest)] == 4
    assert got[("nimbus_errors_total", latest)] == 1
    assert got[("nimbus_throttles_total", latest)] == 1
    assert got[("nimbus_duration_seconds_count", latest)] == 4
    assert got[("nimbus_init_duration_seconds_count", latest)] >= 1
    assert got[("nimbus_invocations_total", frozenset({("function", name), ("qualifier", "live")}))] == 1
    assert got[("nimbus_environments", frozenset({("state", "idle")}))] >= 1
    assert got[("nimbus_account_concurrency_limit", frozenset())] == 1000
    assert got[("nimbus_concurrent_executions", frozenset({("function", name)}))] == 0  # idle: 0, not absent
    memory = [v for (metric, labels), v in got.items()
              if metric == "nimbus_environment_memory_bytes" and ("function", name) in labels]
    assert memory and all(v > 0 for v in memory)

    lam.delete_function(FunctionName=name)  # a deleted function's series go
    deadline = time.monotonic() + 30
    while ("nimbus_invocations_total", latest) in scrape(srv):
        assert time.monotonic() < deadline, "series of a deleted function stayed"
        time.sleep(0.1)


def test_metering_and_nimbus_cost(srv: NimbusServer, lam: Any) -> None:
    name = create(lam, MemorySize=256, Architectures=["arm64"])
    for _ in range(5):
        lam.invoke(FunctionName=name, Payload=b"{}")
    env = {**os.environ, **srv.cli_env()}
    cli = [sys.executable, "-m", "nimbus", "cost"]
    out = subprocess.run([*cli, "--json", "--function", name], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    report = json.loads(out.stdout)
    (line,) = report["lines"]
    assert line["function"] == name and line["architecture"] == "arm64" and line["memoryMB"] == 256
    assert line["requests"] == 5
    # Billed per invocation at 1 ms granularity (INIT included): at least 5 ms, at 256 MB.
    assert line["gbSeconds"] >= 5 * 0.001 * 0.25
    assert line["requestCost"] == pytest.approx(5 * 0.2 / 1e6)
    assert report["freeTierApplied"] is False  # one function's share is priced without the account's free tier
    table = subprocess.run([*cli, "--function", name], env={**env, "COLUMNS": "80"}, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert name in table and "arm64" in table and "due on AWS" in table
    assert "…" not in table  # piped: whole rows, no "$0.000…" (tiny figures need all their digits)
    assert table.count("$0.000") >= 3
    month = time.strftime("%Y-%m", time.gmtime())
    whole = subprocess.run([*cli, "--json", "--month", month], env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    assert name in {x["function"] for x in json.loads(whole.stdout)["lines"]}
    bad = subprocess.run([*cli, "--month", "2026-13"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "YYYY-MM" in bad.stderr


def test_json_logs_platform_records_and_levels(srv: NimbusServer, lam: Any) -> None:
    group = f"/custom/obs-{uuid.uuid4().hex[:8]}"
    name = create(lam, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "LogGroup": group})
    response = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    lines = tail(response)
    docs = [json.loads(x) for x in lines if x.startswith("{")]
    types = [d.get("type") for d in docs]
    assert types[0] == "platform.start" and types[-1] == "platform.report"
    assert "platform.runtimeDone" not in types  # DEBUG: dropped at the default SystemLogLevel INFO
    assert not any(x.startswith(("START ", "END ", "REPORT ")) for x in lines)
    start = docs[0]["record"]
    assert start["version"] == "$LATEST" and start["requestId"] == response["ResponseMetadata"]["RequestId"]
    (app,) = [d for d in docs if d.get("logger") == "app"]  # the INFO record was filtered out (WARN)
    assert app["message"] == "warning from the handler" and app["order"] == 7
    assert app["level"] in ("WARN", "WARNING") and app["requestId"] == start["requestId"]
    assert "plain print" not in lines  # print() output has no level: INFO, below WARN (Lambda's filter)
    metrics = docs[-1]["record"]["metrics"]
    assert set(metrics) >= {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"}
    assert metrics["billedDurationMs"] >= metrics["durationMs"] + metrics["initDurationMs"]
    assert docs[-1]["record"]["status"] == "success"

    # The custom log group holds them.
    logs = srv.client("logs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = logs.filter_log_events(logGroupName=group).get("events", [])
        if any('"platform.report"' in e["message"] for e in events):
            break
        time.sleep(0.2)
    else:
        pytest.fail("no platform.report in the custom log group")
    # The environment's first record is platform.initStart, not the text INIT_START line.
    messages = [e["message"] for e in events]
    assert not any(m.startswith("INIT_START") for m in messages)
    init = [json.loads(m) for m in messages if '"platform.initStart"' in m]
    assert init and init[0]["record"]["functionName"] == name and init[0]["record"]["runtimeVersion"]

    # SystemLogLevel DEBUG adds runtimeDone; a function error is a JSON record too.
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"SystemLogLevel": "DEBUG"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    failed = lam.invoke(FunctionName=name, Payload=b'{"raise": true}', LogType="Tail")
    docs = [json.loads(x) for x in tail(failed) if x.startswith("{")]
    done = [d for d in docs if d.get("type") == "platform.runtimeDone"]
    assert done and done[0]["record"]["status"] == "error"
    (error,) = [d for d in docs if "ERROR" in (d.get("level"), d.get("log_level"))]
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad input"
    assert [d for d in docs if d.get("type") == "platform.report"][0]["record"]["status"] == "error"

    # SystemLogLevel WARN drops every platform record.
    lam.update_function_configuration(FunctionName=name, LoggingConfig={"SystemLogLevel": "WARN"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    quiet = tail(lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail"))
    assert not any('"type":"platform.' in x for x in quiet)


def test_levels_need_json_format(lam: Any) -> None:
    name = f"obs-{uuid.uuid4().hex[:10]}"
    with pytest.raises(ClientError) as info:
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": make_zip({"app.py": APP})},
                            LoggingConfig={"LogFormat": "Text", "SystemLogLevel": "DEBUG"})
    assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_tracing_exports_spans_to_otlp_and_passes_the_context_in(
    srv: NimbusServer, lam: Any, otlp: OtlpReceiver
) -> None:
    name = create(lam, TracingConfig={"Mode": "PassThrough"})
    trace_hex, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    path = f"/2015-03-31/functions/{name}/invocations"
    with srv.http() as http:
        unsampled = http.post(path, content=b"{}", headers={"traceparent": f"00-{uuid.uuid4().hex}-{parent}-00"})
        sampled = http.post(path, content=b"{}", headers={"traceparent": f"00-{trace_hex}-{parent}-01"})
    assert unsampled.status_code == 200 and sampled.status_code == 200
    seen = sampled.json()["trace"]
    assert seen.startswith(f"Root=1-{trace_hex[:8]}-{trace_hex[8:]};Parent=") and seen.endswith(";Sampled=1")
    function_parent = seen.split("Parent=")[1].split(";")[0]
    assert function_parent != parent  # the function's parent is the invocation span, not the caller's

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        roots = [s for s in otlp.spans() if s.trace_id.hex() == trace_hex and s.name == name]
        if roots:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"no span reached the OTLP endpoint (paths seen: {otlp.paths})")
    (root,) = roots
    assert root.parent_span_id.hex() == parent
    assert root.span_id.hex() == function_parent
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["faas.invocation_id"].string_value == sampled.headers["x-amzn-RequestId"]
    children = {s.name for s in otlp.spans() if s.parent_span_id == root.span_id}
    assert "Invocation" in children
    assert otlp.requests[0].resource_spans[0].resource.attributes[0].key  # service.name etc. present
    # The unsampled caller's invocation produced no span.
    assert not [s for s in otlp.spans() if s.parent_span_id.hex() == parent and s.trace_id.hex() != trace_hex]


def test_active_tracing_samples_without_a_caller_header(srv: NimbusServer, lam: Any, otlp: OtlpReceiver) -> None:
    name = create(lam, TracingConfig={"Mode": "Active"})
    seen = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())["trace"]
    assert seen.endswith("Sampled=1")
    root = seen.split(";")[0].removeprefix("Root=1-").replace("-", "")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(s.trace_id.hex() == root and s.name == name for s in otlp.spans()):
            return
        time.sleep(0.1)
    pytest.fail("no span for the Active function")


def test_deployment_history_records_who_when_and_what(srv: NimbusServer, lam: Any) -> None:
    name = create(lam)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": APP + "\n# v2\n"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    version = lam.publish_version(FunctionName=name)
    with srv.http() as http:
        assert http.post("/dashboard/api/login", json={"accessKeyId": srv.credentials[0],
                                                        "secretAccessKey": srv.credentials[1]}).status_code == 200
        detail = http.get(f"/dashboard/api/functions/{name}").json()
    history = detail["deployments"]
    assert [h["action"] for h in history] == ["PublishVersion", "UpdateFunctionCode", "CreateFunction"]
    assert history[0]["version"] == version["Version"]
    assert history[0]["codeSha256"] == history[1]["codeSha256"] != history[2]["codeSha256"]
    assert version["CodeSha256"] == history[0]["codeSha256"]  # base64, as the API shows it
    assert all(h["actor"].startswith(srv.credentials[0]) for h in history)
    assert all(abs(h["time"] / 1000 - time.time()) < 600 for h in history)


SLOW_APP = """
import time

def handler(event, context):
    print("begin", event["tag"])
    time.sleep(event.get("sleep", 0))
    return {}
"""


def test_dashboard_log_follow_gets_lines_stored_late_with_early_timestamps(srv: NimbusServer, lam: Any) -> None:
    """A long invocation's lines are stored when it ends, stamped from when it began: a follow poll after a
    short invocation's lines must still bring them (storage order, not time order)."""
    name = f"obs-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": SLOW_APP})})
    path = f"/dashboard/api/functions/{name}/logs"
    with srv.http() as http:
        assert http.post("/dashboard/api/login", json={"accessKeyId": srv.credentials[0],
                                                        "secretAccessKey": srv.credentials[1]}).status_code == 200
        http.post(f"/2015-03-31/functions/{name}/invocations", json={"tag": "warm"})
        first = http.get(path).json()
        cursor = first["cursor"]
        assert isinstance(cursor, int)

        def poll_until(text: str, after: int) -> tuple[list[dict[str, Any]], int]:
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                page = http.get(path, params={"after": after}).json()
                seen += page["events"]
                after = page["cursor"]
                if any(text in e["message"] for e in seen):
                    return seen, after
                time.sleep(0.2)
            pytest.fail(f"{text!r} never came in follow mode")

        slow_ids: list[str] = []

        def run_slow() -> None:
            with srv.http() as other:
                slow_ids.append(other.post(f"/2015-03-31/functions/{name}/invocations",
                                           json={"tag": "slow", "sleep": 4}, timeout=60).headers["x-amzn-requestid"])

        slow = threading.Thread(target=run_slow)
        slow.start()
        deadline = time.monotonic() + 30  # the slow one runs (on the warm environment) before the quick one
        while http.get(f"/dashboard/api/functions/{name}").json()["live"]["concurrent"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        http.post(f"/2015-03-31/functions/{name}/invocations", json={"tag": "quick"})
        quick_events, cursor = poll_until("begin quick", cursor)
        assert not any("begin slow" in e["message"] for e in quick_events)
        slow.join(60)
        slow_events, cursor = poll_until("begin slow", cursor)
        quick_ts = min(e["timestamp"] for e in quick_events if "begin quick" in e["message"])
        (start,) = [e for e in slow_events if e["message"].startswith(f"START RequestId: {slow_ids[0]}")]
        assert start["timestamp"] < quick_ts  # stamped before lines an earlier poll already returned
        ids = [e["id"] for e in quick_events + slow_events]
        assert len(ids) == len(set(ids))
        assert http.get(path, params={"after": cursor}).json()["events"] == []

        # One invocation's own lines (a click on its request id): START to REPORT of its environment's stream.
        own = http.get(f"/dashboard/api/functions/{name}/invocations/{slow_ids[0]}/logs").json()["events"]
        texts = [e["message"] for e in own]
        assert texts[0].startswith(f"START RequestId: {slow_ids[0]}")
        assert texts[-1].startswith(f"REPORT RequestId: {slow_ids[0]}")
        assert "begin slow" in texts and not any("quick" in t or "warm" in t for t in texts)

        # Concurrency against limits: an unreserved function shares the account limit minus reservations.
        pool = http.get(f"/dashboard/api/functions/{name}").json()["live"]["unreservedPool"]
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
        live = http.get(f"/dashboard/api/functions/{name}").json()["live"]
        assert live["reserved"] == 7 and live["unreservedPool"] == pool - 7


def test_dashboard_needs_a_login_checked_against_the_key_store(srv: NimbusServer) -> None:
    akid, secret = srv.credentials
    with srv.http() as http:
        assert http.get("/dashboard/api/overview").status_code == 401
        assert http.get("/dashboard/api/session").json()["authenticated"] is False
        bad = http.post("/dashboard/api/login", json={"accessKeyId": akid, "secretAccessKey": secret + "x"})
        assert bad.status_code == 401
        assert http.get("/dashboard/").status_code == 200  # the page itself (it shows the login form)
        ok = http.post("/dashboard/api/login", json={"accessKeyId": akid, "secretAccessKey": secret})
        assert ok.status_code == 200 and "httponly" in ok.headers["set-cookie"].lower()
        overview = http.get("/dashboard/api/overview")
        assert overview.status_code == 200 and "functions" in overview.json()
        cookie = http.cookies["nimbus_session"]
        forged = cookie[:-1] + ("1" if cookie[-1] == "0" else "0")  # the tag is hex: always a different tag
        http.cookies.set("nimbus_session", forged, path="/dashboard")
        assert http.get("/dashboard/api/overview").status_code == 401  # a forged cookie


def test_server_logs_are_json_when_not_a_terminal(srv: NimbusServer) -> None:
    lines = [x for x in srv.output().splitlines() if x.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(json.loads(x)) for x in lines)


def test_a_deleted_keys_dashboard_sessions_end_with_it(srv: NimbusServer) -> None:
    with srv.http() as api:
        created = api.post("/nimbus/v1/keys", json={"Description": "dashboard session test"})
        assert created.status_code in (200, 201), created.text
        key = created.json()
        with srv.http() as browser:
            login = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
            assert browser.post("/dashboard/api/login", json=login).status_code == 200
            assert browser.get("/dashboard/api/overview").status_code == 200
            assert api.delete(f"/nimbus/v1/keys/{key['AccessKeyId']}").status_code in (200, 204)
            assert browser.get("/dashboard/api/overview").status_code == 401
            assert browser.get("/dashboard/api/session").json()["authenticated"] is False


def test_metrics_off_setting(tmp_path: Path) -> None:
    server = NimbusServer(tmp_path / "data", env={"NIMBUS_METRICS": "false"}).start()
    try:
        lam = server.client("lambda")
        name = create(lam)
        lam.invoke(FunctionName=name, Payload=b"{}")
        got = scrape(server)
        assert not [k for k in got if k[0] == "nimbus_invocations_total"]
    finally:
        server.stop()


def test_async_queue_depth_and_event_age(srv: NimbusServer, lam: Any) -> None:
    name = f"obs-{uuid.uuid4().hex[:10]}"
    slow = "import time\ndef handler(e, c):\n    time.sleep(1.5)\n"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": slow})})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    for _ in range(4):
        assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    depth = frozenset({("function", name)})
    deadline = time.monotonic() + 30
    seen = 0.0
    while time.monotonic() < deadline and not seen:
        seen = scrape(srv).get(("nimbus_async_queue_depth", depth), 0.0)
        time.sleep(0.1)
    assert seen >= 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # all four invoked: four ages, the last ones waited for the first
        got = scrape(srv)
        if got.get(("nimbus_async_event_age_seconds_count", depth), 0) == 4:
            break
        time.sleep(0.2)
    else:
        pytest.fail("not every async event's age was observed")
    assert got[("nimbus_async_event_age_seconds_sum", depth)] >= 1.5  # later events waited behind a 1.5 s one
    assert got[("nimbus_async_dispatcher_events_total", frozenset({("outcome", "delivered")}))] >= 4
