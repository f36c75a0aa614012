"""The tree a function's layers form at `/opt`: each layer's zip unpacked by the code store, merged in the
function's order (a later layer's file replaces an earlier one's), built once per list of layer zips under
`<code store>/opt/<sha256 of the hashes>/` (in a temp dir, then renamed) and shared by every function with
the same list. Files are hard links into the layers' unpacked trees (copies where linking fails), so a merge
costs directory entries, not data. The sandbox mounts the result read-only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nimbus.control.codestore import CodeStore

LAYER_CONTENTS = "LayerContents"  # stored function config key: [{Arn, CodeSize, Sha256 (hex), UnzippedSize}]


def opt_dir(codestore: CodeStore, config: dict[str, Any]) -> Path | None:
    """The merged /opt tree of a stored function configuration (None without layers)."""
    contents = config.get(LAYER_CONTENTS) or []
    hexes = [str(c["Sha256"]) for c in contents if c.get("Sha256")]
    return merged_tree(codestore, hexes) if hexes else None


def merged_tree(codestore: CodeStore, hexes: Sequence[str]) -> Path:
    """The layers' unpacked trees merged in order (one layer: its own unpacked tree)."""
    trees = [codestore.unpacked(h) for h in hexes]
    if len(trees) == 1:
        return trees[0]
    root = codestore.root / "opt"
    key = hashlib.sha256("\n".join(hexes).encode()).hexdigest()
    target = root / key
    if target.is_dir():
        return target
    root.mkdir(mode=0o755, exist_ok=True)
    tmp = root / f".tmp-{key}-{uuid.uuid4().hex}"
    try:
        tmp.mkdir(mode=0o755)
        os.chmod(tmp, 0o755)
        for tree in trees:
            _overlay(tree, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race to another merge: theirs is the same
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _overlay(src: Path, dest: Path) -> None:
    """Put `src`'s entries over `dest`: files and links replace what is there; directories merge."""
    for entry in os.scandir(src):
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False):
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                _remove(target)
            if not target.exists():
                target.mkdir(mode=0o755)
                os.chmod(target, 0o755)
            _overlay(Path(entry.path), target)
            continue
        if target.is_symlink() or target.exists():
            _remove(target)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
            continue
        try:
            os.link(entry.path, target)
        except OSError:
            shutil.copy2(entry.path, target)


def unzipped_size(codestore: CodeStore, hex_digest: str) -> int:
    """Bytes a stored zip unpacks to (from its central directory: nothing is extracted)."""
    with zipfile.ZipFile(codestore.zip_path(hex_digest)) as zf:
        return sum(info.file_size for info in zf.infolist())
