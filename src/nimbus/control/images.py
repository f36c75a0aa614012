"""Container images of `PackageType: Image` functions: resolving an image URI to a manifest digest at deploy
time (`skopeo inspect`), pulling it (`skopeo copy docker://… oci:…`) and unpacking its layers once per digest
into a content-addressed root filesystem shared by every function using it:

    <data>/images/rootfs/<hex>/         the unpacked tree (renamed into place when complete)
    <data>/images/rootfs/<hex>.failed   why the last pull of that digest failed (JSON)

The state of each digest (Pending, Active, Failed with a reason) is kept in the `container_images` table, so a
pull interrupted by a restart is resumed. Registries are reached over HTTPS with the host's CA store; hosts
listed in `registry_insecure` are reached without TLS verification (plain HTTP for a local registry), and
credentials come from `registry_auth_file` (the containers-auth.json format skopeo, podman and buildah use).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from nimbus.config import Settings
from nimbus.control.imageunpack import UnpackError, apply_layer, prepare_mount_points
from nimbus.control.models import ContainerImageRow
from nimbus.errors import InvalidParameterValue

SETPRIV = shutil.which("setpriv")  # util-linux: ties a child to the thread that started it
log = logging.getLogger("nimbus.images")

SKOPEO = "skopeo"
INSPECT_TIMEOUT = 60.0  # seconds
# <registry>/<repository>[:tag][@sha256:<hex>], the registry part holding a dot, a colon or being localhost
IMAGE_URI_RE = re.compile(
    r"^(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
LOCAL_REGISTRY = "nimbus.local"  # images uploaded as tarballs: nimbus.local/uploads@sha256:<hex>
ARCHIVE_MAX_CHECK = 1 << 20
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
ARCH = {"x86_64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """An image URI as deployed: the URI given, `repository@sha256:…` it resolved to, and the image's
    configuration (ENTRYPOINT, CMD, WORKDIR, ENV, USER)."""

    image_uri: str
    resolved_uri: str
    digest_hex: str
    config: dict[str, Any]

    def settings(self) -> dict[str, Any]:
        """The part of the image configuration an environment needs (stored with the function)."""
        return {
            "Entrypoint": list(self.config.get("Entrypoint") or []),
            "Cmd": list(self.config.get("Cmd") or []),
            "WorkingDir": str(self.config.get("WorkingDir") or ""),
            "Env": list(self.config.get("Env") or []),
            "User": str(self.config.get("User") or ""),
        }


def parse_uri(uri: str) -> re.Match[str]:
    match = IMAGE_URI_RE.match(uri or "")
    if match is None or ("." not in match["registry"] and ":" not in match["registry"]
                         and match["registry"] != "localhost"):
        raise InvalidParameterValue(
            f"Source image {uri} is not valid. Provide a valid source image: "
            "<registry>/<repository>:<tag> or <registry>/<repository>@sha256:<digest>."
        )
    return match


class ImageStore:
    """Image digests and their unpacked root filesystems (see the module docstring). Thread-safe."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.root = settings.data_dir / "images"
        self.rootfs_dir = self.root / "rootfs"
        self.rootfs_dir.mkdir(parents=True, exist_ok=True)
        for d in (self.root, self.rootfs_dir):
            os.chmod(d, 0o755)
        for stale in self.root.glob(".*"):  # staging areas of a server that died mid-pull or mid-upload
            if stale.name.startswith((".pull-", ".import-", ".upload-")):
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nimbus-image-pull")
        self._pulling: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------------------------------ queries

    def rootfs(self, digest_hex: str) -> Path:
        return self.rootfs_dir / digest_hex

    def state(self, digest_hex: str) -> tuple[str, str, str] | None:
        """(State, StateReason, StateReasonCode) of a digest not ready to run; None when it is unpacked."""
        if self.rootfs(digest_hex).is_dir():
            return None
        with Session(self.engine) as s:
            row = s.get(ContainerImageRow, digest_hex)
        if row is None or row.state == "Pending":
            return ("Pending", "The function is being created.", "Creating")
        if row.state == "Failed":
            return ("Failed", row.reason or "The image could not be pulled.", row.reason_code or "InvalidImage")
        return ("Pending", "The function is being created.", "Creating")  # Active row, tree gone: re-pulled

    # --------------------------------------------------------------------------------------- resolution

    def _skopeo(self, *args: str, host: str, timeout: float | None = INSPECT_TIMEOUT) -> bytes:
        argv = [SKOPEO, *args[:1]]
        if host in self._insecure_hosts():
            argv.append("--src-tls-verify=false" if args[0] == "copy" else "--tls-verify=false")
        if self.settings.registry_auth_file:
            argv.append(f"--{'src-' if args[0] == 'copy' else ''}authfile={self.settings.registry_auth_file}")
        argv += args[1:]
        if shutil.which(argv[0]) is None:
            raise _Unavailable("skopeo is not installed on this server (scripts/install-system-deps.sh)")
        if SETPRIV is not None:
            # skopeo dies with the server (a kill -9 included) instead of writing on into a staging area the
            # next server removes at start.
            argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout,
                                  env={**os.environ, "HOME": str(self.root)})
        except FileNotFoundError:
            raise _Unavailable("skopeo is not installed on this server (scripts/install-system-deps.sh)") from None
        except subprocess.TimeoutExpired:
            raise _Unavailable("the registry did not answer in time") from None
        if proc.returncode != 0:
            raise _Unavailable(_skopeo_reason(proc.stderr.decode("utf-8", "replace")))
        return proc.stdout

    def _insecure_hosts(self) -> set[str]:
        return {h.strip() for h in re.split(r"[,\s]+", self.settings.registry_insecure or "") if h.strip()}

    def resolve(self, uri: str, architecture: str = "x86_64") -> ResolvedImage:
        """Resolve `uri` (tag or digest) to the digest of its image manifest for `architecture`, and read the
        image's configuration. Raises InvalidParameterValue when the image is missing or unreachable."""
        match = parse_uri(uri)
        host, repository = match["registry"], f"{match['registry']}/{match['repository']}"
        if host == LOCAL_REGISTRY:
            return self._local(uri, match["digest"])
        reference = f"{repository}@{match['digest']}" if match["digest"] else f"{repository}:{match['tag'] or 'latest'}"
        try:
            raw = self._skopeo("inspect", "--raw", f"docker://{reference}", host=host)
            manifest = json.loads(raw)
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
                wanted = ARCH.get(architecture, "amd64")
                entries = [m for m in manifest.get("manifests") or []
                           if (m.get("platform") or {}).get("architecture") == wanted
                           and (m.get("platform") or {}).get("os", "linux") == "linux"]
                if not entries:
                    raise InvalidParameterValue(
                        f"The image manifest, config or layer media type for the source image {uri} is not "
                        f"supported: it has no linux/{wanted} image."
                    )
                digest = str(entries[0]["digest"])
            config = json.loads(self._skopeo("inspect", "--config", f"docker://{repository}@{digest}", host=host))
        except _Unavailable as e:
            raise InvalidParameterValue(f"Source image {uri} does not exist or is not reachable ({e}). "
                                        "Provide a valid source image.") from None
        except (ValueError, KeyError, TypeError):
            raise InvalidParameterValue(
                f"The image manifest, config or layer media type for the source image {uri} is not supported."
            ) from None
        return ResolvedImage(uri, f"{repository}@{digest}", digest.removeprefix("sha256:"),
                             dict(config.get("config") or {}))

    def _local(self, uri: str, digest: str | None) -> ResolvedImage:
        """An image uploaded as a tarball (import_archive), named by its digest."""
        row = None
        if digest:
            with Session(self.engine) as s:
                row = s.get(ContainerImageRow, digest.removeprefix("sha256:"))
        if row is None or row.config is None or not self.rootfs(row.digest).is_dir():
            raise InvalidParameterValue(f"Source image {uri} does not exist. Provide a valid source image "
                                        f"(upload it again: POST /nimbus/v1/images, or nimbus deploy --image FILE).")
        return ResolvedImage(uri, row.resolved_uri, row.digest, dict(row.config))

    def import_archive(self, archive: Path) -> ResolvedImage:
        """Unpack an uploaded image tarball (`docker save`'s docker-archive, or an OCI layout as a tar) and
        return it as `nimbus.local/uploads@sha256:<hex>` (ready at once: no Pending phase)."""
        try:
            with tarfile.open(archive, "r:*") as tar:
                names = {n.lstrip("./") for n in tar.getnames()}
        except (tarfile.TarError, OSError, EOFError):
            raise InvalidParameterValue("The uploaded image is not a tar archive (docker save or an OCI layout)."
                                        ) from None
        if "oci-layout" in names:
            source = f"oci-archive:{archive}"
        elif "manifest.json" in names:
            source = f"docker-archive:{archive}"
        else:
            raise InvalidParameterValue("The uploaded archive holds neither an OCI layout (oci-layout, index.json) "
                                        "nor a docker-archive (manifest.json).")
        work = Path(tempfile.mkdtemp(prefix=".import-", dir=self.root))
        try:
            layout = work / "oci"
            try:
                self._skopeo("copy", "--quiet", source, f"oci:{layout}:image", host="", timeout=None)
                index = json.loads((layout / "index.json").read_text())
                manifest_digest = str(index["manifests"][0]["digest"])
                manifest = json.loads(_blob(layout, manifest_digest).read_text())
                config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
            except (_Unavailable, ValueError, KeyError, OSError) as e:
                raise InvalidParameterValue(f"The uploaded image cannot be read: {e}") from None
            digest_hex = manifest_digest.removeprefix("sha256:")
            resolved = f"{LOCAL_REGISTRY}/uploads@{manifest_digest}"
            size = 0
            if not self.rootfs(digest_hex).is_dir():
                try:
                    size = self._unpack_layout(layout, manifest, digest_hex, work)
                except (UnpackError, OSError) as e:
                    raise InvalidParameterValue(f"The uploaded image cannot be unpacked: {e}") from None
            now = int(time.time() * 1000)
            with Session(self.engine) as s, s.begin():
                row = s.get(ContainerImageRow, digest_hex)
                if row is None:
                    s.add(ContainerImageRow(digest=digest_hex, resolved_uri=resolved, state="Active", reason=None,
                                            reason_code=None, size_bytes=size, created_ms=now,
                                            config=dict(config.get("config") or {})))
                else:
                    row.state, row.config = "Active", dict(config.get("config") or {})
            return ResolvedImage(resolved, resolved, digest_hex, dict(config.get("config") or {}))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -------------------------------------------------------------------------------------------- pulls

    def ensure(self, image: ResolvedImage) -> None:
        """Make `image` runnable: nothing when already unpacked, else record it Pending and pull it in the
        background (the function is Pending meanwhile, Failed with the reason if the pull fails)."""
        if self.rootfs(image.digest_hex).is_dir():
            return
        now = int(time.time() * 1000)
        with Session(self.engine) as s, s.begin():
            row = s.get(ContainerImageRow, image.digest_hex)
            if row is None:
                s.add(ContainerImageRow(digest=image.digest_hex, resolved_uri=image.resolved_uri, state="Pending",
                                        reason=None, reason_code=None, size_bytes=0, created_ms=now))
            else:
                row.state, row.reason, row.reason_code, row.resolved_uri = "Pending", None, None, image.resolved_uri
        self._submit(image.digest_hex, image.resolved_uri)

    def resume(self) -> None:
        """Restart the pulls a previous server left Pending (called once at start-up)."""
        with Session(self.engine) as s:
            rows = s.scalars(select(ContainerImageRow).where(ContainerImageRow.state == "Pending")).all()
            pending = [(r.digest, r.resolved_uri) for r in rows]
        for digest, uri in pending:
            self._submit(digest, uri)

    def _submit(self, digest_hex: str, resolved_uri: str) -> None:
        with self._lock:
            if digest_hex in self._pulling or self._closed:
                return
            self._pulling.add(digest_hex)
        self.failed_marker(digest_hex).unlink(missing_ok=True)
        self._pool.submit(self._pull, digest_hex, resolved_uri)

    def failed_marker(self, digest_hex: str) -> Path:
        return self.rootfs_dir / f"{digest_hex}.failed"

    def wait(self, digest_hex: str, timeout: float) -> bool:
        """Wait until `digest_hex` is no longer being pulled (tests, the CLI); True when it is unpacked."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                busy = digest_hex in self._pulling
            if not busy:
                break
            time.sleep(0.05)
        return self.rootfs(digest_hex).is_dir()

    def _pull(self, digest_hex: str, resolved_uri: str) -> None:
        work = Path(tempfile.mkdtemp(prefix=f".pull-{digest_hex[:12]}-", dir=self.root))
        try:
            t0 = time.monotonic()
            size = self._pull_into(digest_hex, resolved_uri, work)
            self._finish(digest_hex, "Active", None, None, size)
            log.info("image %s unpacked: %d bytes in %.1f s", resolved_uri, size, time.monotonic() - t0)
        except (_Unavailable, UnpackError, OSError, ValueError, KeyError) as e:
            code = "ImageAccessDenied" if isinstance(e, _Unavailable) else "InvalidImage"
            reason = f"Lambda was unable to pull or unpack the image {resolved_uri}: {e}"[:1024]
            log.warning("%s", reason)
            try:
                self.failed_marker(digest_hex).write_text(json.dumps({"reason": reason, "code": code}))
                self._finish(digest_hex, "Failed", reason, code, 0)
            except Exception:
                log.exception("cannot record the failed pull of %s", resolved_uri)
        except Exception:
            log.exception("pull of %s failed", resolved_uri)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self._pulling.discard(digest_hex)

    def _pull_into(self, digest_hex: str, resolved_uri: str, work: Path) -> int:
        layout = work / "oci"
        host = resolved_uri.split("/", 1)[0]
        t0 = time.monotonic()
        self._skopeo("copy", "--quiet", f"docker://{resolved_uri}", f"oci:{layout}:image", host=host, timeout=None)
        copied = time.monotonic()
        index = json.loads((layout / "index.json").read_text())
        manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_text())
        return self._unpack_layout(layout, manifest, digest_hex, work, copied - t0)

    def _unpack_layout(self, layout: Path, manifest: dict[str, Any], digest_hex: str, work: Path,
                       pulled: float = 0.0) -> int:
        """Apply the manifest's layers from an OCI layout into the digest's tree (renamed into place at the end)."""
        copied = time.monotonic()
        tree = work / "rootfs"
        tree.mkdir(mode=0o755)
        size = 0
        for layer in manifest.get("layers") or []:
            media = str(layer.get("mediaType", ""))
            if "zstd" in media:
                raise UnpackError(f"zstd-compressed layers are not supported ({media})")
            path = _blob(layout, layer["digest"])
            size += apply_layer(path, str(tree))
            path.unlink()  # the layout is only a staging area: free its space as we go
        prepare_mount_points(str(tree))
        log.info("image %s: pulled in %.1f s, unpacked in %.1f s", digest_hex, pulled, time.monotonic() - copied)
        os.chmod(tree, 0o755)
        target = self.rootfs(digest_hex)
        try:
            os.rename(tree, target)
        except OSError:
            if not target.is_dir():
                raise
        return size

    def _finish(self, digest_hex: str, state: str, reason: str | None, code: str | None, size: int) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get(ContainerImageRow, digest_hex)
            if row is not None:
                row.state, row.reason, row.reason_code = state, reason, code
                if size:
                    row.size_bytes = size

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


class _Unavailable(Exception):
    """skopeo could not reach the image (registry down, no such image, no access)."""


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
        raise ValueError(f"unsupported digest {digest!r}")
    return layout / "blobs" / "sha256" / hex_digest


def _skopeo_reason(stderr: str) -> str:
    """skopeo's error without its log prefix (`time=… level=fatal msg="…"`)."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "skopeo failed"
    match = re.search(r'msg="(.*)"\s*$', text)
    reason = match.group(1) if match else text
    return reason.replace('\\"', '"')[:500]
