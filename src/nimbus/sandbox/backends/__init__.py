"""Isolation backends: how an execution environment's process tree is started, limited and killed.

A backend turns a `Launch` (interpreter, code, limits, environment variables, the fds of the control
channel and of the output pipe) into a running `Handle`. `chooser.choose()` picks one from settings.isolation:
`namespaces` (bubblewrap + cgroups + seccomp) wherever it works, else `process`, and always says why.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

class BackendUnavailable(Exception):
    """The requested isolation backend cannot run on this host (the message says why)."""


@dataclass
class Launch:
    """Everything a backend needs to start one environment."""

    env_id: str
    interpreter: Path
    code_dir: Path
    memory_mb: int
    ephemeral_mb: int
    environ: dict[str, str]  # complete environment of the runtime (task root etc. from backend paths)
    pass_fds: tuple[int, ...]  # control socket end, kept open in the child
    stdout_fd: int  # write end of the output pipe: the runtime's fd 1 and 2
    opt_dir: Path | None = None  # the function's merged layers, mounted read-only at /opt (None: no layers)
    script: str = "bootstrap"  # the runtime file to run: bootstrap (Python) or apilauncher (Runtime API)
    ro_binds: tuple[tuple[str, str], ...] = ()  # extra read-only mounts (host path, path inside)
    # A prepared network namespace to join instead of a new loopback-only one (sandbox/network), and the
    # sandbox's /etc/resolv.conf and /etc/hosts for it (None: the backend's defaults)
    netns: str | None = None
    netns_userns: str | None = None  # the user namespace to enter first (rootless: it owns `netns`)
    resolv_conf: str | None = None
    hosts: str | None = None
    # A container image's unpacked tree (issue 19): mounted read-only for the launcher to chroot into
    # (sandbox/imageenv.py); /var/task and /opt are then the image's own
    image_root: Path | None = None


_GO_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGILL: "illegal instruction",
    signal.SIGFPE: "floating point exception",
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGPIPE: "broken pipe",
}


def describe_signal(signo: int) -> str:
    """How AWS's runtime manager (Go) prints a process killed by `signo`."""
    try:
        return "signal: " + _GO_SIGNAL_NAMES.get(signal.Signals(signo), f"signal {signo}")
    except ValueError:
        return f"signal: signal {signo}"


class Handle(abc.ABC):
    """A running environment's process tree."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL the whole tree (idempotent)."""

    def runtime_pid(self) -> int | None:
        """The host pid of the runtime process (the process started with the bootstrap)."""
        return self.pid

    def notify_runtime(self, signum: int) -> bool:
        """Send `signum` to the runtime process alone; False when it cannot be found."""
        pid = self.runtime_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signum)
        except OSError:
            return False
        return True

    @abc.abstractmethod
    def peak_memory_mb(self, reported_rss_kb: int) -> int:
        """Peak memory of the environment in MB (the runtime's own max RSS is the fallback)."""

    def oom_killed(self) -> bool:
        return False

    def start_memory_watch(self) -> int:
        """Set up memory monitoring (blocking; run in a thread). Returns an fd that becomes readable when
        `check_memory` must run, or -1 when the kernel enforces the limit by itself."""
        return -1

    def check_memory(self) -> str:
        """'killed' (over its memory: the tree was killed), 'watch' (near the limit: check again soon) or
        'ok'."""
        return "ok"

    def close_memory_watch(self) -> None:  # noqa: B027 (optional hook)
        """Release the fd of start_memory_watch."""

    def after_init(self, memory_mb: int) -> None:  # noqa: B027 (optional hook)
        """INIT finished: apply limits that would have slowed it (the CPU quota)."""

    def widen_memory(self, memory_mb: int, tmp_mb: int) -> None:  # noqa: B027 (optional hook)
        """Raise the tree's memory limit and stop watching it (a zygote after INIT: forks cost it a little)."""

    def exit_reason(self) -> str:
        """AWS's wording for why the runtime exited: 'signal: killed', 'exit status 1', ..."""
        code = self.popen.returncode
        if code is None:
            return "signal: killed"
        if code < 0:
            return describe_signal(-code)
        return f"exit status {code}"

    def reap(self) -> int | None:
        """Collect the exit status if the process has exited."""
        try:
            return self.popen.poll()
        except OSError:
            return None

    def cleanup(self) -> bool:
        """Release resources after the tree is gone; False if it must be retried later."""
        return True


class ForkedProcess:
    """Stands in for the Popen of a handle of a forked environment: it is a zygote's child, not ours; the
    zygote reports its exit status."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


class ForkedHandle(Handle):
    """The handle of an environment forked from a zygote: its exit comes from the zygote's report (used by
    Environment instead of a pidfd), and its pid becomes the runtime's once that says hello."""

    exit_callback: Callable[[], None] | None = None

    def __init__(self, proc: ForkedProcess) -> None:
        super().__init__(proc)  # type: ignore[arg-type]  # (the Popen interface it needs: poll, kill, wait)
        self.proc = proc

    def watch_exit(self, callback: Callable[[], None]) -> None:
        self.exit_callback = callback
        if self.proc.returncode is not None:
            asyncio.get_running_loop().call_soon(callback)

    def exited(self, code: int) -> None:
        if self.proc.returncode is not None:
            return
        self.proc.returncode = code
        if self.exit_callback is not None:
            self.exit_callback()

    def set_runtime_pid(self, pid: int) -> None:
        self.proc.pid = self.pid = pid

    def runtime_pid(self) -> int | None:
        return self.pid


class Backend(abc.ABC):
    """Starts environments with one kind of isolation."""

    name: str = ""
    task_root_inside: str | None = None  # None: the real code dir
    isolated: bool = False  # forks of its zygotes build namespaces of their own (nimbus_zygote._isolate)

    def task_root(self, code_dir: Path) -> str:
        return self.task_root_inside or str(code_dir)

    def opt_root(self, opt_dir: Path | None) -> str:
        """Where the runtime finds the function's layers: `/opt`, where the backend mounts them."""
        return "/opt"

    @property
    @abc.abstractmethod
    def runtime_dir(self) -> str:
        """LAMBDA_RUNTIME_DIR as the runtime sees it (holds bootstrap.py)."""

    @abc.abstractmethod
    def launch(self, launch: Launch) -> Handle:
        """Start the runtime for `launch` (synchronously: fork + exec)."""

    def launch_zygote(self, launch: Launch) -> Handle:
        """Start a zygote (sandbox/zygote.py): by default like any environment."""
        return self.launch(launch)

    @abc.abstractmethod
    def adopt_fork(self, env_id: str, pid: int, memory_mb: int, tmp_mb: int) -> ForkedHandle:
        """Blocking (a thread): take charge of a zygote's new child `pid` (e.g. move it into a cgroup of its
        own with its limits and memory watcher) before it runs anything of the user's. Raises OSError (the
        child is then killed)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release host resources (cgroup parents, generated files)."""
