"""snapstart and provisioned concurrency: provisioned concurrency configs (issue 5)

Revision ID: 0005
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provisioned_concurrency",
        sa.Column("function_name", sa.String(length=64), nullable=False),
        sa.Column("qualifier", sa.String(length=128), nullable=False),
        sa.Column("requested", sa.Integer(), nullable=False),
        sa.Column("last_modified", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("function_name", "qualifier"),
    )


def downgrade() -> None:
    op.drop_table("provisioned_concurrency")
