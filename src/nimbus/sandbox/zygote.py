"""Zygotes: cheap cold starts. One zygote per pool key (function, version, revision), started inside the
function's sandbox; every new execution environment of that key is a `fork()` of it. Two kinds:
- `runtime` (the default): the zygote holds the interpreter, the bootstrap and the standard library, no user
  code; each forked environment runs INIT itself (one INIT per environment, as on AWS).
- `snapshot` (SnapStart versions, or every version with `Settings.zygote_snapshots`): the zygote runs INIT
  once and forks are restores of it (REPORT shows Restore Duration).

Host side of the design in runtime/nimbus_zygote.py: the zygote is started like any environment (through
the backend, in its own cgroup, under the function's memory limit), answers READY after INIT, then receives
a SOCK_SEQPACKET "fork socket". `acquire()` sends a fork request carrying the new environment's control
socket and output pipe; the child says hello on its control socket, the kernel attaches its pid
(SCM_CREDENTIALS, translated into our pid namespace), and the host moves it into a cgroup of its own before
it may run anything of the user's. Pages the zygote touched stay charged to the zygote's cgroup (cgroup v1 does
not move charges; v2 charges pages to their first toucher); each environment's limit covers what it adds.

Killing a zygote kills every environment forked from it (they live in its pid namespace), so a zygote
lives while any of its environments does; the manager retires it with its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.sandbox.backends import Backend, ForkedHandle, Handle, Launch
from nimbus.sandbox.cgroups import MB
from nimbus.sandbox.fdpass import HelloError, receive_hello
from nimbus.sandbox.netwiring import fork_request_network, network_policy
from nimbus.sandbox.network import NetworkPolicy, NetworkProvider, PreparedNetwork, open_netns
from nimbus.sandbox.types import InvokeResult, LogLine

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0  # seconds a forked child may take to say hello
MAX_FORKS_IN_FLIGHT = 32  # fork requests queued in the zygote at once (its socket buffer is finite)
SPARE_DELAY = 0.05  # seconds after a fork before spares are made
ZYGOTE_FORK_ALLOWANCE_MB = 512  # memory a zygote's group may use beyond INIT's limit for forking (see _after_init)


class ZygoteError(Exception):
    """The zygote could not produce an environment (it died, or the fork failed)."""


class ZygoteRunner(Protocol):
    """What a zygote needs of the environment its process runs in (sandbox/environment.Environment): its
    INIT, its control socket (the fork socket is passed over it), its exit and its memory watch."""

    handle: Handle | None
    log_stream: str
    init_duration_ms: float | None

    async def run_init(self, request_id: str) -> tuple[InvokeResult | None, list[LogLine]]:
        """Start the process and run INIT: (None or the failure, output written around the runtime)."""

    def control_fd(self) -> int | None:
        """The host end of the control socket (None before the start)."""

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the process has exited."""

    def stop_memory_watch(self) -> None:
        """Stop watching the function-memory limit (the zygote's group gets a fork allowance instead)."""

    def kill(self, reason: str) -> None:
        """Kill the process tree."""

    async def wait_closed(self) -> None:
        """Wait until the process tree has exited."""


@dataclass
class Forked:
    """A forked child that said hello and sits in its own cgroup, waiting for its per-environment values."""

    handle: Handle
    sock: socket.socket  # host end of its control socket
    out_r: int  # read end of its fd 1/2
    api_sock: socket.socket | None = None  # its 127.0.0.1:9001 listener, made in its network namespace
    net: PreparedNetwork | None = None  # the network namespace it joined (the environment releases it)
    release: Callable[[PreparedNetwork], None] | None = None

    @property
    def alive(self) -> bool:
        return self.handle.reap() is None

    def discard(self) -> None:
        """Kill an unused fork and release what it holds (its cgroup once it is gone)."""
        self.handle.kill()
        self.handle.close_memory_watch()
        self.sock.close()
        if self.api_sock is not None:
            self.api_sock.close()
            self.api_sock = None
        net, self.net = self.net, None
        if net is not None and self.release is not None:
            self.release(net)
        with contextlib.suppress(OSError):
            os.close(self.out_r)
        loop = asyncio.get_running_loop()

        def cleanup(tries: int) -> None:
            try:
                done = self.handle.cleanup()
            except OSError:
                done = True
            if not done and tries:
                loop.call_later(0.1, cleanup, tries - 1)

        loop.call_later(0.05, cleanup, 20)


# --------------------------------------------------------------------------------------------------
# The zygote


def send_go(sock: socket.socket, environ: dict[str, str]) -> None:
    """The per-environment values a forked child waits for (see nimbus_zygote._become_environment)."""
    body = json.dumps({"environ": environ}).encode()
    sock.setblocking(True)
    try:
        sock.sendall(struct.pack("!I", len(body)) + body)
    finally:
        sock.setblocking(False)


class Zygote:
    """The fork server of one pool key."""

    def __init__(
        self,
        spec: VersionSpec,
        backend: Backend,
        settings: Settings,
        interpreter: Path,
        make_environment: Callable[[Zygote], ZygoteRunner],
        log_sink: Callable[[str, str, list[LogLine]], None] | None = None,
        snapstart: bool = False,
        snapshot: bool = False,
        network: NetworkProvider | None = None,
    ) -> None:
        # Forks of a runtime zygote join a namespace prepared for them, owned by the zygote's user namespace
        # (they still hold capabilities there); a snapshot zygote's forks keep no privilege in it and make a
        # loopback-only one of their own.
        self.network = network
        self.policy: NetworkPolicy | None = None
        self.userns: str | None = None  # /proc/<pid>/ns/user of the zygote (set once it runs)
        self.network_failed = False  # the provider could not make namespaces for forks: start fresh instead
        self.spec = spec
        self.snapstart = snapstart  # SnapStart version: INIT logs stay apart, initialization type snap-start
        # A snapshot zygote runs INIT itself (forks are restores); a runtime zygote runs no user code.
        self.kind = "snapshot" if snapstart or snapshot else "runtime"
        self._log_sink = log_sink
        self.init_replayed = False
        self.backend = backend
        self.settings = settings
        self.interpreter = interpreter
        self._make_environment = make_environment
        self.env: ZygoteRunner | None = None  # the Environment running the zygote
        self.failure: InvokeResult | None = None
        self.init_lines: list[LogLine] = []  # INIT_START and INIT's output, for the first environment's stream
        self.init_duration_ms: float | None = None
        self.retired = False
        self.closed = False
        self.forks = 0
        self.last_used = time.monotonic()
        self._started: asyncio.Task[InvokeResult | None] | None = None
        self._sock: socket.socket | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._children: dict[str, ForkedHandle] = {}
        self._slots = asyncio.Semaphore(MAX_FORKS_IN_FLIGHT)
        # Spares: forks made ahead of demand, already in their own cgroups, waiting for their go. A cold start
        # that finds one skips the fork, the namespaces and the cgroup move (an RCU grace period).
        self.spare_target = max(0, int(getattr(settings, "zygote_spares", 1)))
        self.spares: list[Forked] = []
        self._refill: asyncio.Task[None] | None = None
        self._forking = 0  # forks in progress (not yet environments: the zygote must not go meanwhile)
        self._loop = asyncio.get_running_loop()
        self.isolated = backend.isolated

    # ---------------------------------------------------------------------------------------------
    # Start (INIT, once)

    def capture(self, group: str, stream: str, lines: list[LogLine]) -> None:
        """The zygote environment's log sink: kept for the first forked environment's stream (SnapStart: in
        the zygote's own stream, as AWS logs INIT at publish time)."""
        if self.snapstart and self._log_sink is not None:
            self._log_sink(group, stream, lines)
        else:
            self.init_lines.extend(lines)

    def launcher(self, launch: Launch) -> Handle:
        """Launch the zygote: a normal environment, told to serve forks (and how to isolate them)."""
        launch.environ["_NIMBUS_ZYGOTE"] = self.kind
        return self.backend.launch_zygote(launch)

    async def ready(self) -> InvokeResult | None:
        """Start the zygote (INIT) once, however many environments wait: None when it serves forks, else the
        result INIT failed with."""
        if self._started is None:
            self._started = self._loop.create_task(self._start())
        return await asyncio.shield(self._started)

    async def _start(self) -> InvokeResult | None:
        env = self._make_environment(self)
        self.env = env
        failure, stray = await env.run_init("zygote-init")
        if stray and failure is None:
            self.capture(self.spec.log_group, env.log_stream, stray)
        if failure is not None:
            self.failure = failure
            self.close()
            return failure
        self.init_duration_ms = env.init_duration_ms
        self._after_init(env)
        pid = env.handle.runtime_pid() if env.handle is not None and self.isolated else None
        if pid is not None and self.network is not None and self.kind == "runtime":
            self.userns = f"/proc/{pid}/ns/user"
            self.policy = network_policy(self.spec, self.settings)
            self.network.prewarm(self.policy, userns=self.userns)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            fd = env.control_fd()
            assert fd is not None
            ctl = socket.socket(fileno=os.dup(fd))
            try:
                socket.send_fds(ctl, [b"S"], [theirs.fileno()])
            finally:
                ctl.close()
        except (OSError, AssertionError) as e:
            ours.close()
            self.close()
            raise ZygoteError(f"cannot hand the fork socket to the zygote: {e}") from e
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._loop.add_reader(ours.fileno(), self._on_message)
        env.on_exit(self._on_zygote_exit)
        self._schedule_refill()
        return None

    def _after_init(self, env: ZygoteRunner) -> None:
        """INIT ran under the function's memory limit; from now on only nimbus's fork server runs in the
        zygote's group, which is charged a little for every fork (page tables, the pages a child touches
        before it is moved into its own group: ~0.5 MB). Give the group room for that instead of the
        function-memory watcher, which would otherwise kill the zygote after a few hundred forks."""
        if env.handle is None or not self.isolated:
            return
        env.stop_memory_watch()
        try:
            env.handle.widen_memory(self.spec.memory_size + ZYGOTE_FORK_ALLOWANCE_MB, self.spec.ephemeral_storage)
        except OSError as e:
            log.warning("zygote of %s: cannot widen its memory limit: %s", self.spec.function_name, e)

    # ---------------------------------------------------------------------------------------------
    # Forks

    async def acquire(self, env_id: str, memory_mb: int, tmp_mb: int) -> Forked:
        """A new environment forked from the zygote, in its own cgroup, waiting for `send_go`."""
        if self.closed or self._sock is None:
            raise ZygoteError("the zygote is gone")
        if self.network_failed:
            raise ZygoteError("no network namespace for forks")
        self.last_used = time.monotonic()
        while self.spares:
            forked = self.spares.pop()
            if forked.alive:
                self._schedule_refill()
                return forked
            forked.discard()
        async with self._slots:
            forked = await self._fork(env_id, memory_mb, tmp_mb)
        self._schedule_refill()
        return forked

    def _schedule_refill(self) -> None:
        if self.spare_target and (self._refill is None or self._refill.done()) and not self.closed:
            self._refill = self._loop.create_task(self._fill())

    async def _fill(self) -> None:
        """Fork spares up to the target, a moment after the cold start that used one (not during it)."""
        await asyncio.sleep(SPARE_DELAY)
        while not self.closed and len(self.spares) < self.spare_target:
            try:
                async with self._slots:
                    forked = await self._fork(
                        f"spare-{os.urandom(8).hex()}", self.spec.memory_size, self.spec.ephemeral_storage
                    )
            except ZygoteError as e:
                log.info("zygote of %s: no spare (%s)", self.spec.function_name, e)
                return
            if self.closed:
                forked.discard()
                return
            self.spares.append(forked)

    async def _fork(self, env_id: str, memory_mb: int, tmp_mb: int) -> Forked:
        self._forking += 1
        try:
            return await self._fork_one(env_id, memory_mb, tmp_mb)
        finally:
            self._forking -= 1

    async def _fork_one(self, env_id: str, memory_mb: int, tmp_mb: int) -> Forked:
        net = None
        if self.network is not None and self.policy is not None:
            try:
                net = await self.network.prepare(self.spec.function_name, self.policy, userns=self.userns)
            except Exception as e:  # noqa: BLE001 (the provider's failure: these environments start fresh)
                if not self.network_failed:
                    log.warning("zygote of %s: no network namespace for its forks (%s): its environments start "
                                "fresh", self.spec.function_name, e)
                self.network_failed = True
                raise ZygoteError(f"no network namespace for a fork: {e}") from e
        try:
            forked = await self._fork_into(env_id, memory_mb, tmp_mb, net)
        except BaseException:
            if net is not None and self.network is not None:
                self.network.release(net)
            raise
        if net is not None and self.network is not None:
            forked.net, forked.release = net, self.network.release
        return forked

    async def _fork_into(self, env_id: str, memory_mb: int, tmp_mb: int, net: PreparedNetwork | None) -> Forked:
        assert self._sock is not None
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        out_r, out_w = os.pipe()
        failed = self._loop.create_future()
        self._pending[env_id] = failed
        netns_fd = -1
        try:
            request = b"F" + json.dumps({"id": env_id, "tmp_mb": tmp_mb, **fork_request_network(net)}).encode()
            try:
                netns_fd = open_netns(net) if net is not None else -1
                fds = [child.fileno(), out_w, *((netns_fd,) if netns_fd >= 0 else ())]
                socket.send_fds(self._sock, [request], fds)
            except OSError as e:
                raise ZygoteError(f"fork request failed: {e}") from e
            finally:
                child.close()
                os.close(out_w)
                if netns_fd >= 0:
                    os.close(netns_fd)
            pid = await _hello(parent, failed)
        except BaseException:
            parent.close()
            os.close(out_r)
            raise
        finally:
            self._pending.pop(env_id, None)
        try:
            handle = await self._loop.run_in_executor(
                _placer(), self.backend.adopt_fork, env_id, pid, memory_mb, tmp_mb
            )
        except BaseException as e:  # (cancelled too: nothing of this fork may leak)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            parent.close()
            os.close(out_r)
            if isinstance(e, OSError):
                raise ZygoteError(f"cannot place the environment in its cgroup: {e}") from e
            raise
        # The fork is in its place: it may build its namespaces and start the runtime, which says hello too
        # (the fork stays its pid 1, a reaper). Its hello carries its endpoint's listening socket.
        received: list[int] = []
        try:
            parent.send(b"P")
            runtime_pid = await _hello(parent, fds=received)
        except BaseException as e:
            for fd in received:
                os.close(fd)
            Forked(handle, parent, out_r).discard()
            if isinstance(e, (OSError, ZygoteError, TimeoutError)):
                raise ZygoteError(f"the forked environment did not start: {e}") from e
            raise
        handle.set_runtime_pid(runtime_pid)
        self._children[env_id] = handle
        self.forks += 1
        for fd in received[1:]:
            os.close(fd)
        return Forked(handle, parent, out_r, socket.socket(fileno=received[0]) if received else None)

    def _on_message(self, *_: object) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                msg = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg:
                self._on_zygote_exit()
                return
            try:
                doc = json.loads(msg[1:])
            except ValueError:
                continue
            env_id = str(doc.get("id"))
            if msg[:1] == b"X":
                child = self._children.pop(env_id, None)
                if child is not None:
                    child.exited(int(doc.get("status", -9)))
            elif msg[:1] == b"E":
                fut = self._pending.get(env_id)
                if fut is not None and not fut.done():
                    fut.set_exception(ZygoteError(f"fork failed: {doc.get('error')}"))

    def _on_zygote_exit(self) -> None:
        """The zygote died: its environments died with it (they lived in its pid namespace)."""
        if not self.closed:
            log.info("zygote of %s:%s exited", self.spec.function_name, self.spec.version)
        self.close()

    # ---------------------------------------------------------------------------------------------
    # Life

    def idle_since(self, now: float, idle_timeout: float) -> bool:
        """No environment, nothing starting or forking, and no fork for `idle_timeout` seconds."""
        starting = self._started is not None and not self._started.done()
        return (
            self.live == 0 and not starting and not self._forking and now - self.last_used >= idle_timeout
        )

    @property
    def live(self) -> int:
        """Environments forked from this zygote that have not exited (spares not counted)."""
        return len(self._children) - len(self.spares)

    def close(self) -> None:
        """Kill the zygote (and with it every environment forked from it)."""
        if self.closed:
            return
        self.closed = True
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ZygoteError("the zygote exited"))
        if self._refill is not None:
            self._refill.cancel()
        spares, self.spares = self.spares, []
        for forked in spares:
            forked.discard()
        children, self._children = self._children, {}
        for child in children.values():
            child.kill()  # (process backend: they outlive the zygote otherwise)
            child.exited(-signal.SIGKILL)
        env = self.env
        if env is not None:
            env.kill("retire")

    async def wait_closed(self) -> None:
        env = self.env
        if env is not None:
            await env.wait_closed()


@functools.cache
def _placer() -> ThreadPoolExecutor:
    """Threads that move forks into their cgroups: their own, so a burst's moves do not queue behind other
    blocking work in the default executor (memory watchers cost an RCU grace period each too)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="nimbus-cgroup")


async def _hello(
    sock: socket.socket, failed: asyncio.Future[None] | None = None, fds: list[int] | None = None
) -> int:
    """A forked child's hello (see fdpass.receive_hello), its failures as ZygoteError."""
    try:
        return await receive_hello(sock, HELLO_TIMEOUT, failed, fds)
    except HelloError as e:
        raise ZygoteError(str(e)) from e


def restore_lines(zygote: Zygote, version_line: str) -> list[LogLine]:
    """What a forked environment's log stream starts with: RESTORE_START (SnapStart), else INIT_START, with the
    zygote's INIT output in the first environment's stream (where an on-demand cold start has it)."""
    now = time.time_ns() // 1_000_000
    if zygote.kind == "runtime":  # the environment runs INIT itself
        return [(now, version_line)]
    if zygote.snapstart:
        return [(now, version_line.replace("INIT_START", "RESTORE_START", 1))]
    if not zygote.init_replayed and zygote.init_lines:
        zygote.init_replayed = True
        lines, zygote.init_lines = zygote.init_lines, []
        return lines
    return [(now, version_line)]


def zygotes_enabled(settings: Settings, spec: VersionSpec) -> bool:
    """Whether environments of `spec` fork from a zygote: Python runtimes (nimbus's own bootstrap), unless the
    server turned zygotes off."""
    return bool(getattr(settings, "zygotes", True)) and spec.runtime.startswith("python")


__all__ = ["Forked", "Zygote", "ZygoteError", "send_go", "zygotes_enabled", "MB"]
