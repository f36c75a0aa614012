"""Runtime ids Lambda knows, and which of them this host can run (managed Python runtimes map to real
interpreters found on the host, by absolute path: exec'ing a shim costs tens of ms per cold start)."""

from __future__ import annotations

import functools
import glob
import os
import re
import sys
from pathlib import Path

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
    extra = os.environ.get("NIMBUS_PYTHON_SEARCH_PATH", "")
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
    that runs their in-sandbox launcher (see nimbus.sandbox.apiruntimes)."""
    result: dict[str, Path] = {}
    for runtime in SUPPORTED_PYTHON:
        override = os.environ.get("NIMBUS_RUNTIME_" + re.sub(r"[^A-Z0-9]", "_", runtime.upper()))
        for path in ([override] if override else _candidates(runtime)):
            if _is_real_interpreter(path):
                result[runtime] = Path(os.path.realpath(path))
                break
    from nimbus.sandbox.apiruntimes import api_runtimes

    result.update(api_runtimes(result))
    return result


def unavailable_reason(runtime: str) -> str:
    """Why a runtime Lambda knows cannot run on this host (for error messages), or ""."""
    from nimbus.sandbox.apiruntimes import unavailable_reason as api_reason

    return api_reason(runtime)


def python_prefix(interpreter: Path) -> Path:
    """The installation prefix that holds the interpreter's standard library (bind-mounted in sandboxes)."""
    real = interpreter.resolve()
    return real.parent.parent
