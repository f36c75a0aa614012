"""metering aggregates and deployment history (issue 8: observability and cost)

Revision ID: 0006
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metering_usage",
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("hour_start", sa.BigInteger(), nullable=False),
        sa.Column("architecture", sa.String(length=16), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("billed_ms", sa.BigInteger(), nullable=False),
        sa.Column("init_billed_ms", sa.BigInteger(), nullable=False),
        sa.Column("provisioned_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "hour_start", "architecture", "memory_mb"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deployments_function", "deployments", ["function_name", "id"])


def downgrade() -> None:
    op.drop_index("ix_deployments_function", table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("metering_usage")
