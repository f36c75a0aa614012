"""SQS's errors as types. Each knows the three names a client may see: the JSON protocol's `__type`
(`error_type`, what botocore turns into an exception class), the legacy query-protocol code (`code`, sent
in the `x-amzn-query-error` header and the XML `<Code>`, what botocore reports as `Error.Code`) and the HTTP
status. `api/sqs` renders them in the wire shape of the request's protocol."""

from __future__ import annotations

from typing import ClassVar


class SqsError(Exception):
    """An error answered to an SQS client."""

    status: ClassVar[int] = 400
    error_type: ClassVar[str] = "InvalidParameterValueException"
    code: ClassVar[str] = "InvalidParameterValue"
    sender: ClassVar[bool] = True  # "Sender" (client fault) or "Receiver"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameterValue(SqsError):
    pass


class MissingParameter(SqsError):
    error_type = "MissingRequiredParameterException"
    code = "MissingParameter"


class InvalidAction(SqsError):
    error_type = "InvalidAction"
    code = "InvalidAction"


class QueueNotFound(SqsError):
    error_type = "QueueDoesNotExist"
    code = "AWS.SimpleQueueService.NonExistentQueue"

    def __init__(self, message: str = "The specified queue does not exist.") -> None:
        super().__init__(message)


class QueueNameExists(SqsError):
    error_type = "QueueNameExists"
    code = "QueueAlreadyExists"


class QueueDeletedRecently(SqsError):
    error_type = "QueueDeletedRecently"
    code = "AWS.SimpleQueueService.QueueDeletedRecently"


class InvalidAttributeName(SqsError):
    error_type = "InvalidAttributeName"
    code = "InvalidAttributeName"


class InvalidAttributeValue(SqsError):
    error_type = "InvalidAttributeValue"
    code = "InvalidAttributeValue"


class InvalidMessageContents(SqsError):
    error_type = "InvalidMessageContents"
    code = "InvalidMessageContents"


class ReceiptHandleIsInvalid(SqsError):
    error_type = "ReceiptHandleIsInvalid"
    code = "ReceiptHandleIsInvalid"


class MessageNotInflight(SqsError):
    error_type = "MessageNotInflight"
    code = "AWS.SimpleQueueService.MessageNotInflight"


class PurgeQueueInProgress(SqsError):
    status = 403
    error_type = "PurgeQueueInProgress"
    code = "AWS.SimpleQueueService.PurgeQueueInProgress"


class OverLimit(SqsError):
    status = 403
    error_type = "OverLimit"
    code = "OverLimit"


class EmptyBatchRequest(SqsError):
    error_type = "EmptyBatchRequest"
    code = "AWS.SimpleQueueService.EmptyBatchRequest"


class TooManyEntriesInBatchRequest(SqsError):
    error_type = "TooManyEntriesInBatchRequest"
    code = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


class BatchEntryIdsNotDistinct(SqsError):
    error_type = "BatchEntryIdsNotDistinct"
    code = "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"


class InvalidBatchEntryId(SqsError):
    error_type = "InvalidBatchEntryId"
    code = "AWS.SimpleQueueService.InvalidBatchEntryId"


class BatchRequestTooLong(SqsError):
    error_type = "BatchRequestTooLong"
    code = "AWS.SimpleQueueService.BatchRequestTooLong"


class UnsupportedOperation(SqsError):
    error_type = "UnsupportedOperation"
    code = "AWS.SimpleQueueService.UnsupportedOperation"


class InternalError(SqsError):
    status = 500
    error_type = "InternalError"
    code = "InternalError"
    sender = False
