"""The tables of event source mappings, schedules and buses (created by migration `0015_event_sources`). Each
resource is one row: the columns its lookups need, and its whole description as a JSON document."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Integer, MetaData, String, Table, UniqueConstraint

metadata = MetaData()

MAPPINGS = Table(
    "esm_mappings", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("function_name", String(64), nullable=False),
    Column("event_source_arn", String(1024), nullable=False),
    Column("state", String(16), nullable=False),
    Column("doc", JSON, nullable=False),
)

GROUPS = Table(
    "sched_groups", metadata,
    Column("name", String(64), primary_key=True),
    Column("doc", JSON, nullable=False),
)

# A timer is anything that fires on an expression: a Scheduler schedule ("schedule:<group>/<name>") or an
# EventBridge rule with a ScheduleExpression ("rule:<bus>/<name>").
TIMERS = Table(
    "sched_timers", metadata,
    Column("key", String(400), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("doc", JSON, nullable=False),
    Column("next_fire_ms", BigInteger, nullable=True),
)

# The outbox of ticks: written in the transaction that advances the timer, deleted once delivered.
FIRES = Table(
    "sched_fires", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("timer_key", String(400), nullable=False),
    Column("tick_ms", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("doc", JSON, nullable=False),
    UniqueConstraint("timer_key", "tick_ms", name="uq_sched_fires_tick"),
)

BUSES = Table(
    "eb_buses", metadata,
    Column("name", String(256), primary_key=True),
    Column("doc", JSON, nullable=False),
)

RULES = Table(
    "eb_rules", metadata,
    Column("bus", String(256), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("doc", JSON, nullable=False),
)
