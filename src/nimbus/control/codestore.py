"""The content-addressed code store: zip uploads validated and kept once per sha256 under
`<root>/blobs/<hex>.zip` (written to a temp file, fsynced, renamed), and unpacked once into
`<root>/trees/<hex>/` (extracted to a temp dir, then renamed) as a world-readable tree the sandbox mounts
read-only. Never trusts the archive: no absolute paths, no `..`, no symlink leaving the tree."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import stat
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nimbus.config import Settings
from nimbus.errors import InvalidParameterValue, RequestEntityTooLarge

UNZIP_ERROR = "Could not unzip uploaded file. Please check your file, then try to upload again."
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class CodeBlob:
    """A stored zip: its sha256 (hex is the store key, base64 is Lambda's CodeSha256) and size in bytes."""

    sha256_hex: str
    sha256_b64: str
    size: int


class CodeStore:
    """Zip blobs and their unpacked trees, keyed by the zip's sha256."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.blobs = root / "blobs"
        self.trees = root / "trees"
        for d in (root, self.blobs, self.trees):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)

    def put(self, zip_bytes: bytes) -> CodeBlob:
        """Validate and store a zip (once per content), and unpack it; return its identity.

        The blob is durable (fsynced) when this returns, so a row committed afterwards never points at
        missing code.
        """
        if len(zip_bytes) > self.settings.zip_max_bytes:
            raise RequestEntityTooLarge(f"Zipped size must be smaller than {self.settings.zip_max_bytes} bytes")
        self._check_archive(zip_bytes)
        digest = hashlib.sha256(zip_bytes)
        blob = CodeBlob(digest.hexdigest(), base64.b64encode(digest.digest()).decode(), len(zip_bytes))
        path = self.zip_path(blob.sha256_hex)
        if not path.exists():
            self._write_atomically(path, zip_bytes)
        try:
            self.unpacked(blob.sha256_hex)
        except InvalidParameterValue:
            if not (self.trees / blob.sha256_hex).exists():
                path.unlink(missing_ok=True)
            raise
        return blob

    def inspect(self, zip_bytes: bytes) -> CodeBlob:
        """Validate a zip as `put` does, without storing it (UpdateFunctionCode's DryRun)."""
        if len(zip_bytes) > self.settings.zip_max_bytes:
            raise RequestEntityTooLarge(f"Zipped size must be smaller than {self.settings.zip_max_bytes} bytes")
        self._check_archive(zip_bytes)
        digest = hashlib.sha256(zip_bytes)
        return CodeBlob(digest.hexdigest(), base64.b64encode(digest.digest()).decode(), len(zip_bytes))

    def exists(self, hex_digest: str) -> bool:
        return _is_hex(hex_digest) and self.zip_path(hex_digest).is_file()

    def zip_path(self, hex_digest: str) -> Path:
        """Where the zip with this sha256 lives (whether or not it exists)."""
        if not _is_hex(hex_digest):
            raise ValueError(f"not a sha256 hex digest: {hex_digest!r}")
        return self.blobs / f"{hex_digest}.zip"

    def unpacked(self, hex_digest: str) -> Path:
        """The unpacked tree of a stored zip, extracting it first if needed (once, atomically)."""
        target = self.trees / hex_digest
        if target.is_dir():
            return target
        data = self.zip_path(hex_digest).read_bytes()
        tmp = self.trees / f".tmp-{hex_digest}-{uuid.uuid4().hex}"
        try:
            tmp.mkdir(mode=0o755)
            os.chmod(tmp, 0o755)
            _extract(data, tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():  # lost a race to another extraction: theirs is as good as ours
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _check_archive(self, data: bytes) -> None:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError):
            raise InvalidParameterValue(UNZIP_ERROR) from None
        total = sum(i.file_size for i in infos)
        if total > self.settings.unzipped_max_bytes:
            raise InvalidParameterValue(
                f"Unzipped size must be smaller than {self.settings.unzipped_max_bytes} bytes"
            )
        for info in infos:
            _safe_parts(info.filename)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


TASK_ROOT = "/var/task"  # where a function's package is mounted inside its environment


def _is_hex(value: str) -> bool:
    return len(value) == 64 and set(value) <= _HEX


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path components of a zip entry, refusing absolute paths, drive letters and `..`."""
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        raise InvalidParameterValue(UNZIP_ERROR)
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if any(p == ".." for p in parts) or "\x00" in normalized:
        raise InvalidParameterValue(UNZIP_ERROR)
    return parts


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _extract(data: bytes, dest: Path) -> None:
    """Extract every entry under `dest`: dirs 0o755, files 0o644 (0o755 if any exec bit was set), symlinks
    last and only if they resolve inside the tree once everything is in place."""
    links: list[tuple[Path, str]] = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                parts = _safe_parts(info.filename)
                if not parts:
                    continue
                target = dest.joinpath(*parts)
                mode = (info.external_attr >> 16) & 0xFFFF
                if info.is_dir():
                    _mkdirs(dest, target)
                    continue
                _mkdirs(dest, target.parent)
                if not _inside(dest, target.parent):
                    raise InvalidParameterValue(UNZIP_ERROR)
                if stat.S_ISLNK(mode):
                    links.append((target, zf.read(info).decode("utf-8", "strict")))
                    continue
                _write_member(zf, info, target, 0o755 if mode & 0o111 else 0o644)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, UnicodeDecodeError, zlib.error,
            NotImplementedError, RuntimeError):
        # RuntimeError: encrypted entry; NotImplementedError: unsupported compression method
        raise InvalidParameterValue(UNZIP_ERROR) from None
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise InvalidParameterValue(UNZIP_ERROR) from None
    for link, target_name in links:
        if "\x00" in target_name or (target_name.startswith("/") and _in_task_root(target_name) is None):
            raise InvalidParameterValue(UNZIP_ERROR)
        if link.exists() or link.is_symlink():
            raise InvalidParameterValue(UNZIP_ERROR)
        os.symlink(target_name, link)
    # Checked with the final tree: a later link can change where an earlier one resolves.
    for link, target_name in links:
        inside = _in_task_root(target_name)
        resolved = link if inside is None else dest.joinpath(*inside)
        if not _inside(dest, resolved):
            raise InvalidParameterValue(UNZIP_ERROR)


def _in_task_root(target: str) -> tuple[str, ...] | None:
    """The components under the package root of an absolute link target into /var/task, where the package is
    mounted in every environment (AWS keeps such links); None for any other target."""
    if target != TASK_ROOT and not target.startswith(TASK_ROOT + "/"):
        return None
    parts = PurePosixPath(target[len(TASK_ROOT):]).parts
    return tuple(p for p in parts if p not in ("/", "", "."))


def _mkdirs(root: Path, directory: Path) -> None:
    if directory.is_dir():
        return
    rel = directory.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise InvalidParameterValue(UNZIP_ERROR)
        if not current.exists():
            current.mkdir(mode=0o755)
            os.chmod(current, 0o755)


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, mode: int) -> None:
    if target.exists() or target.is_symlink():
        raise InvalidParameterValue(UNZIP_ERROR)  # duplicate entry
    written = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > info.file_size:  # more than declared: a lying header, maybe a bomb
                raise InvalidParameterValue(UNZIP_ERROR)
            out.write(chunk)
    os.chmod(target, mode)
