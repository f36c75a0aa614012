"""Isolation backends: how an execution environment's process tree is started, limited and killed.

A backend turns a `Launch` (interpreter, code, limits, environment variables, the fds of the control
channel and of the output pipe) into a running `Handle`. `chooser.choose()` picks one from settings.isolation:
`namespaces` (bubblewrap + cgroups + seccomp) wherever it works, else `process`, and always says why.
"""

from __future__ import annotations

import abc
import logging
import os
import signal
import subprocess
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


class Backend(abc.ABC):
    """Starts environments with one kind of isolation."""

    name: str = ""
    task_root_inside: str | None = None  # None: the real code dir

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

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release host resources (cgroup parents, generated files)."""
