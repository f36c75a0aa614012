"""Immutable snapshots of a function that the data plane reads on every invocation. The registry builds
them from the database, caches them, and rebuilds a function's snapshot on every write to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ImageRun:
    """How a PackageType Image function starts (issue 19): its unpacked image (the environment's read-only
    root), the command line (ENTRYPOINT + CMD after ImageConfig's overrides), WORKDIR and the image's ENV."""

    rootfs: Path
    argv: tuple[str, ...]
    workdir: str
    environ: dict[str, str]
    failed_marker: Path  # exists (with the reason) when the image's pull failed


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """Everything needed to run one version (or `$LATEST`) of a function."""

    function_name: str
    version: str  # "$LATEST" or "1", "2", ...
    function_arn: str  # unqualified ARN
    runtime: str
    handler: str
    memory_size: int  # MB
    timeout: int  # seconds
    environment: dict[str, str]
    ephemeral_storage: int  # MB of /tmp
    architectures: tuple[str, ...]
    layers: tuple[str, ...]  # layer version ARNs, in order
    logging_config: dict[str, Any]
    code_sha256: str  # hex sha256 of the zip: key of the code store
    code_dir: Path  # unpacked, read-only tree of the code
    revision_id: str
    tracing_mode: str = "PassThrough"  # TracingConfig.Mode: PassThrough | Active
    opt_dir: Path | None = None  # the function's layers merged (control/layertree.py), mounted at /opt
    snap_start: bool = False  # a published version with SnapStart ApplyOn=PublishedVersions (issue 5)
    tags: dict[str, str] = field(default_factory=dict)  # the function's tags (network policy: docs/network.md)
    pending: bool = False  # State Pending (just created, issue 21): invoking it is a ResourceConflict
    durable_config: dict[str, Any] | None = None  # DurableConfig of a durable function (issue 18)
    image: ImageRun | None = None  # a container-image function (runtime is then the custom runtime's)

    @property
    def qualified_arn(self) -> str:
        return f"{self.function_arn}:{self.version}"

    @property
    def log_group(self) -> str:
        return str(self.logging_config.get("LogGroup") or f"/aws/lambda/{self.function_name}")

    @property
    def pool_key(self) -> tuple[str, str, str]:
        """Environments are reusable only for the same function, version and revision."""
        return (self.function_name, self.version, self.revision_id)


@dataclass(frozen=True, slots=True)
class AliasSpec:
    name: str
    function_version: str
    additional_weights: dict[str, float] = field(default_factory=dict)  # version -> weight (0..1)


@dataclass(frozen=True, slots=True)
class FunctionSnapshot:
    """A function with all its versions and aliases, as of one moment."""

    name: str
    function_arn: str
    reserved_concurrency: int | None
    versions: dict[str, VersionSpec]  # includes "$LATEST"
    aliases: dict[str, AliasSpec]
