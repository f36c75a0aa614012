"""Unpacking an OCI image's layers into one root filesystem, as a container runtime does: layers applied in
order, whiteouts (`.wh.<name>` deletes, `.wh..wh..opq` empties a directory of what lower layers put there),
every path resolved as if the tree were `/` (a symlink, absolute or not, never leads outside the tree), no
device nodes, no setuid bits, files owned by the server's user (the sandbox reads them as "other", as
Lambda runs images as an unprivileged user)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LINKS = 40
# Mount points the sandbox needs in every image (its root is bound read-only, so they must exist beforehand).
MOUNT_DIRS = ("proc", "dev", "tmp")
MOUNT_FILES = ("etc/resolv.conf", "etc/hosts")


class UnpackError(Exception):
    """The image's layers cannot be unpacked safely (the message says why)."""


def _parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnpackError(f"layer entry leaves the image: {name!r}")
    return parts


def resolve(root: str, parts: list[str]) -> str:
    """The host path of `parts` under `root`, following symlinks chroot-style (never above `root`)."""
    pending = list(parts)
    current: list[str] = []
    links = 0
    while pending:
        comp = pending.pop(0)
        if comp in ("", "."):
            continue
        if comp == "..":
            if current:
                current.pop()
            continue
        candidate = os.path.join(root, *current, comp)
        if os.path.islink(candidate):
            links += 1
            if links > MAX_LINKS:
                raise UnpackError("too many levels of symbolic links in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            pending = [p for p in target.split("/") if p] + pending
            continue
        current.append(comp)
    return os.path.join(root, *current)


def _remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        shutil.rmtree(path)


def _parent(root: str, parts: list[str]) -> str:
    """The resolved parent directory of an entry, created (0755) when a layer did not list it."""
    parent = resolve(root, parts[:-1])
    if not os.path.isdir(parent):
        if os.path.lexists(parent):
            _remove(parent)
        os.makedirs(parent, mode=0o755, exist_ok=True)
    return parent


def _open(path: Path) -> tuple[tarfile.TarFile, int | None]:
    """The layer as a tar, and (for an uncompressed one) an fd of it: its files' bytes are then copied by the
    kernel (copy_file_range) from their offset in the layer, instead of through Python."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic[:6] == b"\xfd7zXZ\x00":
        return tarfile.open(path, "r|*", bufsize=1 << 20), None
    return tarfile.open(path, "r:"), os.open(path, os.O_RDONLY)


def _copy_range(layer_fd: int, out: int, offset: int, size: int) -> None:
    done = 0
    while done < size:
        n = os.copy_file_range(layer_fd, out, size - done, offset + done)
        if n == 0:
            raise UnpackError("a layer ended inside a file")
        done += n


def apply_layer(fileobj_path: Path, root: str) -> int:
    """Apply one layer (a tar, maybe gzip-compressed) onto `root`; returns the bytes written."""
    added: set[str] = set()
    written = 0
    layer_fd: int | None = None
    try:
        tar, layer_fd = _open(fileobj_path)
        with tar:
            for member in tar:
                parts = _parts(member.name)
                if not parts:
                    continue
                base = parts[-1]
                if base == OPAQUE:
                    directory = resolve(root, parts[:-1])
                    prefix = "/".join(parts[:-1])
                    if os.path.isdir(directory):
                        for child in os.listdir(directory):
                            if posixpath.join(prefix, child) not in added:
                                _remove(os.path.join(directory, child))
                    continue
                if base.startswith(WHITEOUT):
                    victim = os.path.join(resolve(root, parts[:-1]), base[len(WHITEOUT):])
                    if os.path.lexists(victim):
                        _remove(victim)
                    continue
                parent = _parent(root, parts)
                target = os.path.join(parent, base)
                exists = os.path.lexists(target)
                mode = member.mode & 0o777  # no setuid/setgid/sticky
                if member.isdir():
                    if exists and not (os.path.isdir(target) and not os.path.islink(target)):
                        _remove(target)
                        exists = False
                    if not exists:
                        os.mkdir(target, 0o755)
                    os.chmod(target, mode | 0o700)
                elif member.isreg():
                    if exists:
                        _remove(target)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    if layer_fd is not None and not member.sparse:
                        try:
                            _copy_range(layer_fd, fd, member.offset_data, member.size)
                        finally:
                            os.close(fd)
                    else:
                        source = tar.extractfile(member)
                        with os.fdopen(fd, "wb") as out:
                            if source is not None:
                                shutil.copyfileobj(source, out, 1 << 20)
                    os.chmod(target, mode)
                    written += member.size
                elif member.issym():
                    if exists:
                        _remove(target)
                    os.symlink(member.linkname, target)
                elif member.islnk():
                    if exists:
                        _remove(target)
                    source_path = resolve(root, _parts(member.linkname))
                    if not os.path.isfile(source_path):
                        raise UnpackError(f"hard link to a missing file: {member.linkname!r}")
                    os.link(source_path, target)
                else:  # devices, FIFOs: a function gets /dev from the sandbox
                    continue
                added.add("/".join(parts))
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise UnpackError(f"cannot unpack a layer: {e}") from e
    finally:
        if layer_fd is not None:
            os.close(layer_fd)
    return written


def prepare_mount_points(root: str) -> None:
    """Create what the sandbox mounts over (see MOUNT_DIRS / MOUNT_FILES), replacing links there."""
    for name in MOUNT_DIRS:
        path = os.path.join(root, name)
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            _remove(path)
        os.makedirs(path, mode=0o755, exist_ok=True)
    for name in MOUNT_FILES:
        parts = _parts(name)
        parent = _parent(root, parts)
        path = os.path.join(parent, parts[-1])
        if os.path.islink(path) or (os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode)):
            _remove(path)
        if not os.path.lexists(path):
            with open(path, "w"):
                pass
            os.chmod(path, 0o644)
