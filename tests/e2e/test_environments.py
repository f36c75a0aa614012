"""Execution environments behave like Lambda's (issue 14), through boto3 against a real server: one INIT per
environment, SnapStart restores that share no connection, INIT without privileges, /proc showing only the
environment's own processes, bounded writable places, packages with symlinks."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

SOURCE = """
import ctypes, errno, json, os, socket, time, uuid
from snapshot_restore_py import register_after_restore

libc = ctypes.CDLL(None, use_errno=True)
def attempt(fn, *args):
    return "ok" if fn(*args) == 0 else errno.errorcode[ctypes.get_errno()]

ID = str(uuid.uuid4())
LISTENER = socket.socket()
LISTENER.bind(("127.0.0.1", 0))
LISTENER.listen()
CONN = socket.create_connection(LISTENER.getsockname())
AT_INIT = {"unshare": attempt(libc.unshare, 0x40000000), "chroot": attempt(libc.chroot, b"/tmp")}
RESTORED = []
register_after_restore(lambda: RESTORED.append(str(uuid.uuid4())))

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    try:
        peer = CONN.getpeername()[1]
    except OSError as exc:
        peer = errno.errorcode[exc.errno]
    out = {"id": ID, "sock": os.fstat(CONN.fileno()).st_ino, "peer": peer, "init": AT_INIT,
           "restored": RESTORED, "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
    if event.get("shm_mb"):
        try:
            with open("/dev/shm/fill", "wb") as f:
                for _ in range(event["shm_mb"]):
                    f.write(b"\\0" * 1024 * 1024)
            out["shm"] = "ok"
        except OSError as exc:
            out["shm"] = errno.errorcode[exc.errno]
    return out
"""


@pytest.fixture(scope="module")
def backend(server: NimbusServer) -> str:
    return str(httpx.get(f"{server.endpoint}/nimbus/v1/health").json()["isolation"])


@pytest.fixture(scope="module")
def fn(lam: Any) -> str:
    name = f"env-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE, Timeout=30,
        Code={"ZipFile": make_zip({"app.py": SOURCE})}, SnapStart={"ApplyOn": "PublishedVersions"},
    )
    return name


def invoke(lam: Any, name: str, qualifier: str = "$LATEST", **event: Any) -> tuple[dict[str, Any], str]:
    out = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=json.dumps(event), LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    report = next(ln for ln in base64.b64decode(out["LogResult"]).decode().splitlines() if ln.startswith("REPORT"))
    return body, report


def concurrently(lam: Any, name: str, n: int, qualifier: str = "$LATEST") -> list[tuple[dict[str, Any], str]]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: invoke(lam, name, qualifier, sleep=0.5), range(n)))


def test_each_environment_of_latest_runs_its_own_init(lam: Any, fn: str, backend: str) -> None:
    results = concurrently(lam, fn, 4)
    docs = [doc for doc, _ in results]
    assert len({d["id"] for d in docs}) == 4  # four module-level uuid4() values
    assert len({d["sock"] for d in docs}) == 4  # four INIT-time sockets, each still connected
    assert all(isinstance(d["peer"], int) for d in docs)
    assert all("Init Duration: " in report and "Restore" not in report for _, report in results)
    if backend == "namespaces":
        assert {json.dumps(d["init"]) for d in docs} == {json.dumps({"unshare": "EPERM", "chroot": "EPERM"})}
        assert all(d["pids"] == [1, 2] for d in docs), docs  # its reaper and itself: no zygote, no sibling


def test_snapstart_restores_share_no_connection(lam: Any, fn: str, backend: str) -> None:
    version = lam.publish_version(FunctionName=fn)["Version"]
    deadline = time.monotonic() + 60
    while lam.get_function_configuration(FunctionName=fn, Qualifier=version)["State"] == "Pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    results = concurrently(lam, fn, 2, version)
    docs = [doc for doc, _ in results]
    assert len({d["id"] for d in docs}) == 1  # one INIT, in the snapshot
    assert len({d["sock"] for d in docs}) == 2  # ... but its socket is not shared: each got a fresh one
    assert {d["peer"] for d in docs} == {"ENOTCONN"}  # closed: the client sees a dropped connection
    assert all(len(d["restored"]) == 1 for d in docs) and docs[0]["restored"] != docs[1]["restored"]
    assert all("Restore Duration: " in report and "Init Duration" not in report for _, report in results)
    if backend == "namespaces":
        assert {json.dumps(d["init"]) for d in docs} == {json.dumps({"unshare": "EPERM", "chroot": "EPERM"})}
        assert all(d["pids"] == [1, 2] for d in docs), docs


def test_dev_shm_is_bounded(lam: Any, fn: str, backend: str) -> None:
    if backend != "namespaces":
        pytest.skip("the process backend shares the host's /dev/shm")
    doc, _ = invoke(lam, fn, shm_mb=200)
    assert doc["shm"] == "ENOSPC"


def _zip_with_links(files: dict[str, str], links: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o644 << 16
            zf.writestr(info, content)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


def test_packages_with_symlinks_inside_are_accepted(lam: Any) -> None:
    name = f"links-{uuid.uuid4().hex[:8]}"
    code = _zip_with_links(
        {"lib/real.py": "def handler(e, c):\n    return 'via link'\n", "lib/data.txt": "d"},
        {"app.py": "lib/real.py", "abs.txt": "/var/task/lib/data.txt", "libs": "lib"},
    )
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE, Code={"ZipFile": code})
    out = lam.invoke(FunctionName=name)
    assert json.loads(out["Payload"].read()) == "via link"
    for target in ("/etc/passwd", "../../outside", "/var/task/../etc"):
        with pytest.raises(ClientError) as err:
            lam.update_function_code(FunctionName=name, ZipFile=_zip_with_links({"a.py": ""}, {"x": target}))
        assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
