"""Packaging: a function's code as a deterministic zip (same files, same bytes, same CodeSha256, so an
unchanged service is recognised as unchanged), selected with the framework's `package.patterns` (globs applied
in order, `!` excludes), with Python requirements from `requirements.txt` vendored by pip into the zip's root
the way serverless-python-requirements does (cached per requirements file and runtime under `.nimbus/`)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from nimbus.project.errors import ProjectError
from nimbus.project.model import FunctionSpec, LayerSpec

# What the framework leaves out of every package, plus caches nimbus and Python make.
DEFAULT_EXCLUDES = (".git/**", ".gitignore", ".DS_Store", "npm-debug.log", ".serverless/**",
                    ".serverless_plugins/**", ".nimbus/**", "**/__pycache__/**", "**/*.pyc", ".venv/**",
                    ".pytest_cache/**")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Package:
    """A built zip and its CodeSha256 (base64 of the SHA-256, as Lambda reports it)."""

    data: bytes
    sha256: str
    files: int


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A micromatch-style glob (`**` across directories, `*`/`?` within one) as a regex over relative posix
    paths; a pattern naming a directory also covers what is inside it."""
    pattern = pattern.removeprefix("./")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?$")


def select(files: list[str], patterns: list[str]) -> list[str]:
    """The files kept after the default excludes and then `patterns`, in order."""
    keep = {f: True for f in files}
    for pattern in [*(f"!{p}" for p in DEFAULT_EXCLUDES), *patterns]:
        exclude = pattern.startswith("!")
        regex = glob_regex(pattern[1:] if exclude else pattern)
        for f in files:
            if regex.match(f):
                keep[f] = not exclude
    return [f for f in files if keep[f]]


def _walk(root: Path) -> list[str]:
    out: list[str] = []
    for base, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "node_modules/.cache"))
        for name in sorted(names):
            out.append((Path(base) / name).relative_to(root).as_posix())
    return out


def build(spec: FunctionSpec, cache: dict[tuple[object, ...], Package] | None = None,
          install: bool = True) -> Package:
    """The function's zip: its `artifact` as is, or the project directory through the patterns, plus
    vendored requirements for Python runtimes."""
    if spec.artifact is not None:
        data = spec.artifact.read_bytes()
        return Package(data, _sha(data), -1)
    key = (spec.source_dir, tuple(spec.patterns), spec.runtime)
    if cache is not None and key in cache:
        return cache[key]
    entries: dict[str, Path] = {}
    requirements = spec.source_dir / "requirements.txt"
    if install and spec.runtime.startswith("python") and requirements.is_file():
        vendored = vendor(requirements, spec.runtime)
        for rel in _walk(vendored):
            entries[rel] = vendored / rel
    for rel in select(_walk(spec.source_dir), spec.patterns):
        entries[rel] = spec.source_dir / rel
    package = _zip(entries)
    if cache is not None:
        cache[key] = package
    return package


def build_layer(layer: LayerSpec) -> Package:
    """A layer's zip: its directory through the default excludes and its patterns (paths as they are, e.g.
    `python/...` to land in `/opt/python`)."""
    return _zip({rel: layer.path / rel for rel in select(_walk(layer.path), layer.patterns)})


def _zip(entries: dict[str, Path]) -> Package:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(entries):
            path = entries[rel]
            info = zipfile.ZipInfo(rel, _EPOCH)
            mode = path.stat().st_mode
            info.external_attr = ((0o755 if mode & 0o111 else 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    data = buf.getvalue()
    return Package(data, _sha(data), len(entries))


def _sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _python_for(runtime: str) -> str:
    """The interpreter matching the runtime (python3.12 -> `python3.12` on PATH), else this one."""
    return shutil.which(runtime) or sys.executable


def vendor(requirements: Path, runtime: str) -> Path:
    """`pip install -r requirements.txt -t DIR` once per requirements content and runtime; returns DIR."""
    digest = hashlib.sha256(requirements.read_bytes() + runtime.encode()).hexdigest()[:16]
    target = requirements.parent / ".nimbus" / "requirements" / digest
    if target.is_dir():
        return target
    partial = target.with_name(digest + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [_python_for(runtime), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "-r", str(requirements), "-t", str(partial)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ProjectError(requirements, None, "", "pip could not install the requirements:\n"
                           + (done.stderr or done.stdout).strip())
    partial.rename(target)
    return target
