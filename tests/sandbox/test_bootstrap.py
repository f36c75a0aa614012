"""The Python runtime (runtime/bootstrap.py) as user code sees it: the context object, environment
variables, logging, and the error documents for every failure awslambdaric reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nimbus.sandbox.manager import SandboxManager
from nimbus.sandbox.runtimes import available_runtimes

from .conftest import Sink, make_request, make_spec, started, write_code

CONTEXT_APP = """
import os

def handler(event, context):
    ident = context.identity
    cc = context.client_context
    return {
        "event": event,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [ident.cognito_identity_id, ident.cognito_identity_pool_id],
        "client_context": None if cc is None else {
            "custom": cc.custom, "env": cc.env,
            "client": None if cc.client is None else cc.client.installation_id,
        },
        "remaining": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
    }
"""


async def invoke_json(manager: SandboxManager, spec, payload: bytes = b"{}", **kw):  # type: ignore[no-untyped-def]
    result = await manager.invoke(spec, make_request(spec, payload, **kw))
    return result, json.loads(result.payload)


async def test_context_object(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, CONTEXT_APP), memory_size=256, environment={"GREETING": "hi"})
    result, doc = await invoke_json(
        manager,
        spec,
        b'{"k": [1, 2]}',
        invoked_arn=spec.function_arn + ":live",
        client_context=json.dumps({"custom": {"a": "b"}, "env": {"e": "f"}, "client": {"installation_id": "i-1"}}),
        identity=json.dumps({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}),
        trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    assert result.function_error is None, result.payload
    assert doc["event"] == {"k": [1, 2]}
    assert doc["function_name"] == spec.function_name
    assert doc["function_version"] == "$LATEST"
    assert doc["invoked_function_arn"] == spec.function_arn + ":live"
    assert doc["memory_limit_in_mb"] == "256"  # a string, as in awslambdaric
    assert doc["log_group_name"] == f"/aws/lambda/{spec.function_name}"
    assert doc["log_stream_name"] == result.log_stream
    assert doc["identity"] == ["id-1", "pool-1"]
    assert doc["client_context"] == {"custom": {"a": "b"}, "env": {"e": "f"}, "client": "i-1"}
    assert 0 < doc["remaining"] <= spec.timeout * 1000
    assert doc["trace"].startswith("Root=1-5759e988")
    assert result.init_duration_ms is not None and result.init_duration_ms > 0


async def test_reserved_environment(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, CONTEXT_APP), environment={"GREETING": "hi"})
    result, doc = await invoke_json(manager, spec)
    env = doc["environ"]
    task_root = "/var/task" if manager.backend_name == "namespaces" else str(spec.code_dir)
    assert env["GREETING"] == "hi"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == spec.function_name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == str(spec.memory_size)
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{spec.runtime}"
    assert env["LAMBDA_TASK_ROOT"] == task_root == doc["cwd"]
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{spec.function_name}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == result.log_stream
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"
    assert env["TZ"] == ":UTC"
    for name in ("LANG", "PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "LAMBDA_RUNTIME_DIR"):
        assert env[name]
    assert "_X_AMZN_TRACE_ID" not in env  # no trace id given
    assert not [k for k in env if k.startswith(("NIMBUS", "_NIMBUS", "VIRTUAL_ENV", "PYTEST"))]
    assert "HOME" not in env  # nothing of the server's environment leaks in


async def test_log_stream_name_format(tmp_path: Path, process_manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return 1\n"))
    result = await process_manager.invoke(spec, make_request(spec))
    date, _, rest = result.log_stream.rpartition("/")
    assert len(date.split("/")) == 3
    assert rest.startswith("[$LATEST]") and len(rest) == len("[$LATEST]") + 32
    int(rest[len("[$LATEST]") :], 16)


async def test_empty_payload_becomes_empty_dict(tmp_path: Path, process_manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return {'event': e}\n"))
    result, doc = await invoke_json(process_manager, spec, b"")
    assert doc == {"event": {}}


async def test_logs_print_logging_and_context_log(tmp_path: Path, process_manager: SandboxManager, sink: Sink) -> None:
    source = """
    import logging, os
    print("during init")
    def handler(event, context):
        print("line one\\nline two")
        print("no newline", end="")
        logging.getLogger().info("info %s", 42)
        logging.getLogger("child").warning("careful")
        context.log("from context")
        os.write(1, b"raw fd write\\n")
        return "ok"
    """
    spec = make_spec(write_code(tmp_path, source))
    request = make_request(spec)
    result = await process_manager.invoke(spec, request)
    texts = [t for _, t in result.logs]
    assert texts[0] == "line one\nline two"  # one print(), one log event, as on AWS (issue 21)
    assert "no newline" in texts  # a partial line is still an event when the invocation ends
    rid = request.request_id
    assert any(t.startswith("[WARNING]\t") and t.endswith(f"\t{rid}\tcareful") for t in texts)
    assert "from context" in texts
    assert "raw fd write" in texts or "raw fd write" in sink.texts()
    # the root logger's level is WARNING as in a plain interpreter: info is filtered
    assert not any("info 42" in t for t in texts)
    assert "during init" in sink.texts()
    assert any(t.startswith("INIT_START Runtime Version: python:3.") for t in sink.texts())
    stamps = [ts for ts, _ in result.logs]
    assert stamps == sorted(stamps)


async def test_logging_format_carries_request_id(tmp_path: Path, process_manager: SandboxManager) -> None:
    source = """
    import logging
    logger = logging.getLogger()
    logger.setLevel(logging.INFO)
    def handler(event, context):
        logger.info("hello")
        return None
    """
    spec = make_spec(write_code(tmp_path, source))
    request = make_request(spec)
    result = await process_manager.invoke(spec, request)
    (line,) = [t for _, t in result.logs]
    level, stamp, rid, message = line.split("\t")
    assert level == "[INFO]"
    assert stamp.endswith("Z") and "T" in stamp and len(stamp) == len("2024-01-01T00:00:00.000Z")
    assert rid == request.request_id
    assert message == "hello"
    assert result.payload == b"null"


async def test_json_log_format(tmp_path: Path, process_manager: SandboxManager) -> None:
    source = """
    import logging
    def handler(event, context):
        logging.getLogger().warning("structured", extra={"k": "v"})
        return 1
    """
    spec = make_spec(write_code(tmp_path, source), logging_config={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"})
    request = make_request(spec)
    result = await process_manager.invoke(spec, request)
    (line,) = [json.loads(t) for _, t in result.logs]
    assert line["level"] == "WARN" or line["level"] == "WARNING"
    assert line["message"] == "structured" and line["k"] == "v"
    assert line["requestId"] == request.request_id


ERROR_CASES = [
    ("app.handler", {"app.py": "import not_a_module_anywhere\n"}, "Runtime.ImportModuleError",
     "Unable to import module 'app': No module named 'not_a_module_anywhere'"),
    ("missing.handler", {"app.py": "x = 1\n"}, "Runtime.ImportModuleError",
     "Unable to import module 'missing': No module named 'missing'"),
    ("app.handler", {"app.py": "def handler(e, c)\n    return 1\n"}, "Runtime.UserCodeSyntaxError",
     "Syntax error in module 'app': "),
    ("app.nope", {"app.py": "def handler(e, c):\n    return 1\n"}, "Runtime.HandlerNotFound",
     "Handler 'nope' missing on module 'app'"),
    ("apphandler", {"app.py": "x = 1\n"}, "Runtime.MalformedHandlerName",
     "Bad handler 'apphandler': not enough values to unpack (expected 2, got 1)"),
    ("app.handler", {"app.py": "raise RuntimeError('boom at init')\n"}, "RuntimeError", "boom at init"),
]


@pytest.mark.parametrize(("handler", "files", "error_type", "message"), ERROR_CASES)
async def test_init_errors(
    tmp_path: Path, process_manager: SandboxManager, handler: str, files: dict[str, str], error_type: str, message: str
) -> None:
    (name, source), = files.items()
    spec = make_spec(write_code(tmp_path, source, name), handler=handler)
    request = make_request(spec)
    result = await process_manager.invoke(spec, request)
    doc = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert result.error_type == error_type == doc["errorType"]
    assert doc["errorMessage"].startswith(message)
    assert set(doc) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert doc["requestId"] == ""  # awslambdaric reports init errors without a request id
    texts = [t for _, t in result.logs]
    assert any(t.startswith("[WARNING]") and "LAMBDA_WARNING: Unhandled exception." in t for t in texts)
    assert any(t.startswith(f"[ERROR] {error_type}: {message}") for t in texts)
    # the environment is discarded: the next invocation initialises again (and fails again)
    assert process_manager.environment_count() == 0
    again = await process_manager.invoke(spec, make_request(spec))
    assert again.error_type == error_type and again.init_duration_ms is not None
    assert again.environment_id != result.environment_id


async def test_syntax_error_stack_trace(tmp_path: Path, process_manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, "def handler(e, c)\n    return 1\n"))
    doc = json.loads((await process_manager.invoke(spec, make_request(spec))).payload)
    (frame,) = doc["stackTrace"]
    assert frame.startswith('  File "') and "app.py\" Line 1" in frame


async def test_unhandled_exception(tmp_path: Path, process_manager: SandboxManager) -> None:
    source = """
    class MyError(Exception):
        pass
    def inner():
        raise MyError("went wrong")
    def handler(event, context):
        inner()
    """
    spec = make_spec(write_code(tmp_path, source))
    request = make_request(spec)
    result = await process_manager.invoke(spec, request)
    doc = json.loads(result.payload)
    assert result.function_error == "Unhandled" and result.error_type == "MyError"
    assert doc["errorType"] == "MyError" and doc["errorMessage"] == "went wrong"
    assert doc["requestId"] == request.request_id
    assert len(doc["stackTrace"]) == 2  # handler -> inner; the runtime's own frames are cut off
    assert all("bootstrap.py" not in f for f in doc["stackTrace"])
    assert 'in handler\n    inner()\n' in doc["stackTrace"][0]
    error_lines = [t for _, t in result.logs if t.startswith("[ERROR]")]
    assert len(error_lines) == 1
    first, second, *rest = error_lines[0].split("\n")
    assert first == "[ERROR] MyError: went wrong"
    assert second == "Traceback (most recent call last):"
    assert rest[0].startswith("\u00a0\u00a0File ")  # indentation becomes no-break spaces, as in awslambdaric
    # the environment survives a handled error and is reused
    again = await process_manager.invoke(spec, make_request(spec))
    assert again.environment_id == result.environment_id and again.init_duration_ms is None


async def test_result_not_serialisable(tmp_path: Path, process_manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return {1, 2}\n"))
    request = make_request(spec)
    doc = json.loads((await process_manager.invoke(spec, request)).payload)
    assert doc == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "requestId": request.request_id,
        "stackTrace": [],
    }


async def test_non_ascii_and_bytes_results(tmp_path: Path, process_manager: SandboxManager) -> None:
    source = """
    def handler(event, context):
        return b"raw" if event.get("raw") else {"s": "h\\u00e9llo \\u2603"}
    """
    spec = make_spec(write_code(tmp_path, source))
    text = await process_manager.invoke(spec, make_request(spec))
    assert json.loads(text.payload) == {"s": "h\u00e9llo \u2603"}
    assert "\u2603".encode() in text.payload  # ensure_ascii=False, as for python3.12 on Lambda
    raw = await process_manager.invoke(spec, make_request(spec, b'{"raw": true}'))
    assert raw.payload == b"raw"


async def test_response_too_large(tmp_path: Path, sink: Sink) -> None:
    manager = await started("process", sink, sync_payload_max_bytes=1000)
    try:
        spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return 'x' * 5000\n"))
        result = await manager.invoke(spec, make_request(spec))
        doc = json.loads(result.payload)
        assert result.error_type == "Function.ResponseSizeTooLarge"
        assert doc["errorMessage"] == "Response payload size exceeded maximum allowed payload size (1100 bytes)."
    finally:
        await manager.stop()


async def test_layers_and_task_root_on_sys_path(tmp_path: Path, process_manager: SandboxManager) -> None:
    code = write_code(tmp_path, "import sys\ndef handler(e, c):\n    return sys.path[:3]\n")
    (code / "helper").mkdir()
    spec = make_spec(code)
    paths = json.loads((await process_manager.invoke(spec, make_request(spec))).payload)
    assert paths[0] == str(code)
    assert paths[1].startswith("/opt/python/lib/python3.") and paths[1].endswith("/site-packages")
    assert paths[2] == "/opt/python"


@pytest.mark.parametrize("runtime", sorted(r for r in available_runtimes() if r.startswith("python")))
async def test_every_interpreter_runs_the_bootstrap(tmp_path: Path, manager: SandboxManager, runtime: str) -> None:
    source = "import sys\ndef handler(e, c):\n    return list(sys.version_info[:2])\n"
    spec = make_spec(write_code(tmp_path, source), runtime=runtime)
    result = await manager.invoke(spec, make_request(spec))
    assert result.function_error is None, result.payload
    assert json.loads(result.payload) == [3, int(runtime.split(".")[1])]
