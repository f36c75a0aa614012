"""container images: the pull state of each image digest used by an Image function (issue 19)

Revision ID: 0019_container_images
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0019_container_images"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "container_images",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("resolved_uri", sa.String(length=1024), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("container_images")
