"""SQLAlchemy models of everything nimbus persists. Function configuration is kept as the JSON document
the API returns (minus derived fields), so new Lambda fields need no schema change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
