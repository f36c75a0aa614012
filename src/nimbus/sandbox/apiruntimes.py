"""Runtimes driven through the Lambda Runtime API: custom runtimes (`provided.al2023`, `provided.al2`,
`provided`) and Node.js (`nodejs20.x`, `nodejs22.x`, `nodejs24.x`, run by AWS's own `aws-lambda-ric`).

Their environments start runtime/apilauncher.py with a Python interpreter of the host (the server's own
when it can): it opens the Runtime API endpoint, starts extensions and execs the runtime's command. This
module says with what command line, paths and variables they start (which of them this host can run is
the runtime catalogue's, `nimbus.runtimes`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.runtimes import (
    API_RUNTIMES,
    CUSTOM_RUNTIMES,
    NODE_RIC_INSIDE,
    NODE_RUNTIMES,
    api_runtimes,
    find_node,
    is_api_runtime,
    launcher_interpreter,
    node_ric_dir,
    unavailable_reason,
)

__all__ = ["API_RUNTIMES", "CUSTOM_RUNTIMES", "NODE_RIC_INSIDE", "NODE_RUNTIMES", "RuntimeCommand", "api_runtimes",
           "find_node", "has_extensions", "is_api_runtime", "launcher_interpreter", "node_ric_dir",
           "python_client_command", "runtime_command", "unavailable_reason"]


@dataclass(frozen=True)
class RuntimeCommand:
    """How to start one runtime inside an environment."""

    argv: tuple[str, ...]  # empty: look for /var/task/bootstrap, then /opt/bootstrap (custom runtimes)
    binds: tuple[tuple[str, str], ...] = ()  # extra read-only mounts: (host path, path inside)
    environ: dict[str, str] = field(default_factory=dict)  # variables replacing build_environ's


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
