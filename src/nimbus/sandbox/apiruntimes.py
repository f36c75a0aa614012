"""Runtimes driven through the Lambda Runtime API: custom runtimes (`provided.al2023`, `provided.al2`,
`provided`) and Node.js (`nodejs20.x`, `nodejs22.x`, `nodejs24.x`, run by AWS's own `aws-lambda-ric`).

Their environments start runtime/apilauncher.py with a Python interpreter of the host (the server's own
when it can): it opens the Runtime API endpoint, starts extensions and execs the runtime's command. This
module says with what command line, paths and variables they start (which of them this host can run is
the runtime catalogue's, `nimbus.runtimes`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.runtimes import (
    API_RUNTIMES,
    CUSTOM_RUNTIMES,
    NODE_MAJORS,
    NODE_RIC_INSIDE,
    NODE_RUNTIMES,
    api_runtimes,
    find_node,
    is_api_runtime,
    launcher_interpreter,
    node_ric_dir,
    unavailable_reason,
)

__all__ = ["API_RUNTIMES", "CUSTOM_RUNTIMES", "NODE_MAJORS", "NODE_RIC_INSIDE", "NODE_RUNTIMES", "RuntimeCommand",
           "api_runtimes", "exec_wrapper", "find_node", "has_extensions", "is_api_runtime", "launcher_interpreter",
           "node_ric_dir",
           "python_client_command", "runtime_command", "unavailable_reason"]


@dataclass(frozen=True)
class RuntimeCommand:
    """How to start one runtime inside an environment."""

    argv: tuple[str, ...]  # empty: look for /var/task/bootstrap, then /opt/bootstrap (custom runtimes)
    binds: tuple[tuple[str, str], ...] = ()  # extra read-only mounts: (host path, path inside)
    environ: dict[str, str] = field(default_factory=dict)  # variables replacing build_environ's


ENTRYPOINT = Path(__file__).resolve().parent / "runtime" / "lambda-entrypoint.sh"


NODE_PREFIX_INSIDE = "/var/lang/node"  # where a node installed outside /usr is mounted (its host path may be
# under /tmp, which the sandbox's own /tmp hides)


def _prefix_bind(executable: Path) -> tuple[tuple[str, str], ...]:
    """Sandboxes see /usr; an executable installed elsewhere needs its installation prefix mounted."""
    prefix = executable.parent.parent
    return () if str(prefix).startswith("/usr") else ((str(prefix), NODE_PREFIX_INSIDE),)


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
        prefix = _prefix_bind(node) if isolated else ()
        node_path = Path(NODE_PREFIX_INSIDE) / "bin" / node.name if prefix else node
        return RuntimeCommand(
            argv=(str(node_path), "--expose-gc", "--max-http-header-size", "81920", f"{ric_path}/index.mjs"),
            binds=((str(ric), NODE_RIC_INSIDE), *prefix, *_esm_layer_binds(runtime, opt_dir)) if isolated else (),
            environ={
                # After the layers' directories (build_environ puts them first), as on AWS.
                "NODE_PATH": f"{ric_path}/node_modules:/var/runtime:/var/task",
                "PATH": f"{node_path.parent}:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
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
