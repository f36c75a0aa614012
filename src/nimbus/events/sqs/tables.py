"""The queue service's tables (created by migration `0015_sqs`): queues, their messages, and FIFO
deduplication ids still inside their 5-minute window."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

QUEUES = Table(
    "sqs_queues",
    metadata,
    Column("arn", String(256), primary_key=True),
    Column("name", String(80), nullable=False),
    Column("account", String(12), nullable=False),
    Column("fifo", Boolean, nullable=False),
    Column("attributes", Text, nullable=False),  # JSON object of the settable attributes (strings)
    Column("tags", Text, nullable=False),  # JSON object
    Column("created_s", BigInteger, nullable=False),
    Column("modified_s", BigInteger, nullable=False),
)

MESSAGES = Table(
    "sqs_messages",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # send order (FIFO sequence number)
    Column("queue_arn", String(256), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("body", LargeBinary, nullable=False),  # UTF-8
    Column("attributes", Text, nullable=True),  # JSON: message attributes
    Column("system_attributes", Text, nullable=True),  # JSON: AWSTraceHeader
    Column("group_id", String(128), nullable=True),
    Column("dedup_id", String(128), nullable=True),
    Column("sender_id", String(128), nullable=False),
    Column("sent_ms", BigInteger, nullable=False),
    Column("visible_ms", BigInteger, nullable=False),
    Column("receive_count", Integer, nullable=False),
    Column("first_receive_ms", BigInteger, nullable=True),
    Column("dlq_source_arn", String(256), nullable=True),
)

DEDUP = Table(
    "sqs_dedup",
    metadata,
    Column("queue_arn", String(256), primary_key=True),
    Column("dedup_key", String(300), primary_key=True),  # "<group>\x1f<id>" (messageGroup scope) or "\x1f<id>"
    Column("message_id", String(36), nullable=False),
    Column("sequence_number", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)
