"""Snapshot zygotes (SnapStart, and the `zygote_snapshots` opt-in): INIT once per version, every environment
a fork with its own identity, randomness, hooks, sockets and limits. Both backends (namespaces skipped where
unusable). The default runtime zygotes (INIT in each environment) are in test_runtime_zygote.py."""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.config import Settings
from nimbus.sandbox.backends import BackendUnavailable
from nimbus.sandbox.manager import SandboxManager
from nimbus.sandbox.types import EnvironHook

from .conftest import Sink, make_request, make_spec, namespaces_skip_reason, write_code


async def started(isolation: str, sink: Sink, environ_hook: EnvironHook | None = None,
                  **settings: object) -> SandboxManager:
    """A manager whose Python versions fork from post-INIT snapshots (the opt-in)."""
    settings.setdefault("zygote_snapshots", True)
    manager = SandboxManager(Settings(isolation=isolation, **settings), sink,  # type: ignore[arg-type]
                             environ_hook=environ_hook)
    await manager.start()
    return manager


@pytest.fixture(params=["process", "namespaces"])
async def manager(request: pytest.FixtureRequest, sink: Sink) -> AsyncIterator[SandboxManager]:
    if request.param == "namespaces" and (reason := namespaces_skip_reason()):
        pytest.skip(reason)
    try:
        manager = await started(request.param, sink)
    except BackendUnavailable as e:
        pytest.skip(f"namespaces backend unavailable: {e}")
    yield manager
    await manager.stop()


@pytest.fixture
async def ns_manager(sink: Sink) -> AsyncIterator[SandboxManager]:
    if reason := namespaces_skip_reason():
        pytest.skip(reason)
    try:
        manager = await started("namespaces", sink)
    except BackendUnavailable as e:
        pytest.skip(f"namespaces backend unavailable: {e}")
    yield manager
    await manager.stop()

COUNTER = """
import os, random, uuid
INIT_PIDS = []
# INIT writes to /tmp (the zygote's; under the process backend the host's, hence a name of its own)
with open(f"/tmp/init-ran-{os.getpid()}", "a") as f:
    f.write("x")
SEED_DRAW = random.random()
def handler(e, c):
    if e.get("sleep"):
        import time
        time.sleep(e["sleep"])
    return {"r": random.random(), "u": str(uuid.uuid4()), "seed": SEED_DRAW, "urandom": os.urandom(8).hex(),
            "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"], "type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "gc": __import__("gc").isenabled()}
"""


async def burst(manager: SandboxManager, spec, n: int, payload: bytes = b'{"sleep": 0.2}'):  # type: ignore[no-untyped-def]
    return await asyncio.gather(*(manager.invoke(spec, make_request(spec, payload)) for _ in range(n)))


async def test_init_runs_once_and_each_environment_is_its_own(
    manager: SandboxManager, tmp_path: Path, sink: Sink
) -> None:
    code = write_code(tmp_path, COUNTER + "\nprint('INIT says hi')\n")
    spec = make_spec(code)
    results = await burst(manager, spec, 4)
    assert all(r.function_error is None for r in results), [r.payload for r in results]
    docs = [json.loads(r.payload) for r in results]
    assert len({r.environment_id for r in results}) == 4
    assert len({d["r"] for d in docs}) == 4  # random reseeded in each fork
    assert len({d["u"] for d in docs}) == 4
    assert len({d["urandom"] for d in docs}) == 4
    assert len({d["seed"] for d in docs}) == 1  # ... but what INIT drew is the snapshot's, shared
    assert len({d["stream"] for d in docs}) == 4  # per-environment values reach the fork
    assert {d["type"] for d in docs} == {"on-demand"}
    assert {d["gc"] for d in docs} == {True}  # the zygote runs without collections; its forks do not
    assert all(r.init_duration_ms is None and "Restore Duration" in r.extra_report for r in results)
    assert sink.texts().count("INIT says hi") == 1  # one INIT for four environments
    zygote = manager._zygotes[spec.pool_key]
    assert zygote.forks >= 4  # (and spares made ahead of demand)


async def test_code_updates_get_a_new_zygote(manager: SandboxManager, tmp_path: Path) -> None:
    first = make_spec(write_code(tmp_path, "V = 1\ndef handler(e, c):\n    return V\n"), function_name="fn-upd")
    assert (await manager.invoke(first, make_request(first))).payload == b"1"
    old = manager._zygotes[first.pool_key]
    second = make_spec(write_code(tmp_path, "V = 2\ndef handler(e, c):\n    return V\n"), function_name="fn-upd")
    manager.retire("fn-upd", {(second.version, second.revision_id)})
    assert old.retired and first.pool_key not in manager._zygotes
    results = await burst(manager, second, 3, b"{}")
    assert [r.payload for r in results] == [b"2", b"2", b"2"]
    for _ in range(200):  # the old zygote goes once its environments are gone
        manager._retire_zygotes(0.0, 1e9)
        if old.closed:
            break
        await asyncio.sleep(0.02)
    assert old.closed


async def test_hooks_run_before_snapshot_once_and_after_restore_in_each_fork(
    manager: SandboxManager, tmp_path: Path, sink: Sink
) -> None:
    source = """
    import os
    from snapshot_restore_py import register_before_snapshot
    from nimbus.runtime.snapshot import register_after_restore
    STATE = {"restored": 0, "before": 0}

    @register_before_snapshot
    def before():
        STATE["before"] += 1
        print("before snapshot")

    def after(tag, n=0):
        STATE["restored"] += n
        print("after restore", tag)

    register_after_restore(after, "x", n=1)

    def handler(e, c):
        import time
        time.sleep(0.2)
        return STATE
    """
    spec = make_spec(write_code(tmp_path, source))
    results = await burst(manager, spec, 3, b"{}")
    assert [json.loads(r.payload) for r in results] == [{"restored": 1, "before": 1}] * 3
    texts = sink.texts() + [t for r in results for _, t in r.logs]
    assert texts.count("before snapshot") == 1
    assert texts.count("after restore x") == 3


async def test_failing_after_restore_hook_fails_the_environment(manager: SandboxManager, tmp_path: Path) -> None:
    source = """
    from snapshot_restore_py import register_after_restore
    register_after_restore(lambda: 1 / 0)
    def handler(e, c):
        return 1
    """
    spec = make_spec(write_code(tmp_path, source))
    result = await manager.invoke(spec, make_request(spec))
    assert result.function_error == "Unhandled"
    assert result.error_type == "Runtime.AfterRestoreError"


async def test_init_error_reaches_every_waiting_environment(manager: SandboxManager, tmp_path: Path) -> None:
    spec = make_spec(write_code(tmp_path, "raise ValueError('boom')\n"))
    results = await burst(manager, spec, 3, b"{}")
    assert {r.error_type for r in results} == {"ValueError"}
    fixed = make_spec(write_code(tmp_path, "def handler(e, c):\n    return 'ok'\n"))
    assert (await manager.invoke(fixed, make_request(fixed))).payload == b'"ok"'


async def test_zygotes_off_starts_fresh(sink: Sink, tmp_path: Path) -> None:
    manager = await started("process", sink, zygotes=False)
    try:
        spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return 1\n"))
        assert (await manager.invoke(spec, make_request(spec))).payload == b"1"
        assert manager._zygotes == {}
    finally:
        await manager.stop()


async def test_environ_hook_reaches_forked_and_fresh_environments(sink: Sink, tmp_path: Path) -> None:
    source = (
        "import os\nAT_INIT = os.environ.get('EXTRA')\n"
        "def handler(e, c):\n    return [AT_INIT, os.environ.get('EXTRA')]\n"
    )
    for zygotes in (True, False):
        manager = await started("process", sink, lambda spec, env_id: {"EXTRA": env_id}, zygotes=zygotes)
        try:
            spec = make_spec(write_code(tmp_path, source))
            result = await manager.invoke(spec, make_request(spec))
            at_init, now = json.loads(result.payload)
            assert now == result.environment_id
            assert at_init is not None  # INIT (in the zygote, for forks) had its own values too
        finally:
            await manager.stop()


@pytest.mark.parametrize("n", [20])
async def test_burst_forks_without_thundering_herd(manager: SandboxManager, tmp_path: Path, sink: Sink, n: int) -> None:
    spec = make_spec(write_code(tmp_path, "import time\ntime.sleep(0.3)\nprint('slow init')\n"
                                "def handler(e, c):\n    import time\n    time.sleep(0.2)\n    return 1\n"))
    results = await burst(manager, spec, n, b"{}")
    assert [r.payload for r in results] == [b"1"] * n
    assert sink.texts().count("slow init") == 1


async def test_what_init_wrote_to_tmp_is_in_every_environment(manager: SandboxManager, tmp_path: Path) -> None:
    source = """
    import os, tempfile
    d = os.path.join(tempfile.gettempdir(), "t-" + os.environ["AWS_LAMBDA_FUNCTION_NAME"])
    os.makedirs(os.path.join(d, "model"), exist_ok=True)
    with open(os.path.join(d, "model", "weights"), "w") as f:
        f.write("w" * 1000)
    def handler(e, c):
        import time
        path = os.path.join(d, "model", "weights")
        mine = os.path.join(d, "mine")
        seen = os.path.exists(mine)
        open(mine, "w").close()
        time.sleep(0.2)
        return [len(open(path).read()), seen]
    """
    spec = make_spec(write_code(tmp_path, source))
    results = await burst(manager, spec, 3, b"{}")
    docs = [json.loads(r.payload) for r in results]
    assert [d[0] for d in docs] == [1000] * 3
    if manager.backend_name == "namespaces":  # each its own /tmp (the process backend shares the host's)
        assert [d[1] for d in docs] == [False] * 3


async def test_zygote_pages_are_charged_to_the_zygote(ns_manager: SandboxManager, tmp_path: Path) -> None:
    """INIT's 80 MB stay charged to the zygote's cgroup: each forked environment's 128 MB limit covers what it
    adds (here another 80 MB), while everything the environment touches itself is limited as usual."""
    source = """
    BALLAST = bytearray(80 * 1024 * 1024)   # touched: calloc'd pages become real when written
    for i in range(0, len(BALLAST), 4096):
        BALLAST[i] = 1
    def handler(e, c):
        extra = bytearray(e["mb"] * 1024 * 1024)
        for i in range(0, len(extra), 4096):
            extra[i] = 1
        return len(extra) // (1024 * 1024)
    """
    spec = make_spec(write_code(tmp_path, source), memory_size=128, timeout=20)
    ok = await ns_manager.invoke(spec, make_request(spec, b'{"mb": 80}'))
    assert ok.payload == b"80", ok.payload
    zygote = ns_manager._zygotes[spec.pool_key]
    handle = zygote.env.handle  # type: ignore[attr-defined]
    assert handle.cgroup.usage_bytes() >= 80 * 1024 * 1024
    env = next(e for e in ns_manager._envs if e.id == ok.environment_id)
    assert env.handle is not None and env.handle.cgroup.peak_bytes() < 120 * 1024 * 1024  # type: ignore[attr-defined]
    hog = await ns_manager.invoke(spec, make_request(spec, b'{"mb": 200}'))
    assert hog.error_type == "Runtime.ExitError", hog.payload  # its own pages are still held to 128 MB


async def test_idle_zygote_is_shut_down(sink: Sink, tmp_path: Path) -> None:
    manager = await started("process", sink, idle_timeout=0.2)
    try:
        spec = make_spec(write_code(tmp_path, "def handler(e, c):\n    return 1\n"))
        await manager.invoke(spec, make_request(spec))
        zygote = manager._zygotes[spec.pool_key]
        for _ in range(200):
            if zygote.closed:
                break
            await asyncio.sleep(0.05)
        assert zygote.closed and spec.pool_key not in manager._zygotes
        assert (await manager.invoke(spec, make_request(spec))).payload == b"1"  # a new zygote, new INIT
    finally:
        await manager.stop()


async def test_provisioned_environments_are_not_reaped(sink: Sink, tmp_path: Path) -> None:
    manager = await started("process", sink, idle_timeout=0.2)
    try:
        source = "import os\ndef handler(e, c):\n    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"
        spec = make_spec(write_code(tmp_path, source), version="1")
        manager.provisioner.set_target(spec, 2)
        for _ in range(200):
            if manager.provisioned_count(spec.pool_key) == 2:
                break
            await asyncio.sleep(0.05)
        ids = {e.id for e in manager._envs if e.provisioned}
        assert len(ids) == 2
        await asyncio.sleep(1.0)  # five idle timeouts
        assert {e.id for e in manager._envs if e.provisioned and e.alive} == ids
        result = await manager.invoke(spec, make_request(spec))
        assert result.payload == b'"provisioned-concurrency"' and result.init_duration_ms is None
        assert result.environment_id in ids
        manager.provisioner.set_target(spec, 0)  # back to ordinary environments, reaped when idle
        for _ in range(200):
            if manager.environment_count() == 0:
                break
            await asyncio.sleep(0.05)
        assert manager.environment_count() == 0
    finally:
        await manager.stop()


async def test_proc_lists_only_the_environment_s_own_processes(ns_manager: SandboxManager, tmp_path: Path) -> None:
    """Each fork mounts the /proc of its own pid namespace: no zygote, no sibling; its reaper (pid 1) is there
    but not readable (non-dumpable)."""
    source = """
    import os, time
    def handler(e, c):
        time.sleep(0.3)
        me = os.readlink("/proc/self")
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            try:
                open(f"/proc/{pid}/environ", "rb").read()
                out[pid] = "read"
            except OSError as exc:
                out[pid] = type(exc).__name__
        return {"others": out, "pids_in_my_namespace": [p for p in range(1, 9) if _alive(p)]}
    def _alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    """
    spec = make_spec(write_code(tmp_path, source))
    results = await burst(ns_manager, spec, 2, b"{}")
    for r in results:
        doc = json.loads(r.payload)
        assert doc["others"] == {"1": "PermissionError"}, doc
        assert doc["pids_in_my_namespace"] == [1, 2]  # its reaper and itself: nothing else to signal


async def test_restored_environments_share_no_socket_made_during_init(manager: SandboxManager, tmp_path: Path) -> None:
    """A restore replaces every network socket INIT made by a fresh unconnected one (on the same fd): no two
    environments (nor the zygote) hold the same connection; the client sees a dropped one and reconnects."""
    source = """
    import os, socket, time
    LISTENER = socket.socket()
    LISTENER.bind(("127.0.0.1", 0))
    LISTENER.listen()
    CONN = socket.create_connection(LISTENER.getsockname())
    UDP = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    UDP.connect(("127.0.0.1", 9))
    R, W = socket.socketpair()
    def handler(e, c):
        time.sleep(0.2)
        out = {"inode": os.fstat(CONN.fileno()).st_ino, "unix": os.fstat(R.fileno()).st_ino}
        for name, s in (("tcp", CONN), ("udp", UDP), ("listener", LISTENER)):
            try:
                out[name] = s.getpeername() if name != "listener" else s.getsockname()[1]
            except OSError as exc:
                out[name] = exc.errno
        fresh = socket.socket()
        fresh.bind(("127.0.0.1", 0))
        fresh.listen()
        out["reconnect"] = socket.create_connection(fresh.getsockname()).getpeername()[1] > 0
        return out
    """
    spec = make_spec(write_code(tmp_path, source))
    results = await burst(manager, spec, 3, b"{}")
    docs = [json.loads(r.payload) for r in results]
    assert len({d["inode"] for d in docs}) == 3, docs  # not shared
    assert {d["tcp"] for d in docs} == {d["udp"] for d in docs} == {errno.ENOTCONN}, docs
    assert {d["listener"] for d in docs} == {0}  # unbound now
    assert len({d["unix"] for d in docs}) == 1  # unix sockets (no network connection) are left alone
    assert all(d["reconnect"] for d in docs)


async def test_snapshot_init_runs_without_privileges(ns_manager: SandboxManager, tmp_path: Path) -> None:
    """INIT in a snapshot zygote has no capability and may make no namespace: module-level unshare and chroot
    fail with EPERM, as on AWS; its forks are environments all the same."""
    source = """
    import ctypes, errno, os
    libc = ctypes.CDLL(None, use_errno=True)
    def attempt(fn, *args):
        return "ok" if fn(*args) == 0 else errno.errorcode[ctypes.get_errno()]
    AT_INIT = {"unshare": attempt(libc.unshare, 0x40000000), "chroot": attempt(libc.chroot, b"/tmp"),
               "caps": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]}
    def handler(e, c):
        import time
        time.sleep(0.2)
        return {**AT_INIT, "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "me": os.getpid()}
    """
    spec = make_spec(write_code(tmp_path, source))
    results = await burst(ns_manager, spec, 2, b"{}")
    for r in results:
        doc = json.loads(r.payload)
        assert doc == {"unshare": "EPERM", "chroot": "EPERM", "caps": "0000000000000000", "pids": [1, 2], "me": 2}
