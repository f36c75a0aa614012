"""Destinations of asynchronous invocations: AWS's invocation record (`version` 1.0, `requestContext`,
`requestPayload`, `responseContext`, `responsePayload`) and the event that carries it to an OnSuccess or
OnFailure function, itself an asynchronous invocation put on the queue, or to a queue or an event bus (issue 15)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nimbus.invoke.queue import LeasedEvent, NewEvent

log = logging.getLogger("nimbus.invoke.destinations")

SUCCESS = "Success"
RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
ZERO_RESERVED_CONCURRENCY = "ZeroReservedConcurrency"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One run of the function for an event: the version that ran and what it answered."""

    version: str
    function_arn: str  # qualified with the version that ran
    payload: bytes
    function_error: str | None  # None on success, else e.g. "Unhandled"


def _json_or_text(data: bytes | None) -> Any:
    if data is None:
        return None
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data.decode(errors="replace")


def timestamp(epoch: float | None = None) -> str:
    """`2019-11-14T18:16:05.568Z`: UTC with milliseconds, as in AWS's records."""
    now = time.time() if epoch is None else epoch
    ms = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{ms:03d}Z"


def invocation_record(
    event: LeasedEvent,
    condition: str,
    function_arn: str,
    last: AttemptResult | None,
) -> dict[str, Any]:
    """The record AWS sends to a destination. `function_arn` is qualified with the version that ran (or
    would have run); `last` is the latest attempt, None when the function never ran (then the record has
    no response fields, as for ZeroReservedConcurrency on AWS)."""
    payload = event.payload
    request: Any = json.loads(payload) if payload.strip() else {}
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": timestamp(),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": request,
    }
    if last is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": last.version}
        if condition != SUCCESS and last.function_error:
            context["functionError"] = last.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(last.payload)
    return record


def record_event(
    destination: str,
    record: dict[str, Any],
    new_request_id: str,
    max_bytes: int,
    split_destination: Any,
) -> NewEvent | None:
    """The async invocation delivering `record` to the destination function, or None when it cannot (the
    record is over the async payload limit: AWS drops it too, counting a DestinationDeliveryFailure)."""
    body = json.dumps(record, separators=(",", ":")).encode()
    if len(body) > max_bytes:
        log.warning(
            "invocation record not sent to %s: %d bytes is over the %d-byte async payload limit",
            destination, len(body), max_bytes,
            extra={"request_id": record["requestContext"]["requestId"]},
        )
        return None
    name, qualifier = split_destination(destination)
    return NewEvent(request_id=new_request_id, function_name=name, qualifier=qualifier, payload=body)


# Destinations other than functions (issue 15): a nimbus SQS queue gets the record's JSON as its message body;
# an EventBridge bus gets a PutEvents entry with the record as `detail`, source "lambda", and AWS's
# detail-type. The dispatcher hands them to a `RecordSink` before it acks the event (at least once).
RecordSink = Callable[[str, dict[str, Any]], Awaitable[None]]


def is_function(destination: str) -> bool:
    """Whether a destination ARN names a Lambda function (else a queue or a bus, sent through a RecordSink)."""
    return destination.split(":")[2:3] == ["lambda"]


def bus_entry(record: dict[str, Any], bus_arn: str) -> dict[str, Any]:
    """The PutEvents entry carrying an invocation record to an event bus (AWS's async destination event)."""
    ok = record["requestContext"]["condition"] == SUCCESS
    function_arn = str(record["requestContext"]["functionArn"])
    return {
        "Source": "lambda",
        "DetailType": f"Lambda Function Invocation Result - {'Success' if ok else 'Failure'}",
        "Detail": json.dumps(record, separators=(",", ":")),
        "Resources": [bus_arn, function_arn],
        "EventBusName": bus_arn,
    }


# The function's dead-letter queue (DeadLetterConfig.TargetArn, issue 15) gets the original event unchanged,
# with the attributes AWS adds: RequestID, ErrorCode and ErrorMessage (its first kilobyte).
DeadLetterSink = Callable[[str, bytes, dict[str, tuple[str, str]]], Awaitable[None]]


def dead_letter_attributes(event: LeasedEvent, last: AttemptResult | None) -> dict[str, tuple[str, str]]:
    """name -> (DataType, value) of the message attributes of a dead-lettered event."""
    message = "Event age exceeded" if last is None else ""
    if last is not None:
        doc = _json_or_text(last.payload)
        message = str(doc.get("errorMessage", "")) if isinstance(doc, dict) else str(doc or "")
    return {"RequestID": ("String", event.request_id), "ErrorCode": ("Number", "200"),
            "ErrorMessage": ("String", message.encode()[:1024].decode(errors="ignore") or "Unhandled")}
