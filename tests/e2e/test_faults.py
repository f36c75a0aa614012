"""Faults a server meets in production (issue 16): its data volume fills up, its database is locked by
another process, an environment is killed in the middle of an invocation. Each gets a clear error in
Lambda's shape, nothing accepted is lost, and the server recovers by itself."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nimbus.errors import DATABASE_BUSY, DISK_FULL
from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

RECORDER = """
def handler(event, context):
    print("EVENT", event.get("n"))
    return {"n": event.get("n")}
"""


def error_of(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def messages(server: NimbusServer, name: str) -> list[str]:
    try:
        events = server.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    except ClientError:
        return []
    return [e["message"].rstrip("\n") for e in events]


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def small_volume() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mnt = Path(tempfile.mkdtemp(prefix="nimbus-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def test_a_full_data_volume_refuses_clearly_loses_nothing_and_recovers(small_volume: Path) -> None:
    server = NimbusServer(small_volume / "data").start()
    try:
        lam = server.client("lambda")
        name = f"full-{uuid.uuid4().hex[:8]}"
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=30,
                            Code={"ZipFile": make_zip({"app.py": RECORDER})})
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
        accepted = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 1}))
        assert accepted["StatusCode"] == 202
        filler = small_volume / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        # An event that cannot be stored is refused (a 500 SDKs retry), never a 202 that would be lost.
        code, message = error_of(lambda: lam.invoke(FunctionName=name, InvocationType="Event",
                                                     Payload=json.dumps({"n": 2})))
        assert (code, message) == ("ServiceException", DISK_FULL)
        code, message = error_of(lambda: lam.create_function(
            FunctionName=f"{name}-2", Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": RECORDER})}))
        assert (code, message) == ("ServiceException", DISK_FULL)
        filler.unlink()
        # Space is back: the server works again, and the event accepted before is delivered.
        out = lam.invoke(FunctionName=name, Payload=json.dumps({"n": 3}))
        assert json.loads(out["Payload"].read()) == {"n": 3}
        assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 4}))["StatusCode"] == 202
        try:
            wait_for(lambda: {"EVENT 1", "EVENT 4"} <= set(messages(server, name)))
        except AssertionError:
            raise AssertionError(f"{messages(server, name)}\n{server.output()[-4000:]}") from None
    finally:
        server.stop()


def test_a_locked_database_waits_then_answers_clearly(tmp_path: Path) -> None:
    server = NimbusServer(tmp_path / "data", env={"NIMBUS_DATABASE_BUSY_TIMEOUT": "1"}).start()
    try:
        lam = server.client("lambda")
        name = f"locked-{uuid.uuid4().hex[:8]}"
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": make_zip({"app.py": RECORDER})})
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
        other = sqlite3.connect(tmp_path / "data" / "nimbus.db", timeout=5)
        other.execute("BEGIN EXCLUSIVE")
        try:
            code, message = error_of(lambda: lam.update_function_configuration(FunctionName=name,
                                                                                Description="changed"))
            assert (code, message) == ("ServiceException", DATABASE_BUSY)
        finally:
            other.rollback()
            other.close()
        lam.update_function_configuration(FunctionName=name, Description="changed")
        assert lam.get_function_configuration(FunctionName=name)["Description"] == "changed"
    finally:
        server.stop()


def _kill_environments(server_pid: int) -> int:
    """SIGKILL every process in the environment cgroups of the server `server_pid` (its runtimes and their
    zygotes): what the kernel's OOM killer or a crash does to an environment."""
    killed = 0
    for parent in Path("/sys/fs/cgroup").glob(f"**/nimbus-{server_pid}"):
        for procs in parent.glob("*/cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
    return killed


SLEEPER = """
import time
def handler(event, context):
    if event.get("sleep"):
        print("before the kill", flush=True)
        time.sleep(30)
    return "alive"
"""


def test_an_environment_killed_mid_invocation(tmp_path: Path) -> None:
    if not Path("/sys/fs/cgroup").is_dir() or os.geteuid() != 0:
        pytest.skip("killing an environment by its cgroup needs root and cgroups")
    server = NimbusServer(tmp_path / "data").start()
    try:
        assert server.proc is not None
        lam = server.client("lambda")
        name = f"killed-{uuid.uuid4().hex[:8]}"
        lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=60,
                            Code={"ZipFile": make_zip({"app.py": SLEEPER})})
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
        result: dict[str, Any] = {}

        def call() -> None:
            out = lam.invoke(FunctionName=name, Payload=b'{"sleep": true}')
            result.update(out=out, body=json.loads(out["Payload"].read()))

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(3)  # the handler is sleeping: it has printed its line
        assert _kill_environments(server.proc.pid) > 0
        thread.join(60)
        assert result["out"]["FunctionError"] == "Unhandled"
        assert result["body"]["errorType"] == "Runtime.ExitError"
        assert "signal: killed" in result["body"]["errorMessage"]
        logs = wait_for(lambda: (m := messages(server, name)) and any(x.startswith("REPORT") for x in m) and m)
        assert "before the kill" in logs  # output written before the kill is kept
        # the next invocation gets a fresh environment
        assert json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == "alive"
    finally:
        server.stop()
