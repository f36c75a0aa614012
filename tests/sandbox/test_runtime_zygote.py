"""Runtime zygotes (the default): environments fork from a zygote that holds no user code and run INIT
themselves, one INIT per environment as on AWS, unprivileged, with bounded writable places. Both backends
(namespaces skipped where unusable)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nimbus.sandbox.manager import SandboxManager

from .conftest import Sink, make_request, make_spec, started, write_code

PER_ENVIRONMENT = """
import os, socket, uuid
ID = str(uuid.uuid4())
LISTENER = socket.socket()
LISTENER.bind(("127.0.0.1", 0))
LISTENER.listen()
CONN = socket.create_connection(LISTENER.getsockname())
print("INIT ran")
def handler(e, c):
    import time
    time.sleep(0.3)
    peer = CONN.getpeername()
    return {"id": ID, "sock": os.fstat(CONN.fileno()).st_ino, "port": CONN.getsockname()[1], "peer": peer[1],
            "type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
"""

PRIVILEGES = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(fn, *args):
    if fn(*args) == 0:
        return "ok"
    return errno.errorcode[ctypes.get_errno()]
AT_INIT = {
    "unshare": attempt(libc.unshare, 0x40000000),  # CLONE_NEWNET
    "chroot": attempt(libc.chroot, b"/tmp"),
    "io_uring_setup": attempt(libc.syscall, 425, 8, ctypes.create_string_buffer(120)),
}
CAPS = [line for line in open("/proc/self/status") if line.startswith("CapEff")][0].split()[1]
def handler(e, c):
    out = {}
    try:
        with open("/dev/shm/fill", "wb") as f:
            for _ in range(e.get("shm_mb", 0)):
                f.write(b"\\0" * 1024 * 1024)
        out["shm"] = "ok"
    except OSError as exc:
        out["shm"] = errno.errorcode[exc.errno]
    for path in ("/opt", "/var/task"):
        try:
            open(os.path.join(path, "x"), "w")
            out[path] = "wrote"
        except OSError as exc:
            out[path] = errno.errorcode[exc.errno]
    out["writable"] = []
    for path in ("/", "/var", "/var/runtime", "/dev", "/etc", "/usr", "/proc"):
        try:
            open(os.path.join(path, "nimbus-probe"), "w").close()
            out["writable"].append(path)
        except OSError:
            pass
    return {"init": AT_INIT, "caps": CAPS, **out}
"""


async def burst(manager: SandboxManager, spec, n: int):  # type: ignore[no-untyped-def]
    return await asyncio.gather(*(manager.invoke(spec, make_request(spec)) for _ in range(n)))


async def test_each_environment_runs_its_own_init(manager: SandboxManager, tmp_path: Path, sink: Sink) -> None:
    spec = make_spec(write_code(tmp_path, PER_ENVIRONMENT))
    results = await burst(manager, spec, 4)
    assert all(r.function_error is None for r in results), [r.payload for r in results]
    docs = [json.loads(r.payload) for r in results]
    assert len({r.environment_id for r in results}) == 4
    assert len({d["id"] for d in docs}) == 4  # module-level uuid4(): one per environment
    assert len({d["sock"] for d in docs}) == 4  # INIT-time sockets: one per environment, still connected
    assert all(r.init_duration_ms is not None and "Restore Duration" not in r.extra_report for r in results)
    assert {d["type"] for d in docs} == {"on-demand"}
    texts = sink.texts() + [t for r in results for _, t in r.logs]
    assert texts.count("INIT ran") == 4
    zygote = manager._zygotes[spec.pool_key]
    assert zygote.kind == "runtime" and zygote.forks >= 4


async def test_init_error_is_the_environment_s_own(manager: SandboxManager, tmp_path: Path) -> None:
    spec = make_spec(write_code(tmp_path, "raise ValueError('boom')\n"))
    results = await burst(manager, spec, 2)
    assert {r.error_type for r in results} == {"ValueError"}
    assert not manager._zygotes[spec.pool_key].closed  # the runtime zygote ran no user code: it stays


async def test_init_runs_without_privileges(ns_manager: SandboxManager, sink: Sink, tmp_path: Path) -> None:
    """In forked and fresh environments alike: no capability, unshare/chroot/io_uring refused, /dev/shm
    bounded (ENOSPC at once, not a hang), /opt and /var/task read-only."""
    fresh = await started("namespaces", sink, zygotes=False)
    try:
        for manager in (ns_manager, fresh):
            spec = make_spec(write_code(tmp_path, PRIVILEGES), timeout=20)
            result = await manager.invoke(spec, make_request(spec, b'{"shm_mb": 200}'))
            doc = json.loads(result.payload)
            assert doc["init"] == {"unshare": "EPERM", "chroot": "EPERM", "io_uring_setup": "EPERM"}, doc
            assert int(doc["caps"], 16) == 0
            assert doc["shm"] == "ENOSPC"
            assert doc["/opt"] in ("EROFS", "EACCES") and doc["/var/task"] in ("EROFS", "EACCES"), doc
            assert doc["writable"] == [], doc
    finally:
        await fresh.stop()
