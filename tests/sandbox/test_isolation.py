"""Isolation proofs for the namespaces backend, each made from inside a function. Skipped (with the reason)
where the backend cannot run: not root, no bubblewrap, no writable cgroups."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.sandbox.backends import BackendUnavailable
from nimbus.sandbox.manager import SandboxManager

from .conftest import Sink, make_request, make_spec, namespaces_skip_reason, started, write_code


async def isolated(sink: Sink, **settings: object) -> SandboxManager:
    reason = namespaces_skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        return await started("namespaces", sink, **settings)
    except BackendUnavailable as e:
        pytest.skip(f"namespaces backend unavailable: {e}")


@pytest.fixture(params=["fork", "fresh"])
async def ns(request: pytest.FixtureRequest, sink: Sink, tmp_path: Path) -> AsyncIterator[SandboxManager]:
    """Both ways an environment starts: forked from the version's zygote, or a fresh interpreter."""
    manager = await isolated(sink, data_dir=tmp_path / "data", pids_max=64, zygotes=request.param == "fork")
    yield manager
    await manager.stop()


async def run(manager: SandboxManager, tmp_path: Path, source: str, payload: object = None, **spec_kw: object):  # type: ignore[no-untyped-def]
    spec = make_spec(write_code(tmp_path, source), **spec_kw)
    result = await manager.invoke(spec, make_request(spec, json.dumps(payload or {}).encode()))
    return result, spec


async def run_ok(manager: SandboxManager, tmp_path: Path, source: str, payload: object = None, **spec_kw: object):  # type: ignore[no-untyped-def]
    result, _ = await run(manager, tmp_path, source, payload, **spec_kw)
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


async def test_cannot_see_host_processes(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import os
    def handler(e, c):
        return {"me": os.getpid(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
    """
    doc = await run_ok(ns, tmp_path, source)
    assert doc["me"] == 2  # pid 1 is its reaper (bubblewrap's init, or the fork's): nothing else, forked or not
    assert doc["pids"] == [1, 2]


async def test_runs_as_sbx_user_without_capabilities(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import os
    def handler(e, c):
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
        return {"uid": os.getuid(), "gid": os.getgid(), "cap": status["CapEff"].strip(),
                "nnp": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip()}
    """
    doc = await run_ok(ns, tmp_path, source)
    assert doc == {"uid": 993, "gid": 990, "cap": "0000000000000000", "nnp": "1", "seccomp": "2"}


async def test_code_and_system_are_read_only(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import errno
    def handler(e, c):
        out = {}
        for path in ("/var/task/new.txt", "/var/task/app.py", "/usr/evil", "/var/runtime/bootstrap.py", "/etc/passwd"):
            try:
                open(path, "a").close()
                out[path] = "written"
            except OSError as exc:
                out[path] = errno.errorcode[exc.errno]
        return out
    """
    doc = await run_ok(ns, tmp_path, source)
    assert set(doc.values()) <= {"EROFS", "EACCES"}, doc
    # A fresh sandbox's user is the code's owner (root, mapped): EROFS as on AWS; a fork's bubblewrap runs as
    # an ordinary host user (backends/namespaces.STAGE_LAUNCHER), for whom the permission check fails first.
    assert doc["/var/task/app.py"] == ("EACCES" if ns.settings.zygotes else "EROFS")


async def test_cannot_reach_other_code_or_the_data_dir(ns: SandboxManager, tmp_path: Path) -> None:
    other = write_code(tmp_path, "SECRET = 1\ndef handler(e, c):\n    return SECRET\n")
    data_dir = (tmp_path / "data").resolve()
    data_dir.mkdir(exist_ok=True)
    (data_dir / "nimbus.db").write_text("secrets")
    source = """
    import os
    def handler(e, c):
        return {p: os.path.exists(p) for p in e["paths"]}
    """
    paths = [str(other), str(other / "app.py"), str(data_dir), str(data_dir / "nimbus.db"), "/etc/shadow",
             "/home", str(Path(__file__).resolve())]
    doc = await run_ok(ns, tmp_path, source, {"paths": paths})
    assert doc == {p: False for p in paths}


async def test_memory_limit_kills_the_environment(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    def handler(e, c):
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    """
    result, spec = await run(ns, tmp_path, source, memory_size=128, timeout=20)
    assert result.function_error == "Unhandled"
    assert result.error_type == "Runtime.ExitError"
    assert json.loads(result.payload)["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    # The memory watcher normally stops it within a step or two past 128 MB; when the host's event loop is slow
    # to react (a loaded CI machine), the cgroup's hard limit stops it: on v1 that is MemorySize + /tmp (512).
    assert 100 <= result.max_memory_mb <= 128 + 512 + 16
    ok = await ns.invoke(spec, make_request(spec))  # a fresh environment takes over
    assert ok.environment_id != result.environment_id


async def test_fork_bomb_is_contained(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import os, time
    def handler(e, c):
        if e.get("ping"):
            return "pong"
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
        except OSError as exc:
            return {"children": children, "error": exc.errno}
    """
    spec = make_spec(write_code(tmp_path, source), timeout=20)
    result = await ns.invoke(spec, make_request(spec))
    doc = json.loads(result.payload)
    assert doc["error"] == errno.EAGAIN
    assert doc["children"] < 64  # settings.pids_max bounds the whole environment
    ping = await ns.invoke(spec, make_request(spec, b'{"ping": true}'))
    assert ping.payload == b'"pong"'


async def test_tmp_is_size_limited(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import errno
    def handler(e, c):
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                while True:
                    f.write(b"x" * 1024 * 1024)
                    f.flush()
                    written += 1
        except OSError as exc:
            return {"mb": written, "error": errno.errorcode[exc.errno]}
    """
    doc = await run_ok(ns, tmp_path, source, ephemeral_storage=8, memory_size=512)
    assert doc["error"] == "ENOSPC" and doc["mb"] <= 8


async def test_tmp_does_not_cost_function_memory(ns: SandboxManager, tmp_path: Path) -> None:
    """As on Lambda (disk-backed /tmp), a function can fill a /tmp larger than its memory: ENOSPC, not a
    kill. (Small sizes: at 64 MB the function has 4% of a CPU, and filling tmpfs is CPU work.)"""
    source = """
    import errno
    def handler(e, c):
        if e.get("hog"):
            hog = [bytearray(16 * 1024 * 1024) for _ in range(20)]
            return "survived"
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                while True:
                    f.write(b"x" * 1024 * 1024)
                    written += 1
        except OSError as exc:
            return {"mb": written, "error": errno.errorcode[exc.errno]}
    """
    spec = make_spec(write_code(tmp_path, source), memory_size=64, ephemeral_storage=160, timeout=30)
    result = await ns.invoke(spec, make_request(spec))
    doc = json.loads(result.payload)
    assert doc["error"] == "ENOSPC" and 120 <= doc["mb"] <= 160, doc
    # ... and with /tmp full, the function's own memory is still held to its 64 MB
    hog = await ns.invoke(spec, make_request(spec, b'{"hog": true}'))
    assert hog.error_type == "Runtime.ExitError", hog.payload
    assert json.loads(hog.payload)["errorMessage"].endswith("signal: killed")


async def test_no_network_besides_loopback(ns: SandboxManager, tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    host_port = server.getsockname()[1]
    source = """
    import errno, socket
    def attempt(addr):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(addr)
            return "connected"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc))
        finally:
            s.close()
    def handler(e, c):
        own = socket.socket()
        own.bind(("127.0.0.1", 0))
        own.listen()
        mine = attempt(own.getsockname())
        return {"ifaces": [n for _, n in socket.if_nameindex()], "host": attempt(("127.0.0.1", e["port"])),
                "internet": attempt(("1.1.1.1", 80)), "own": mine}
    """
    try:
        doc = await run_ok(ns, tmp_path, source, {"port": host_port})
    finally:
        server.close()
    assert doc["ifaces"] == ["lo"]
    assert doc["own"] == "connected"  # the sandbox's own loopback works
    assert doc["host"] == "ECONNREFUSED"  # ... but it is not the host's
    assert doc["internet"] == "ENETUNREACH"


async def test_seccomp_blocks_privileged_calls(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import ctypes, errno
    libc = ctypes.CDLL(None, use_errno=True)
    def call(fn, *args):
        rc = fn(*args)
        return "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
    def handler(e, c):
        return {
            "ptrace": call(libc.ptrace, 0, 0, None, None),        # PTRACE_TRACEME: allowed without seccomp
            "unshare": call(libc.unshare, 0x00020000),              # CLONE_NEWNS
            "mount": call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
            "keyctl": call(libc.syscall, 250, 0, 0),                # keyctl (x86_64)
        }
    """
    doc = await run_ok(ns, tmp_path, source)
    assert doc == {"ptrace": "EPERM", "unshare": "EPERM", "mount": "EPERM", "keyctl": "EPERM"}


async def test_environments_do_not_share_tmp(ns: SandboxManager, tmp_path: Path) -> None:
    source = """
    import os, time
    def handler(e, c):
        time.sleep(0.3)
        name = "/tmp/marker"
        existed = os.path.exists(name)
        open(name, "w").close()
        return existed
    """
    spec = make_spec(write_code(tmp_path, source))
    results = await asyncio.gather(*(ns.invoke(spec, make_request(spec)) for _ in range(2)))
    assert [r.payload for r in results] == [b"false", b"false"]
    again = await ns.invoke(spec, make_request(spec))
    assert again.payload == b"true"  # /tmp survives within one environment, as on Lambda


async def test_cgroups_are_removed_on_stop(sink: Sink, tmp_path: Path) -> None:
    manager = await isolated(sink)
    backend = manager._backend
    assert backend is not None
    parents = list(backend.cgroups.parents.values())  # type: ignore[attr-defined]
    spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return 1\n"))
    await manager.invoke(spec, make_request(spec))
    assert any(any(p.iterdir()) for p in parents)
    await manager.stop()
    assert not any(p.exists() for p in parents)


async def test_spare_launchers_start_isolated_environments(ns: SandboxManager, tmp_path: Path) -> None:
    """After a launch, a spare launcher waits in its own cgroup; the next cold start goes through it and
    gets the same sandbox as a direct launch."""
    from nimbus.sandbox.backends.namespaces import SPARE_DELAY, NamespacesBackend

    if ns.settings.zygotes:
        pytest.skip("spare launchers start fresh environments")
    backend = ns._backend
    assert isinstance(backend, NamespacesBackend)
    source = """
    import os
    def handler(e, c):
        status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)
        return [os.getuid(), os.getpid(), status["Seccomp"].strip(), os.environ["AWS_LAMBDA_FUNCTION_NAME"]]
    """
    first = make_spec(write_code(tmp_path, source))
    assert json.loads((await ns.invoke(first, make_request(first))).payload)[:3] == [993, 2, "2"]
    for _ in range(100):
        if backend._spares:
            break
        await asyncio.sleep(SPARE_DELAY / 5)
    assert len(backend._spares) == 1
    spare_pid = backend._spares[0].popen.pid
    second = make_spec(write_code(tmp_path, source))
    result = await ns.invoke(second, make_request(second))
    assert json.loads(result.payload) == [993, 2, "2", second.function_name]
    env = next(e for e in ns._envs if e.id == result.environment_id)
    assert env.handle is not None and env.handle.pid == spare_pid  # the spare became this environment
