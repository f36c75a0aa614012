"""The runtime's files as environments see them at LAMBDA_RUNTIME_DIR: the bootstrap, and the bootstrap
compiled once per interpreter. CPython compiles a script run from source on every start (about 5 ms of each
cold start here) but runs a `.pyc` given as the script directly."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from nimbus.sandbox.sdk import link_python_sdk

log = logging.getLogger(__name__)

RUNTIME_SRC = Path(__file__).resolve().parent.parent / "runtime"  # holds bootstrap.py

_COMPILE = "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], dfile=sys.argv[3], doraise=True)"


class RuntimeFiles:
    """A world-readable copy of the runtime directory, with compiled bootstraps added on first use."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nimbus-runtime-"))
        shutil.copytree(RUNTIME_SRC, self.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [self.root, *self.root.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        link_python_sdk(self.root)  # boto3 at /var/runtime, as in AWS's Python runtimes (issue 21)
        self._scripts: dict[tuple[Path, str, str], str] = {}

    def script(self, interpreter: Path, runtime_dir: str, stem: str = "bootstrap") -> str:
        """The file (relative to the runtime dir) `interpreter` should run: its compiled bootstrap, or the
        source when compiling fails. `runtime_dir` is where environments see the files (for tracebacks)."""
        key = (interpreter, runtime_dir, stem)
        name = self._scripts.get(key)
        if name is None:
            name = f"{stem}." + hashlib.sha256(str(key).encode()).hexdigest()[:12] + ".pyc"
            try:
                subprocess.run(
                    [str(interpreter), "-I", "-S", "-c", _COMPILE, str(self.root / f"{stem}.py"),
                     str(self.root / name), f"{runtime_dir}/{stem}.py"],
                    check=True, capture_output=True, timeout=60,
                )
                os.chmod(self.root / name, 0o644)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("cannot precompile the bootstrap for %s (%s): running it from source", interpreter, exc)
                name = f"{stem}.py"
            self._scripts[key] = name
        return name

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
