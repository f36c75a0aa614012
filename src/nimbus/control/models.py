"""SQLAlchemy models of everything nimbus persists. Function configuration is kept as the JSON document
the API returns (minus derived fields), so new Lambda fields need no schema change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class FunctionRow(Base):
    __tablename__ = "functions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_version: Mapped[int] = mapped_column(Integer, default=0)
    reserved_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    policy: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    policy_revision: Mapped[str] = mapped_column(String(64), default="")


class VersionRow(Base):
    """One version of a function; `$LATEST` is the mutable one."""

    __tablename__ = "function_versions"

    function_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    code_sha256: Mapped[str] = mapped_column(String(64))  # hex; key into the code store
    revision_id: Mapped[str] = mapped_column(String(64))
    last_modified: Mapped[str] = mapped_column(String(40))


class AliasRow(Base):
    __tablename__ = "aliases"

    function_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    function_version: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    routing_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    revision_id: Mapped[str] = mapped_column(String(64))


class LogGroupRow(Base):
    __tablename__ = "log_groups"

    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)


class LogStreamRow(Base):
    __tablename__ = "log_streams"
    __table_args__ = (UniqueConstraint("group_name", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_name: Mapped[str] = mapped_column(
        String(512), ForeignKey("log_groups.name", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(512))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    first_event_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_event_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_ingestion_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class LogEventRow(Base):
    __tablename__ = "log_events"
    __table_args__ = (Index("ix_log_events_stream_ts", "stream_id", "timestamp_ms", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stream_id: Mapped[int] = mapped_column(Integer, ForeignKey("log_streams.id", ondelete="CASCADE"))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    ingestion_ms: Mapped[int] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text)


# Authentication and function URLs (issue 7; migration 0004).


class AccessKeyRow(Base):
    """A long-term access key made with `nimbus keys create` (the admin key lives in the data dir instead).
    The secret is sealed with the server's master key (see control/keys.py)."""

    __tablename__ = "access_keys"

    access_key_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    sealed_secret: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class FunctionUrlRow(Base):
    """A function URL config on `$LATEST` (qualifier "") or an alias."""

    __tablename__ = "function_urls"
    __table_args__ = (UniqueConstraint("url_id"),)

    function_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True
    )
    qualifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    url_id: Mapped[str] = mapped_column(String(64))
    auth_type: Mapped[str] = mapped_column(String(16))
    cors: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    invoke_mode: Mapped[str] = mapped_column(String(32))
    creation_time: Mapped[str] = mapped_column(String(40))
    last_modified_time: Mapped[str] = mapped_column(String(40))


# --- Observability and cost (issue 8): metering aggregates and deployment history -----------------------


class MeteringRow(Base):
    """Billed usage of one function per hour, architecture and memory size (see observe/metering.py)."""

    __tablename__ = "metering_usage"

    function_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds, UTC hour
    architecture: Mapped[str] = mapped_column(String(16), primary_key=True)
    memory_mb: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    billed_ms: Mapped[int] = mapped_column(BigInteger, default=0)  # includes billed INIT
    init_billed_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    provisioned_ms: Mapped[int] = mapped_column(BigInteger, default=0)  # environment-ms kept provisioned


class DeploymentRow(Base):
    """One code change of a function: created, code updated, or version published (kept after deletion)."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_function", "function_name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    function_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # CreateFunction | UpdateFunctionCode | PublishVersion
    version: Mapped[str] = mapped_column(String(32))
    code_sha256: Mapped[str] = mapped_column(String(64))  # hex
    actor: Mapped[str] = mapped_column(String(256))
    at_ms: Mapped[int] = mapped_column(BigInteger)


# --- Async invocation pipeline (issue 4; migration 0002): the durable event queue, event-invoke configs ---


class AsyncEventRow(Base):
    """An accepted `Event` invocation not yet finished. `available_ms` is when it may next be leased: its
    acceptance time, a retry's due time, or, while a dispatcher holds it, the end of that lease (so a lease
    that is never acked expires by itself). See invoke/queue.py."""

    __tablename__ = "async_events"
    __table_args__ = (Index("ix_async_events_ready", "function_name", "available_ms", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(36))
    function_name: Mapped[str] = mapped_column(String(64))
    qualifier: Mapped[str | None] = mapped_column(String(128), nullable=True)  # as invoked
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    client_context: Mapped[str | None] = mapped_column(Text, nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    enqueued_ms: Mapped[int] = mapped_column(BigInteger)  # acceptance: the event's age counts from here
    available_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times the function ran
    throttles: Mapped[int] = mapped_column(Integer, default=0)  # requeues for throttles/platform errors
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_version: Mapped[str | None] = mapped_column(String(32), nullable=True)  # of the last attempt
    last_error: Mapped[str | None] = mapped_column(String(64), nullable=True)  # its function error
    last_response: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class EventInvokeConfigRow(Base):
    """PutFunctionEventInvokeConfig's settings for one qualifier (`$LATEST`, a version or an alias)."""

    __tablename__ = "event_invoke_configs"

    function_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True
    )
    qualifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    maximum_retry_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    maximum_event_age: Mapped[int | None] = mapped_column(Integer, nullable=True)
    on_success: Mapped[str | None] = mapped_column(String(350), nullable=True)
    on_failure: Mapped[str | None] = mapped_column(String(350), nullable=True)
    last_modified: Mapped[float] = mapped_column(Float)  # epoch seconds


# --- Layers (issue 6b; migration 0003) -------------------------------------------------------------------


class LayerRow(Base):
    """A layer name and the last version number it handed out (kept after its versions are deleted: AWS never
    reuses a layer's version numbers)."""

    __tablename__ = "layers"

    name: Mapped[str] = mapped_column(String(140), primary_key=True)
    last_version: Mapped[int] = mapped_column(Integer, default=0)


class LayerVersionRow(Base):
    """One published layer version; its zip is in the code store under `code_sha256` (hex)."""

    __tablename__ = "layer_versions"

    layer_name: Mapped[str] = mapped_column(String(140), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    license_info: Mapped[str | None] = mapped_column(Text, nullable=True)
    # None when the request left them out; [] when it sent empty lists, which AWS echoes (issue 21)
    compatible_runtimes: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    compatible_architectures: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    code_sha256: Mapped[str] = mapped_column(String(64))
    code_size: Mapped[int] = mapped_column(BigInteger)
    unzipped_size: Mapped[int] = mapped_column(BigInteger)
    created_date: Mapped[str] = mapped_column(String(40))
    policy: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    policy_revision: Mapped[str] = mapped_column(String(64))


# --- Provisioned concurrency (issue 5; migration 0005) ----------------------------------------------------


class ProvisionedConcurrencyRow(Base):
    """PutProvisionedConcurrencyConfig of one version or alias: how many environments to keep initialized."""

    __tablename__ = "provisioned_concurrency"

    function_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    qualifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    requested: Mapped[int] = mapped_column(Integer)
    last_modified: Mapped[str] = mapped_column(String(40))


class CodeSigningConfigRow(Base):
    """A code signing config (issue 21): its trusted signing profiles and policy; `id` is `csc-<17>`."""

    __tablename__ = "code_signing_configs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(String(256))
    allowed_publishers: Mapped[list[str]] = mapped_column(JSON)
    untrusted_artifact_on_deployment: Mapped[str] = mapped_column(String(16))
    last_modified: Mapped[str] = mapped_column(String(40))
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class FunctionSettingsRow(Base):
    """Per-function settings without a place in the configuration document (issue 21): the code signing
    config a function uses, its recursive loop setting (None: AWS's default, Terminate)."""

    __tablename__ = "function_settings"

    function_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("functions.name", ondelete="CASCADE"), primary_key=True
    )
    code_signing_config_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    recursive_loop: Mapped[str | None] = mapped_column(String(16), nullable=True)


# --- Container images (issue 19; migration 0019_container_images) ----------------------------------------


class ContainerImageRow(Base):
    """One image manifest digest used by an Image function: its pull state (see control/images.py)."""

    __tablename__ = "container_images"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex of the manifest's sha256
    resolved_uri: Mapped[str] = mapped_column(String(1024))  # <registry>/<repository>@sha256:<hex>
    state: Mapped[str] = mapped_column(String(16))  # Pending | Active | Failed
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # unpacked
    created_ms: Mapped[int] = mapped_column(BigInteger)
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # uploaded images' own config
