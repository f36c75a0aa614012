"""One execution environment: a runtime process tree (started by a backend) serving one function version,
driven over its control socket. Owns the environment's life: spawn, INIT, one invocation at a time, the
timeout, crash detection, output written around the runtime's back (fd 1/2), and teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import heapq
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from signal import SIGUSR2

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.observe import platformlog
from nimbus.sandbox.backends import Backend, Handle, Launch
from nimbus.sandbox.cgroups import ANON_POLL_INTERVAL
from nimbus.sandbox.platformendpoint import PlatformEndpoint
from nimbus.sandbox.protocol import (
    CHUNK,
    READY,
    RESULT,
    FrameReader,
    ProtocolError,
    ResultFrame,
    decode_result,
    encode_invoke,
)
from nimbus.sandbox.runtimes import python_prefix
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogLine, LogSink
from nimbus.sandbox.zygote import Zygote, ZygoteError, restore_lines, send_go

CHUNK_KIND = bytes((CHUNK,))
FLUSHED = b"\0nimbus-flushed"  # the runtime's last line after SIGUSR2 (runtime/bootstrap.py)
FLUSH_GRACE = 0.2  # seconds a runtime about to be killed gets to hand over its logs

log = logging.getLogger(__name__)

MAX_LINE = 256 * 1024  # CloudWatch's event size limit
MAX_STRAY_BYTES = 4 * 1024 * 1024  # fd 1/2 output kept per invocation (or idle period); the rest is dropped
LOG_FRAME_ALLOWANCE = 16 * 1024 * 1024  # log lines a result frame may carry besides the payload
RESPONSE_SLACK = 100  # Lambda's limit is 6 MB + 100 bytes: "maximum allowed payload size (6291556 bytes)"
EXIT_GRACE = 0.5  # seconds to wait for the socket to drain after the runtime exited


class _Died(Exception):
    pass


class _TimedOut(Exception):
    pass


class Deadlines:
    """The timeouts of the waits in flight on one event loop, served by a single armed timer.

    A timer per invocation costs a libuv timer handle created, started, stopped and closed on every warm
    invoke; here a wait costs a heap push, and the one timer is armed at the earliest deadline. Finished
    waits stay in the heap until they reach its top or the heap is compacted (when it holds more than
    twice the waits in flight), so it stays small however long the timeouts are.
    """

    __slots__ = ("_loop", "_heap", "_live", "_seq", "_timer", "_armed_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[ResultFrame]]] = []
        self._live = 0
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def add(self, when: float, waiter: asyncio.Future[ResultFrame]) -> None:
        """Fail `waiter` with _TimedOut at loop time `when` unless it is done by then; call `finished`
        once it is."""
        self._seq += 1
        self._live += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, waiter))
        if len(heap) > 2 * self._live + 32:
            self._heap = heap = [entry for entry in heap if not entry[2].done()]
            heapq.heapify(heap)
        if when < self._armed_at:
            self._arm(when)

    def finished(self) -> None:
        self._live -= 1

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._armed_at = float("inf")
        heap = self._heap
        now = self._loop.time()
        while heap and (heap[0][0] <= now or heap[0][2].done()):
            waiter = heapq.heappop(heap)[2]
            if not waiter.done():
                waiter.set_exception(_TimedOut())
        if heap:
            self._arm(heap[0][0])


def make_log_stream(version: str) -> str:
    """`YYYY/MM/DD/[<version>]<32 hex>`, as Lambda names an environment's log stream."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[{version}]{uuid.uuid4().hex}"


def runtime_version_line(runtime: str, region: str) -> str:
    """The INIT_START line AWS logs at each cold start."""
    digest = hashlib.sha256(runtime.encode()).hexdigest()
    # AWS's spelling: python:3.12, nodejs:20, provided:al2023
    name = runtime.replace("python", "python:").replace("nodejs", "nodejs:").removesuffix(".x")
    name = name.replace("provided.", "provided:")
    return (
        f"INIT_START Runtime Version: {name}.v1\t"
        f"Runtime Version ARN: arn:aws:lambda:{region}::runtime:{digest}"
    )


def build_environ(
    spec: VersionSpec, settings: Settings, backend: Backend, log_stream: str, interpreter: Path
) -> dict[str, str]:
    """The runtime's complete environment: the user's variables, then Lambda's reserved ones."""
    task_root = backend.task_root(spec.code_dir)
    runtime_dir = backend.runtime_dir
    prefix = python_prefix(interpreter)
    opt = backend.opt_root(spec.opt_dir)  # layers: /opt, or their real place where it cannot be mounted
    env = dict(spec.environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_REGION": settings.region,
            "AWS_DEFAULT_REGION": settings.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": task_root,
            "LAMBDA_RUNTIME_DIR": runtime_dir,
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": f"{prefix}/bin:/usr/local/bin:/usr/bin/:/bin:{opt}/bin",
            "LD_LIBRARY_PATH": (
                f"{prefix}/lib:/lib64:/usr/lib64:{runtime_dir}:{runtime_dir}/lib:{task_root}:{task_root}/lib:{opt}/lib"
            ),
            "PYTHONPATH": runtime_dir,
        }
    )
    # AWS sets these for the X-Ray SDK unless the function does (developer guide, configuration-envvars)
    for key, value in (("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR"), ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000"),
                       ("_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129"), ("_AWS_XRAY_DAEMON_PORT", "2000")):
        env.setdefault(key, value)
    if spec.runtime.startswith("nodejs"):
        major = spec.runtime.removeprefix("nodejs").split(".")[0]
        env.setdefault("NODE_PATH", f"{opt}/nodejs/node{major}/node_modules:{opt}/nodejs/node_modules")
    if opt != "/opt":
        env["_NIMBUS_OPT_DIR"] = opt  # the Python runtime puts {opt}/python on sys.path (bootstrap.py)
    log_format = str(spec.logging_config.get("LogFormat") or "Text")
    if log_format.upper() == "JSON":
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        level = spec.logging_config.get("ApplicationLogLevel")
        if level:
            env["AWS_LAMBDA_LOG_LEVEL"] = str(level)
    return env


def error_result(
    request_id: str,
    error_type: str,
    message: str,
    *,
    log_stream: str,
    env_id: str,
    logs: list[LogLine] | None = None,
    duration_ms: float = 0.0,
    max_memory_mb: int = 0,
    init_duration_ms: float | None = None,
    extra_report: dict[str, str] | None = None,
) -> InvokeResult:
    """A platform-generated function error (timeout, crash, ...), in AWS's words."""
    doc = {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {message}"}
    return InvokeResult(
        payload=json.dumps(doc).encode(),
        function_error="Unhandled",
        error_type=error_type,
        logs=logs or [],
        duration_ms=duration_ms,
        max_memory_mb=max_memory_mb,
        init_duration_ms=init_duration_ms,
        log_stream=log_stream,
        environment_id=env_id,
        extra_report=extra_report or {},
    )


class _Control(asyncio.BufferedProtocol):
    """The host end of the control socket (reads into one reused buffer: no allocation per read)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.reader = FrameReader(env.max_frame)
        self.buffer = memoryview(bytearray(256 * 1024))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.buffer[:nbytes])
        try:
            frames = self.reader.feed(data)
        except ProtocolError as e:
            self.env._broken(str(e))
            return
        for frame in frames:
            self.env._on_frame(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.env._on_eof()


class _Output(asyncio.Protocol):
    """The read end of the runtime's fd 1/2: output that bypassed sys.stdout (C code, subprocesses)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.partial = b""

    def data_received(self, data: bytes) -> None:
        env = self.env
        if env.stray_bytes > MAX_STRAY_BYTES:
            return
        env.stray_bytes += len(data)
        parts = (self.partial + data).split(b"\n")
        self.partial = parts.pop()[:MAX_LINE]
        if FLUSHED in parts:
            parts.remove(FLUSHED)
            env._on_flushed()
        if parts:
            now = time.time_ns() // 1_000_000
            env._stray([(now, p[:MAX_LINE].decode("utf-8", "replace")) for p in parts])

    def eof_received(self) -> bool | None:
        if self.partial:
            self.env._stray([(time.time_ns() // 1_000_000, self.partial.decode("utf-8", "replace"))])
            self.partial = b""
        return None


class Environment:
    """A runtime process serving invocations of one function version, one at a time."""

    def __init__(
        self,
        spec: VersionSpec,
        backend: Backend,
        settings: Settings,
        log_sink: LogSink,
        interpreter: Path,
        deadlines: Deadlines | None = None,
        *,
        zygote: Zygote | None = None,  # fork from this zygote (issue 5) rather than start fresh
        launcher: Callable[[Launch], Handle] | None = None,  # instead of backend.launch (zygotes)
        role: str = "environment",  # or "zygote": never invoked, forks environments
        init_type: str = "on-demand",  # AWS_LAMBDA_INITIALIZATION_TYPE
        environ_hook: Callable[[str], dict[str, str]] | None = None,  # per-environment variables by env id
    ) -> None:
        self.id = uuid.uuid4().hex
        self.zygote = zygote
        self.launcher = launcher
        self.role = role
        self.init_type = init_type
        self.environ_hook = environ_hook
        self.provisioned = init_type == "provisioned-concurrency"
        self.prestarting = False  # provisioned concurrency: starting ahead of demand
        self.restore_report: dict[str, str] | None = None  # SnapStart: REPORT's Restore Duration fields
        self.spec = spec
        self.backend = backend
        self.settings = settings
        self.log_sink = log_sink
        self.interpreter = interpreter
        self.log_stream = make_log_stream(spec.version)
        self.max_frame = settings.sync_payload_max_bytes + LOG_FRAME_ALLOWANCE
        self.handle: Handle | None = None
        self._flushed: asyncio.Future[None] | None = None
        self.started = False
        self.busy = False
        self.dead = False
        self.alive = True  # neither dead nor at EOF: usable for another invocation
        self.invocations = 0
        self.init_duration_ms: float | None = None
        self.last_used = 0.0
        self.kill_reason: str | None = None  # why nimbus killed it: "timeout", "stop", "retire", ...
        self.stray_bytes = 0
        self._stray_lines: list[LogLine] = []
        self._transport: asyncio.Transport | None = None
        self._out_transport: asyncio.BaseTransport | None = None
        self._waiter: asyncio.Future[ResultFrame] | None = None
        self._on_chunk: Callable[[bytes], None] | None = None  # set while a streaming invocation runs
        self._exited: asyncio.Future[None] | None = None
        self._pidfd = -1
        self._memory_fd = -1
        self._memory_poll: asyncio.TimerHandle | None = None
        self._memory_task: asyncio.Task[None] | None = None
        self._cleaned = False
        self._eof = False
        self._grace: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._deadlines = deadlines if deadlines is not None else Deadlines(self._loop)
        self._endpoint: PlatformEndpoint | None = None  # 127.0.0.1:9001 for the platform API (namespaces)

    # ---------------------------------------------------------------------------------------------
    # Events from the runtime

    def _on_frame(self, frame: bytes) -> None:
        if frame[:1] == CHUNK_KIND and self._on_chunk is not None:
            self._on_chunk(frame[1:])  # a streamed response's chunk (api/streaming.py), passed on at once
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._broken("unexpected frame")
            return
        try:
            waiter.set_result(decode_result(frame))
        except ProtocolError as e:
            waiter.set_exception(_Died(str(e)))
            self.kill("protocol")

    def _broken(self, why: str) -> None:
        log.warning("environment %s sent a bad frame (%s): discarding it", self.id, why)
        self.kill("protocol")
        self._fail_waiter()

    def _on_eof(self) -> None:
        # The runtime closed its end (it is exiting): never reuse it, but let it exit on its own so its exit
        # status can be reported; _exit_error kills what is left after a grace period.
        self._eof = True
        self.alive = False
        self._fail_waiter()
        if not self.busy:
            self.kill(self.kill_reason or "exited")

    def _fail_waiter(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Died())

    def _on_exit(self) -> None:
        self._unwatch_pid()
        if self.handle is not None:
            self.handle.reap()
            self.handle.kill()  # whatever the runtime left behind (and the socket closes)
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        # Let the socket drain first: a result written just before exiting still counts.
        self._grace = self._loop.call_later(EXIT_GRACE, self._fail_waiter)
        self._loop.call_soon(self._cleanup, 20)

    def _on_flushed(self) -> None:
        if self._flushed is not None and not self._flushed.done():
            self._flushed.set_result(None)

    async def _rescue_logs(self) -> None:
        """Before a kill on timeout: ask the runtime (SIGUSR2) to hand over what it has logged so far, which
        it otherwise ships only with its result, and wait briefly for it on the output pipe."""
        if self.handle is None:
            return
        self._flushed = self._loop.create_future()
        try:
            if self.handle.notify_runtime(SIGUSR2):
                await asyncio.wait_for(asyncio.shield(self._flushed), FLUSH_GRACE)
        except TimeoutError:
            pass  # stuck in C code: what it logged is lost with it
        finally:
            self._flushed = None

    def _stray(self, lines: list[LogLine]) -> None:
        if self.busy:
            self._stray_lines.extend(lines)
        else:
            self.log_sink(self.spec.log_group, self.log_stream, lines)

    # ---------------------------------------------------------------------------------------------
    # Lifecycle

    async def _spawn(self) -> None:
        if self.zygote is not None:
            try:
                return await self._spawn_forked(self.zygote)
            except ZygoteError as e:  # the zygote died under us: this environment starts fresh
                log.warning("environment %s: fork failed (%s): starting it fresh", self.id, e)
                self.zygote = None
        loop = self._loop
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        try:
            environ = build_environ(self.spec, self.settings, self.backend, self.log_stream, self.interpreter)
            environ["_NIMBUS_CONTROL_FD"] = str(child.fileno())
            environ["_NIMBUS_MAX_RESPONSE"] = str(self.settings.sync_payload_max_bytes + RESPONSE_SLACK)
            environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = self.init_type
            if self.environ_hook is not None:
                environ.update(self.environ_hook(self.id))
            extra_fds: tuple[int, ...] = ()
            if self.backend.task_root_inside is not None:  # a network namespace: the endpoint lives in it
                self._endpoint = PlatformEndpoint(self.spec, self.id, self.settings.request_body_max_bytes)
                endpoint_environ, endpoint_fd = self._endpoint.launch_environ()
                environ.update(endpoint_environ)
                extra_fds = (endpoint_fd,)
            launch = Launch(
                env_id=self.id,
                interpreter=self.interpreter,
                code_dir=self.spec.code_dir,
                memory_mb=self.spec.memory_size,
                ephemeral_mb=self.spec.ephemeral_storage,
                environ=environ,
                pass_fds=(child.fileno(), *extra_fds),
                stdout_fd=out_w,
                opt_dir=self.spec.opt_dir,
            )
            self._exited = loop.create_future()
            self.handle = (self.launcher or self.backend.launch)(launch)
        except BaseException:
            parent.close()
            os.close(out_r)
            raise
        finally:
            child.close()
            os.close(out_w)
            if self._endpoint is not None:
                self._endpoint.launched()
        self._watch_pid()
        parent.setblocking(False)
        self._transport, _ = await loop.create_unix_connection(lambda: _Control(self), sock=parent)
        pipe = os.fdopen(out_r, "rb", buffering=0)
        self._out_transport, _ = await loop.connect_read_pipe(lambda: _Output(self), pipe)

    async def _spawn_forked(self, zygote: Zygote) -> None:
        """A fork of the zygote, already in its own cgroup; it gets its per-environment values, then
        reseeds, runs after-restore hooks and answers READY (see sandbox/zygote.py)."""
        loop = self._loop
        forked = await zygote.acquire(self.id, self.spec.memory_size, self.spec.ephemeral_storage)
        init_type = "snap-start" if zygote.snapstart and self.init_type == "on-demand" else self.init_type
        environ = {"AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream, "AWS_LAMBDA_INITIALIZATION_TYPE": init_type}
        try:
            if self.environ_hook is not None:
                environ.update(self.environ_hook(self.id))
            send_go(forked.sock, environ)
        except BaseException as e:
            forked.handle.kill()
            forked.sock.close()
            os.close(forked.out_r)
            if forked.api_sock is not None:
                forked.api_sock.close()
            raise ZygoteError(f"cannot start the forked environment: {e}") from e
        self.handle = forked.handle
        if forked.api_sock is not None:  # the fork's endpoint, made in its own network namespace
            self._endpoint = PlatformEndpoint(self.spec, self.id, self.settings.request_body_max_bytes)
            self._endpoint.serve(forked.api_sock)
            forked.api_sock = None
        self._exited = loop.create_future()
        self._watch_pid()
        self._transport, _ = await loop.create_unix_connection(lambda: _Control(self), sock=forked.sock)
        pipe = os.fdopen(forked.out_r, "rb", buffering=0)
        self._out_transport, _ = await loop.connect_read_pipe(lambda: _Output(self), pipe)

    async def prestart(self) -> InvokeResult | None:
        """Start the environment ahead of demand (provisioned concurrency): None when ready."""
        self.busy = True
        self.prestarting = True
        try:
            return await self._start(f"prestart-{self.id}")
        finally:
            self.prestarting = False
            self.busy = False
            self.last_used = self._loop.time()

    async def _watch_memory(self) -> None:
        """Start the backend's memory watcher off the event loop (its set-up can take milliseconds)."""
        handle = self.handle
        if handle is None:
            return
        try:
            fd = await asyncio.to_thread(handle.start_memory_watch)
        except OSError as e:
            log.warning("environment %s: no memory watcher: %s", self.id, e)
            return
        if fd < 0:
            return
        if self.dead or self.closed:
            handle.close_memory_watch()
            return
        self._memory_fd = fd
        self._loop.add_reader(fd, self._check_memory)
        self._check_memory()  # whatever happened before the watcher was armed

    def _check_memory(self) -> None:
        if self.handle is None or self.dead:
            return
        verdict = self.handle.check_memory()
        if verdict == "killed":
            self._unwatch_memory()
        elif verdict == "watch" and self._memory_poll is None:
            self._memory_poll = self._loop.call_later(ANON_POLL_INTERVAL, self._poll_memory)

    def _poll_memory(self) -> None:
        self._memory_poll = None
        self._check_memory()

    def _unwatch_memory(self) -> None:
        if self._memory_poll is not None:
            self._memory_poll.cancel()
            self._memory_poll = None
        if self._memory_fd >= 0:
            self._loop.remove_reader(self._memory_fd)
            self._memory_fd = -1
            if self.handle is not None:
                self.handle.close_memory_watch()

    def _watch_pid(self) -> None:
        assert self.handle is not None
        self._memory_task = self._loop.create_task(self._watch_memory())
        watch = getattr(self.handle, "watch_exit", None)
        if watch is not None:  # a forked environment: its zygote reports the exit (it is not our child)
            watch(self._on_exit)
            return
        try:
            self._pidfd = os.pidfd_open(self.handle.pid)
        except (OSError, AttributeError):
            self._loop.create_task(self._poll_exit())
            return
        self._loop.add_reader(self._pidfd, self._on_exit)

    async def _poll_exit(self) -> None:
        while self.handle is not None and self.handle.reap() is None:
            await asyncio.sleep(0.05)
        self._on_exit()

    def _unwatch_pid(self) -> None:
        self._unwatch_memory()
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    async def _start(self, request_id: str) -> InvokeResult | None:
        """Spawn and run INIT. None when ready, else the result to answer the triggering invocation with."""
        self.started = True
        t0 = time.perf_counter()
        zygote = self.zygote
        if zygote is not None:  # one INIT for every environment of the version (issue 5)
            try:
                failure = await zygote.ready()
            except ZygoteError as e:
                log.warning("environment %s: no zygote (%s): starting it fresh", self.id, e)
                failure = None
                self.zygote = zygote = None
            if failure is not None and zygote is not None:
                self.kill("init-error")
                version_line = runtime_version_line(self.spec.runtime, self.settings.region)
                self.log_sink(self.spec.log_group, self.log_stream, restore_lines(zygote, version_line))
                return dataclasses.replace(
                    failure, log_stream=self.log_stream, environment_id=self.id, extra_report=dict(failure.extra_report)
                )
        version_line = runtime_version_line(self.spec.runtime, self.settings.region)
        lines = restore_lines(zygote, version_line) if zygote is not None else None
        lines = lines or [(time.time_ns() // 1_000_000, version_line)]
        if platformlog.is_json(self.spec):  # LoggingConfig JSON: platform.initStart instead of INIT_START
            lines = platformlog.start_lines(self.spec, lines)
        self.log_sink(self.spec.log_group, self.log_stream, lines)
        self._waiter = self._loop.create_future()
        await self._spawn()
        timeout = self.settings.init_timeout
        try:
            frame = await self._wait(self._loop.time() + timeout)
        except _TimedOut:
            await self._rescue_logs()
            self.kill("timeout")
            return self._fail(
                request_id, "Sandbox.Timedout", f"Init timed out after {timeout:.2f} seconds",
                duration_ms=timeout * 1000, extra_report={"Status": "timeout"},
            )
        except _Died:
            return await self._exit_error(request_id)
        self.init_duration_ms = (time.perf_counter() - t0) * 1000
        if frame.kind != READY:
            self.kill("protocol")
            return await self._exit_error(request_id)
        if not frame.ok:
            self.kill("init-error")
            return InvokeResult(
                payload=frame.payload,
                function_error="Unhandled",
                error_type=frame.error_type,
                logs=frame.logs + self._take_stray(),
                duration_ms=0.0,
                max_memory_mb=self._memory(frame.max_rss_kb),
                init_duration_ms=self.init_duration_ms,
                log_stream=self.log_stream,
                environment_id=self.id,
                extra_report={"Status": "error", "Error Type": frame.error_type or "Runtime.Unknown"},
            )
        if self.zygote is not None and self.zygote.snapstart:
            self.restore_report = {
                "Restore Duration": f"{self.init_duration_ms:.2f} ms",
                "Billed Restore Duration": f"{math.ceil(self.init_duration_ms)} ms",
            }
        if self.handle is not None and self.role != "zygote":  # a zygote's forks must not be throttled
            try:
                self.handle.after_init(self.spec.memory_size)
            except OSError as e:  # the group vanished: the environment is unusable
                log.warning("environment %s: cannot apply CPU limit: %s", self.id, e)
                self.kill("limits")
                return await self._exit_error(request_id)
        if frame.logs:
            self.log_sink(self.spec.log_group, self.log_stream, frame.logs)
        return None

    async def _wait(self, when: float) -> ResultFrame:
        waiter = self._waiter
        assert waiter is not None
        deadlines = self._deadlines
        deadlines.add(when, waiter)
        try:
            return await waiter
        finally:
            deadlines.finished()
            self._waiter = None
            self._on_chunk = None

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        """Run one invocation (starting the environment first if needed). Never raises for user faults."""
        self.busy = True
        self.stray_bytes = 0
        try:
            init_ms: float | None = None
            deadline_ms = request.deadline_ms
            if not self.started:
                failed = await self._start(request.request_id)
                if failed is not None:
                    return failed
                init_ms = self.init_duration_ms
                # The function's timeout starts after INIT, as on Lambda.
                deadline_ms += int(init_ms or 0)
                if self.restore_report is not None:  # SnapStart: Restore Duration replaces Init Duration
                    init_ms = None
            if not self.alive:
                return await self._exit_error(request.request_id)
            result = await self._run(request, deadline_ms, init_ms)
            if self.restore_report is not None and self.invocations == 0:
                result.extra_report = {**self.restore_report, **result.extra_report}
            return result
        finally:
            self.busy = False
            self.invocations += 1
            self.last_used = self._loop.time()

    async def _run(self, request: InvokeRequest, deadline_ms: int, init_ms: float | None) -> InvokeResult:
        assert self._transport is not None
        loop = self._loop
        self._waiter = loop.create_future()
        self._on_chunk = request.on_chunk
        t0 = time.perf_counter()
        self._transport.write(encode_invoke(request, deadline_ms))
        remaining = deadline_ms / 1000 - time.time()
        try:
            frame = await self._wait(loop.time() + max(0.0, remaining))
        except _TimedOut:
            await self._rescue_logs()
            self.kill("timeout")
            return self._fail(
                request.request_id, "Sandbox.Timedout", f"Task timed out after {self.spec.timeout:.2f} seconds",
                duration_ms=(time.perf_counter() - t0) * 1000, init_duration_ms=init_ms,
                extra_report={"Status": "timeout"},
            )
        except _Died:
            return await self._exit_error(request.request_id, init_ms, (time.perf_counter() - t0) * 1000)
        if frame.kind != RESULT:
            self.kill("protocol")
            return await self._exit_error(request.request_id, init_ms)
        logs = frame.logs
        if self._stray_lines:
            logs = sorted(logs + self._take_stray(), key=lambda line: line[0])
        return InvokeResult(
            payload=frame.payload,
            function_error=None if frame.ok else "Unhandled",
            error_type=frame.error_type,
            logs=logs,
            duration_ms=frame.duration_ns / 1e6,
            max_memory_mb=self._memory(frame.max_rss_kb),
            init_duration_ms=init_ms,
            log_stream=self.log_stream,
            environment_id=self.id,
        )

    def _memory(self, rss_kb: int) -> int:
        return self.handle.peak_memory_mb(rss_kb) if self.handle is not None else (rss_kb + 1023) // 1024

    def _take_stray(self) -> list[LogLine]:
        lines, self._stray_lines = self._stray_lines, []
        return lines

    def _fail(self, request_id: str, error_type: str, message: str, **kw: object) -> InvokeResult:
        return error_result(
            request_id, error_type, message, log_stream=self.log_stream, env_id=self.id,
            logs=self._take_stray(), max_memory_mb=self._memory(0), **kw,  # type: ignore[arg-type]
        )

    async def _exit_error(
        self, request_id: str, init_ms: float | None = None, duration_ms: float = 0.0
    ) -> InvokeResult:
        """The runtime died: Runtime.ExitError with how it exited (after it is fully gone)."""
        reason_by_us = self.kill_reason
        if self._exited is not None and not self.dead:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._exited), EXIT_GRACE)
        self.kill(reason_by_us or "exited")
        if self._exited is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._exited), 2.0)
        if reason_by_us == "stop":
            message = "Runtime exited with error: signal: killed (nimbus is shutting down)"
        elif self.handle is not None and self.handle.popen.returncode == 0 and not self.handle.oom_killed():
            message = "Runtime exited without providing a reason"
        else:
            reason = self.handle.exit_reason() if self.handle is not None else "signal: killed"
            message = f"Runtime exited with error: {reason}"
        return self._fail(
            request_id, "Runtime.ExitError", message, duration_ms=duration_ms, init_duration_ms=init_ms,
            extra_report={"Status": "error", "Error Type": "Runtime.ExitError"},
        )

    @property
    def closed(self) -> bool:
        """The process tree has exited (or never started)."""
        return self.handle is None or (self._exited is not None and self._exited.done())

    def kill(self, reason: str) -> None:
        """Kill the environment's whole process tree now (idempotent); resources are released once it is
        gone."""
        if self.dead:
            return
        self.dead = True
        self.alive = False
        self.kill_reason = self.kill_reason or reason
        if self.handle is not None:
            self.handle.kill()
        if self._transport is not None:
            self._transport.abort()
        if self._out_transport is not None:
            self._out_transport.close()
        if self._endpoint is not None:
            self._endpoint.close()
        waiter = self._waiter
        if waiter is not None and not waiter.done() and reason != "timeout":
            waiter.set_exception(_Died())
        if self.handle is None:
            return
        if self.handle.reap() is not None:
            self._unwatch_pid()
            if self._exited is not None and not self._exited.done():
                self._exited.set_result(None)
            self._loop.call_soon(self._cleanup, 20)

    def _cleanup(self, tries: int) -> None:
        """Release backend resources (the cgroup) once every process is gone; retried briefly."""
        if self.handle is None or self._cleaned:
            return
        if self.handle.reap() is None:
            return  # the exit watcher calls again
        try:
            done = self.handle.cleanup()
        except OSError as e:
            log.warning("cleanup of environment %s failed: %s", self.id, e)
            done = True
        if done:
            self._cleaned = True
        elif tries > 0:
            self._loop.call_later(0.05, self._cleanup, tries - 1)

    async def wait_closed(self, timeout: float = 2.0) -> None:
        """Wait until the process tree has exited (after kill)."""
        if self._exited is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        if self._memory_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._memory_task, timeout)
        if self.handle is not None and not self._cleaned:
            self._cleanup(0)
