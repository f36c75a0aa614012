"""durable executions, their operations and history (issue 18: durable functions)

Revision ID: 0018_durable
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0018_durable"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "durable_executions",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("arn", sa.String(length=512), nullable=False, unique=True),
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("input_payload", sa.Text(), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("timeout_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("invoke_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("in_flight", sa.Boolean(), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=True),
        sa.Column("change_seq", sa.Integer(), nullable=False),
        sa.Column("delivered_seq", sa.Integer(), nullable=False),
        sa.Column("op_seq", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("invocations", sa.Integer(), nullable=False),
        sa.Column("replay", sa.JSON(), nullable=True),
        sa.Column("parent", sa.JSON(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("trace_id", sa.String(length=256), nullable=True),
    )
    op.create_index("ix_durable_exec_name", "durable_executions", ["function_name", "name"], unique=True)
    op.create_index("ix_durable_exec_start", "durable_executions", ["function_name", "start_ms"])
    op.create_index("ix_durable_exec_invoke", "durable_executions", ["invoke_at_ms"])
    op.create_index("ix_durable_exec_timeout", "durable_executions", ["timeout_at_ms"])
    op.create_table(
        "durable_operations",
        sa.Column("execution_id", sa.String(length=64), primary_key=True),
        sa.Column("op_id", sa.String(length=64), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("changed_seq", sa.Integer(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("internal", sa.JSON(), nullable=True),
    )
    op.create_index("ix_durable_ops_due", "durable_operations", ["due_ms"])
    op.create_index("ix_durable_ops_seq", "durable_operations", ["execution_id", "seq"])
    op.create_table(
        "durable_events",
        sa.Column("execution_id", sa.String(length=64), primary_key=True),
        sa.Column("event_id", sa.Integer(), primary_key=True),
        sa.Column("data", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("durable_events")
    op.drop_table("durable_operations")
    op.drop_table("durable_executions")
