"""The seccomp deny-list applied to every namespaced environment: system calls a function has no business
making (mounting, tracing, loading kernel code, changing the clock, new namespaces) fail with EPERM.

The filter is compiled once to classic BPF (libseccomp via pyseccomp) and handed to bubblewrap, which
installs it right before exec'ing the runtime. Zygotes get filters of their own (`zygote_filters`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import tempfile

DENIED_SYSCALLS: tuple[str, ...] = (
    "mount",
    "umount2",
    "pivot_root",
    "swapon",
    "swapoff",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "setns",
    "unshare",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "lookup_dcookie",
    "vhangup",
    # io_uring runs system calls from kernel workers, out of this filter's sight (Docker's profile denies it too)
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)


class SeccompUnavailable(Exception):
    """libseccomp (or pyseccomp) is missing."""


@functools.cache
def deny_list_bpf() -> bytes:
    """The compiled filter: allow everything except DENIED_SYSCALLS, which fail with EPERM."""
    try:
        import pyseccomp  # type: ignore[import-untyped]
    except (ImportError, RuntimeError) as e:
        raise SeccompUnavailable(f"pyseccomp/libseccomp unavailable: {e}") from e
    filt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            filt.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):
            continue  # not a system call on this architecture
    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        data: bytes = f.read()
    return data


def bpf_fd(data: bytes | None = None) -> int:
    """A fresh readable fd holding a filter (the deny-list unless `data` is given; bubblewrap reads it to EOF),
    positioned at the start."""
    if data is None:
        data = deny_list_bpf()
    fd = os.memfd_create("nimbus-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


# --------------------------------------------------------------------------------------------------
# Zygotes (sandbox/zygote.py): what a zygote may do that environments may not, and the filters its forks and
# a snapshot zygote's INIT stack on top

CLONE_NEWUSER = 0x10000000
# What the zygote itself may do that environments may not: build their namespaces.
ZYGOTE_ALLOWED = frozenset({"mount", "unshare", "setns"})



CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
# The one unshare() a snapshot zygote's INIT may make (its forks need it; see nimbus_zygote._enter_own_namespaces)
NESTED_RECIPE = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS


@functools.cache
def zygote_filters() -> tuple[bytes, bytes, bytes, bytes]:
    """(zygote filter, no-new-user-namespaces filter, full deny-list, snapshot INIT filter) as classic BPF.
    The INIT filter stacks on the zygote's: no namespace but the nested recipe, no setns, no user namespace
    through clone (INIT also runs without capabilities, so mount and chroot fail in the kernel)."""
    import pyseccomp

    def export(filt: object) -> bytes:
        with tempfile.TemporaryFile() as f:
            filt.export_bpf(f)  # type: ignore[attr-defined]
            f.seek(0)
            data: bytes = f.read()
        return data

    zyg = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        if name in ZYGOTE_ALLOWED:
            continue
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            zyg.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    nouser = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    for name in ("unshare", "clone"):
        nouser.add_rule(
            pyseccomp.ERRNO(errno.EPERM), name, pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
        )
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        nouser.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")  # flags live in memory: let libc fall back
    init = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    init.add_rule(pyseccomp.ERRNO(errno.EPERM), "unshare", pyseccomp.Arg(0, pyseccomp.NE, NESTED_RECIPE))
    init.add_rule(pyseccomp.ERRNO(errno.EPERM), "setns")
    init.add_rule(
        pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    )
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        init.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    return export(zyg), export(nouser), deny_list_bpf(), export(init)
