"""layers and layer versions (issue 6b)

Revision ID: 0003
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("name", sa.String(length=140), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "layer_versions",
        sa.Column("layer_name", sa.String(length=140), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("license_info", sa.Text(), nullable=True),
        sa.Column("compatible_runtimes", sa.JSON(), nullable=False),
        sa.Column("compatible_architectures", sa.JSON(), nullable=False),
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("code_size", sa.BigInteger(), nullable=False),
        sa.Column("unzipped_size", sa.BigInteger(), nullable=False),
        sa.Column("created_date", sa.String(length=40), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("policy_revision", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("layer_name", "version"),
    )


def downgrade() -> None:
    op.drop_table("layer_versions")
    op.drop_table("layers")
