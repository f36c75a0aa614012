"""The zygote (fork-server) mode of nimbus's Python runtime. Stdlib only, Python 3.10+, runs INSIDE the
function's sandbox. bootstrap.py calls `prepare()` first, then either `serve_runtime(channel)` at once (a
runtime zygote) or `serve_and_restore(channel)` after INIT (a snapshot zygote).

Two kinds (`_NIMBUS_ZYGOTE=runtime|snapshot`):
- runtime (the default): the interpreter, the bootstrap and common standard-library modules, no user code.
  A forked child runs the function's INIT itself, after it dropped every capability and stacked the
  deny-list: one INIT per environment, as on AWS.
- snapshot (SnapStart, or the server's opt-in): INIT runs once in the zygote; a forked child is a restore:
  sockets inherited from INIT are replaced by fresh unconnected ones, randomness is reseeded, after-restore
  hooks run.

- `prepare()` (namespaced sandboxes only, before any user code): enter a new user namespace (full
  capabilities there, none on the host: every mount of the sandbox stays locked read-only as bubblewrap made
  it), then a new pid namespace whose pid 1 is the zygote proper; forbid further user namespaces (seccomp).
- `serve()`: answer INIT's READY, then wait for fork requests from the host on a SOCK_SEQPACKET socket
  (`F` + JSON, with the environment's control socket and output pipe as fds) and report children's exits
  (`X` + JSON). Never returns in the zygote; returns the child's control Channel in a forked child.
- A forked child gets its own pid namespace (it is pid 1 there), mount namespace with its own size-limited
  tmpfs /tmp and /dev/shm, network namespace (loopback only), IPC and UTS namespaces; it becomes
  non-dumpable, drops every capability and stacks the full seccomp deny-list. It then says hello (the host
  reads its pid from the kernel's SCM_CREDENTIALS and moves it into its own cgroup) and waits for the
  per-environment values (`go`): environment variables, then reseeds randomness and either runs INIT
  (runtime zygote) or restores (snapshot zygote: sockets, hooks) and answers READY.
"""

import gc
import json
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MNT_DETACH = 2
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_CAPBSET_DROP = 24
SECCOMP_MODE_FILTER = 2
SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40
DEV_SHM_MB = 64  # /dev/shm of an environment: bounded, so filling it fails with ENOSPC at once
# Loaded by a runtime zygote before it serves forks (no user code): what functions commonly import, so their
# INIT does not pay for it. Page-shared by every environment of the version.
PRELOAD = (
    "json", "logging", "socket", "ssl", "uuid", "random", "datetime", "decimal", "base64", "hashlib", "hmac",
    "urllib.parse", "urllib.request", "http.client", "email.utils", "typing", "dataclasses", "tempfile",
    "threading", "concurrent.futures", "zlib", "copy", "traceback", "pathlib",
)

_libc = None
_state = {}  # set by prepare(): isolate flag, the pid namespace fd, seccomp filter paths


def _lib():
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc, what):
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _install_filter(path):
    """Stack the classic-BPF seccomp filter stored at `path`."""
    import ctypes

    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return
    buf = ctypes.create_string_buffer(data, len(data))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(data) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = _lib()
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def prepare():
    """Before INIT: set up the namespaces forks are made from (when the host asked for isolation)."""
    env = os.environ
    _state["kind"] = env.pop("_NIMBUS_ZYGOTE", "snapshot")
    isolate = env.pop("_NIMBUS_ZYGOTE_ISOLATE", "0") == "1"
    _state["isolate"] = isolate
    _state["deny"] = env.pop("_NIMBUS_ZYGOTE_DENY", "")
    nouserns = env.pop("_NIMBUS_ZYGOTE_NOUSERNS", "")
    init_filter = env.pop("_NIMBUS_ZYGOTE_INIT_FILTER", "")
    gc.disable()  # no collection may run between INIT and the fork: it would dirty every page
    if not isolate:
        return
    libc = _lib()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER), "unshare(user)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _check(libc.unshare(CLONE_NEWPID), "unshare(pid)")
    pid = os.fork()
    if pid:  # the original process only waits: the zygote proper is pid 1 of the new pid namespace
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _state["pidns"] = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    if _state["kind"] == "snapshot":
        # INIT runs here, in the zygote: without any capability, under a filter that refuses every namespace
        # but one recipe (a user namespace with all the others, which a fork needs to become an environment;
        # see _enter_own_namespaces). Forks therefore build their namespaces inside a user namespace of their
        # own, not with the zygote's privileges, which it no longer has.
        _state["nested"] = True
        _drop_capabilities()
        if init_filter:
            _install_filter(init_filter)
    elif nouserns:
        _install_filter(nouserns)


def preload():
    """A runtime zygote: import what INIT would otherwise import in every environment (never user code)."""
    import importlib

    for name in PRELOAD:
        try:  # noqa: SIM105 (no contextlib in the runtime)
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (a module missing from a trimmed interpreter costs its INIT only)
            pass


def serve_runtime(channel, channel_class, streams):
    """A runtime zygote after its READY: serve forks; returns (in a forked child only) the child's Channel,
    on which the child then runs INIT and answers READY itself."""
    control_fd, _ = serve(channel, None, streams, None)
    return channel_class(control_fd)


def _after_restore_hooks():
    hooks = sys.modules.get("snapshot_restore_py")
    return list(hooks.get_after_restore()) if hooks is not None else []


def run_before_snapshot(fault):
    """Runs the registered before-snapshot hooks (in reverse order of registration, as AWS does); a failure
    fails INIT with Runtime.BeforeSnapshotError (`fault` is bootstrap's FaultException)."""
    hooks = sys.modules.get("snapshot_restore_py")
    if hooks is None:
        return
    pending = hooks.get_before_snapshot()
    while pending:
        func, args, kwargs = pending.pop()
        try:
            func(*args, **kwargs)
        except Exception as e:
            raise fault("Runtime.BeforeSnapshotError", f"{type(e).__name__}: {e}") from None


def serve_and_restore(channel, channel_class, logs, streams, max_rss_kb):
    """After INIT's READY: serve forks. In a forked child, answer READY (or Runtime.AfterRestoreError) on the
    environment's own control socket and return its Channel; the zygote itself never returns."""
    control_fd, error = serve(channel, logs, streams, None)
    channel = channel_class(control_fd)
    for stream in streams:
        stream.finish()
    if error is not None:
        doc = {"errorMessage": f"{type(error).__name__}: {error}", "errorType": "Runtime.AfterRestoreError",
               "requestId": "", "stackTrace": []}
        logs.add(f"[ERROR] Runtime.AfterRestoreError: {doc['errorMessage']}")
        channel.send_result(2, False, 0, max_rss_kb(), doc["errorType"], json.dumps(doc).encode(), logs.take())
        sys.exit(1)
    channel.send_result(2, True, 0, max_rss_kb(), None, b"", logs.take())
    return channel


def serve(channel, logs, streams, send_ready):
    """The zygote's life after a successful INIT. Returns (in a forked child only) the child's Channel."""
    import select
    import signal
    import socket

    # Host -> zygote: the fork socket, passed once over the control channel.
    ctl = socket.socket(fileno=os.dup(channel.fd))
    try:
        _, fds, _, _ = socket.recv_fds(ctl, 16, 1)
    finally:
        ctl.close()
    if not fds:
        os._exit(0)
    fork_sock = socket.socket(fileno=fds[0])
    fork_sock.setblocking(True)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children = {}
    gc.freeze()  # objects made by INIT stay out of collections in the children: their pages stay shared
    poller = select.poll()
    poller.register(fork_sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    isolate = _state.get("isolate", False)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _mask in events:
            if fd == wake_r:
                try:  # noqa: SIM105 (no contextlib in the runtime)
                    os.read(wake_r, 4096)
                except OSError:
                    pass
                _reap(children, fork_sock)
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(fork_sock, 65536, 4)
            except InterruptedError:
                continue
            except OSError:
                msg = b""
            if not msg:
                os._exit(0)  # the host is gone or shut us down; children die with our pid namespace
            request = json.loads(msg[1:])
            if len(fds) not in (2, 3):  # control socket, output pipe (, a prepared network namespace)
                for f in fds:
                    os.close(f)
                continue
            pidns = _state.get("pidns")
            nested = _state.get("nested", False)
            try:
                if isolate and not nested:
                    _check(_lib().unshare(CLONE_NEWPID), "unshare(pid)")
                pid = os.fork()
            except OSError as e:
                for f in fds:
                    os.close(f)
                if isolate and not nested and pidns is not None:  # later forks must not land in a dead namespace
                    _lib().setns(pidns, CLONE_NEWPID)
                fork_sock.send(b"E" + json.dumps({"id": request["id"], "error": str(e)}).encode())
                continue
            if pid == 0:
                # First thing: the host moves us into the environment's own cgroup (it learns our pid from
                # the kernel with this byte), so what we touch from here on is charged there, not to the
                # zygote's group.
                os.write(fds[0], b"H")
                if _read_exact(fds[0], 1) != b"P":
                    os._exit(0)
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for f in (wake_r, wake_w, fork_sock.fileno(), channel.fd):
                    try:  # noqa: SIM105 (no contextlib in the runtime)
                        os.close(f)
                    except OSError:
                        pass
                if pidns is not None:
                    os.close(pidns)
                try:
                    return _become_environment(request, fds, isolate, logs, streams, send_ready)
                except Exception as e:  # never back into the zygote's loop: the host sees us exit
                    try:  # noqa: SIM105 (no contextlib in the runtime)
                        os.write(2, f"nimbus: forked environment failed: {e!r}\n".encode())
                    except OSError:
                        pass
                    os._exit(70)
            if isolate and not nested:
                _check(_lib().setns(pidns, CLONE_NEWPID), "setns(pid)")
            children[pid] = request["id"]
            for f in fds:
                os.close(f)


def _reap(children, fork_sock):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return
        env_id = children.pop(pid, None)
        if env_id is not None:
            code = os.waitstatus_to_exitcode(status)
            try:  # noqa: SIM105 (no contextlib in the runtime)
                fork_sock.send(b"X" + json.dumps({"id": env_id, "status": code}).encode())
            except OSError:
                pass


NESTED_RECIPE = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS


def _enter_own_namespaces(fds):
    """A fork of an unprivileged (snapshot) zygote: a user namespace of its own (capabilities there only)
    with every other namespace, then one more fork so that the environment is pid 1 of its new pid
    namespace. The process in between only waits and passes the exit status on (it sits in the
    environment's cgroup; it holds none of the environment's fds, so their EOF still means its end)."""
    libc = _lib()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(NESTED_RECIPE), "unshare(namespaces)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    pid = os.fork()
    if pid == 0:
        return
    for fd in fds:
        os.close(fd)
    old_tmp = _state.pop("old_tmp", None)
    if old_tmp is not None:
        os.close(old_tmp)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code & 0xFF)


def _drop_capabilities():
    libc = _lib()
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")


def _join_network(netns_fd, request):
    """Join the network namespace the host prepared for this environment (owned by the zygote's user
    namespace, where we still hold capabilities) and give the sandbox its /etc/resolv.conf and /etc/hosts:
    written to a small tmpfs at /run/nimbus, bound over the read-only ones, the tmpfs then detached."""
    libc = _lib()
    try:
        _check(libc.setns(netns_fd, CLONE_NEWNET), "setns(net)")
    finally:
        os.close(netns_fd)
    staging = b"/run/nimbus"
    if not os.path.isdir(staging):
        return
    _check(libc.mount(b"tmpfs", staging, b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=65536,mode=0755"),
           "mount /run/nimbus")
    for name in ("resolv_conf", "hosts"):
        content = request.get(name)
        if content is None:
            continue
        target = "/etc/" + name.replace("_", ".")
        staged = "/run/nimbus/" + name
        with open(staged, "w") as f:
            f.write(content)
        os.chmod(staged, 0o644)
        _check(libc.mount(staged.encode(), target.encode(), None, MS_BIND, None), "bind " + target)
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        _check(libc.mount(None, target.encode(), None, flags, None), "ro " + target)
    libc.umount2(staging, MNT_DETACH)


def _isolate(tmp_mb, fds=(), netns_fd=None, request=None):
    import fcntl
    import socket
    import struct

    libc = _lib()
    # What INIT left in /tmp stays visible to the environment (as on Lambda): copied after the host moved
    # us into our own cgroup, which is then charged for it (see _copy_tmp).
    old_tmp = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if not os.listdir(old_tmp):
        os.close(old_tmp)
        old_tmp = None
    _state["old_tmp"] = old_tmp
    if _state.get("nested"):
        if netns_fd is not None:
            os.close(netns_fd)  # (never sent: a snapshot fork has no privilege in the zygote's namespaces)
            netns_fd = None
        _enter_own_namespaces(fds)
    elif netns_fd is not None:
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        _join_network(netns_fd, request or {})
    else:
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    # Our own /proc: this pid namespace's processes only (no zygote, no sibling). The kernel allows it because
    # the sandbox's /proc has no locked cover (bubblewrap runs unprivileged for zygotes: backends/namespaces).
    _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    options = f"size={tmp_mb * 1024 * 1024},mode=1777".encode()
    _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options), "mount /tmp")
    if os.path.isdir("/dev/shm"):
        shm = f"size={DEV_SHM_MB * 1024 * 1024},mode=1777".encode()
        _check(libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV, shm), "mount /dev/shm")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
    finally:
        s.close()
    # Siblings share the zygote's /proc view: non-dumpable keeps their memory, environ and fds private.
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    _drop_capabilities()
    if _state.get("deny"):
        _install_filter(_state["deny"])


def _split_init(fds):
    """We are pid 1 of the environment's pid namespace, which the kernel shields from its own signals (a
    function's `os.kill(os.getpid(), SIGKILL)` would do nothing) and which inherits orphans: keep pid 1 a
    tiny reaper, as bubblewrap's init is for fresh environments, and run the runtime as pid 2. The reaper
    exits with the runtime's status (128 + signal when it was killed, as bubblewrap does)."""
    pid = os.fork()
    if pid == 0:
        return
    for fd in fds:
        os.close(fd)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if child == pid:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code & 0xFF)


def _read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            os._exit(0)
        data += chunk
    return data


def _become_environment(request, fds, isolate, logs, streams, send_ready):
    control_fd, out_fd, *netns = fds
    fds = [control_fd, out_fd]
    if isolate:
        _isolate(int(request.get("tmp_mb", 512)), fds, netns[0] if netns else None, request)
    else:
        for fd in netns:
            os.close(fd)
    if _state.get("kind") == "snapshot":
        _replace_sockets(fds)  # in the environment's own network namespace: fresh sockets belong there
    if isolate:
        _split_init(fds)
    else:
        os.setsid()
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    os.set_inheritable(control_fd, False)
    # The runtime's own pid, for the host's signals (SIGUSR2 before a kill); with it, in a network namespace,
    # the environment's 127.0.0.1:9001 listener, which the host serves the platform API on.
    _hello_with_endpoint(control_fd, isolate)
    (n,) = __import__("struct").unpack("!I", _read_exact(control_fd, 4))
    go = json.loads(_read_exact(control_fd, n))
    os.environ.update(go.get("environ", {}))
    gc.enable()  # off in the zygote (pages stay shared); INIT's objects are frozen, so collections skip them
    _copy_tmp()
    _reseed()
    error = None
    if _state.get("kind") != "snapshot":
        return control_fd, error  # a runtime zygote's child runs INIT next: nothing to restore
    for func, args, kwargs in _after_restore_hooks():
        try:
            func(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 (any hook failure fails the restore, as on AWS)
            error = e
            break
    return control_fd, error


def _hello_with_endpoint(control_fd, isolate):
    import socket

    listener = None
    if isolate:
        try:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 9001))
            listener.listen(128)
        except OSError as e:  # no endpoint then: the function still runs
            os.write(2, f"nimbus: no 127.0.0.1:9001 endpoint: {e}\n".encode())
            if listener is not None:
                listener.close()
            listener = None
    if listener is None:
        os.write(control_fd, b"R")
        return
    sock = socket.socket(fileno=control_fd)
    try:
        socket.send_fds(sock, [b"R"], [listener.fileno()])
    finally:
        sock.detach()
        listener.close()


def _replace_sockets(keep):
    """A restore: every network socket inherited from INIT (connected, listening or bound) becomes a fresh,
    unconnected socket of the same family and type on the same fd, so no connection is shared between
    environments (or with the zygote); a client sees a dropped connection and reconnects, as after an AWS
    restore. Unix sockets are left alone (ours, and INIT's own socketpairs)."""
    import socket
    import stat

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep or fd < 3:
            continue
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            old = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            family, kind, proto = old.family, old.type, old.proto
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            flags = os.get_blocking(fd)
            fresh = socket.socket(family, kind, proto)
            try:
                fresh.setblocking(flags)
                os.dup2(fresh.fileno(), fd, inheritable=os.get_inheritable(fd))
            finally:
                fresh.close()
        except OSError:
            continue
        finally:
            old.detach()


def _copy_tmp():
    old = _state.pop("old_tmp", None)
    if old is None:
        return
    import shutil

    try:
        shutil.copytree(f"/proc/self/fd/{old}", "/tmp", symlinks=True, dirs_exist_ok=True)
    except OSError:
        pass  # e.g. /tmp of this environment is smaller than what INIT wrote: like a full disk
    finally:
        os.close(old)


def _reseed():
    """Every environment must draw its own random numbers: nothing drawn from state copied from the zygote."""
    mods = sys.modules
    rnd = mods.get("random")
    if rnd is not None:
        rnd.seed()
    tmp = mods.get("tempfile")
    if tmp is not None:
        tmp._name_sequence = None
    np_random = mods.get("numpy.random")
    if np_random is not None:
        try:  # noqa: SIM105 (no contextlib in the runtime)
            np_random.seed()
        except Exception:  # noqa: BLE001
            pass
