"""Control-plane operations of `PackageType: Image` functions (issue 19): CreateFunction and
UpdateFunctionCode with `Code.ImageUri` (the tag resolved to a manifest digest at deploy time, so a published
version keeps its image), the configuration document (`PackageType`, `ImageConfigResponse`, `CodeSha256` =
the manifest digest, State Pending/Failed while the image is pulled), GetFunction's `Code` (ECR-style
`ImageUri` / `ResolvedImageUri`) and the run specification of an image function (`VersionSpec.image`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from nimbus.control import deployments
from nimbus.control.core import LATEST, RegistryCore, new_revision
from nimbus.control.documents import lambda_timestamp
from nimbus.control.images import ImageStore, ResolvedImage
from nimbus.control.models import FunctionRow, VersionRow
from nimbus.control.specs import ImageRun, VersionSpec
from nimbus.errors import InvalidParameterValue, ResourceConflict, ServiceError

IMAGE = "Image"
IMAGE_SETTINGS = "_Image"  # stored: the image's own ENTRYPOINT/CMD/WORKDIR/ENV (ResolvedImage.settings)
# Image functions start through the Runtime API path of custom runtimes (sandbox/apienvironment.py).
IMAGE_RUNTIME = "provided.al2023"


def is_image(config: dict[str, Any]) -> bool:
    return config.get("PackageType") == IMAGE


class ImageOps(RegistryCore):
    """The image-specific parts of the registry (a mixin of `Registry`)."""

    @property
    def image_store(self) -> ImageStore:
        if self.images is None:
            raise ServiceError("Container images are not available on this server.")
        return self.images

    def _resolve_image(self, request: dict[str, Any], config: dict[str, Any], uri: str | None) -> ResolvedImage:
        if not uri:
            raise InvalidParameterValue("Please provide a source for function code: Code.ImageUri is required for "
                                        "functions with PackageType Image.")
        arch = (config.get("Architectures") or ["x86_64"])[0]
        return self.image_store.resolve(uri, arch)

    @staticmethod
    def _with_image(config: dict[str, Any], image: ResolvedImage) -> dict[str, Any]:
        return {**config, "ImageUri": image.image_uri, "ResolvedImageUri": image.resolved_uri,
                IMAGE_SETTINGS: image.settings(), "CodeSha256": image.digest_hex, "CodeSize": 0}

    def create_image_function(self, name: str, request: dict[str, Any], config: dict[str, Any],
                              tags: dict[str, str]) -> dict[str, Any]:
        """CreateFunction of an Image function: resolve the image (errors stop here, nothing stored), commit
        `$LATEST` (and version 1 if Publish), then pull and unpack in the background (State Pending)."""
        code = request.get("Code") or {}
        if code.get("ZipFile") or code.get("S3Bucket"):
            raise InvalidParameterValue("Please provide only Code.ImageUri for functions with PackageType Image.")
        with Session(self.engine) as s:
            if s.get(FunctionRow, name) is not None:
                raise ResourceConflict(f"Function already exist: {name}")
        image = self._resolve_image(request, config, code.get("ImageUri"))
        now_ms = int(time.time() * 1000)
        with self._write(name) as s:
            if s.get(FunctionRow, name) is not None:
                raise ResourceConflict(f"Function already exist: {name}")
            fn = FunctionRow(name=name, created_ms=now_ms, last_version=0, reserved_concurrency=None,
                             tags=tags, policy=[], policy_revision=new_revision())
            s.add(fn)
            latest = VersionRow(function_name=name, version=LATEST, config=self._with_image(config, image),
                                code_sha256=image.digest_hex, revision_id=new_revision(),
                                last_modified=lambda_timestamp(now_ms / 1000))
            s.add(latest)
            s.flush()
            deployments.record(s, name, "CreateFunction", LATEST, image.digest_hex)
            result = self._publish(s, fn, latest, None) if request.get("Publish") else latest
            doc = self._config(result, None)
        self.image_store.ensure(image)  # after the commit: the pull's own writes must not wait on ours
        return doc

    def _publish(self, s: Session, fn: FunctionRow, latest: VersionRow, description: str | None) -> VersionRow:
        """Registry's (publishing is the same for both package types)."""
        raise NotImplementedError

    def update_image_code(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """UpdateFunctionCode of an Image function (a new ImageUri, maybe the same tag moved)."""
        with Session(self.engine) as s:
            self._function(s, name)
            current = self._version(s, name, LATEST)
            config = dict(current.config)
        if not is_image(config):
            raise InvalidParameterValue("Please don't provide ImageUri when updating a function with packageType Zip.")
        if request.get("ZipFile") or request.get("S3Bucket"):
            raise InvalidParameterValue("Please provide ImageUri when updating a function with packageType Image.")
        if "Architectures" in request:
            config["Architectures"] = list(request["Architectures"] or [])
        image = self._resolve_image(request, config, request.get("ImageUri"))
        if request.get("DryRun"):
            preview = VersionRow(function_name=name, version=LATEST, config=self._with_image(config, image),
                                 code_sha256=image.digest_hex, revision_id=current.revision_id,
                                 last_modified=current.last_modified)
            return self._config(preview, None)
        with self._write(name) as s:
            fn = self._function(s, name)
            latest = self._version(s, name, LATEST)
            self._check_revision(latest.revision_id, request.get("RevisionId"))
            updated = self._with_image({**latest.config, **({"Architectures": config["Architectures"]}
                                                            if "Architectures" in request else {})}, image)
            latest.config = updated
            latest.code_sha256 = image.digest_hex
            latest.revision_id = new_revision()
            latest.last_modified = lambda_timestamp()
            deployments.record(s, name, "UpdateFunctionCode", LATEST, image.digest_hex)
            result = self._publish(s, fn, latest, None) if request.get("Publish") else latest
            doc = self._config(result, None)
        self.image_store.ensure(image)
        return doc

    def is_image_function(self, name: str) -> bool:
        with Session(self.engine) as s:
            row = s.get(VersionRow, (name, LATEST))
            return row is not None and is_image(row.config)

    # ------------------------------------------------------------------------- documents and run specs

    def _config(self, row: VersionRow, arn_qualifier: str | None) -> dict[str, Any]:
        doc = super()._config(row, arn_qualifier)
        if not is_image(row.config):
            return doc
        doc["PackageType"] = IMAGE
        image_config = row.config.get("ImageConfig")
        if image_config:
            doc["ImageConfigResponse"] = {"ImageConfig": dict(image_config)}
        state = self.images.state(row.code_sha256) if self.images is not None else None
        if state is not None:
            doc["State"], doc["StateReason"], doc["StateReasonCode"] = state
            if state[0] == "Failed":
                doc["LastUpdateStatus"] = "Failed"
                doc["LastUpdateStatusReason"], doc["LastUpdateStatusReasonCode"] = state[1], state[2]
            else:
                doc["LastUpdateStatus"] = "InProgress"
                doc["LastUpdateStatusReason"] = "The function is being created."
                doc["LastUpdateStatusReasonCode"] = "Creating"
        return doc

    def _code_for(self, row: VersionRow, base_url: str | None) -> dict[str, str]:
        """GetFunction's Code: the zip's download link, or the image as ECR describes it."""
        if is_image(row.config):
            return {"RepositoryType": "ECR", "ImageUri": str(row.config.get("ImageUri", "")),
                    "ResolvedImageUri": str(row.config.get("ResolvedImageUri", ""))}
        return self._code(row.code_sha256, base_url)

    def _spec(self, name: str, unqualified: str, row: VersionRow, tags: dict[str, str] | None = None) -> VersionSpec:
        c = row.config
        if not is_image(c):
            return super()._spec(name, unqualified, row, tags)
        own = c.get(IMAGE_SETTINGS) or {}
        override = c.get("ImageConfig") or {}
        entrypoint = list(override["EntryPoint"]) if "EntryPoint" in override else list(own.get("Entrypoint") or [])
        command = list(override["Command"]) if "Command" in override else list(own.get("Cmd") or [])
        environ = dict(item.split("=", 1) for item in own.get("Env") or [] if "=" in item)
        store = self.images
        rootfs = store.rootfs(row.code_sha256) if store is not None else self.settings.data_dir / "images" / "none"
        marker = store.failed_marker(row.code_sha256) if store is not None else rootfs
        return VersionSpec(
            function_name=name,
            version=row.version,
            function_arn=unqualified,
            runtime=IMAGE_RUNTIME,
            handler=" ".join(command),
            memory_size=c["MemorySize"],
            timeout=c["Timeout"],
            environment=dict(c.get("Environment") or {}),
            ephemeral_storage=c.get("EphemeralStorage", 512),
            architectures=tuple(c.get("Architectures") or ["x86_64"]),
            layers=(),
            logging_config=self._logging(name, c),
            code_sha256=row.code_sha256,
            code_dir=rootfs,
            revision_id=row.revision_id,
            tracing_mode=c.get("TracingMode", "PassThrough"),
            opt_dir=None,
            snap_start=False,
            tags=dict(tags or {}),
            image=ImageRun(rootfs=rootfs, argv=tuple(entrypoint + command),
                           workdir=str(override.get("WorkingDirectory") or own.get("WorkingDir") or "/"),
                           environ=environ, failed_marker=marker),
        )
