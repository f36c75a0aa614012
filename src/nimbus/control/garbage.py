"""Garbage collection of stored code: zip blobs (`code/blobs/<hex>.zip`), their unpacked trees (`code/trees/<hex>`)
and unpacked container images (`images/rootfs/<hex>`, their `.failed` markers and `container_images` rows) that
no function version and no layer version uses any more. Content-addressed items are shared, so an item goes only
when nothing references it; and only once it is older than `min_age` seconds, so an upload whose row is not
committed yet (the code is stored first, then the row) is never taken. Runs on a timer thread of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from nimbus.control.codestore import CodeStore
from nimbus.control.images import ImageStore
from nimbus.control.models import ContainerImageRow, LayerVersionRow, VersionRow

log = logging.getLogger("nimbus.garbage")


@dataclass(frozen=True, slots=True)
class Collected:
    blobs: int
    trees: int
    images: int
    bytes_freed: int


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _old(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime < cutoff
    except OSError:
        return False


class CodeCollector:
    """Removes unreferenced code blobs, trees and images (see the module docstring)."""

    def __init__(self, engine: Engine, codestore: CodeStore, images: ImageStore | None, interval: float,
                 min_age: float) -> None:
        self.engine = engine
        self.codestore = codestore
        self.images = images
        self.interval = interval
        self.min_age = min_age
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def referenced(self) -> set[str]:
        """Hex digests some function version or layer version uses (zip sha256 or image manifest digest)."""
        with Session(self.engine) as s:
            used = set(s.scalars(select(VersionRow.code_sha256)).all())
            used |= set(s.scalars(select(LayerVersionRow.code_sha256)).all())
        return used

    def collect(self, now: float | None = None) -> Collected:
        """One pass: remove what nothing references and is older than min_age."""
        cutoff = (time.time() if now is None else now) - self.min_age
        used = self.referenced()
        blobs = trees = images = freed = 0
        for path in list(self.codestore.blobs.glob("*.zip")):
            if path.stem not in used and _old(path, cutoff):
                freed += _size(path)
                path.unlink(missing_ok=True)
                blobs += 1
        for path in list(self.codestore.trees.iterdir()):
            if not path.name.startswith(".") and path.name not in used and _old(path, cutoff):
                freed += _size(path)
                shutil.rmtree(path, ignore_errors=True)
                trees += 1
        if self.images is not None:
            gone: list[str] = []
            for path in list(self.images.rootfs_dir.iterdir()):
                digest = path.name.removesuffix(".failed")
                if digest in used or not _old(path, cutoff):
                    continue
                freed += _size(path)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                    images += 1
                else:
                    path.unlink(missing_ok=True)
                gone.append(digest)
            if gone:
                with Session(self.engine) as s, s.begin():
                    s.execute(delete(ContainerImageRow).where(ContainerImageRow.digest.in_(gone)))
        if blobs or trees or images:
            log.info("code collected: %d zip blobs, %d trees, %d images, %d bytes", blobs, trees, images, freed)
        return Collected(blobs, trees, images, freed)

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="nimbus-code-gc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.collect()
            except Exception:  # a failed pass is retried on the next one
                log.exception("code collection failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
