"""access keys and function URL configs (issue 7)

Revision ID: 0004
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(length=128), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_table(
        "function_urls",
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("url_id", sa.String(length=64), nullable=False),
        sa.Column("auth_type", sa.String(length=16), nullable=False),
        sa.Column("cors", sa.JSON(), nullable=True),
        sa.Column("invoke_mode", sa.String(length=32), nullable=False),
        sa.Column("creation_time", sa.String(length=40), nullable=False),
        sa.Column("last_modified_time", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("function_name", "qualifier"),
        sa.UniqueConstraint("url_id"),
    )


def downgrade() -> None:
    op.drop_table("function_urls")
    op.drop_table("access_keys")
