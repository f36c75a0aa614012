"""Isolation proofs through the public API: each runs code inside a function on a real server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

PROBE = r'''
import errno, json, os, socket, time

def handler(event, context):
    check = event["check"]
    if check == "processes":
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    if check == "write_task":
        try:
            open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "x"), "w")
            return "wrote"
        except OSError as exc:
            return errno.errorcode[exc.errno]
    if check == "read":
        try:
            with open(event["path"], "rb") as f:
                return "read %d bytes" % len(f.read())
        except OSError as exc:
            return errno.errorcode[exc.errno]
    if check == "listdir":
        try:
            return os.listdir(event["path"])
        except OSError as exc:
            return errno.errorcode[exc.errno]
    if check == "uid":
        return [os.getuid(), os.geteuid()]
    if check == "tmp":
        try:
            with open("/tmp/fill", "wb") as f:
                for _ in range(event["mb"]):
                    f.write(b"\0" * 1024 * 1024)
            return "ok"
        except OSError as exc:
            return errno.errorcode[exc.errno]
    if check == "memory":
        hog = []
        for _ in range(event["mb"]):
            hog.append(bytearray(1024 * 1024))
        return "survived"
    if check == "forkbomb":
        children = 0
        try:
            for _ in range(5000):
                if os.fork() == 0:
                    time.sleep(3)
                    os._exit(0)
                children += 1
        except OSError as exc:
            return ["stopped", children, errno.errorcode.get(exc.errno)]
        return ["unlimited", children]
    if check == "network":
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((event["host"], event["port"]))
            return "connected"
        except OSError as exc:
            return type(exc).__name__
'''


@pytest.fixture(scope="module", params=["fork", "fresh"])
def isolated(
    request: pytest.FixtureRequest, server: NimbusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NimbusServer]:
    """Both ways environments start: forks of a zygote (the shared server's default) and fresh interpreters
    (a server of its own with NIMBUS_ZYGOTES=false)."""
    backend = httpx.get(f"{server.endpoint}/nimbus/v1/health").json()["isolation"]
    if backend != "namespaces":
        pytest.skip(f"the server runs the {backend!r} backend (no namespaces/cgroups on this machine)")
    if request.param == "fork":
        yield server
        return
    fresh = NimbusServer(tmp_path_factory.mktemp("fresh") / "data", env={"NIMBUS_ZYGOTES": "false"}).start()
    try:
        yield fresh
    finally:
        fresh.stop()


@pytest.fixture(scope="module")
def lam(isolated: NimbusServer) -> Any:
    return isolated.client("lambda")


@pytest.fixture(scope="module")
def probe(isolated: NimbusServer, lam: Any) -> str:
    name = f"iso-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE, MemorySize=128,
        Timeout=30, EphemeralStorage={"Size": 512}, Code={"ZipFile": make_zip({"app.py": PROBE})},
    )
    return name


def run(lam: Any, name: str, **event: Any) -> tuple[Any, dict[str, Any]]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event))
    return json.loads(out["Payload"].read()), out


def test_cannot_see_host_processes(lam: Any, probe: str) -> None:
    pids, _ = run(lam, probe, check="processes")
    assert len(pids) < 10 and max(pids) < 100


def test_cannot_write_code(lam: Any, probe: str) -> None:
    assert run(lam, probe, check="write_task")[0] in ("EROFS", "EACCES")


def test_cannot_read_data_dir_or_other_code(lam: Any, probe: str, isolated: NimbusServer) -> None:
    db = isolated.data_dir / "nimbus.db"
    assert db.exists()
    assert run(lam, probe, check="read", path=str(db))[0] in ("ENOENT", "EACCES")
    assert run(lam, probe, check="listdir", path=str(isolated.data_dir))[0] in ("ENOENT", "EACCES")
    code_root = isolated.data_dir / "code"
    assert run(lam, probe, check="listdir", path=str(code_root))[0] in ("ENOENT", "EACCES")


def test_runs_as_unprivileged_uid(lam: Any, probe: str) -> None:
    assert run(lam, probe, check="uid")[0] == [993, 993]


def test_tmp_is_limited_to_ephemeral_storage(lam: Any, probe: str) -> None:
    assert run(lam, probe, check="tmp", mb=600)[0] == "ENOSPC"


def test_killed_past_memory_limit(lam: Any, probe: str) -> None:
    body, out = run(lam, probe, check="memory", mb=400)
    assert out["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert "signal: killed" in body["errorMessage"]
    assert run(lam, probe, check="uid")[0] == [993, 993]  # replaced by a fresh environment


def test_fork_bomb_is_contained(lam: Any, isolated: NimbusServer) -> None:
    name = f"bomb-{uuid.uuid4().hex[:8]}"
    lam.create_function(  # a full CPU, so the bomb reaches the pids limit quickly
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE, MemorySize=1769,
        Timeout=60, Code={"ZipFile": make_zip({"app.py": PROBE})},
    )
    body, _ = run(lam, name, check="forkbomb")
    assert isinstance(body, list) and body[0] == "stopped", body
    assert body[1] < 1024 and body[2] == "EAGAIN"
    assert run(lam, name, check="uid")[0] == [993, 993]


def test_no_network_to_the_host(lam: Any, probe: str, isolated: NimbusServer) -> None:
    assert run(lam, probe, check="network", host="127.0.0.1", port=isolated.port)[0] != "connected"
