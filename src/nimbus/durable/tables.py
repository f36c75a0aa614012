"""The durable component's tables, as SQLAlchemy Core objects (created by migration 0018_durable)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

executions = Table(
    "durable_executions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("arn", String(512), nullable=False),
    Column("function_name", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_payload", Text, nullable=False),
    Column("input_hash", String(64), nullable=False),
    Column("result", Text),
    Column("error", JSON),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger),
    Column("timeout_at_ms", BigInteger),  # while RUNNING: when the execution times out
    Column("invoke_at_ms", BigInteger),  # when the scheduler should invoke the function next
    Column("in_flight", Boolean, nullable=False),  # an invocation is running
    Column("token", String(128)),  # the current checkpoint token (None: no invocation may checkpoint)
    Column("change_seq", Integer, nullable=False),  # bumped on every operation change
    Column("delivered_seq", Integer, nullable=False),  # changes the running invocation has seen
    Column("op_seq", Integer, nullable=False),  # creation order of operations
    Column("event_seq", Integer, nullable=False),  # history event ids
    Column("failures", Integer, nullable=False),  # consecutive failed invocations
    Column("invocations", Integer, nullable=False),
    Column("replay", JSON),  # the last checkpoint call and its answer (ClientToken replay)
    Column("parent", JSON),  # {execution, op}: this execution is a chained invoke of another one
    Column("config", JSON, nullable=False),  # DurableConfig at start
    Column("trace_id", String(256)),
)

operations = Table(
    "durable_operations",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("op_id", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("changed_seq", Integer, nullable=False),
    Column("due_ms", BigInteger),  # something happens to it by itself then (timer, retry, timeout)
    Column("data", JSON, nullable=False),  # the Operation as the SDK sees it, timestamps in epoch ms
    Column("internal", JSON),  # what only the platform needs (callback timeouts, chained-invoke target)
)

events = Table(
    "durable_events",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("event_id", Integer, primary_key=True),
    Column("data", JSON, nullable=False),  # the history Event, timestamps in epoch ms
)
