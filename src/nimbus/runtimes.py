"""The runtime catalogue: every runtime id Lambda knows, and which of them this host can run. Managed Python
runtimes map to real interpreters found on the host, by absolute path (exec'ing a shim costs tens of ms per
cold start); Runtime API runtimes (custom `provided*`, Node.js through AWS's `aws-lambda-ric`) map to the
Python interpreter that runs their in-sandbox launcher. Neutral ground: the control plane validates against
it, the sandbox starts what it finds, and the CLI asks the server (`GET /nimbus/v1/runtimes`)."""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from nimbus.config import Settings, runtime_override

PYTHON_IDS = tuple(f"python3.{minor}" for minor in range(8, 15))
SUPPORTED_PYTHON = tuple(f"python3.{minor}" for minor in range(10, 15))

# Every runtime id AWS Lambda has accepted, current or deprecated: anything else is not a runtime at all.
KNOWN_RUNTIMES: frozenset[str] = frozenset(
    {
        "nodejs",
        "nodejs4.3",
        "nodejs6.10",
        "nodejs8.10",
        "nodejs10.x",
        "nodejs12.x",
        "nodejs14.x",
        "nodejs16.x",
        "nodejs18.x",
        "nodejs20.x",
        "nodejs22.x",
        "nodejs24.x",
        "nodejs4.3-edge",
        "python2.7",
        "python3.6",
        "python3.7",
        *PYTHON_IDS,
        "java8",
        "java8.al2",
        "java11",
        "java17",
        "java21",
        "java25",
        "dotnetcore1.0",
        "dotnetcore2.0",
        "dotnetcore2.1",
        "dotnetcore3.1",
        "dotnet6",
        "dotnet8",
        "dotnet10",
        "go1.x",
        "ruby2.5",
        "ruby2.7",
        "ruby3.2",
        "ruby3.3",
        "ruby3.4",
        "provided",
        "provided.al2",
        "provided.al2023",
    }
)

_SHIM_DIRS = ("/.pyenv/shims", "/.asdf/shims")


def _candidates(minor_id: str) -> list[str]:
    exe = minor_id  # the executable is named like the runtime id: python3.12
    found: list[str] = []
    extra = Settings().python_search_path
    for directory in [*filter(None, extra.split(":")), *os.environ.get("PATH", "").split(os.pathsep)]:
        if directory and not any(directory.endswith(s) for s in _SHIM_DIRS):
            found.append(os.path.join(directory, exe))
    found += ["/usr/local/bin/" + exe, "/usr/bin/" + exe]
    # The interpreter nimbus itself runs on (through its virtualenv's base): always there, readable.
    found.append(os.path.join(sys.base_prefix, "bin", exe))
    home = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(glob.glob(f"{home}/versions/{minor_id[6:]}*/bin/{exe}"), reverse=True)
    found += sorted(glob.glob(f"/root/.pyenv/versions/{minor_id[6:]}*/bin/{exe}"), reverse=True)
    return found


def _is_real_interpreter(path: str) -> bool:
    """An ELF executable, not a shell-script shim or a virtualenv's launcher."""
    try:
        real = os.path.realpath(path)
        if not os.access(real, os.X_OK) or not os.path.isfile(real):
            return False
        with open(real, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
        # A venv's python has a pyvenv.cfg beside or above it: it would import the venv's packages.
        parent = Path(path).parent
        return not ((parent / "pyvenv.cfg").exists() or (parent.parent / "pyvenv.cfg").exists())
    except OSError:
        return False


@functools.cache
def available_runtimes() -> dict[str, Path]:
    """Runtime id -> absolute interpreter path, for the managed runtimes this host can run.

    Runtimes driven through the Runtime API (custom `provided*`, `nodejs*`) map to the Python interpreter
    that runs their in-sandbox launcher (how they start: nimbus.sandbox.apiruntimes)."""
    result: dict[str, Path] = {}
    for runtime in SUPPORTED_PYTHON:
        override = runtime_override(runtime)
        for path in ([override] if override else _candidates(runtime)):
            if _is_real_interpreter(path):
                result[runtime] = Path(os.path.realpath(path))
                break
    result.update(api_runtimes(result))
    return result


CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
NODE_MAJORS = {"nodejs20.x": 20, "nodejs22.x": 22, "nodejs24.x": 24}  # each runs on its own major, as on AWS
NODE_RUNTIMES = tuple(NODE_MAJORS)
API_RUNTIMES = frozenset(CUSTOM_RUNTIMES + NODE_RUNTIMES)

NODE_RIC_INSIDE = "/var/lang/ric"  # where sandboxes see the aws-lambda-ric installation
_REPO_CACHE = Path(__file__).resolve().parents[2] / ".cache"


def is_api_runtime(runtime: str) -> bool:
    """True for runtimes whose environments speak the Runtime API (not nimbus's own Python bootstrap)."""
    return runtime in API_RUNTIMES


def launcher_interpreter(pythons: dict[str, Path]) -> Path | None:
    """The interpreter that runs the launcher: the server's own version when the host has it."""
    own = pythons.get(f"python{sys.version_info.major}.{sys.version_info.minor}")
    if own is not None:
        return own
    return next(iter(sorted(pythons.items(), reverse=True)), (None, None))[1]


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
    configured = Settings().node_runtimes_dir
    return configured if configured is not None else _REPO_CACHE / "node-runtimes"


def find_node(runtime: str) -> Path | None:
    """The node executable of `runtime`'s own major version: a NIMBUS_RUNTIME_NODEJS22_X-style override, the
    one installed by scripts/install-node-ric.sh, or the host's (NIMBUS_NODE, else PATH) when its major is
    the runtime's."""
    override = _executable(runtime_override(runtime))
    if override is not None:
        return override
    major = NODE_MAJORS.get(runtime)
    if major is None:
        return None
    installed = _executable(node_runtimes_dir() / f"node{major}" / "bin" / "node")
    if installed is not None:
        return installed
    host = _executable(Settings().node or shutil.which("node"))
    return host if host is not None and node_major(host) == major else None


@functools.cache
def node_ric_dir(runtime: str = "nodejs22.x") -> Path | None:
    """The aws-lambda-ric installation for `runtime`, made by scripts/install-node-ric.sh: 4.x for Node >= 22,
    3.x (the last release for older majors) below. NIMBUS_NODE_RIC_DIR overrides the folder of versions, or
    names one installation (a folder with index.mjs) used for every major."""
    configured = Settings().node_ric_dir
    base = configured if configured is not None else _REPO_CACHE / "aws-lambda-ric"
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
