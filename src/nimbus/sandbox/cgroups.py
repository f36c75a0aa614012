"""Per-environment cgroups (memory, CPU quota, pids), for cgroup v1 and v2, detected at start-up.

nimbus creates one parent group `nimbus-<pid>` under the server's OWN cgroup (from /proc/self/cgroup), so it
works inside containers and delegated subtrees, and one child per environment. A process joins its group
from the child side of fork, before exec (`Cgroup.attach_self`, run as a preexec function): no user code can
run, and nothing can fork, before the limits apply.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
# A short period keeps throttling stalls short (a 128 MB function gets 1.4 ms every 20 ms rather than 7 ms
# every 100 ms); the kernel's minimum quota is 1 ms, which bounds how short it may be.
CPU_PERIOD_US = 20_000
MB_PER_CPU = 1769  # AWS: "At 1,769 MB, a function has the equivalent of one vCPU"
V1_CONTROLLERS = ("memory", "cpu", "pids")
ANON_POLL_INTERVAL = 0.02  # seconds between anon-memory checks while usage (with /tmp) is above the limit


class CgroupError(Exception):
    """Cgroups are missing, not writable, or lack a controller nimbus needs."""


def cpu_quota_us(memory_mb: int, period_us: int = CPU_PERIOD_US) -> int:
    """CPU time per period for `memory_mb`, as AWS scales it (1,769 MB = one CPU)."""
    return max(1000, period_us * memory_mb // MB_PER_CPU)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> path, v2 path) from the text of /proc/<pid>/cgroup."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            v2 = path
            continue
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v1, v2


def parse_mountinfo(text: str) -> tuple[dict[str, Path], Path | None]:
    """(v1 controller -> mount point, v2 mount point) from the text of /proc/self/mountinfo."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mount_point, fstype, options = Path(fields[4]), rfields[0], rfields[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = mount_point
        elif fstype == "cgroup":
            for opt in options:
                if opt in V1_CONTROLLERS and opt not in v1:
                    v1[opt] = mount_point
    return v1, v2


@dataclass
class Cgroup:
    """One environment's cgroup: a directory per v1 controller, or one v2 directory."""

    version: int
    dirs: dict[str, Path]  # v1: controller -> dir; v2: {"unified": dir}
    _peak_fd: int = -1

    @property
    def procs_files(self) -> list[bytes]:
        return [os.fsencode(d / "cgroup.procs") for d in self.dirs.values()]

    def attach_self(self) -> None:
        """Move the calling process into this cgroup. Safe between fork and exec (no Python-level locks)."""
        pid = str(os.getpid()).encode()
        for path in self.procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    @property
    def _memory_dir(self) -> Path:
        return self.dirs["memory"] if self.version == 1 else self.dirs["unified"]

    def peak_bytes(self) -> int:
        """The most memory the group has used (0 if unknown). Read on every invocation for the REPORT
        line, so the file stays open and is re-read with pread (an open() on cgroupfs costs ~40 us)."""
        try:
            if self._peak_fd < 0:
                name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
                self._peak_fd = os.open(self._memory_dir / name, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._peak_fd, 32, 0))
        except (OSError, ValueError):
            return 0

    def oom_kills(self) -> int:
        """How many processes the kernel killed in this group for lack of memory."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in _read(self._memory_dir / name).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def anon_bytes(self) -> int:
        """Memory the processes themselves use (anonymous + swapped), excluding tmpfs and page cache."""
        keys = ("total_rss", "total_swap") if self.version == 1 else ("anon", "swap")
        total = 0
        try:
            for line in _read(self._memory_dir / "memory.stat").splitlines():
                key, _, value = line.partition(" ")
                if key in keys:
                    total += int(value)
        except (OSError, ValueError):
            return 0
        return total

    def usage_bytes(self) -> int:
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        try:
            return int(_read(self._memory_dir / name))
        except (OSError, ValueError):
            return 0

    def watch_anon(self, memory_mb: int) -> int:
        """v1: an eventfd that becomes readable whenever the group's usage crosses memory_mb (either way);
        the caller then compares `anon_bytes()` with memory_mb (and polls while usage stays above).

        Registering costs an RCU grace period in the kernel (~10 ms here): call it off the event loop.
        """
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        usage = os.open(self._memory_dir / "memory.usage_in_bytes", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _write(self._memory_dir / "cgroup.event_control", f"{efd} {usage} {memory_mb * MB}")
        except OSError:
            os.close(efd)
            raise
        finally:
            os.close(usage)  # the kernel keeps what it needs for the registered event
        return efd

    def set_memory(self, memory_mb: int, tmp_mb: int = 0) -> None:
        """Set the memory limit of a group created without one (v1: room for tmpfs /tmp, see create)."""
        if self.version == 1:
            limit = str((memory_mb + tmp_mb) * MB)
            d = self.dirs["memory"]
            _write(d / "memory.limit_in_bytes", limit)  # lower first: memsw must stay >= the limit
            if (d / "memory.memsw.limit_in_bytes").exists():
                _write(d / "memory.memsw.limit_in_bytes", limit)
        else:
            _write(self.dirs["unified"] / "memory.max", str(memory_mb * MB))

    def limit_cpu(self, memory_mb: int) -> None:
        """Apply the CPU quota for `memory_mb`. Done after INIT: like Lambda, INIT runs unthrottled."""
        quota = cpu_quota_us(memory_mb)
        if self.version == 1:
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
        else:
            _write(self.dirs["unified"] / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def pids(self) -> list[int]:
        """Every process in the group."""
        d = self.dirs.get("pids") or self._memory_dir
        try:
            return [int(x) for x in _read(d / "cgroup.procs").split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL everything in the group (cgroup.kill on v2 when the kernel has it)."""
        if self.version == 2:
            kill_file = self.dirs["unified"] / "cgroup.kill"
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
                    return
        # v1: keep killing until empty; the pids limit bounds how many can appear in between.
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)

    def remove(self) -> bool:
        """Remove the group's directories; False if a process is still in it (retry later)."""
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1
        done = True
        for d in self.dirs.values():
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                done = False
        return done


def _kill_and_rmdir(group: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        for pid in _read(group / "cgroup.procs").split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(OSError):
        group.rmdir()


def _remove_stale_siblings(parent: Path) -> None:
    """Remove `nimbus-<pid>` groups left by servers that died without cleaning up (their pid is gone)."""
    try:
        siblings = [p for p in parent.parent.iterdir() if p.name.startswith("nimbus-") and p != parent]
    except OSError:
        return
    for sibling in siblings:
        pid = sibling.name.removeprefix("nimbus-")
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for child in [c for c in sibling.iterdir() if c.is_dir()]:
            _kill_and_rmdir(child)
        with contextlib.suppress(OSError):
            sibling.rmdir()


class CgroupManager:
    """Creates and removes environment cgroups under nimbus's parent group."""

    def __init__(self, version: int, parents: dict[str, Path]) -> None:
        self.version = version
        self.parents = parents  # v1: controller -> parent dir; v2: {"unified": parent dir}
        self.memsw = version == 1 and (parents["memory"] / "memory.memsw.limit_in_bytes").exists()

    @classmethod
    def detect(cls, name: str | None = None) -> CgroupManager:
        """Find the server's cgroup, create nimbus's parent group in it, and check it is writable.

        Raises CgroupError saying why when cgroups cannot be used.
        """
        name = name or f"nimbus-{os.getpid()}"
        try:
            v1_paths, v2_path = parse_proc_cgroup(_read(Path("/proc/self/cgroup")))
            v1_mounts, v2_mount = parse_mountinfo(_read(Path("/proc/self/mountinfo")))
        except OSError as e:
            raise CgroupError(f"cannot read /proc/self/cgroup or mountinfo: {e}") from e
        if all(c in v1_mounts and c in v1_paths for c in V1_CONTROLLERS):
            parents = {c: v1_mounts[c] / v1_paths[c].lstrip("/") / name for c in V1_CONTROLLERS}
            manager = cls(1, parents)
        elif v2_mount is not None and v2_path is not None:
            manager = cls(2, {"unified": cls._v2_parent(v2_mount / v2_path.lstrip("/"), name)})
        else:
            missing = [c for c in V1_CONTROLLERS if c not in v1_mounts]
            raise CgroupError(f"no cgroup v2 mount and cgroup v1 lacks {', '.join(missing)}")
        manager._prepare()
        return manager

    @staticmethod
    def _v2_parent(own: Path, name: str) -> Path:
        controllers = _read(own / "cgroup.controllers").split()
        missing = [c for c in V1_CONTROLLERS if c not in controllers]
        if missing:
            raise CgroupError(f"cgroup v2 at {own} lacks controllers: {', '.join(missing)}")
        return own / name

    def _prepare(self) -> None:
        try:
            for controller, parent in self.parents.items():
                _remove_stale_siblings(parent)
                parent.mkdir(exist_ok=True)
                if self.version == 2:
                    self._enable_v2_controllers(parent)
                elif controller == "memory":
                    with contextlib.suppress(OSError):
                        _write(parent / "memory.use_hierarchy", "1")
            probe = self.create("probe", 64, 8)
            probe.remove()
        except OSError as e:
            raise CgroupError(f"cgroups not writable ({e})") from e

    def _enable_v2_controllers(self, parent: Path) -> None:
        own = parent.parent
        wanted = " ".join("+" + c for c in V1_CONTROLLERS)
        try:
            _write(own / "cgroup.subtree_control", wanted)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            # "No internal processes": our own group holds processes (us). Move us into a leaf beside
            # nimbus's parent group, as systemd's delegation expects, then enable the controllers.
            leaf = own / "nimbus-server"
            leaf.mkdir(exist_ok=True)
            for pid in _read(own / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    _write(leaf / "cgroup.procs", pid)
            _write(own / "cgroup.subtree_control", wanted)
        _write(parent / "cgroup.subtree_control", wanted)

    def create(self, env_id: str, memory_mb: int, pids_max: int, tmp_mb: int = 0) -> Cgroup:
        """A new group for one environment with its memory and pids limits set (CPU: `limit_cpu`;
        memory_mb=0: no memory limit yet, see `set_memory`).

        On v1 the hard memory limit also leaves room for `tmp_mb` of tmpfs /tmp (whose pages the kernel
        charges to the writer's group: on Lambda /tmp is disk and never costs function memory); the
        function's own memory is then held to `memory_mb` by `watch_anon`.
        """
        dirs = {c: p / env_id for c, p in self.parents.items()}
        for d in dirs.values():
            d.mkdir()
        group = Cgroup(self.version, dirs)
        try:
            limit = str(memory_mb * MB) if memory_mb else "max"
            if self.version == 1:
                if memory_mb:
                    group.set_memory(memory_mb, tmp_mb)
                _write(dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(dirs["pids"] / "pids.max", str(pids_max))
            else:
                d = dirs["unified"]
                _write(d / "memory.max", limit)
                with contextlib.suppress(FileNotFoundError):
                    _write(d / "memory.swap.max", "0")
                _write(d / "cpu.max", f"max {CPU_PERIOD_US}")
                _write(d / "pids.max", str(pids_max))
        except OSError:
            group.remove()
            raise
        return group

    def close(self) -> None:
        """Remove nimbus's parent group (environments must be gone)."""
        for parent in self.parents.values():
            for child in [c for c in parent.iterdir() if c.is_dir()]:
                _kill_and_rmdir(child)
            with contextlib.suppress(OSError):
                parent.rmdir()
