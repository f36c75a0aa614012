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
import sys
from dataclasses import dataclass, field
from pathlib import Path

CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
NODE_RUNTIMES = ("nodejs20.x", "nodejs22.x", "nodejs24.x")
API_RUNTIMES = frozenset(CUSTOM_RUNTIMES + NODE_RUNTIMES)

NODE_RIC_INSIDE = "/var/lang/ric"  # where sandboxes see the aws-lambda-ric installation
_REPO_CACHE = Path(__file__).resolve().parents[3] / ".cache" / "aws-lambda-ric"


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


def find_node(runtime: str) -> Path | None:
    """The node executable for `runtime`: NIMBUS_RUNTIME_NODEJS22_X-style override, NIMBUS_NODE, or PATH."""
    path = _override(runtime) or os.environ.get("NIMBUS_NODE") or shutil.which("node")
    if not path:
        return None
    real = Path(os.path.realpath(path))
    return real if real.is_file() and os.access(real, os.X_OK) else None


@functools.cache
def node_ric_dir() -> Path | None:
    """The aws-lambda-ric installation made by scripts/install-node-ric.sh (NIMBUS_NODE_RIC_DIR overrides)."""
    configured = os.environ.get("NIMBUS_NODE_RIC_DIR")
    path = Path(configured) if configured else _REPO_CACHE
    return path.resolve() if (path / "index.mjs").is_file() else None


def api_runtimes(pythons: dict[str, Path]) -> dict[str, Path]:
    """Runtime id -> launcher interpreter for each Runtime API runtime this host can run."""
    interpreter = launcher_interpreter(pythons)
    if interpreter is None:
        return {}
    result = dict.fromkeys(CUSTOM_RUNTIMES, interpreter)
    if node_ric_dir() is not None:
        for runtime in NODE_RUNTIMES:
            if find_node(runtime) is not None:
                result[runtime] = interpreter
    return result


def unavailable_reason(runtime: str) -> str:
    """Why `runtime` cannot run here, in a sentence (empty when nothing specific is known)."""
    if runtime in NODE_RUNTIMES:
        if find_node(runtime) is None:
            return "Node.js (node) is not installed on this server (or set NIMBUS_NODE to its path)."
        if node_ric_dir() is None:
            return (
                "AWS's Node.js runtime interface client (aws-lambda-ric) is not installed on this server: "
                "run `make install` (scripts/install-node-ric.sh)."
            )
    return ""


ENTRYPOINT = Path(__file__).resolve().parent / "runtime" / "lambda-entrypoint.sh"


def _prefix_bind(executable: Path) -> tuple[tuple[str, str], ...]:
    """Sandboxes see /usr; an executable installed elsewhere needs its installation prefix mounted."""
    prefix = executable.parent.parent
    return () if str(prefix).startswith("/usr") else ((str(prefix), str(prefix)),)


def runtime_command(runtime: str, isolated: bool) -> RuntimeCommand:
    """The command line of `runtime`; `isolated` when the backend mounts paths (else host paths are used)."""
    if runtime in NODE_RUNTIMES:
        node = find_node(runtime)
        ric = node_ric_dir()
        if node is None or ric is None:
            raise FileNotFoundError(unavailable_reason(runtime))
        ric_path = NODE_RIC_INSIDE if isolated else str(ric)
        return RuntimeCommand(
            argv=(str(node), "--expose-gc", "--max-http-header-size", "81920", f"{ric_path}/index.mjs"),
            binds=((str(ric), NODE_RIC_INSIDE), *_prefix_bind(node)) if isolated else (),
            environ={
                # After the layers' directories (build_environ puts them first), as on AWS.
                "NODE_PATH": f"{ric_path}/node_modules:/var/runtime:/var/task",
                "PATH": f"{node.parent}:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            },
        )
    if runtime.startswith("provided") and isolated:
        # As in AWS's provided images (issue 21): /bin/sh is bash (bootstraps written for Amazon Linux use
        # `set -o pipefail` under sh), and /lambda-entrypoint.sh exists.
        return RuntimeCommand(
            argv=(), binds=(("/usr/bin/bash", "/usr/bin/sh"), (str(ENTRYPOINT), "/lambda-entrypoint.sh"))
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


def python_client_command(interpreter: Path, runtime_dir: str, script: str, opt: str) -> RuntimeCommand:
    """nimbus's Python bootstrap (`script` in `runtime_dir`) as a Runtime API client (runtime/bootstrap.py's
    ApiChannel), for managed Python functions with external extensions; `opt` is where the layers are."""
    return RuntimeCommand(
        argv=(str(interpreter), "-I", "-S", f"{runtime_dir}/{script}"),
        environ={"_NIMBUS_API_CLIENT_OPT_DIR": opt},
    )
