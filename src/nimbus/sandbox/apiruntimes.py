"""Runtimes driven through the Lambda Runtime API: custom runtimes (`provided.al2023`, `provided.al2`,
`provided`) and Node.js (`nodejs20.x`, `nodejs22.x`, `nodejs24.x`, run by AWS's own `aws-lambda-ric`).

Their environments start runtime/apilauncher.py with a Python interpreter of the host (the server's own
when it can): it opens the Runtime API endpoint, starts extensions and execs the runtime's command. This
module says which of them this host can run, and with what command line, paths and variables.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
NODE_MAJORS = {"nodejs20.x": 20, "nodejs22.x": 22, "nodejs24.x": 24}  # each runs on its own major, as on AWS
NODE_RUNTIMES = tuple(NODE_MAJORS)
API_RUNTIMES = frozenset(CUSTOM_RUNTIMES + NODE_RUNTIMES)

NODE_RIC_INSIDE = "/var/lang/ric"  # where sandboxes see the aws-lambda-ric installation
_REPO_CACHE = Path(__file__).resolve().parents[3] / ".cache"


def is_api_runtime(runtime: str) -> bool:
    """True for runtimes whose environments speak the Runtime API (not nimbus's own Python bootstrap)."""
    return runtime in API_RUNTIMES


@dataclass(frozen=True)
class RuntimeCommand:
    """How to start one runtime inside an environment."""

    argv: tuple[str, ...]  # empty: look for /var/task/bootstrap, then /opt/bootstrap (custom runtimes)
    binds: tuple[tuple[str, str], ...] = ()  # extra read-only mounts: (host path, path inside)
    environ: dict[str, str] = field(default_factory=dict)  # variables replacing build_environ's


def launcher_interpreter(pythons: dict[str, Path]) -> Path | None:
    """The interpreter that runs the launcher: the server's own version when the host has it."""
    own = pythons.get(f"python{sys.version_info.major}.{sys.version_info.minor}")
    if own is not None:
        return own
    return next(iter(sorted(pythons.items(), reverse=True)), (None, None))[1]


def _override(runtime: str) -> str | None:
    return os.environ.get("NIMBUS_RUNTIME_" + re.sub(r"[^A-Z0-9]", "_", runtime.upper()))


def _executable(path: str | Path | None) -> Path | None:
    if not path:
        return None
    real = Path(os.path.realpath(path))
    return real if real.is_file() and os.access(real, os.X_OK) else None


@functools.cache
def node_major(node: Path) -> int | None:
    """The major version of the Node.js executable `node` (None when it does not run)."""
    try:
        out = subprocess.run([str(node), "-p", "process.versions.node"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return int(out.strip().split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def node_runtimes_dir() -> Path:
    """Where scripts/install-node-ric.sh unpacks the Node.js majors the host lacks (NIMBUS_NODE_RUNTIMES_DIR)."""
    configured = os.environ.get("NIMBUS_NODE_RUNTIMES_DIR")
    return Path(configured) if configured else _REPO_CACHE / "node-runtimes"


def find_node(runtime: str) -> Path | None:
    """The node executable of `runtime`'s own major version: a NIMBUS_RUNTIME_NODEJS22_X-style override, the
    one installed by scripts/install-node-ric.sh, or the host's (NIMBUS_NODE, else PATH) when its major is
    the runtime's."""
    override = _executable(_override(runtime))
    if override is not None:
        return override
    major = NODE_MAJORS.get(runtime)
    if major is None:
        return None
    installed = _executable(node_runtimes_dir() / f"node{major}" / "bin" / "node")
    if installed is not None:
        return installed
    host = _executable(os.environ.get("NIMBUS_NODE") or shutil.which("node"))
    return host if host is not None and node_major(host) == major else None


@functools.cache
def node_ric_dir(runtime: str = "nodejs22.x") -> Path | None:
    """The aws-lambda-ric installation for `runtime`, made by scripts/install-node-ric.sh: 4.x for Node >= 22,
    3.x (the last release for older majors) below. NIMBUS_NODE_RIC_DIR overrides the folder of versions, or
    names one installation (a folder with index.mjs) used for every major."""
    configured = os.environ.get("NIMBUS_NODE_RIC_DIR")
    base = Path(configured) if configured else _REPO_CACHE / "aws-lambda-ric"
    if (base / "index.mjs").is_file():
        return base.resolve()
    wanted = 4 if NODE_MAJORS.get(runtime, 22) >= 22 else 3
    try:
        versions = [p for p in base.iterdir() if (p / "index.mjs").is_file() and p.name.split(".")[0] == str(wanted)]
    except OSError:
        return None
    if not versions:
        return None
    return max(versions, key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p.name))).resolve()


def api_runtimes(pythons: dict[str, Path]) -> dict[str, Path]:
    """Runtime id -> launcher interpreter for each Runtime API runtime this host can run."""
    interpreter = launcher_interpreter(pythons)
    if interpreter is None:
        return {}
    result = dict.fromkeys(CUSTOM_RUNTIMES, interpreter)
    for runtime in NODE_RUNTIMES:
        if find_node(runtime) is not None and node_ric_dir(runtime) is not None:
            result[runtime] = interpreter
    return result


def unavailable_reason(runtime: str) -> str:
    """Why `runtime` cannot run here, in a sentence (empty when nothing specific is known)."""
    if runtime in NODE_RUNTIMES:
        if find_node(runtime) is None:
            major = NODE_MAJORS[runtime]
            return (f"Node.js {major} is not installed on this server: run `make install` "
                    f"(scripts/install-node-ric.sh), or set NIMBUS_RUNTIME_{runtime.upper().replace('.', '_')} "
                    f"to a node {major} executable.")
        if node_ric_dir(runtime) is None:
            return (
                "AWS's Node.js runtime interface client (aws-lambda-ric) is not installed on this server: "
                "run `make install` (scripts/install-node-ric.sh)."
            )
    return ""


def _prefix_bind(executable: Path) -> tuple[tuple[str, str], ...]:
    """Sandboxes see /usr; an executable installed elsewhere needs its installation prefix mounted."""
    prefix = executable.parent.parent
    return () if str(prefix).startswith("/usr") else ((str(prefix), str(prefix)),)


def _esm_layer_binds(runtime: str, opt_dir: Path | None) -> tuple[tuple[str, str], ...]:
    """ES modules ignore NODE_PATH: a bare `import "pkg"` in /var/task/*.mjs is resolved by walking up to
    /var/node_modules and /node_modules. Mounting the layers' `nodejs/nodeNN/node_modules` and
    `nodejs/node_modules` there makes layer packages importable from ESM handlers after the function's own
    node_modules, as AWS's Node.js 18+ runtimes do."""
    if opt_dir is None:
        return ()
    pairs = ((opt_dir / "nodejs" / f"node{NODE_MAJORS[runtime]}" / "node_modules", "/var/node_modules"),
             (opt_dir / "nodejs" / "node_modules", "/node_modules"))
    return tuple((str(host), inside) for host, inside in pairs if host.is_dir())


def runtime_command(runtime: str, isolated: bool, opt_dir: Path | None = None) -> RuntimeCommand:
    """The command line of `runtime`; `isolated` when the backend mounts paths (else host paths are used);
    `opt_dir` is the version's merged layers on the host."""
    if runtime in NODE_RUNTIMES:
        node = find_node(runtime)
        ric = node_ric_dir(runtime)
        if node is None or ric is None:
            raise FileNotFoundError(unavailable_reason(runtime))
        ric_path = NODE_RIC_INSIDE if isolated else str(ric)
        return RuntimeCommand(
            argv=(str(node), "--expose-gc", "--max-http-header-size", "81920", f"{ric_path}/index.mjs"),
            binds=((str(ric), NODE_RIC_INSIDE), *_prefix_bind(node), *_esm_layer_binds(runtime, opt_dir))
            if isolated else (),
            environ={
                # After the layers' directories (build_environ puts them first), as on AWS.
                "NODE_PATH": f"{ric_path}/node_modules:/var/runtime:/var/task",
                "PATH": f"{node.parent}:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            },
        )
    return RuntimeCommand(argv=())


def has_extensions(opt_dir: Path | None) -> bool:
    """Whether a version's merged layers hold external extensions (executables in `extensions/`): a managed
    Python function with some runs in a Runtime API environment, where the launcher starts them."""
    if opt_dir is None:
        return False
    try:
        entries = list(os.scandir(opt_dir / "extensions"))
    except OSError:
        return False
    return any(e.is_file() and os.access(e.path, os.X_OK) for e in entries)


def exec_wrapper(runtime: str, environment: Mapping[str, str]) -> str | None:
    """The `AWS_LAMBDA_EXEC_WRAPPER` script that starts `runtime`, if the function set one: AWS runs it for its
    managed runtimes (Python, Node.js, ...), with the runtime's command line as its arguments, and ignores it
    for OS-only runtimes. Managed Python functions with a wrapper run through the launcher (no zygote)."""
    wrapper = environment.get("AWS_LAMBDA_EXEC_WRAPPER")
    return wrapper if wrapper and runtime not in CUSTOM_RUNTIMES else None


def python_client_command(interpreter: Path, runtime_dir: str, script: str, opt: str) -> RuntimeCommand:
    """nimbus's Python bootstrap (`script` in `runtime_dir`) as a Runtime API client (runtime/bootstrap.py's
    ApiChannel), for managed Python functions with external extensions; `opt` is where the layers are."""
    return RuntimeCommand(
        argv=(str(interpreter), "-I", "-S", f"{runtime_dir}/{script}"),
        environ={"_NIMBUS_API_CLIENT_OPT_DIR": opt},
    )
