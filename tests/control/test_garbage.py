"""Garbage collection of code: unreferenced zip blobs, trees and unpacked images go (once old enough); whatever a
version or a layer version uses stays."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

from nimbus.control.garbage import CodeCollector
from nimbus.control.images import ImageStore
from nimbus.control.registry import Registry
from tests.conftest import RUNTIME
from tests.control.conftest import ROLE


def zip_of(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", text)
    return buf.getvalue()


def test_unreferenced_code_and_images_are_collected_once_old_enough(registry: Registry) -> None:
    images = ImageStore(registry.settings, registry.engine)
    try:
        kept = zip_of("def handler(e, c):\n    return 1\n")
        registry.create_function({"FunctionName": "fn", "Role": ROLE, "Runtime": RUNTIME,
                                  "Handler": "app.handler"}, kept)
        orphan = registry.codestore.put(zip_of("orphan = True\n"))  # stored, never committed to a function
        dead = "ab" * 32
        (images.rootfs(dead) / "bin").mkdir(parents=True)
        images.failed_marker("cd" * 32).write_text("{}")
        collector = CodeCollector(registry.engine, registry.codestore, images, interval=0, min_age=3600)

        assert collector.collect().blobs == 0  # too young: an upload may be about to commit its row
        result = collector.collect(now=time.time() + 7200)
        assert (result.blobs, result.trees, result.images) == (1, 1, 1)
        assert not registry.codestore.zip_path(orphan.sha256_hex).exists()
        assert not images.rootfs(dead).exists() and not images.failed_marker("cd" * 32).exists()
        used = registry.get_function_configuration("fn", None)
        hex_digest = next(iter(collector.referenced()))
        assert registry.codestore.zip_path(hex_digest).exists() and used["CodeSize"] == len(kept)
        assert os.path.isdir(registry.codestore.trees / hex_digest)
    finally:
        images.close()


def test_collector_thread_stops(registry: Registry, tmp_path: Path) -> None:
    collector = CodeCollector(registry.engine, registry.codestore, None, interval=0.01, min_age=0)
    collector.start()
    time.sleep(0.05)
    collector.stop()
    assert collector._thread is None
