"""SQS-compatible queues, their messages and FIFO deduplication ids (issue 15)

Revision ID: 0015_sqs
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0015_sqs"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sqs_queues",
        sa.Column("arn", sa.String(length=256), primary_key=True),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("account", sa.String(length=12), nullable=False),
        sa.Column("fifo", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("modified_s", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sqs_messages",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("queue_arn", sa.String(length=256), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=True),
        sa.Column("system_attributes", sa.Text(), nullable=True),
        sa.Column("group_id", sa.String(length=128), nullable=True),
        sa.Column("dedup_id", sa.String(length=128), nullable=True),
        sa.Column("sender_id", sa.String(length=128), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=False),
        sa.Column("visible_ms", sa.BigInteger(), nullable=False),
        sa.Column("receive_count", sa.Integer(), nullable=False),
        sa.Column("first_receive_ms", sa.BigInteger(), nullable=True),
        sa.Column("dlq_source_arn", sa.String(length=256), nullable=True),
    )
    op.create_index("ix_sqs_messages_queue", "sqs_messages", ["queue_arn", "id"])
    op.create_table(
        "sqs_dedup",
        sa.Column("queue_arn", sa.String(length=256), primary_key=True),
        sa.Column("dedup_key", sa.String(length=300), primary_key=True),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sqs_dedup")
    op.drop_index("ix_sqs_messages_queue", table_name="sqs_messages")
    op.drop_table("sqs_messages")
    op.drop_table("sqs_queues")
