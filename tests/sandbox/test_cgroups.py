"""Cgroup discovery (v1 and v2), limits, placement, kill and removal."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from nimbus.sandbox.backends.namespaces import launcher_args
from nimbus.sandbox.cgroups import (
    CPU_PERIOD_US,
    MB,
    Cgroup,
    CgroupError,
    CgroupManager,
    cpu_quota_us,
    parse_mountinfo,
    parse_proc_cgroup,
)

V1_PROC = """9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpu,cpuacct:/
0::/
"""
V2_PROC = "0::/system.slice/nimbus.service\n"
MOUNTINFO_V1 = """\
25 20 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
33 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:17 - cgroup2 cgroup2 rw
"""
MOUNTINFO_V2 = "28 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_parse_proc_cgroup() -> None:
    v1, v2 = parse_proc_cgroup(V1_PROC)
    assert v1["memory"] == "/process_api/abc" and v1["pids"] == "/" and v1["cpu"] == "/" and v1["cpuacct"] == "/"
    assert v2 == "/"
    assert parse_proc_cgroup(V2_PROC) == ({}, "/system.slice/nimbus.service")


def test_parse_mountinfo() -> None:
    v1, v2 = parse_mountinfo(MOUNTINFO_V1)
    assert v1 == {
        "memory": Path("/sys/fs/cgroup/memory"),
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"),
        "pids": Path("/sys/fs/cgroup/pids"),
    }
    assert v2 == Path("/sys/fs/cgroup/unified")
    assert parse_mountinfo(MOUNTINFO_V2) == ({}, Path("/sys/fs/cgroup"))


def test_cpu_quota_scales_with_memory() -> None:
    assert cpu_quota_us(1769) == CPU_PERIOD_US  # one CPU at 1,769 MB
    assert cpu_quota_us(3538) == 2 * CPU_PERIOD_US
    assert cpu_quota_us(128) == CPU_PERIOD_US * 128 // 1769 >= 1000  # above the kernel's 1 ms minimum


def test_v2_create_writes_limits(tmp_path: Path) -> None:
    """v2 logic against a directory standing in for cgroupfs."""
    parent = tmp_path / "nimbus-1"
    parent.mkdir()
    manager = CgroupManager(2, {"unified": parent})
    group = manager.create("env1", 256, 64)
    d = parent / "env1"
    assert (d / "memory.max").read_text() == str(256 * MB)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "cpu.max").read_text() == f"max {CPU_PERIOD_US}"  # INIT runs unthrottled
    assert (d / "pids.max").read_text() == "64"
    group.limit_cpu(256)
    assert (d / "cpu.max").read_text() == f"{cpu_quota_us(256)} {CPU_PERIOD_US}"
    assert group.procs_files == [os.fsencode(d / "cgroup.procs")]
    (d / "memory.peak").write_text(str(5 * MB))
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.peak_bytes() == 5 * MB and group.oom_kills() == 1


def test_v2_requires_controllers(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(CgroupError, match="memory"):
        CgroupManager._v2_parent(tmp_path, "nimbus-1")


def live_manager() -> CgroupManager:
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups")
    try:
        return CgroupManager.detect(f"nimbus-test-{os.getpid()}-{time.monotonic_ns()}")
    except CgroupError as e:
        pytest.skip(f"cgroups unusable here: {e}")


def test_live_group_limits_placement_kill_and_removal() -> None:
    manager = live_manager()
    try:
        group = manager.create("env", 128, 32)
        if manager.version == 1:
            assert int((group.dirs["memory"] / "memory.limit_in_bytes").read_text()) == 128 * MB
            assert int((group.dirs["pids"] / "pids.max").read_text()) == 32
            group.limit_cpu(128)
            assert int((group.dirs["cpu"] / "cpu.cfs_quota_us").read_text()) == cpu_quota_us(128)
        # the launcher joins the group before exec'ing the command: the command is born inside it
        proc = subprocess.Popen([*launcher_args(group), "/bin/sleep", "30"])
        try:
            for _ in range(100):
                if proc.pid in group.pids():
                    break
                time.sleep(0.01)
            assert proc.pid in group.pids()
            own = Path(f"/proc/{proc.pid}/cgroup").read_text()
            assert "env" in own
            assert not group.remove()  # busy: a process is inside
            group.kill()
            assert proc.wait(5) == -9
        finally:
            proc.kill()
            proc.wait()
        assert group.pids() == []
        assert group.peak_bytes() > 0
        assert group.remove()
        assert all(not d.exists() for d in group.dirs.values())
    finally:
        manager.close()
    assert all(not p.exists() for p in manager.parents.values())


def test_cgroup_dataclass_is_per_controller() -> None:
    group = Cgroup(1, {"memory": Path("/m/x"), "cpu": Path("/c/x"), "pids": Path("/p/x")})
    assert group.procs_files == [b"/m/x/cgroup.procs", b"/c/x/cgroup.procs", b"/p/x/cgroup.procs"]


def test_stale_groups_of_dead_servers_are_removed(tmp_path: Path) -> None:
    from nimbus.sandbox.cgroups import _remove_stale_siblings

    dead = tmp_path / "nimbus-999999999"  # no such pid
    (dead / "env1").mkdir(parents=True)
    alive = tmp_path / f"nimbus-{os.getpid()}"
    (alive / "env1").mkdir(parents=True)
    other = tmp_path / "not-ours"
    other.mkdir()
    _remove_stale_siblings(tmp_path / "nimbus-1")
    assert not dead.exists()
    assert (alive / "env1").exists() and other.exists()
