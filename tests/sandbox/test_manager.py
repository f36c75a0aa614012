"""SandboxManager and its pools: warm reuse, concurrency, idle reaping, retiring, timeouts, crashes, stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from nimbus.sandbox.manager import SandboxManager

from .conftest import Sink, make_request, make_spec, started, write_code

ECHO = "def handler(event, context):\n    return event\n"
SLOW = "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return event\n"


async def test_warm_reuse_same_environment(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, ECHO))
    first = await manager.invoke(spec, make_request(spec, b'{"n": 1}'))
    second = await manager.invoke(spec, make_request(spec, b'{"n": 2}'))
    assert json.loads(second.payload) == {"n": 2}
    assert first.init_duration_ms is not None and second.init_duration_ms is None
    assert first.environment_id == second.environment_id
    assert first.log_stream == second.log_stream
    assert manager.environment_count() == 1
    assert second.max_memory_mb > 0


async def test_concurrent_invocations_get_separate_environments(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, SLOW))
    results = await asyncio.gather(*(manager.invoke(spec, make_request(spec, b'{"sleep": 0.3}')) for _ in range(3)))
    assert all(r.function_error is None for r in results)
    assert len({r.environment_id for r in results}) == 3
    assert manager.environment_count() == 3
    # afterwards they are all warm: three sequential invocations reuse them (LIFO: the last one back)
    again = [await manager.invoke(spec, make_request(spec)) for _ in range(3)]
    assert len({r.environment_id for r in again}) == 1
    assert again[0].environment_id in {r.environment_id for r in results}


async def test_different_revisions_do_not_share(tmp_path: Path, process_manager: SandboxManager) -> None:
    code = write_code(tmp_path, ECHO)
    a, b = make_spec(code, function_name="f1"), make_spec(code, function_name="f1")
    ra = await process_manager.invoke(a, make_request(a))
    rb = await process_manager.invoke(b, make_request(b))
    assert ra.environment_id != rb.environment_id


async def test_idle_environments_are_reaped(tmp_path: Path, sink: Sink) -> None:
    manager = await started("process", sink, idle_timeout=0.2)
    try:
        spec = make_spec(write_code(tmp_path, ECHO))
        first = await manager.invoke(spec, make_request(spec))
        assert manager.environment_count() == 1
        for _ in range(100):
            if manager.environment_count() == 0:
                break
            await asyncio.sleep(0.05)
        assert manager.environment_count() == 0
        second = await manager.invoke(spec, make_request(spec))
        assert second.environment_id != first.environment_id and second.init_duration_ms is not None
    finally:
        await manager.stop()


async def test_retire_kills_idle_now_and_busy_when_done(tmp_path: Path, process_manager: SandboxManager) -> None:
    code = write_code(tmp_path, SLOW)
    old = make_spec(code, function_name="retiring")
    warm = await asyncio.gather(*(process_manager.invoke(old, make_request(old, b'{"sleep": 0.2}')) for _ in range(2)))
    busy_task = asyncio.create_task(process_manager.invoke(old, make_request(old, b'{"sleep": 0.5}')))
    await asyncio.sleep(0.2)
    keep = make_spec(code, function_name="retiring", version="1")
    kept = await process_manager.invoke(keep, make_request(keep))
    assert process_manager.environment_count() == 3
    process_manager.retire("retiring", {(keep.version, keep.revision_id)})
    assert process_manager.environment_count() == 2  # the idle one of `old` is gone
    busy = await busy_task
    assert busy.function_error is None  # a busy environment finishes its invocation
    assert process_manager.environment_count() == 1
    assert (await process_manager.invoke(keep, make_request(keep))).environment_id == kept.environment_id
    fresh = await process_manager.invoke(old, make_request(old))
    assert fresh.environment_id not in {r.environment_id for r in warm}
    process_manager.retire("retiring", set())
    assert process_manager.environment_count() == 0


async def test_timeout(tmp_path: Path, manager: SandboxManager) -> None:
    source = "def handler(event, context):\n    while True:\n        pass\n"
    spec = make_spec(write_code(tmp_path, source), timeout=1)
    request = make_request(spec)
    result = await manager.invoke(spec, request)
    assert result.function_error == "Unhandled"
    assert result.error_type == "Sandbox.Timedout"
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert result.extra_report == {"Status": "timeout"}
    assert result.duration_ms >= 900
    assert manager.environment_count() == 0
    after = await manager.invoke(spec, make_request(spec))  # a fresh environment
    assert after.error_type == "Sandbox.Timedout" and after.environment_id != result.environment_id


CRASHES = [
    ("import os\ndef handler(e, c):\n    os._exit(3)\n", "Runtime exited with error: exit status 3"),
    ("import os, signal\ndef handler(e, c):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
     "Runtime exited with error: signal: killed"),
    ("import sys\ndef handler(e, c):\n    sys.exit(2)\n", "Runtime exited with error: exit status 2"),
    ("import os\ndef handler(e, c):\n    os.close(int(os.environ.get('NIMBUS_FD', 3)))\n    return 1\n", None),
]


@pytest.mark.parametrize(("source", "message"), CRASHES)
async def test_crashes_are_runtime_exit_errors(
    tmp_path: Path, manager: SandboxManager, source: str, message: str | None
) -> None:
    spec = make_spec(write_code(tmp_path, source))
    request = make_request(spec)
    result = await manager.invoke(spec, request)
    assert result.function_error == "Unhandled"
    if message is not None:
        assert result.error_type == "Runtime.ExitError"
        assert json.loads(result.payload) == {
            "errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request.request_id} Error: {message}",
        }
    # either way the server survives and the function keeps working with a fresh environment
    spec_ok = make_spec(spec.code_dir, function_name=spec.function_name)
    ok = await manager.invoke(spec_ok, make_request(spec_ok))
    assert ok.environment_id != result.environment_id


async def test_closing_the_control_fd(tmp_path: Path, process_manager: SandboxManager) -> None:
    """The runtime's own channel closed from user code: the invocation fails cleanly, nothing hangs."""
    source = """
    import os
    def handler(e, c):
        for fd in range(3, 64):
            try:
                os.close(fd)
            except OSError:
                pass
        return 1
    """
    spec = make_spec(write_code(tmp_path, source))
    result = await asyncio.wait_for(process_manager.invoke(spec, make_request(spec)), 10)
    assert result.error_type == "Runtime.ExitError"


async def test_huge_output_is_bounded(tmp_path: Path, process_manager: SandboxManager, sink: Sink) -> None:
    source = """
    import os
    def handler(e, c):
        chunk = "x" * 1023 + "\\n"
        for _ in range(20 * 1024):   # 20 MB through print
            print(chunk, end="")
        data = (("y" * 1023) + "\\n").encode() * 1024
        for _ in range(20):           # 20 MB straight to fd 1
            os.write(1, data)
        return "done"
    """
    spec = make_spec(write_code(tmp_path, source), timeout=30)
    result = await process_manager.invoke(spec, make_request(spec))
    assert result.payload == b'"done"'
    total = sum(len(t) for _, t in result.logs) + sum(len(t) for t in sink.texts())
    assert total < 12 * 1024 * 1024
    assert any("log lines dropped" in t for _, t in result.logs)


async def test_stop_fails_in_flight_invocations_cleanly(tmp_path: Path, sink: Sink) -> None:
    manager = await started("process", sink)
    spec = make_spec(write_code(tmp_path, SLOW))
    task = asyncio.create_task(manager.invoke(spec, make_request(spec, b'{"sleep": 30}')))
    await asyncio.sleep(0.5)
    await asyncio.wait_for(manager.stop(), 10)
    result = await asyncio.wait_for(task, 5)
    assert result.function_error == "Unhandled" and result.error_type == "Runtime.ExitError"
    assert "shutting down" in json.loads(result.payload)["errorMessage"]
    after = await manager.invoke(spec, make_request(spec))
    assert after.error_type == "Runtime.ExitError"


async def test_init_timeout(tmp_path: Path, sink: Sink) -> None:
    manager = await started("process", sink, init_timeout=0.5)
    try:
        spec = make_spec(write_code(tmp_path, "import time\ntime.sleep(30)\ndef handler(e, c):\n    return 1\n"))
        result = await manager.invoke(spec, make_request(spec))
        assert result.error_type == "Sandbox.Timedout"
        assert "Init timed out after 0.50 seconds" in json.loads(result.payload)["errorMessage"]
        assert manager.environment_count() == 0
    finally:
        await manager.stop()


async def test_unknown_runtime_is_rejected(tmp_path: Path, process_manager: SandboxManager) -> None:
    from nimbus.errors import InvalidRuntime

    spec = make_spec(write_code(tmp_path, ECHO), runtime="python2.7")
    with pytest.raises(InvalidRuntime):
        await process_manager.invoke(spec, make_request(spec))


async def test_isolation_process_reason_is_explicit(process_manager: SandboxManager) -> None:
    assert process_manager.backend_name == "process"
    assert "NO isolation" in process_manager.backend_reason
