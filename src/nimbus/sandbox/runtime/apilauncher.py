"""Start-up of an execution environment whose runtime speaks the Lambda Runtime API (custom runtimes, Node).

Runs inside the sandbox (stdlib only, like bootstrap.py; started with `python -I -S`). It:
1. creates the environment's Runtime API endpoint, a TCP socket listening on 127.0.0.1:9001 in the
   sandbox's own network namespace, and hands the listening fd to nimbus over the control socket
   (SCM_RIGHTS): nimbus serves the API on it, so the host's loopback is never reachable from here;
2. starts the external extensions (executables in /opt/extensions), detached from the runtime;
3. execs the runtime (`bootstrap`, or the managed runtime's command line) with AWS's environment; with
   extensions it forks first and stays the runtime's parent, reporting its end ({"runtime_exit": {"code": N}}
   or {"signal": N}) so that extensions outlive a crashed runtime long enough for their SHUTDOWN.

Settings come from private environment variables (removed before anything else starts):
_NIMBUS_CONTROL_FD (the control socket), _NIMBUS_API_PORT (9001; 0 outside a network namespace: any free
port, announced in AWS_LAMBDA_RUNTIME_API), _NIMBUS_RUNTIME_ARGV (the command as a JSON list; empty: look for
a bootstrap as AWS does), _NIMBUS_EXTENSIONS_DIR, _NIMBUS_OPT_DIR, _NIMBUS_EXTENSION_HIDDEN (variables
extensions must not see, comma-separated), _NIMBUS_EXTENSION_OUT_FD (where extensions write fd 1/2).

Messages to nimbus are JSON lines: {"extensions": [names], "watch": [names], "exited": [names]} (with the
listening fd, then one pidfd per name in "watch", readable once that extension exits; "exited" ones ended
before they could be watched) or {"error": {"errorType",
"errorMessage"}} (nothing can start; also sent when the exec of the runtime fails).
"""

import json
import os
import socket
import sys

environ = os.environ


def pop(name, default=""):
    return environ.pop(name, default)


def find_bootstrap(task_root, opt_dir):
    candidates = [os.path.join(task_root, "bootstrap"), os.path.join(opt_dir or "/opt", "bootstrap")]
    for path in candidates[: 2 if opt_dir else 1]:  # no layers outside a sandbox: never the host's /opt
        if os.path.isfile(path):
            return [path], None
    return None, "Couldn't find valid bootstrap(s): [" + " ".join(candidates) + "]"


def list_extensions(directory):
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            found.append(path)
    return found


def start_extension(path, env, out_fd=-1):
    """Start `path` as a grandchild (re-parented to the sandbox's init, which reaps it) so that it outlives
    the exec into the runtime without becoming the runtime's zombie. Returns (started, pidfd): a pidfd of
    the extension (readable once it exits: nimbus watches it), or None when the kernel cannot give one or
    the extension already exited."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            grandchild = os.fork()
            if grandchild != 0:
                os.write(w, b"%d\n" % grandchild)
                os._exit(0)
            os.set_inheritable(w, False)
            if out_fd >= 0:  # its own output pipe: nimbus tells extension output from the function's
                os.dup2(out_fd, 1)
                os.dup2(out_fd, 2)
            os.chdir("/")
            os.execve(path, [path], env)
        except BaseException as exc:  # noqa: BLE001 - report any failure to start
            try:
                os.write(w, str(exc).encode()[:500] or b"exec failed")
            finally:
                os._exit(127)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        first, _, failure = f.read().partition(b"\n")
    if not first.isdigit():  # the second fork failed: `first` is the reason
        failure = first + failure
    if failure:
        sys.stderr.write(f"extension {path} failed to start: {failure.decode('utf-8', 'replace')}\n")
        return False, None
    try:
        return True, os.pidfd_open(int(first))
    except ProcessLookupError:  # exited (and reaped by the sandbox's init) already: nimbus is told so
        return True, -1
    except (OSError, AttributeError, ValueError):  # no pidfds (Linux < 5.3)
        return True, None


def wait_runtime(control, pid):
    """The launcher's life after forking the runtime `pid`: report its end, then wait to be killed."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        doc = {"runtime_exit": {"signal": os.WTERMSIG(status)}}
        code = 128 + os.WTERMSIG(status)
    else:
        code = os.WEXITSTATUS(status)
        doc = {"runtime_exit": {"code": code}}
    try:
        control.sendall(json.dumps(doc).encode() + b"\n")
        control.recv(1)  # nimbus ends the environment (SHUTDOWN to extensions first)
    except OSError:
        pass
    os._exit(code)


def enter_image(root, workdir):
    """A container image (nimbus issue 19): make its tree the root, go to its WORKDIR, and give up the one
    capability the sandbox kept for this (ambient: nothing exec'd from now on gets it back)."""
    import ctypes  # before the chroot: it loads a library of the host

    libc = ctypes.CDLL(None, use_errno=True)
    os.chroot(root)
    os.chdir("/")
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    try:
        os.chdir(workdir)
    except OSError as exc:
        return {"errorType": "Runtime.InvalidWorkingDirectory",
                "errorMessage": f"chdir {workdir}: {(exc.strerror or str(exc)).lower()}"}
    return None


def which(name, path):
    """`name` found on PATH as exec does (a container's ENTRYPOINT may be a bare command)."""
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return name


def main():
    control = socket.socket(fileno=int(pop("_NIMBUS_CONTROL_FD")))
    port = int(pop("_NIMBUS_API_PORT", "9001") or "9001")
    argv = json.loads(pop("_NIMBUS_RUNTIME_ARGV") or "[]")
    extensions_dir = pop("_NIMBUS_EXTENSIONS_DIR")
    opt_dir = pop("_NIMBUS_OPT_DIR")
    hidden = set(filter(None, pop("_NIMBUS_EXTENSION_HIDDEN").split(",")))
    wrapper = pop("_NIMBUS_EXEC_WRAPPER")
    ext_out = int(pop("_NIMBUS_EXTENSION_OUT_FD", "-1") or "-1")

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    if port == 0:
        environ["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{listener.getsockname()[1]}"

    error = None
    root = pop("_NIMBUS_CHROOT")
    workdir = pop("_NIMBUS_CHDIR") or "/"
    if root:
        error = enter_image(root, workdir)
        if error is None and argv and "/" not in argv[0]:
            argv = [which(argv[0], environ.get("PATH", "")), *argv[1:]]
    if not argv:
        argv, message = find_bootstrap(environ.get("LAMBDA_TASK_ROOT", "/var/task"), opt_dir)
        if argv is None:
            error = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": message}
    if error is None and wrapper:
        argv = [wrapper, *argv]  # AWS_LAMBDA_EXEC_WRAPPER: the script gets the runtime's command line
    if error is None and not os.path.exists(argv[0]):
        error = {"errorType": "Runtime.InvalidEntrypoint",
                 "errorMessage": f"fork/exec {argv[0]}: no such file or directory"}
    if error is None and not os.access(argv[0], os.X_OK):
        error = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": f"fork/exec {argv[0]}: permission denied"}

    started = []
    watched = []  # (name, pidfd): nimbus learns when each extension exits
    exited = []  # extensions that were gone before they could be watched
    if error is None and extensions_dir:
        ext_env = {k: v for k, v in environ.items() if k not in hidden and not k.startswith("AWS_XRAY_")}
        for path in list_extensions(extensions_dir):
            ok, pidfd = start_extension(path, ext_env, ext_out)
            if ok:
                started.append(os.path.basename(path))
                if pidfd == -1:
                    exited.append(os.path.basename(path))
                elif pidfd is not None:
                    watched.append((os.path.basename(path), pidfd))

    if ext_out >= 0:
        os.close(ext_out)
    doc = {"error": error} if error else {"extensions": started, "watch": [name for name, _ in watched],
                                          "exited": exited}
    message = json.dumps(doc).encode() + b"\n"
    socket.send_fds(control, [message], [listener.fileno()] + [fd for _, fd in watched])
    listener.close()
    for _, fd in watched:
        os.close(fd)
    if error is not None:
        control.recv(1)  # nimbus records the error, then kills the environment
        os._exit(1)
    if started:
        # With extensions, stay as the runtime's parent: when the runtime dies, the sandbox's init would take
        # every process with it, and extensions registered for SHUTDOWN must get it (reason `failure`)
        # first. nimbus is told how the runtime ended and ends the environment after their grace period.
        control.set_inheritable(False)
        runtime = os.fork()
        if runtime != 0:
            wait_runtime(control, runtime)
    try:
        os.execve(argv[0], argv, environ)  # the control socket closes on exec (close-on-exec)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        error = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": f"fork/exec {argv[0]}: {reason}"}
        control.sendall(json.dumps({"error": error}).encode() + b"\n")
        control.recv(1)
        os._exit(1)


main()
