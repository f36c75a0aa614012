"""async invocation pipeline: the durable event queue and event-invoke configs (issue 4)

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "async_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("client_context", sa.Text(), nullable=True),
        sa.Column("trace_id", sa.String(length=256), nullable=True),
        sa.Column("enqueued_ms", sa.BigInteger(), nullable=False),
        sa.Column("available_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("throttles", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_version", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column("last_response", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("async_events", schema=None) as batch_op:
        batch_op.create_index("ix_async_events_ready", ["function_name", "available_ms", "id"], unique=False)

    op.create_table(
        "event_invoke_configs",
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("maximum_retry_attempts", sa.Integer(), nullable=True),
        sa.Column("maximum_event_age", sa.Integer(), nullable=True),
        sa.Column("on_success", sa.String(length=350), nullable=True),
        sa.Column("on_failure", sa.String(length=350), nullable=True),
        sa.Column("last_modified", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("function_name", "qualifier"),
    )


def downgrade() -> None:
    op.drop_table("event_invoke_configs")
    with op.batch_alter_table("async_events", schema=None) as batch_op:
        batch_op.drop_index("ix_async_events_ready")
    op.drop_table("async_events")
