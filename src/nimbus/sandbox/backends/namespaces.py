"""The `namespaces` backend: bubblewrap for user/pid/mount/net/ipc/uts namespaces, a seccomp deny-list and
a cgroup per environment.

What the function sees: its code read-only at /var/task, the runtime at /var/runtime, the interpreter's
prefix, /usr (and the /bin, /lib symlinks), a generated minimal /etc, fresh /proc and /dev, a size-limited
tmpfs /tmp, loopback only, uid/gid 993 (AWS's sbx_user1051), no capabilities, no_new_privs. Nothing else of
the host: not the data dir, not other functions' code.

Cgroup placement without races: the runtime's first ancestor joins the environment's cgroup BEFORE it
execs bubblewrap, so bubblewrap, its init and the runtime are limited from their first instruction. Two
ways, both race-free:
- direct: a tiny shell launcher (`/bin/sh -c`, dash: ~1 ms) writes its own pid into the cgroup.procs
  files, then execs bubblewrap (no `preexec_fn`: that would force a full fork() of the server);
- spare (the usual path once warm): a small Python launcher started earlier in a fresh cgroup (through the
  same shell step) waits on a socket; launch() sends it bubblewrap's argv/env plus the fds and it execs.
  Joining a cgroup costs an RCU grace period (~20 ms on this kernel, during which every fork on the host
  waits), so a spare pays it ahead of the cold start, and is started a little after a launch, not during.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from nimbus.config import Settings
from nimbus.sandbox.backends import (
    Backend,
    BackendUnavailable,
    ForkedHandle,
    ForkedProcess,
    Handle,
    Launch,
    describe_signal,
)
from nimbus.sandbox.backends.runtime_files import RuntimeFiles
from nimbus.sandbox.cgroups import MB, Cgroup, CgroupError, CgroupManager
from nimbus.sandbox.imageenv import IMAGE_ROOT
from nimbus.sandbox.runtimes import python_prefix
from nimbus.sandbox.seccomp import SeccompUnavailable, bpf_fd, deny_list_bpf, zygote_filters

LAUNCHER_SHELL = "/bin/sh"
NSENTER = "/usr/bin/nsenter"  # util-linux: joins a prepared network namespace before bubblewrap starts
log = logging.getLogger(__name__)
BWRAP_CANDIDATES = ("/usr/bin/bwrap", "/usr/local/bin/bwrap")
SANDBOX_UID = 993  # sbx_user1051 on AWS
SANDBOX_GID = 990
ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\n",
    "group": "root:x:0:\nsbx_user1051:x:990:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\tsandbox.localdomain sandbox\n",
    "hostname": "localhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "resolv.conf": "",
}
# Host /etc content a function may legitimately need (CA certificates for TLS clients), bound read-only.
ETC_HOST_DIRS = ("ssl", "ca-certificates", "pki")
TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
DEV_SHM_MB = 64  # /dev/shm: bounded, so filling it fails with ENOSPC at once (forks: nimbus_zygote.DEV_SHM_MB)


# A zygote's bubblewrap runs as the unprivileged host user SANDBOX_UID (it then builds its namespaces
# unprivileged). Run by root, bubblewrap makes its mount namespace in the host's user namespace and covers
# /proc/irq and /proc/bus; a fork's own mount namespace (inside the zygote's user namespace) holds those covers
# locked, and the kernel then refuses the fresh /proc of the fork's own pid namespace (mount_too_revealing).
# Unprivileged, bubblewrap has nothing to cover (and the sandbox's uid is an ordinary host user rather than a
# capability-less root). That user may not reach a data dir under a private parent (a 0700 home), so this
# launcher first binds the function's directories into a stage directory, in a mount namespace of its own
# (nothing on the host changes), then drops to the user and execs bubblewrap. Arguments: stage dir, uid, gid,
# n, n pairs (source, name), then bubblewrap's argv.
STAGE_LAUNCHER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        os.write(2, ("nimbus: stage %s: %s\\n" % (what, os.strerror(err))).encode())
        os._exit(1)
stage, uid, gid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pairs, argv = sys.argv[5:5 + 2 * n], sys.argv[5 + 2 * n:]
check(libc.unshare(0x00020000), "unshare")
check(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None), "private")
check(libc.mount(b"tmpfs", stage.encode(), b"tmpfs", 0, b"mode=0755"), "tmpfs")
for i in range(n):
    source, target = pairs[2 * i], os.path.join(stage, pairs[2 * i + 1])
    if os.path.isdir(source):
        os.mkdir(target)
    else:
        open(target, "w").close()
    check(libc.mount(source.encode(), target.encode(), None, 0x1000 | 0x4000, None), "bind " + source)
os.setgroups([])
os.setresgid(gid, gid, gid)
os.setresuid(uid, uid, uid)
os.execv(argv[0], argv)
"""


def find_bwrap() -> str | None:
    for path in BWRAP_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("bwrap")


# A spare launcher: a small Python process, already inside its environment's cgroup, blocked until the host
# sends its command over a SOCK_SEQPACKET socket (fd 0): NUL-separated `argc, argv..., KEY=VALUE...` plus
# three fds (control socket, output pipe, seccomp filter), which it moves to 3, 1+2 and 4 before exec'ing
# bubblewrap, and any further fds of the launch, moved to 5, 6, ... Everything slow (interpreter start-up,
# joining the cgroup) happens before the host needs it.
SPARE_DELAY = 0.25  # seconds after a launch before the next spare is started
SPARE_CONTROL_FD = 3
SPARE_SECCOMP_FD = 4
SPARE_EXTRA_FD = 5  # the first of the launch's further fds (e.g. _NIMBUS_API_FD)
SPARE_MAX_FDS = 8
SPARE_LAUNCHER = """
import fcntl, os, socket
s = socket.socket(fileno=0)
try:
    data, fds, _, _ = socket.recv_fds(s, 1 << 20, 8)
except OSError:
    os._exit(1)
if not data or len(fds) < 3:
    os._exit(0)
s.detach()
moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]
for fd in fds:
    os.close(fd)
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
os.dup2(moved[1], 1)
os.dup2(moved[1], 2)
os.dup2(moved[0], 3)
os.dup2(moved[2], 4)
for i, fd in enumerate(moved[3:]):
    os.dup2(fd, 5 + i)
for fd in moved:
    os.close(fd)
items = data.split(b"\\0")
n = int(items[0])
env = dict(item.split(b"=", 1) for item in items[1 + n:])
netns = env.pop(b"_NIMBUS_NETNS", None)
userns = env.pop(b"_NIMBUS_NETNS_USERNS", None)
if netns:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for path, kind in ((userns, 0x10000000), (netns, 0x40000000)):
        if not path:
            continue
        fd = os.open(path, os.O_RDONLY)
        if libc.setns(fd, kind) != 0:
            os.write(2, b"nimbus: cannot join the network namespace\\n")
            os._exit(1)
        os.close(fd)
os.execve(items[1], items[1:1 + n], env)
"""


class _Spare:
    """A waiting launcher (see SPARE_LAUNCHER)."""

    def __init__(self, popen: subprocess.Popen[bytes], cgroup: Cgroup, sock: socket.socket) -> None:
        self.popen = popen
        self.cgroup = cgroup
        self.sock = sock

    def discard(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.popen.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.popen.wait(1)
        self.cgroup.kill()
        with contextlib.suppress(OSError):
            self.cgroup.remove()


def launcher_args(cgroup: Cgroup) -> list[str]:
    """`sh -c` that joins `cgroup` and then execs the rest of the command line."""
    files = [os.fsdecode(f) for f in cgroup.procs_files]
    script = "".join(f'echo $$ > "${i + 1}" && ' for i in range(len(files))) + f'shift {len(files)} && exec "$@"'
    return [LAUNCHER_SHELL, "-c", script, "nimbus-launch", *files]


class NamespacesHandle(Handle):
    def __init__(self, popen: subprocess.Popen[bytes], cgroup: Cgroup, memory_mb: int, tmp_mb: int) -> None:
        super().__init__(popen)
        self.cgroup = cgroup
        self.memory_mb = memory_mb
        self.tmp_mb = tmp_mb
        self._watch_fd = -1
        self._over_memory = False  # killed by the anon-memory watcher
        self._final: tuple[int, int] | None = None  # (peak bytes, oom kills) read just before removal

    def start_memory_watch(self) -> int:
        # Only v1 groups leave room for /tmp in their hard limit (see CgroupManager.create).
        if self.cgroup.version != 1 or self.tmp_mb <= 0:
            return -1
        self._watch_fd = self.cgroup.watch_anon(self.memory_mb)
        return self._watch_fd

    def check_memory(self) -> str:
        if self._watch_fd >= 0:
            with contextlib.suppress(OSError):
                os.eventfd_read(self._watch_fd)
        if self._over_memory:
            return "killed"
        limit = self.memory_mb * MB
        if self.cgroup.anon_bytes() > limit:
            self._over_memory = True
            self.kill()
            return "killed"
        return "watch" if self.cgroup.usage_bytes() > limit else "ok"

    def close_memory_watch(self) -> None:
        if self._watch_fd >= 0:
            os.close(self._watch_fd)
            self._watch_fd = -1

    def kill(self) -> None:
        self.cgroup.kill()
        with contextlib.suppress(OSError):
            self.popen.kill()

    def runtime_pid(self) -> int | None:
        # bwrap (the monitor) forks bwrap (pid 1 of the sandbox), which runs the runtime: the runtime is the
        # group's one process that is not bwrap and whose parent is bwrap.
        stats = {}
        for pid in self.cgroup.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            stats[pid] = (comm, int(stat[stat.rindex(")") + 2 :].split()[1]))
        for pid, (comm, ppid) in stats.items():
            if comm != "bwrap" and stats.get(ppid, ("",))[0] == "bwrap":
                return pid
        return None

    def peak_memory_mb(self, reported_rss_kb: int) -> int:
        peak = self._final[0] if self._final else self.cgroup.peak_bytes()
        return (peak + MB - 1) // MB if peak else (reported_rss_kb + 1023) // 1024

    def oom_killed(self) -> bool:
        return self._over_memory or (self._final[1] if self._final else self.cgroup.oom_kills()) > 0

    def after_init(self, memory_mb: int) -> None:
        self.cgroup.limit_cpu(memory_mb)

    def exit_reason(self) -> str:
        code = self.popen.returncode
        if self.oom_killed():
            return "signal: killed"
        # bubblewrap exits with 128 + signal when the runtime was killed by a signal.
        if code is not None and 128 < code <= 128 + 64:
            return describe_signal(code - 128)
        return super().exit_reason()

    def cleanup(self) -> bool:
        if self.cgroup.pids():
            self.cgroup.kill()
        if self._final is None:
            self._final = (self.cgroup.peak_bytes(), self.cgroup.oom_kills())
        return self.cgroup.remove()

    def widen_memory(self, memory_mb: int, tmp_mb: int) -> None:
        raise_memory(self.cgroup, memory_mb, tmp_mb)


class ForkedNamespacesHandle(ForkedHandle, NamespacesHandle):
    """A forked environment in its own cgroup (limits, memory watcher and accounting as a fresh one)."""

    def __init__(self, proc: ForkedProcess, cgroup: Cgroup, memory_mb: int, tmp_mb: int) -> None:
        NamespacesHandle.__init__(self, proc, cgroup, memory_mb, tmp_mb)  # type: ignore[arg-type]
        self.proc = proc
        self.armed: int | None = None  # memory watcher registered before the environment was handed out

    def arm(self) -> None:
        """Register the memory watcher (blocking, ~an RCU grace period: a thread). Until it is armed the
        group's hard limit is the function's memory alone; once it is, the limit makes room for /tmp
        (cgroup v1, see CgroupManager.create) and the watcher holds the function's own memory."""
        fd = NamespacesHandle.start_memory_watch(self)
        if fd >= 0:
            raise_memory(self.cgroup, self.memory_mb, self.tmp_mb)
        self.armed = fd

    def start_memory_watch(self) -> int:
        if self.armed is None:
            self.arm()
        fd, self.armed = self.armed, None
        return -1 if fd is None else fd

    def kill(self) -> None:
        self.cgroup.kill()
        self.proc.kill()

    def runtime_pid(self) -> int | None:
        return self.pid

    def peak_memory_mb(self, reported_rss_kb: int) -> int:
        # The group holds only what this environment added to the zygote's pages; the runtime's own
        # peak RSS counts the shared pages too: report the larger, as a fresh environment would see.
        return max(super().peak_memory_mb(0), (reported_rss_kb + 1023) // 1024)


def raise_memory(cgroup: Cgroup, memory_mb: int, tmp_mb: int) -> None:
    """Raise a group's memory limit (v1: memsw first, it must stay >= the limit)."""
    if cgroup.version != 1:
        cgroup.set_memory(memory_mb, tmp_mb)
        return
    limit = str((memory_mb + tmp_mb) * MB).encode()
    d = cgroup.dirs["memory"]
    for name in ("memory.memsw.limit_in_bytes", "memory.limit_in_bytes"):
        path = d / name
        if path.exists():
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, limit)
            finally:
                os.close(fd)


class NamespacesBackend(Backend):
    name = "namespaces"
    task_root_inside = "/var/task"
    isolated = True

    def __init__(self, settings: Settings, bwrap: str, cgroups: CgroupManager) -> None:
        self.settings = settings
        self.bwrap = bwrap
        self.cgroups = cgroups
        self.etc_dir = Path(tempfile.mkdtemp(prefix="nimbus-etc-"))
        for name, text in ETC_FILES.items():
            (self.etc_dir / name).write_text(text)
        self.host_etc = [d for d in ETC_HOST_DIRS if Path("/etc", d).is_dir()]
        for d in self.host_etc:
            (self.etc_dir / d).mkdir()
        os.chmod(self.etc_dir, 0o755)
        self.empty_dir = Path(tempfile.mkdtemp(prefix="nimbus-empty-"))
        os.chmod(self.empty_dir, 0o755)
        self.stage_dir = Path(tempfile.mkdtemp(prefix="nimbus-stage-"))  # see STAGE_LAUNCHER
        self._etc_files: set[Path] = set()  # per-network /etc/resolv.conf and /etc/hosts (_etc_file)
        os.chmod(self.stage_dir, 0o755)
        self.description = (
            f"namespaces: bubblewrap ({bwrap}) user/pid/mount/net/ipc/uts namespaces, seccomp deny-list, "
            f"cgroup v{cgroups.version} limits (memory, cpu, pids) under {next(iter(cgroups.parents.values()))}"
        )
        self.runtime_files = RuntimeFiles()
        self._base_args = self._static_args()
        self.launcher_python = os.path.realpath(sys.executable)
        self._spares: list[_Spare] = []
        self._spare_timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def runtime_dir(self) -> str:
        return "/var/runtime"

    @classmethod
    def probe(cls, settings: Settings) -> NamespacesBackend:
        """A working backend, or BackendUnavailable saying what is missing."""
        if not sys.platform.startswith("linux"):
            raise BackendUnavailable(f"not Linux ({sys.platform})")
        bwrap = find_bwrap()
        if bwrap is None:
            raise BackendUnavailable("bubblewrap (bwrap) not installed")
        try:
            deny_list_bpf()
        except SeccompUnavailable as e:
            raise BackendUnavailable(str(e)) from e
        try:
            cgroups = CgroupManager.detect()
        except CgroupError as e:
            raise BackendUnavailable(str(e)) from e
        backend = cls(settings, bwrap, cgroups)
        try:
            backend._trial_run()
        except BackendUnavailable:
            backend.close()
            raise
        return backend

    def _trial_run(self) -> None:
        args = [*self._base_args, "--ro-bind", str(self.runtime_files.root), "/var/runtime", "--", "/usr/bin/true"]
        try:
            proc = subprocess.run(args, capture_output=True, timeout=20, env={})
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BackendUnavailable(f"bubblewrap trial run failed: {e}") from e
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise BackendUnavailable(f"bubblewrap trial run failed (exit {proc.returncode}): {err}")

    def _static_args(self) -> list[str]:
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_GID),
            "--hostname",
            "localhost",
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for name in TOP_LEVEL_LINKS:
            path = Path("/", name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", str(self.etc_dir), "/etc"]
        for d in self.host_etc:
            args += ["--ro-bind", f"/etc/{d}", f"/etc/{d}"]
        # /opt is read-only as on AWS, layers or not (an empty directory without layers); /dev/shm is bounded
        args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", str(self.empty_dir), "/opt"]
        args += ["--perms", "1777", "--size", str(DEV_SHM_MB * MB), "--tmpfs", "/dev/shm"]
        return args

    def _new_spare(self) -> _Spare:
        """Start a launcher in a fresh cgroup; it waits for its command (see SPARE_LAUNCHER)."""
        cgroup = self.cgroups.create(f"spare-{uuid.uuid4().hex}", 0, self.settings.pids_max)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            popen = subprocess.Popen(
                [*launcher_args(cgroup), self.launcher_python, "-I", "-S", "-c", SPARE_LAUNCHER],
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},
                close_fds=True,
            )
        except BaseException:
            ours.close()
            cgroup.remove()
            raise
        finally:
            theirs.close()
        return _Spare(popen, cgroup, ours)

    def _take_spare(self) -> _Spare | None:
        while self._spares:
            spare = self._spares.pop()
            if spare.popen.poll() is None:
                return spare
            spare.discard()
        return None

    def _schedule_spare(self) -> None:
        """Start a spare a little later, when this cold start is (probably) done: moving a process into a
        cgroup holds up every fork on the host for an RCU grace period (~20 ms here)."""
        if self._spare_timer is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def start() -> None:
            self._spare_timer = None
            if self._closed or self._spares:
                return
            try:
                self._spares.append(self._new_spare())
            except OSError as e:
                log.warning("cannot start a spare launcher: %s", e)

        self._spare_timer = loop.call_later(SPARE_DELAY, start)

    def _command(self, launch: Launch, seccomp_fd: int, staged: list[str] | None = None) -> list[str]:
        """bubblewrap's command line. `staged`: collect the host side of every per-function mount there (as
        `source, name` pairs) and bind it from the stage directory instead (see STAGE_LAUNCHER), for a
        bubblewrap that runs as an unprivileged host user and could not reach a data dir under a private
        parent."""

        def ro_bind(host_path: str, inside: str) -> tuple[str, ...]:
            if staged is None:
                return ("--ro-bind", host_path, inside)
            name = str(len(staged) // 2)
            staged.extend((host_path, name))
            return ("--ro-bind", f"{self.stage_dir}/{name}", inside)

        prefix = python_prefix(launch.interpreter)
        argv = [*self._base_args]
        if not str(prefix).startswith("/usr/"):
            argv += ro_bind(str(prefix), str(prefix))
        for host_path, inside in launch.ro_binds:
            argv += ro_bind(host_path, inside)
        if launch.netns is not None:  # joined by the launcher: keep it (bubblewrap would make an empty one)
            argv.append("--share-net")
        if launch.resolv_conf is not None:
            argv += ["--ro-bind", self._etc_file("resolv.conf", launch.resolv_conf), "/etc/resolv.conf"]
        if launch.hosts is not None:
            argv += ["--ro-bind", self._etc_file("hosts", launch.hosts), "/etc/hosts"]
        if launch.image_root is not None:
            return [*argv, *self._image_args(launch, ro_bind), "--seccomp", str(seccomp_fd), "--",
                    str(launch.interpreter), "-I", "-S",
                    "/var/runtime/" + self.runtime_files.script(launch.interpreter, "/var/runtime", launch.script)]
        return [
            *argv,
            "--perms",
            "1777",
            "--size",
            str(launch.ephemeral_mb * MB),
            "--tmpfs",
            "/tmp",
            *ro_bind(str(launch.code_dir), "/var/task"),
            *(ro_bind(str(launch.opt_dir), "/opt") if launch.opt_dir is not None else ()),
            *ro_bind(str(self.runtime_files.root), "/var/runtime"),
            # Nothing writable beyond /tmp and the bounded /dev/shm: bubblewrap's root and /dev are tmpfs
            # without a size (a function filling them would hang the host's memory, not fail with ENOSPC)
            "--remount-ro",
            "/",
            "--remount-ro",
            "/dev",
            "--chdir",
            "/var/task",
            "--seccomp",
            str(seccomp_fd),
            "--",
            str(launch.interpreter),
            "-I",
            "-S",
            "/var/runtime/" + self.runtime_files.script(launch.interpreter, "/var/runtime", launch.script),
        ]

    def _image_args(self, launch: Launch, ro_bind: Callable[[str, str], tuple[str, ...]]) -> list[str]:
        """A container image's mounts (issue 19): its tree read-only at IMAGE_ROOT with fresh /proc and /dev,
        a size-limited /tmp and the sandbox's resolv.conf and hosts inside it; the launcher alone may chroot
        there (CAP_SYS_CHROOT, dropped before anything of the image runs: runtime/apilauncher.py)."""
        assert launch.image_root is not None
        root = IMAGE_ROOT
        resolv = (self._etc_file("resolv.conf", launch.resolv_conf) if launch.resolv_conf is not None
                  else str(self.etc_dir / "resolv.conf"))
        hosts = self._etc_file("hosts", launch.hosts) if launch.hosts is not None else str(self.etc_dir / "hosts")
        return [
            "--cap-add", "CAP_SYS_CHROOT",
            *ro_bind(str(self.runtime_files.root), "/var/runtime"),
            *ro_bind(str(launch.image_root), root),
            "--proc", f"{root}/proc", "--dev", f"{root}/dev",
            "--perms", "1777", "--size", str(DEV_SHM_MB * MB), "--tmpfs", f"{root}/dev/shm",
            "--perms", "1777", "--size", str(launch.ephemeral_mb * MB), "--tmpfs", f"{root}/tmp",
            "--ro-bind", resolv, f"{root}/etc/resolv.conf", "--ro-bind", hosts, f"{root}/etc/hosts",
            "--remount-ro", "/", "--remount-ro", "/dev", "--remount-ro", f"{root}/dev",
            "--chdir", "/",
        ]

    def _etc_file(self, name: str, content: str) -> str:
        """A world-readable file holding `content`, shared by every sandbox that needs the same (by digest)."""
        digest = hashlib.sha256(content.encode()).hexdigest()[:24]
        path = self.etc_dir.parent / f"{self.etc_dir.name}-{name}-{digest}"
        if not path.exists():
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text(content)
            tmp.chmod(0o644)
            os.replace(tmp, path)
            self._etc_files.add(path)
        return str(path)

    def launch(self, launch: Launch) -> Handle:
        """Start the runtime: through a waiting spare launcher when one is ready (it paid for joining its
        cgroup in advance), else directly through the shell launcher."""
        spare = self._take_spare()
        self._schedule_spare()
        if spare is None:
            return self.launch_direct(launch)
        seccomp_fd = -1
        try:
            spare.cgroup.set_memory(launch.memory_mb, launch.ephemeral_mb)
            seccomp_fd = bpf_fd()
            argv = self._command(launch, SPARE_SECCOMP_FD)
            environ = {**launch.environ, "_NIMBUS_CONTROL_FD": str(SPARE_CONTROL_FD)}
            if launch.netns is not None:
                environ["_NIMBUS_NETNS"] = launch.netns
                if launch.netns_userns is not None:
                    environ["_NIMBUS_NETNS_USERNS"] = launch.netns_userns
            control_fd, *extra = launch.pass_fds
            if len(extra) > SPARE_MAX_FDS - 3:
                raise OSError(f"too many fds for a spare launcher: {len(launch.pass_fds)}")
            # Variables naming a further fd (`_NIMBUS_*_FD`) follow it to its new number.
            moved = {str(fd): str(SPARE_EXTRA_FD + i) for i, fd in enumerate(extra)}
            for key, value in environ.items():
                if key.startswith("_NIMBUS_") and key.endswith("_FD") and key != "_NIMBUS_CONTROL_FD":
                    environ[key] = moved.get(value, value)
            items = [str(len(argv)), *argv, *(f"{k}={v}" for k, v in environ.items())]
            message = "\0".join(items).encode()
            socket.send_fds(spare.sock, [message], [control_fd, launch.stdout_fd, seccomp_fd, *extra])
        except BaseException:
            spare.discard()
            raise
        finally:
            spare.sock.close()
            if seccomp_fd >= 0:
                os.close(seccomp_fd)
        return NamespacesHandle(spare.popen, spare.cgroup, launch.memory_mb, launch.ephemeral_mb)

    def launch_direct(self, launch: Launch, seccomp: bytes | None = None, userns: bool = False) -> Handle:
        """Launch in a fresh cgroup without a spare. `seccomp`: another filter than the deny-list; `userns`: a
        zygote, whose forks build their own namespaces: it may create user namespaces, and its bubblewrap runs
        as the unprivileged host user SANDBOX_UID (see `unprivileged_prefix`)."""
        cgroup = self.cgroups.create(launch.env_id, launch.memory_mb, self.settings.pids_max, launch.ephemeral_mb)
        seccomp_fd = -1
        try:
            seccomp_fd = bpf_fd(seccomp)
            staged: list[str] | None = [] if userns and os.geteuid() == 0 else None
            argv = self._command(launch, seccomp_fd, staged)
            if userns:  # (and /run/nimbus: where its forks stage their /etc/resolv.conf and /etc/hosts)
                argv = [argv[0], "--dir", "/run/nimbus", *(a for a in argv[1:] if a != "--disable-userns")]
            if launch.netns is not None:
                enter = [f"--user={launch.netns_userns}", "--preserve-credentials"] if launch.netns_userns else []
                argv = [NSENTER, *enter, f"--net={launch.netns}", "--", *argv]
            if staged is not None:
                argv = [
                    self.launcher_python, "-I", "-S", "-c", STAGE_LAUNCHER, str(self.stage_dir),
                    str(SANDBOX_UID), str(SANDBOX_GID), str(len(staged) // 2), *staged, *argv,
                ]
            popen = subprocess.Popen(
                [*launcher_args(cgroup), *argv],
                stdin=subprocess.DEVNULL,
                stdout=launch.stdout_fd,
                stderr=launch.stdout_fd,
                env=launch.environ,
                pass_fds=(*launch.pass_fds, seccomp_fd),
                close_fds=True,
            )
        except BaseException:
            cgroup.remove()
            raise
        finally:
            if seccomp_fd >= 0:
                os.close(seccomp_fd)
        return NamespacesHandle(popen, cgroup, launch.memory_mb, launch.ephemeral_mb)

    def launch_zygote(self, launch: Launch) -> Handle:
        """A zygote: its own seccomp filter (it builds its forks' namespaces), the filters its forks and a
        snapshot's INIT stack (files under /var/runtime), user namespaces allowed, bubblewrap unprivileged."""
        zygote_bpf, nouser_bpf, deny_bpf, init_bpf = zygote_filters()
        root = self.runtime_files.root
        for name, data in (
            ("zygote-nouserns.bpf", nouser_bpf), ("zygote-deny.bpf", deny_bpf), ("zygote-init.bpf", init_bpf)
        ):
            path = root / name
            if not path.exists():
                path.write_bytes(data)
                path.chmod(0o644)
        launch.environ.update(
            _NIMBUS_ZYGOTE_ISOLATE="1",
            _NIMBUS_ZYGOTE_NOUSERNS=f"{self.runtime_dir}/zygote-nouserns.bpf",
            _NIMBUS_ZYGOTE_DENY=f"{self.runtime_dir}/zygote-deny.bpf",
            _NIMBUS_ZYGOTE_INIT_FILTER=f"{self.runtime_dir}/zygote-init.bpf",
        )
        return self.launch_direct(launch, seccomp=zygote_bpf, userns=True)

    def adopt_fork(self, env_id: str, pid: int, memory_mb: int, tmp_mb: int) -> ForkedHandle:
        """The fork's own cgroup, with the child moved in (an RCU grace period in the kernel: the reason this
        runs in a thread), and its memory watcher armed before any user code runs (a fork is ready sooner
        than with a watcher set up afterwards; registrations wait 8-16 ms each but overlap across threads)."""
        # No room for /tmp in the hard limit until the memory watcher is armed (ForkedNamespacesHandle.arm).
        cgroup = self.cgroups.create(env_id, memory_mb, self.settings.pids_max)
        try:
            for path in cgroup.procs_files:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, str(pid).encode())
                finally:
                    os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            cgroup.kill()
            cgroup.remove()
            raise
        handle = ForkedNamespacesHandle(ForkedProcess(pid), cgroup, memory_mb, tmp_mb)
        try:
            handle.arm()
        except OSError as e:
            log.warning("forked environment %s: no memory watcher: %s", env_id, e)
        return handle

    def close(self) -> None:
        self._closed = True
        if self._spare_timer is not None:
            self._spare_timer.cancel()
            self._spare_timer = None
        for spare in self._spares:
            spare.discard()
        self._spares.clear()
        self.cgroups.close()
        self.runtime_files.close()
        shutil.rmtree(self.etc_dir, ignore_errors=True)
        for path in self._etc_files:
            path.unlink(missing_ok=True)
        shutil.rmtree(self.empty_dir, ignore_errors=True)
        shutil.rmtree(self.stage_dir, ignore_errors=True)
