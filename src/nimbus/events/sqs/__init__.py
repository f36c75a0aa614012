"""The SQS-compatible queue service: queues and their messages in the platform's database, with SQS's
semantics (visibility timeout, long polling, delay, retention, redrive to a dead-letter queue, FIFO groups
and deduplication). `api/sqs/` serves it over both SQS wire protocols; pollers and destinations of other
components use this typed in-process interface (all coroutines run on the server's event loop):

    from nimbus.events.sqs import QueueService, MessageAttribute, QueueNotFound

    service: QueueService = platform.sqs

    service.get_queue_by_arn(queue_arn: str) -> Queue | None          # Queue: arn, name, url_path, fifo,
                                                                       #   visibility_timeout, attributes
    await service.send(queue_arn: str, body: str,
                       attributes: Mapping[str, MessageAttribute] | None = None, *,
                       delay_seconds: int | None = None, group_id: str | None = None,
                       dedup_id: str | None = None) -> SentMessage      # message_id, md5_of_body, sequence_number
        # durable when it returns; raises SqsError subclasses (QueueNotFound, InvalidParameterValue, ...)
    await service.receive(queue_arn: str, max_messages: int = 10, visibility_timeout: int | None = None,
                          wait_seconds: float = 0.0,
                          attempt_id: str | None = None) -> list[ReceivedMessage]
        # long polls up to wait_seconds (woken by sends, no polling); FIFO: at most one in-flight batch per
        # group, in order. Redrives to the DLQ when ApproximateReceiveCount would exceed maxReceiveCount.
    await service.delete(queue_arn: str, receipt_handles: Sequence[str]) -> list[str]
        # deletes; returns the handles that were invalid (others, stale ones included, succeed as on AWS)
    await service.change_visibility(queue_arn: str, receipt_handle: str, visibility_timeout: int) -> None
    await service.wait_available(queue_arn: str, timeout: float) -> bool
        # True as soon as the queue has a visible message (or has one now), False after `timeout` seconds
    service.stats() -> list[QueueStats]                                # depth, in flight, delayed, oldest age

`ReceivedMessage` has message_id, receipt_handle, body, md5_of_body, attributes (every system attribute:
SentTimestamp, ApproximateReceiveCount, ApproximateFirstReceiveTimestamp, SenderId, and for FIFO
MessageGroupId/MessageDeduplicationId/SequenceNumber, all strings), message_attributes
(dict[str, MessageAttribute]), md5_of_message_attributes, and `lambda_record(region)` which builds one
`Records[]` entry of Lambda's SQS event (eventSource "aws:sqs", eventSourceARN, camelCase attribute values).
`MessageAttribute(data_type, string_value=None, binary_value=None)`.
"""

from nimbus.events.sqs.errors import (
    InvalidParameterValue,
    QueueNotFound,
    ReceiptHandleIsInvalid,
    SqsError,
)
from nimbus.events.sqs.service import QueueService, QueueStats
from nimbus.events.sqs.types import MessageAttribute, Queue, ReceivedMessage, SentMessage

__all__ = [
    "InvalidParameterValue",
    "MessageAttribute",
    "Queue",
    "QueueNotFound",
    "QueueService",
    "QueueStats",
    "ReceiptHandleIsInvalid",
    "ReceivedMessage",
    "SentMessage",
    "SqsError",
]
