"""An execution environment whose runtime speaks the Lambda Runtime API: custom runtimes (`bootstrap`) and
Node.js (AWS's aws-lambda-ric). Same life as `Environment` (spawn, INIT, one invocation at a time, timeout,
crash, memory, teardown; the pool and manager treat both alike), but the runtime is a stranger's program:

- the launcher (runtime/apilauncher.py) hands over a listening socket from inside the sandbox; nimbus serves
  the Runtime and Extensions APIs on it (runtimeapi.py) on the server's event loop;
- INIT ends when the runtime and every extension have called `next`; an invocation ends with the runtime's
  `/response` or `/error` (a stream is passed on chunk by chunk);
- everything the runtime prints goes through fd 1/2 into log lines, and the extensions' output through a pipe
  of its own (Telemetry API `extension` records); the pipes are drained before an answer is returned, so
  lines printed before responding always belong to the invocation;
- shutdown: extensions registered for SHUTDOWN get it, and AWS's 2 s grace, before the kill: reason
  `spindown` when an idle environment is reaped or a retired one ends, `timeout` when an invocation timed out,
  `failure` when the runtime process died (with extensions the launcher stays the runtime's parent and
  reports its end, so the extensions outlive it);
- telemetry (telemetry.py): the environment produces the Telemetry API's records (platform.initStart ...
  platform.report with its durations, each line of output as a `function` record) where it knows them, and
  delivers what is buffered before SHUTDOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.sandbox.apiruntimes import CUSTOM_RUNTIMES, exec_wrapper, python_client_command, runtime_command
from nimbus.sandbox.backends import Backend, Launch, describe_signal
from nimbus.sandbox.deadlines import Deadlines
from nimbus.sandbox.deadlines import TimedOut as _TimedOut
from nimbus.sandbox.environ import build_environ
from nimbus.sandbox.environment import MAX_LINE, MAX_STRAY_BYTES, RESPONSE_SLACK, Environment, _Died, _Output
from nimbus.sandbox.imageenv import IMAGE_ROOT, check_ready, image_environ
from nimbus.sandbox.netwiring import with_network
from nimbus.sandbox.network import NetworkProvider
from nimbus.sandbox.protocol import READY, RESULT, ResultFrame
from nimbus.sandbox.runtimeapi import SHUTDOWN_GRACE_MS, ApiIdentity, RuntimeAPI, serve
from nimbus.sandbox.telemetry import TelemetryHub, socket_netns
from nimbus.sandbox.types import InvokeRequest, InvokeResult, LogLine, LogSink, PlatformApi, StartFormatter

# Variables extensions do not see (AWS's list: the runtime's own configuration).
EXTENSION_HIDDEN = (
    "_HANDLER", "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "NODE_PATH",
    "_NIMBUS_API_CLIENT_OPT_DIR",
)
# Kills that give extensions their SHUTDOWN event first, with its `shutdownReason`.
SHUTDOWN_REASONS = {"idle": "spindown", "retire": "spindown", "timeout": "timeout", "exited": "failure"}
TELEMETRY_DRAIN = 0.5  # seconds buffered telemetry gets to reach subscribers before SHUTDOWN is sent


def _frame(kind: int, ok: bool, error_type: str | None = None, payload: bytes = b"") -> ResultFrame:
    return ResultFrame(kind, ok, 0, 0, error_type, payload, [])


class ApiEnvironment(Environment):
    """An environment running a Runtime API client (see the module docstring)."""

    def __init__(
        self,
        spec: VersionSpec,
        backend: Backend,
        settings: Settings,
        log_sink: LogSink,
        interpreter: Path,
        deadlines: Deadlines | None = None,
        *,
        init_type: str = "on-demand",
        environ_hook: Callable[[str], dict[str, str]] | None = None,
        platform_api: PlatformApi | None = None,
        network: NetworkProvider | None = None,
        format_start: StartFormatter | None = None,
    ) -> None:
        super().__init__(spec, backend, settings, log_sink, interpreter, deadlines, init_type=init_type,
                         environ_hook=environ_hook, platform_api=platform_api, network=network,
                         format_start=format_start)
        self.api: RuntimeAPI | None = None
        self._server: asyncio.AbstractServer | None = None
        self._control_sock: socket.socket | None = None
        self._control_buf = b""
        self._listener: socket.socket | None = None  # received, not yet served
        self._pidfds: list[int] = []  # received with the listener: one per watched extension
        self._ext_watch: dict[int, str] = {}  # pidfd -> extension name, watched until it exits
        self._out_fd = -1
        self._output = _Output(self)
        self._ext_fd = -1  # the extensions' fd 1/2
        self._ext_partial = b""
        self._ext_waiter: asyncio.Future[None] | None = None
        self._request_id = ""
        self._shutting_down = False
        self.telemetry = TelemetryHub(self.id)
        self.invocations_started = 0  # events dispatched to the runtime
        self._reported = 0
        self._shutdown_over = False
        self._runtime_exit: dict[str, int] | None = None  # how the runtime ended (launcher's report)
        self._init_t0 = 0.0

    # ---------------------------------------------------------------------------------------------
    # Start-up

    def _launch(self, child: socket.socket, out_w: int, ext_w: int = -1) -> Launch:
        if self.spec.image is not None:
            return self._image_launch(child, out_w)
        isolated = self.backend.task_root_inside is not None
        opt_dir = self.spec.opt_dir
        opt = "/opt" if isolated else self.backend.opt_root(opt_dir) if opt_dir is not None else ""
        environ = build_environ(self.spec, self.settings, self.backend, self.log_stream, self.interpreter)
        if self.spec.runtime.startswith("python"):  # managed Python with external extensions (manager.py)
            files = getattr(self.backend, "runtime_files", None)
            script = files.script(self.interpreter, self.backend.runtime_dir) if files is not None else "bootstrap.py"
            command = python_client_command(self.interpreter, self.backend.runtime_dir, script, opt)
        else:
            command = runtime_command(self.spec.runtime, isolated, opt_dir)
            environ.pop("PYTHONPATH", None)  # the Python bootstrap's: not part of these runtimes' environment
        if self.spec.runtime in CUSTOM_RUNTIMES:
            environ.pop("AWS_EXECUTION_ENV", None)  # AWS does not define it for OS-only runtimes
        layer_paths = environ.get("NODE_PATH")  # build_environ's: the layers' node_modules
        environ.update(command.environ)
        if layer_paths and "NODE_PATH" in command.environ:
            environ["NODE_PATH"] = f"{layer_paths}:{command.environ['NODE_PATH']}"
        environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = self.init_type
        if self.environ_hook is not None:
            environ.update(self.environ_hook(self.id))
        # Extensions and /opt/bootstrap come from the layers: at /opt in a sandbox; outside one (process
        # backend) where the code store merged them, and nowhere without layers (never the host's /opt).
        extensions = f"{opt}/extensions" if opt else ""
        environ.update({
            "_NIMBUS_CONTROL_FD": str(child.fileno()),
            "_NIMBUS_API_PORT": "9001" if isolated else "0",
            "_NIMBUS_RUNTIME_ARGV": json.dumps(list(command.argv)),
            "_NIMBUS_EXTENSIONS_DIR": extensions,
            "_NIMBUS_OPT_DIR": opt,
            "_NIMBUS_EXTENSION_HIDDEN": ",".join(EXTENSION_HIDDEN),
            "_NIMBUS_EXEC_WRAPPER": exec_wrapper(self.spec.runtime, self.spec.environment) or "",
        })
        if ext_w >= 0:
            environ["_NIMBUS_EXTENSION_OUT_FD"] = str(ext_w)
        return Launch(
            env_id=self.id,
            interpreter=self.interpreter,
            code_dir=self.spec.code_dir,
            memory_mb=self.spec.memory_size,
            ephemeral_mb=self.spec.ephemeral_storage,
            environ=environ,
            pass_fds=(child.fileno(), ext_w) if ext_w >= 0 else (child.fileno(),),
            stdout_fd=out_w,
            opt_dir=opt_dir,
            script="apilauncher",
            ro_binds=command.binds,
        )

    def _image_launch(self, child: socket.socket, out_w: int) -> Launch:
        """A container image's launch: its tree as the root, its command line, its environment."""
        image = check_ready(self.spec, self.backend.task_root_inside is not None)
        lambda_env = build_environ(self.spec, self.settings, self.backend, self.log_stream, self.interpreter)
        environ = image_environ(image, self.spec.environment, lambda_env)
        environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = self.init_type
        if self.environ_hook is not None:
            environ.update(self.environ_hook(self.id))
        environ.update({
            "_NIMBUS_CONTROL_FD": str(child.fileno()),
            "_NIMBUS_API_PORT": "9001",
            "_NIMBUS_RUNTIME_ARGV": json.dumps(list(image.argv)),
            "_NIMBUS_EXTENSIONS_DIR": "/opt/extensions",
            "_NIMBUS_OPT_DIR": "/opt",
            "_NIMBUS_EXTENSION_HIDDEN": ",".join(EXTENSION_HIDDEN),
            "_NIMBUS_EXEC_WRAPPER": "",
            "_NIMBUS_CHROOT": IMAGE_ROOT,
            "_NIMBUS_CHDIR": image.workdir,
        })
        return Launch(
            env_id=self.id, interpreter=self.interpreter, code_dir=image.rootfs, memory_mb=self.spec.memory_size,
            ephemeral_mb=self.spec.ephemeral_storage, environ=environ, pass_fds=(child.fileno(),),
            stdout_fd=out_w, script="apilauncher", image_root=image.rootfs,
        )

    async def _spawn(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        ext_r, ext_w = os.pipe()
        try:
            launch = with_network(self._launch(child, out_w, ext_w), await self._prepare_network())
            self._exited = self._loop.create_future()
            self.handle = self.backend.launch(launch)
        except BaseException:
            parent.close()
            os.close(out_r)
            os.close(ext_r)
            raise
        finally:
            child.close()
            os.close(out_w)
            os.close(ext_w)
        self._watch_pid()
        os.set_blocking(out_r, False)
        self._out_fd = out_r
        self._loop.add_reader(out_r, self._read_output)
        os.set_blocking(ext_r, False)
        self._ext_fd = ext_r
        self._loop.add_reader(ext_r, self._read_extension_output)
        parent.setblocking(False)
        self._control_sock = parent
        self._loop.add_reader(parent.fileno(), self._on_control)

    async def _start(self, request_id: str) -> InvokeResult | None:
        self._request_id = request_id
        self._init_t0 = time.perf_counter()
        spec = self.spec
        self.telemetry.emit("platform", "platform.initStart", {
            "initializationType": self.init_type, "phase": "init", "functionName": spec.function_name,
            "functionVersion": spec.version, "instanceId": self.id,
            "instanceMaxMemory": spec.memory_size * 1024 * 1024,
        })
        return await super()._start(request_id)

    def _init_done(self, status: str, error_type: str | None = None) -> None:
        """platform.initRuntimeDone and platform.initReport."""
        record: dict[str, object] = {"initializationType": self.init_type, "phase": "init", "status": status}
        if error_type:
            record["errorType"] = error_type
        self.telemetry.emit("platform", "platform.initRuntimeDone", record)
        duration = round((time.perf_counter() - self._init_t0) * 1000, 3)
        self.telemetry.emit("platform", "platform.initReport", {**record, "metrics": {"durationMs": duration}})
        self.telemetry.end_init()

    async def invoke(self, request: InvokeRequest) -> InvokeResult:
        result = await super().invoke(request)
        self._report(request, result)
        return result

    def _report(self, request: InvokeRequest, result: InvokeResult) -> None:
        """platform.runtimeDone and platform.report of an invocation that ended (or never ran: INIT failed)."""
        if not self.telemetry.active:  # (the hot path of environments nobody subscribed in)
            self._reported = self.invocations_started
            return
        error_type = result.error_type
        if result.function_error is None:
            status = "success"
        elif error_type in ("Sandbox.Timedout",):
            status = "timeout"
        elif error_type and (error_type.startswith("Runtime.") or error_type.startswith("Extension.")):
            status = "failure"
        else:
            status = "error"
        base: dict[str, object] = {"requestId": request.request_id, "status": status}
        if status != "success" and error_type:
            base["errorType"] = error_type
        duration = round(result.duration_ms, 3)
        telemetry = self.telemetry
        if self.invocations_started > self._reported:  # the runtime got the event: it has a runtimeDone
            telemetry.emit("platform", "platform.runtimeDone", {
                **base, "metrics": {"durationMs": duration,
                                    "producedBytes": len(result.payload) if status == "success" else 0}})
        self._reported = self.invocations_started
        metrics: dict[str, object] = {
            "durationMs": duration, "billedDurationMs": math.ceil(result.duration_ms),
            "memorySizeMB": self.spec.memory_size, "maxMemoryUsedMB": result.max_memory_mb,
        }
        if result.init_duration_ms is not None:
            metrics["initDurationMs"] = round(result.init_duration_ms, 3)
        telemetry.emit("platform", "platform.report", {**base, "metrics": metrics})

    def _stray(self, lines: list[LogLine]) -> None:
        # Everything the runtime writes is a `function` record (extensions write to a pipe of their own).
        if self.telemetry.active:
            self.telemetry.lines("function", lines)
        super()._stray(lines)

    def _on_control(self) -> None:
        """The launcher's messages (JSON lines): the listening socket and the extensions it started, or an
        error (nothing could start, or the exec of the runtime failed). The socket closes on that exec."""
        sock = self._control_sock
        if sock is None:
            return
        try:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 64)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        for fd in fds:
            if self._listener is None:
                self._listener = socket.socket(fileno=fd)
            else:
                self._pidfds.append(fd)
        if not data:  # exec'd (or died: the exit watcher reports that)
            self._close_control()
            return
        self._control_buf += data
        while b"\n" in self._control_buf:
            line, _, self._control_buf = self._control_buf.partition(b"\n")
            self._on_launcher_message(line)

    def _on_launcher_message(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = {"error": {"errorType": "Runtime.Unknown", "errorMessage": "bad launcher message"}}
        listener, self._listener = self._listener, None
        pidfds, self._pidfds = self._pidfds, []
        if "runtime_exit" in message:  # the launcher stayed the runtime's parent (extensions): it ended
            self._on_runtime_exit(message["runtime_exit"])
            return
        error = message.get("error")
        if error or (listener is None and self.api is None):
            if listener is not None:
                listener.close()
            error = error or {"errorType": "Runtime.Unknown", "errorMessage": "no Runtime API socket"}
            error_type = str(error.get("errorType"))
            doc = {"errorType": error_type,
                   "errorMessage": f"RequestId: {self._request_id} Error: {error.get('errorMessage')}"}
            self._resolve(_frame(READY, False, error_type, json.dumps(doc).encode()))
            return
        if listener is None:
            return
        spec = self.spec
        identity = ApiIdentity(spec.function_name, spec.version, spec.handler, spec.function_arn, self.id)
        # The listener was made inside the sandbox: its namespace is where subscribers' listeners are.
        self.telemetry.set_netns(socket_netns(listener))
        self.api = RuntimeAPI(identity, self, self.settings.sync_payload_max_bytes + RESPONSE_SLACK,
                              list(message.get("extensions", [])), self.platform_api, self.telemetry)
        for name, fd in zip(message.get("watch", []), pidfds, strict=False):
            self._ext_watch[fd] = str(name)
            self._loop.add_reader(fd, self._on_extension_exit, fd)
        for fd in pidfds[len(self._ext_watch):]:
            os.close(fd)
        for name in message.get("exited", []):  # ended before the launcher could watch it
            self._loop.call_soon(self._extension_ended, str(name))
        listener.setblocking(False)
        self._loop.create_task(self._serve(listener))

    async def _serve(self, listener: socket.socket) -> None:
        assert self.api is not None
        try:
            server = await serve(self.api, listener)
        except OSError as e:
            listener.close()
            self._resolve(_frame(READY, False, "Runtime.Unknown", json.dumps(
                {"errorType": "Runtime.Unknown", "errorMessage": f"Runtime API unavailable: {e}"}).encode()))
            return
        if self.dead:
            server.close()
            return
        self._server = server

    def _on_extension_exit(self, fd: int) -> None:
        """An extension's process ended (its pidfd became readable). During INIT that fails the environment
        as on AWS (`Extension.Crash`); afterwards the extension only stops holding the environment up."""
        name = self._ext_watch.pop(fd, "")
        self._unwatch(fd)
        self._extension_ended(name)

    def _extension_ended(self, name: str) -> None:
        api = self.api
        if api is None or self.dead or not api.extension_exited(name):
            return
        doc = {"errorType": "Extension.Crash",
               "errorMessage": f"RequestId: {self._request_id} Error: extension {name} exited during INIT"}
        self._resolve(_frame(READY, False, "Extension.Crash", json.dumps(doc).encode()))

    def _on_runtime_exit(self, status: dict[str, int]) -> None:
        """The runtime process ended (its parent, the launcher, lives on with the extensions)."""
        self._runtime_exit = status
        self.alive = False
        self._drain_output()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Died())
        elif not self.busy:
            self.kill("exited")

    async def _exit_error(
        self, request_id: str, init_ms: float | None = None, duration_ms: float = 0.0
    ) -> InvokeResult:
        status = self._runtime_exit
        if status is None:
            return await super()._exit_error(request_id, init_ms, duration_ms)
        signo = status.get("signal")
        if (self.handle is not None and self.handle.oom_killed()) or signo is not None:
            oom = self.handle is not None and self.handle.oom_killed()
            message = "Runtime exited with error: " + ("signal: killed" if oom else describe_signal(signo or 9))
        elif status.get("code") == 0:
            message = "Runtime exited without providing a reason"
        else:
            message = f"Runtime exited with error: exit status {status.get('code')}"
        self.kill(self.kill_reason or "exited")  # extensions get SHUTDOWN (failure) first
        return self._fail(
            request_id, "Runtime.ExitError", message, duration_ms=duration_ms, init_duration_ms=init_ms,
            extra_report={"Status": "error", "Error Type": "Runtime.ExitError"},
        )

    def _unwatch(self, fd: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _unwatch_extensions(self) -> None:
        for fd in [*self._ext_watch, *self._pidfds]:
            self._unwatch(fd)
        self._ext_watch.clear()
        self._pidfds.clear()

    def _close_control(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._control_sock is not None:
            with contextlib.suppress(OSError, ValueError):
                self._loop.remove_reader(self._control_sock.fileno())
            self._control_sock.close()
            self._control_sock = None

    # ---------------------------------------------------------------------------------------------
    # Output (fd 1/2 of the runtime and its extensions)

    def _read_output(self) -> None:
        try:
            data = os.read(self._out_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._output.data_received(data)
        else:
            self._close_output()

    def _read_extension_output(self) -> None:
        try:
            data = os.read(self._ext_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._extension_output(data)
        else:
            self._close_extension_output()

    def _extension_output(self, data: bytes) -> None:
        """Extensions' fd 1/2: lines of the function's log stream (as on AWS) and `extension` records."""
        if self.stray_bytes > MAX_STRAY_BYTES:
            return
        self.stray_bytes += len(data)
        parts = (self._ext_partial + data).split(b"\n")
        self._ext_partial = parts.pop()[:MAX_LINE]
        if parts:
            now = time.time_ns() // 1_000_000
            lines = [(now, p[:MAX_LINE].decode("utf-8", "replace")) for p in parts]
            self.telemetry.lines("extension", lines)
            super()._stray(lines)

    def _close_extension_output(self) -> None:
        fd = self._ext_fd
        if fd < 0:
            return
        self._ext_fd = -1
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(fd)
        if self._ext_partial:
            self._extension_output(b"\n")
        os.close(fd)

    def _drain_output(self) -> None:
        """Read what the pipes hold now (written before the runtime's answer was sent)."""
        ext_fd = self._ext_fd
        while ext_fd >= 0:
            try:
                data = os.read(ext_fd, 65536)
            except OSError:
                break
            if not data:
                self._close_extension_output()
                break
            self._extension_output(data)
            if len(data) < 65536:
                break
        fd = self._out_fd
        while fd >= 0:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                self._close_output()
                return
            self._output.data_received(data)
            if len(data) < 65536:
                return

    def _close_output(self) -> None:
        fd = self._out_fd
        if fd < 0:
            return
        self._out_fd = -1
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(fd)
        self._output.eof_received()
        os.close(fd)

    async def _rescue_logs(self) -> None:
        self._drain_output()

    # ---------------------------------------------------------------------------------------------
    # Events from the Runtime API (ApiListener)

    def _resolve(self, frame: ResultFrame) -> None:
        self._drain_output()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(frame)

    def api_ready(self) -> None:
        self._drain_output()
        lines = self._take_stray()
        if lines:  # INIT's output belongs to the log stream before the first invocation, not to it
            self.log_sink(self.spec.log_group, self.log_stream, lines)
        self._init_done("success")
        self._resolve(_frame(READY, True))

    def api_init_error(self, error_type: str, payload: bytes) -> None:
        self._init_done("error", error_type)
        self._resolve(_frame(READY, False, error_type, payload))

    def api_result(self, ok: bool, error_type: str | None, payload: bytes) -> None:
        self._resolve(_frame(RESULT, ok, error_type, payload))

    def api_extensions_idle(self) -> None:
        waiter = self._ext_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------------------------------------------
    # Invocations

    async def _run(self, request: InvokeRequest, deadline_ms: int, init_ms: float | None) -> InvokeResult:
        api = self.api
        assert api is not None
        loop = self._loop
        t0 = time.perf_counter()
        deadline = loop.time() + max(0.0, deadline_ms / 1000 - time.time())
        if api.extensions_busy and not await self._extensions_idle(deadline):
            return self._timed_out(request, t0, init_ms)
        self._waiter = loop.create_future()
        if self.telemetry.active:
            start: dict[str, object] = {"requestId": request.request_id, "version": self.spec.version}
            if request.trace_id:
                start["tracing"] = {"type": "X-Amzn-Trace-Id", "value": request.trace_id}
            self.telemetry.emit("platform", "platform.start", start)
        self.invocations_started += 1
        api.dispatch(request, deadline_ms)
        try:
            frame = await self._wait(deadline)
        except _TimedOut:
            api.cancel()
            return self._timed_out(request, t0, init_ms)
        except _Died:
            return await self._exit_error(request.request_id, init_ms, (time.perf_counter() - t0) * 1000)
        if frame.kind != RESULT:
            self.kill("protocol")
            return await self._exit_error(request.request_id, init_ms)
        return InvokeResult(
            payload=frame.payload,
            function_error=None if frame.ok else "Unhandled",
            error_type=frame.error_type,
            logs=self._take_stray(),
            duration_ms=(time.perf_counter() - t0) * 1000,
            max_memory_mb=self._memory(0),
            init_duration_ms=init_ms,
            log_stream=self.log_stream,
            environment_id=self.id,
        )

    def _timed_out(self, request: InvokeRequest, t0: float, init_ms: float | None) -> InvokeResult:
        self._drain_output()
        self.kill("timeout")
        return self._fail(
            request.request_id, "Sandbox.Timedout", f"Task timed out after {self.spec.timeout:.2f} seconds",
            duration_ms=(time.perf_counter() - t0) * 1000, init_duration_ms=init_ms,
            extra_report={"Status": "timeout"},
        )

    async def _extensions_idle(self, deadline: float) -> bool:
        """Wait (until loop time `deadline`) for extensions still busy with the previous event."""
        api = self.api
        if api is None or not api.extensions_busy:
            return True
        self._ext_waiter = self._loop.create_future()
        try:
            await asyncio.wait_for(self._ext_waiter, max(0.0, deadline - self._loop.time()))
        except TimeoutError:
            return False
        finally:
            self._ext_waiter = None
        return True

    # ---------------------------------------------------------------------------------------------
    # Teardown

    def _on_exit(self) -> None:
        # The runtime's control channel is gone after exec: its exit is what makes it unusable.
        self.alive = False
        super()._on_exit()
        if not self.busy:
            self.kill(self.kill_reason or "exited")

    def kill(self, reason: str) -> None:
        if self.dead:
            return
        api = self.api
        if self._shutting_down and reason != "stop" and not self._shutdown_over:
            return  # extensions have their SHUTDOWN and its grace period: the graceful kill ends it
        shutdown_reason = SHUTDOWN_REASONS.get(reason)
        if (shutdown_reason is not None and not self._shutting_down and api is not None and api.initialized
                and (shutdown_reason != "spindown" or not self.busy) and api.wants_shutdown()):
            self._shutting_down = True
            self.alive = False
            self.kill_reason = self.kill_reason or reason
            self._loop.create_task(self._graceful_kill(reason, shutdown_reason))
            return
        super().kill(reason)
        self.telemetry.close()
        self._drain_output()
        self._close_output()
        self._close_extension_output()
        self._close_control()
        self._unwatch_extensions()
        if self._server is not None:
            self._server.close()
            self._server = None
        if api is not None:
            api.close()

    async def _graceful_kill(self, reason: str, shutdown_reason: str) -> None:
        """Deliver buffered telemetry, send SHUTDOWN, give the extensions AWS's grace period, then kill."""
        await asyncio.sleep(0)  # (the invocation that timed out reports first)
        with contextlib.suppress(Exception):
            await self.telemetry.drain(TELEMETRY_DRAIN)
        api = self.api
        if api is not None and not self.dead and api.shutdown(shutdown_reason):
            self._ext_waiter = self._loop.create_future()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._ext_waiter, SHUTDOWN_GRACE_MS / 1000)
            self._ext_waiter = None
            with contextlib.suppress(Exception):
                await self.telemetry.drain(TELEMETRY_DRAIN)
        self._shutdown_over = True
        self.kill(reason)
