"""event sources (issue 15): event source mappings, EventBridge Scheduler schedules and groups, timers with
their pending fires (the outbox that makes a tick fire once across restarts), EventBridge buses and rules

Revision ID: 0015_event_sources
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0015_event_sources"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "esm_mappings",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("event_source_arn", sa.String(length=1024), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "sched_groups",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "sched_timers",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.Column("next_fire_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_sched_timers_due", "sched_timers", ["next_fire_ms"])
    op.create_table(
        "sched_fires",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("timer_key", sa.String(length=400), nullable=False),
        sa.Column("tick_ms", sa.BigInteger(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("timer_key", "tick_ms", name="uq_sched_fires_tick"),
    )
    op.create_table(
        "eb_buses",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "eb_rules",
        sa.Column("bus", sa.String(length=256), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("bus", "name"),
    )


def downgrade() -> None:
    for table in ("eb_rules", "eb_buses", "sched_fires", "sched_timers", "sched_groups", "esm_mappings"):
        op.drop_table(table)
