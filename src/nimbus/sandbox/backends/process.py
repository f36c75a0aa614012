"""The `process` backend: the runtime as a plain subprocess, for machines without namespaces or cgroups.

Same bootstrap and protocol, but NO isolation: the function sees the host's filesystem and network, runs as
the server's user, and its memory is not limited (only measured). It gets its own session so the whole
process group can be killed, and best-effort resource limits (open files, core dumps, file size).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from pathlib import Path

from nimbus.config import Settings
from nimbus.sandbox.backends import Backend, ForkedHandle, ForkedProcess, Handle, Launch
from nimbus.sandbox.backends.runtime_files import RuntimeFiles
from nimbus.sandbox.cgroups import MB


class ProcessHandle(Handle):
    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.popen.kill()

    def peak_memory_mb(self, reported_rss_kb: int) -> int:
        if reported_rss_kb <= 0:  # asked between invocations (metrics): the process's own high-water mark
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        reported_rss_kb = int(line.split()[1])
                        break
        return (reported_rss_kb + 1023) // 1024


class ForkedProcessHandle(ForkedHandle, ProcessHandle):
    """A forked environment of the `process` backend (no isolation; its own session)."""

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.kill()


class ProcessBackend(Backend):
    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime_files = RuntimeFiles()

    @property
    def runtime_dir(self) -> str:
        return str(self.runtime_files.root)

    def opt_root(self, opt_dir: Path | None) -> str:
        # No mounts here: layers stay where the code store merged them. The environment's variables
        # (PATH, LD_LIBRARY_PATH, NODE_PATH, _NIMBUS_OPT_DIR for the Python runtime's sys.path) point there;
        # code that opens "/opt/..." literally does not find them (docs/layers.md).
        return str(opt_dir) if opt_dir is not None else "/opt"

    def close(self) -> None:
        self.runtime_files.close()

    def launch(self, launch: Launch) -> Handle:
        popen = subprocess.Popen(
            [str(launch.interpreter), "-I", "-S", str(self.runtime_files.root / self.runtime_files.script(
                launch.interpreter, self.runtime_dir, launch.script))],
            stdin=subprocess.DEVNULL,
            stdout=launch.stdout_fd,
            stderr=launch.stdout_fd,
            env=launch.environ,
            cwd=launch.code_dir,
            pass_fds=launch.pass_fds,
            start_new_session=True,
            close_fds=True,
        )
        # Best effort and racy (the runtime may already run): without privileges this is all we have.
        with contextlib.suppress(OSError, ValueError):
            resource.prlimit(popen.pid, resource.RLIMIT_NOFILE, (1024, 1024))
            resource.prlimit(popen.pid, resource.RLIMIT_CORE, (0, 0))
            storage = launch.ephemeral_mb * MB
            resource.prlimit(popen.pid, resource.RLIMIT_FSIZE, (storage, storage))
        return ProcessHandle(popen)

    def adopt_fork(self, env_id: str, pid: int, memory_mb: int, tmp_mb: int) -> ForkedHandle:
        return ForkedProcessHandle(ForkedProcess(pid))
