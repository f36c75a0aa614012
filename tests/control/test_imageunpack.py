"""Layer unpacking of container images: whiteouts, opaque directories, links resolved inside the tree."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from nimbus.control.imageunpack import UnpackError, apply_layer, prepare_mount_points


def layer(tmp: Path, name: str, entries: list[tuple[str, str, str | bytes]]) -> Path:
    """A tar of (kind, name, content-or-link-target) entries: kind is file, dir, sym or hard."""
    path = tmp / f"{name}.tar"
    with tarfile.open(path, "w") as tar:
        for kind, entry, value in entries:
            info = tarfile.TarInfo(entry)
            if kind == "file":
                data = value if isinstance(value, bytes) else value.encode()
                info.size, info.mode = len(data), 0o4755 if entry.endswith("suid") else 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(value)
            else:
                info.type, info.linkname = tarfile.LNKTYPE, str(value)
            tar.addfile(info)
    return path


def test_layers_apply_in_order_with_whiteouts_and_opaque_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(layer(tmp_path, "one", [("dir", "etc", ""), ("file", "etc/a", "a"), ("file", "etc/b", "b"),
                                         ("dir", "data", ""), ("file", "data/old", "x"), ("file", "bin/suid", "s")]),
                str(root))
    apply_layer(layer(tmp_path, "two", [("file", "etc/.wh.a", ""), ("file", "data/new", "y"),
                                         ("file", "data/.wh..wh..opq", ""), ("file", "etc/b", "b2"),
                                         ("hard", "etc/c", "etc/b")]), str(root))
    assert not (root / "etc/a").exists()
    assert (root / "etc/b").read_text() == "b2" and (root / "etc/c").read_text() == "b2"
    assert sorted(os.listdir(root / "data")) == ["new"]  # opaque: lower entries gone, this layer's kept
    assert (root / "bin/suid").stat().st_mode & 0o7000 == 0  # no setuid bits from an image


def test_links_are_resolved_inside_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    apply_layer(layer(tmp_path, "one", [("dir", "usr/lib", ""), ("sym", "lib", str(outside)),
                                         ("file", "lib/x.so", "lib")]), str(root))
    # An absolute link is the image's own path: the file lands inside the tree, never in the host's directory.
    assert not os.listdir(outside)
    assert (root / outside.relative_to("/") / "x.so").read_text() == "lib"


def test_entries_leaving_the_tree_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnpackError):
        apply_layer(layer(tmp_path, "bad", [("file", "../escape", "x")]), str(root))
    assert not (tmp_path / "escape").exists()


def test_mount_points_exist_for_the_sandbox(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/run/systemd/resolve/stub-resolv.conf", root / "etc/resolv.conf")
    prepare_mount_points(str(root))
    for name in ("proc", "dev", "tmp"):
        assert (root / name).is_dir()
    assert (root / "etc/resolv.conf").is_file() and not (root / "etc/resolv.conf").is_symlink()
    assert (root / "etc/hosts").is_file()


def test_gzip_layers_unpack_like_plain_ones(tmp_path: Path) -> None:
    import gzip

    plain = layer(tmp_path, "plain", [("file", "app/main", "print('hi')\n"), ("sym", "app/link", "main")])
    packed = tmp_path / "packed.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    root = tmp_path / "root"
    root.mkdir()
    assert apply_layer(packed, str(root)) == len("print('hi')\n")
    assert (root / "app/link").read_text() == "print('hi')\n"
