"""The seccomp deny-list compiles to classic BPF that bubblewrap can load."""

from __future__ import annotations

import os

import pytest

from nimbus.sandbox import seccomp


def test_filter_compiles_to_bpf() -> None:
    try:
        data = seccomp.deny_list_bpf()
    except seccomp.SeccompUnavailable as e:
        pytest.skip(str(e))
    assert data and len(data) % 8 == 0  # struct sock_filter is 8 bytes
    # one comparison per denied call at least (plus the architecture check and the default action)
    assert len(data) // 8 > len(seccomp.DENIED_SYSCALLS)


def test_bpf_fd_is_readable_from_the_start() -> None:
    try:
        expected = seccomp.deny_list_bpf()
    except seccomp.SeccompUnavailable as e:
        pytest.skip(str(e))
    fd = seccomp.bpf_fd()
    try:
        assert os.read(fd, len(expected) + 10) == expected
    finally:
        os.close(fd)


def test_deny_list_covers_the_dangerous_calls() -> None:
    for name in ("mount", "umount2", "pivot_root", "ptrace", "bpf", "unshare", "setns", "kexec_load",
                 "init_module", "keyctl", "perf_event_open", "userfaultfd", "clock_settime", "open_by_handle_at"):
        assert name in seccomp.DENIED_SYSCALLS
