"""Building small OCI images without Docker for the container-image tests: root filesystems assembled from
the host's own binaries (with the shared libraries `ldd` names), packed as uncompressed tar layers into an OCI
layout, pushed to a registry with skopeo; and a CNCF distribution registry (`docker-registry` from Debian) on a
loopback port."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

REGISTRY = shutil.which("docker-registry") or shutil.which("registry")
SKOPEO = shutil.which("skopeo")
BASH_TOOLS = ("/bin/bash", "/bin/sh", "/usr/bin/curl", "/usr/bin/cat", "/usr/bin/mktemp", "/usr/bin/grep",
              "/usr/bin/head", "/usr/bin/cut", "/usr/bin/tr", "/usr/bin/id", "/usr/bin/env", "/usr/bin/sleep",
              "/usr/bin/ls", "/usr/bin/touch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """A `docker-registry serve` on 127.0.0.1 with a config file of our own (plain HTTP, storage in `root`)."""

    def __init__(self, root: Path) -> None:
        assert REGISTRY is not None
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root / 'storage'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.log = open(root / "registry.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            found.append(parts[2])
        elif parts and parts[0].startswith("/"):
            found.append(parts[0])
    return found


def host_files(binaries: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Path inside the image -> host file, for `binaries` and every library they load (links resolved)."""
    files: dict[str, str] = {}
    for binary in binaries:
        for path in (binary, *_libraries(binary)):
            files[path.lstrip("/")] = os.path.realpath(path)
    return files


class Layer:
    """An uncompressed tar layer built in memory: files from the host, generated files, whiteouts."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - finish()
        self.dirs: set[str] = set()

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                info = tarfile.TarInfo(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                self.tar.addfile(info)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def add_host_file(self, name: str, host: str) -> None:
        self._parents(name)
        info = self.tar.gettarinfo(host, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with open(host, "rb") as f:
            self.tar.addfile(info, f)

    def add_tree(self, prefix: str, host_dir: str, skip: tuple[str, ...] = ()) -> None:
        for dirpath, dirnames, filenames in os.walk(host_dir):
            dirnames[:] = [d for d in dirnames if d not in skip]
            rel = os.path.relpath(dirpath, host_dir)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                self.add_host_file(os.path.normpath(os.path.join(prefix, rel, name)), path)

    def add_symlink(self, name: str, target: str) -> None:
        self._parents(name)
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        self.tar.addfile(info)

    def finish(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def _put(layout: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_layout(layout: Path, layers: list[bytes], config: dict[str, Any]) -> None:
    """An OCI image layout at `layout` holding one image of `layers` (uncompressed tars) and `config`."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descriptors = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_put(layout, data)} for data in layers]
    image_config = {
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **_put(layout, json.dumps(image_config).encode())}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": descriptors}
    manifest_desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     **_put(layout, json.dumps(manifest).encode())}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}))


def push(layout: Path, reference: str) -> None:
    """`skopeo copy oci:<layout> docker://<reference>` over plain HTTP."""
    assert SKOPEO is not None
    subprocess.run([SKOPEO, "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}", f"docker://{reference}"],
                   check=True, capture_output=True, timeout=120)
