"""CodeStore: validation of uploads, content addressing, safe and permission-correct unpacking."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from nimbus.config import Settings
from nimbus.control.codestore import UNZIP_ERROR, CodeStore
from nimbus.errors import InvalidParameterValue, RequestEntityTooLarge


def zip_of(entries: list[tuple[str, bytes, int]]) -> bytes:
    """(name, content, unix mode incl. type bits) -> zip bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> CodeStore:
    return CodeStore(tmp_path / "code", Settings(data_dir=tmp_path))


def test_put_is_content_addressed_and_unpacks(store: CodeStore) -> None:
    data = zip_of([("app.py", b"x = 1\n", 0o100600), ("bin/tool", b"#!/bin/sh\n", 0o100700), ("pkg/", b"", 0o40700)])
    blob = store.put(data)
    assert blob.sha256_hex == hashlib.sha256(data).hexdigest()
    assert blob.sha256_b64 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert blob.size == len(data)
    assert store.zip_path(blob.sha256_hex).read_bytes() == data
    tree = store.unpacked(blob.sha256_hex)
    assert (tree / "app.py").read_bytes() == b"x = 1\n"
    # world-readable, exec bits kept, directories traversable
    assert stat.S_IMODE((tree / "app.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((tree / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((tree / "bin").stat().st_mode) == 0o755
    assert stat.S_IMODE((tree / "pkg").stat().st_mode) == 0o755
    assert stat.S_IMODE(tree.stat().st_mode) == 0o755
    # the same code again: same blob, nothing new on disk
    again = store.put(data)
    assert again == blob
    assert len(list((store.root / "blobs").iterdir())) == 1
    assert len(list((store.root / "trees").iterdir())) == 1


def test_unpacked_rebuilds_a_missing_tree(store: CodeStore) -> None:
    blob = store.put(zip_of([("a.py", b"1", 0o100644)]))
    tree = store.unpacked(blob.sha256_hex)
    (tree / "a.py").unlink()
    tree.rmdir()
    assert (store.unpacked(blob.sha256_hex) / "a.py").read_bytes() == b"1"


def test_corrupt_zip_is_refused(store: CodeStore) -> None:
    with pytest.raises(InvalidParameterValue) as err:
        store.put(b"this is not a zip file")
    assert err.value.message == UNZIP_ERROR
    assert not list((store.root / "blobs").iterdir())


def test_truncated_zip_is_refused(store: CodeStore) -> None:
    data = zip_of([("a.py", os.urandom(5000), 0o100644)])
    with pytest.raises(InvalidParameterValue):
        store.put(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "a/../../evil", "C:/evil"])
def test_path_traversal_is_refused(store: CodeStore, name: str) -> None:
    with pytest.raises(InvalidParameterValue):
        store.put(zip_of([(name, b"x", 0o100644)]))
    assert not list((store.root / "trees").iterdir())


def test_symlinks_inside_are_kept_escaping_ones_refused(store: CodeStore) -> None:
    link = 0o120777
    ok = store.put(zip_of([("real.py", b"1", 0o100644), ("alias.py", b"real.py", link)]))
    tree = store.unpacked(ok.sha256_hex)
    assert (tree / "alias.py").is_symlink() and (tree / "alias.py").read_bytes() == b"1"
    for target in (b"/etc/passwd", b"../../outside", b"sub/../.."):
        with pytest.raises(InvalidParameterValue):
            store.put(zip_of([("sub/x", b"", 0o100644), ("escape", target, link)]))
    # absolute links into the package's mount point stay inside it (AWS keeps them)
    ok = store.put(zip_of([("lib/real.py", b"2", 0o100644), ("abs.py", b"/var/task/lib/real.py", link),
                           ("libdir", b"/var/task/lib", link), ("rel", b"lib/../lib/real.py", link)]))
    tree = store.unpacked(ok.sha256_hex)
    assert os.readlink(tree / "abs.py") == "/var/task/lib/real.py" and (tree / "rel").read_bytes() == b"2"
    for target in (b"/var/task/../etc/passwd", b"/var/taskx/a", b"/var/task/lib/../../x"):
        with pytest.raises(InvalidParameterValue):
            store.put(zip_of([("lib/x", b"", 0o100644), ("escape", target, link)]))
    # a link that only escapes once a later link exists
    with pytest.raises(InvalidParameterValue):
        store.put(zip_of([("d/f", b"", 0o100644), ("a", b"b/..", link), ("b", b".", link)]))


def test_writing_through_a_symlinked_directory_is_refused(store: CodeStore) -> None:
    link = 0o120777
    with pytest.raises(InvalidParameterValue):
        store.put(zip_of([("d", b"/tmp", link), ("d/x", b"evil", 0o100644)]))


def test_size_limits_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, zip_max_bytes=2000, unzipped_max_bytes=10_000)
    store = CodeStore(tmp_path / "code", settings)
    with pytest.raises(RequestEntityTooLarge):
        store.put(zip_of([("r", os.urandom(4000), 0o100644)]))
    with pytest.raises(InvalidParameterValue) as err:
        store.put(zip_of([("z", b"\0" * 20_000, 0o100644)]))
    assert err.value.message == "Unzipped size must be smaller than 10000 bytes"


def test_inspect_validates_without_storing(store: CodeStore) -> None:
    data = zip_of([("a.py", b"1", 0o100644)])
    blob = store.inspect(data)
    assert not store.exists(blob.sha256_hex)
    with pytest.raises(InvalidParameterValue):
        store.inspect(b"junk")


def test_zip_path_refuses_non_digests(store: CodeStore) -> None:
    with pytest.raises(ValueError):
        store.zip_path("../../etc/passwd")
    assert not store.exists("../x")
