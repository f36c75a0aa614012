"""HTTP APIs (API Gateway v2): one row per API, its routes, integrations and stages in a JSON document
(issue 17)

Revision ID: 0017_http_apis
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_http_apis"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "http_apis",
        sa.Column("api_id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("api_id"),
    )


def downgrade() -> None:
    op.drop_table("http_apis")
