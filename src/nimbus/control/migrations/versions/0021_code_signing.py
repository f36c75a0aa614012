"""code signing configs and per-function settings (code signing config, recursive loop) (issue 21)

Revision ID: 0021_code_signing
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0021_code_signing"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_signing_configs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=256), nullable=False),
        sa.Column("allowed_publishers", sa.JSON(), nullable=False),
        sa.Column("untrusted_artifact_on_deployment", sa.String(length=16), nullable=False),
        sa.Column("last_modified", sa.String(length=40), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "function_settings",
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("code_signing_config_id", sa.String(length=32), nullable=True),
        sa.Column("recursive_loop", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("function_name"),
    )


def downgrade() -> None:
    op.drop_table("function_settings")
    op.drop_table("code_signing_configs")
