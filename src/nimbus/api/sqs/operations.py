"""The SQS operations over the queue service: parameters arrive in the JSON protocol's shape (whatever the
wire protocol was) and results leave in it. botocore validates only types and required members, so every
range, pattern and count is checked here, with SQS's own messages."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nimbus.events.sqs import QueueService
from nimbus.events.sqs.digests import md5_of_attributes
from nimbus.events.sqs.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidAction,
    InvalidBatchEntryId,
    InvalidParameterValue,
    MissingParameter,
    QueueNotFound,
    SqsError,
    TooManyEntriesInBatchRequest,
    UnsupportedOperation,
)
from nimbus.events.sqs.service import SYSTEM_ATTRIBUTE_NAMES, SendEntry
from nimbus.events.sqs.types import MessageAttribute, Queue, ReceivedMessage

_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
MAX_BATCH = 10


@dataclass(slots=True)
class Call:
    """One request: the parameters, where the client reached us (queue URLs use the request's own host),
    the queue the URL path named (query clients post to the queue URL), and who sent it."""

    params: dict[str, Any]
    base_url: str
    path_queue: tuple[str, str] | None  # (account, name) from the request path
    sender_id: str
    trace_header: str | None = None  # the request's X-Amzn-Trace-Id: SendMessage's AWSTraceHeader


Handler = Callable[[QueueService, Call], Awaitable[dict[str, Any]]]


def _url(call: Call, queue: Queue) -> str:
    return f"{call.base_url}{queue.url_path}"


def _str(call: Call, name: str, required: bool = False) -> str | None:
    value = call.params.get(name)
    if value is None or value == "":
        if required:
            raise MissingParameter(f"The request must contain the parameter {name}.")
        return None
    if not isinstance(value, str):
        raise InvalidParameterValue(f"Value {value} for parameter {name} is invalid. Reason: must be a string.")
    return value


def _int(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameterValue(f"Value {value} for parameter {name} is invalid. Reason: must be an integer.")
    return value


def _queue_arn(service: QueueService, call: Call) -> str:
    url = _str(call, "QueueUrl")
    if url is None:
        if call.path_queue is None:
            raise MissingParameter("The request must contain the parameter QueueUrl.")
        account, name = call.path_queue
    elif "/" not in url:  # SQS also takes the bare queue name where a URL is expected
        account, name = service.account, url
    else:
        parts = [p for p in urlsplit(url).path.split("/") if p]
        if len(parts) != 2:
            raise QueueNotFound()
        account, name = parts
    if account != service.account:
        raise QueueNotFound()
    return service.queue(name).arn


def _string_map(call: Call, name: str) -> dict[str, str]:
    value = call.params.get(name) or {}
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"Value for parameter {name} is invalid. Reason: must be a map.")
    return {str(k): str(v) for k, v in value.items()}


def _message_attributes(raw: Any, system: bool = False) -> dict[str, MessageAttribute]:
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameterValue("MessageAttributes must be a map.")
    out: dict[str, MessageAttribute] = {}
    kind = "system" if system else "user"
    for name, value in raw.items():
        if not isinstance(value, dict) or not value.get("DataType"):
            raise InvalidParameterValue(f"The message ({kind}) attribute '{name}' must contain a DataType.")
        binary = value.get("BinaryValue")
        try:
            decoded = None if binary in (None, "") else base64.b64decode(binary, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidParameterValue(f"The message ({kind}) attribute '{name}' has an invalid binary value.") \
                from None
        string = value.get("StringValue")
        out[str(name)] = MessageAttribute(str(value["DataType"]), None if string is None else str(string), decoded)
    return out


def _entries(call: Call, label: str) -> list[dict[str, Any]]:
    entries = call.params.get("Entries")
    if not entries:
        raise EmptyBatchRequest(f"There should be at least one {label} in the request.")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidParameterValue("Entries must be a list of structures.")
    if len(entries) > MAX_BATCH:
        raise TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}.")
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _BATCH_ID.match(entry_id):
            raise InvalidBatchEntryId("A batch entry id can only contain alphanumeric characters, hyphens and "
                                      "underscores. It can be at most 80 letters long.")
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def _failed(entry_id: str, exc: SqsError) -> dict[str, Any]:
    return {"Id": entry_id, "SenderFault": exc.sender, "Code": exc.code, "Message": exc.message}


def _send_entry(raw: dict[str, Any]) -> SendEntry:
    body = raw.get("MessageBody")
    return SendEntry(
        body="" if body is None else str(body),
        attributes=_message_attributes(raw.get("MessageAttributes")),
        system_attributes=_message_attributes(raw.get("MessageSystemAttributes"), system=True),
        delay_seconds=_int(raw, "DelaySeconds"),
        group_id=raw.get("MessageGroupId") or None,
        dedup_id=raw.get("MessageDeduplicationId") or None,
    )


def _sent_result(sent: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"MD5OfMessageBody": sent.md5_of_body}
    if sent.md5_of_message_attributes:
        out["MD5OfMessageAttributes"] = sent.md5_of_message_attributes
    if sent.md5_of_system_attributes:
        out["MD5OfMessageSystemAttributes"] = sent.md5_of_system_attributes
    out["MessageId"] = sent.message_id
    if sent.sequence_number:
        out["SequenceNumber"] = sent.sequence_number
    return out


# ------------------------------------------------------------------------------------------ queues


async def create_queue(service: QueueService, call: Call) -> dict[str, Any]:
    name = _str(call, "QueueName", required=True)
    assert name is not None
    tags = call.params.get("tags") or call.params.get("Tags") or {}
    queue = await service.create_queue(name, _string_map(call, "Attributes"), {str(k): str(v) for k, v in tags.items()})
    return {"QueueUrl": _url(call, queue)}


async def get_queue_url(service: QueueService, call: Call) -> dict[str, Any]:
    name = _str(call, "QueueName", required=True)
    assert name is not None
    owner = _str(call, "QueueOwnerAWSAccountId")
    if owner is not None and owner != service.account:
        raise QueueNotFound()
    return {"QueueUrl": _url(call, service.queue(name))}


def _page(call: Call, names: list[str]) -> tuple[list[str], str | None]:
    limit = _int(call.params, "MaxResults")
    if limit is not None and not 1 <= limit <= 1000:
        raise InvalidParameterValue(f"Value {limit} for parameter MaxResults is invalid. Reason: MaxResults must "
                                    "be an integer between 1 and 1000.")
    token = _str(call, "NextToken")
    if token is not None:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidParameterValue("Invalid NextToken value.") from None
        names = [n for n in names if n > after]
    if limit is None:
        return names[:1000], None
    page = names[:limit]
    more = len(names) > limit
    return page, base64.urlsafe_b64encode(page[-1].encode()).decode() if more else None


async def list_queues(service: QueueService, call: Call) -> dict[str, Any]:
    prefix = _str(call, "QueueNamePrefix") or ""
    queues = {q.name: q for q in service.list_queues(prefix)}
    names, token = _page(call, sorted(queues))
    out: dict[str, Any] = {}
    if names:
        out["QueueUrls"] = [_url(call, queues[n]) for n in names]
    if token:
        out["NextToken"] = token
    return out


async def list_dead_letter_source_queues(service: QueueService, call: Call) -> dict[str, Any]:
    queues = {q.name: q for q in service.dead_letter_sources(_queue_arn(service, call))}
    names, token = _page(call, sorted(queues))
    out: dict[str, Any] = {"queueUrls": [_url(call, queues[n]) for n in names]}
    if token:
        out["NextToken"] = token
    return out


async def delete_queue(service: QueueService, call: Call) -> dict[str, Any]:
    await service.delete_queue(_queue_arn(service, call))
    return {}


async def purge_queue(service: QueueService, call: Call) -> dict[str, Any]:
    await service.purge(_queue_arn(service, call))
    return {}


async def get_queue_attributes(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    names = call.params.get("AttributeNames") or []
    if not isinstance(names, list):
        raise InvalidParameterValue("AttributeNames must be a list.")
    attributes = service.get_attributes(arn, [str(n) for n in names])
    return {"Attributes": attributes} if attributes else {}


async def set_queue_attributes(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    await service.set_attributes(arn, _string_map(call, "Attributes"))
    return {}


async def tag_queue(service: QueueService, call: Call) -> dict[str, Any]:
    await service.tag_queue(_queue_arn(service, call), _string_map(call, "Tags"))
    return {}


async def untag_queue(service: QueueService, call: Call) -> dict[str, Any]:
    keys = call.params.get("TagKeys") or []
    await service.untag_queue(_queue_arn(service, call), [str(k) for k in keys])
    return {}


async def list_queue_tags(service: QueueService, call: Call) -> dict[str, Any]:
    tags = service.tags(_queue_arn(service, call))
    return {"Tags": tags} if tags else {}


# ---------------------------------------------------------------------------------------- messages


async def send_message(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    if call.params.get("MessageBody") in (None, ""):
        raise MissingParameter("The request must contain the parameter MessageBody.")
    entry = _send_entry(call.params)
    if call.trace_header and "AWSTraceHeader" not in entry.system_attributes:
        entry.system_attributes["AWSTraceHeader"] = MessageAttribute("String", call.trace_header)
    result = (await service.send_batch(arn, [entry], sender_id=call.sender_id))[0]
    if isinstance(result, SqsError):
        raise result
    return _sent_result(result)


async def send_message_batch(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    raw_entries = _entries(call, "SendMessageBatchRequestEntry")
    total = 0
    for raw in raw_entries:
        total += len(str(raw.get("MessageBody") or "").encode("utf-8"))
        for name, value in (raw.get("MessageAttributes") or {}).items():
            if isinstance(value, dict):
                total += len(str(name).encode()) + len(str(value.get("DataType", "")).encode())
                total += len(str(value.get("StringValue") or "").encode())
                total += len(base64.b64decode(value["BinaryValue"])) if value.get("BinaryValue") else 0
    if total > service.max_message_bytes:
        raise BatchRequestTooLong(f"Batch requests cannot be longer than {service.max_message_bytes} bytes. You "
                                  f"have sent {total} bytes.")
    queue = service.get_queue_by_arn(arn)
    if queue is not None and queue.fifo:  # on a FIFO queue these fail the whole request, as on AWS
        for raw in raw_entries:
            if not raw.get("MessageGroupId"):
                raise MissingParameter("The request must contain the parameter MessageGroupId.")
            if not raw.get("MessageDeduplicationId") and queue.attributes.get("ContentBasedDeduplication") != "true":
                raise InvalidParameterValue("The queue should either have ContentBasedDeduplication enabled or "
                                            "MessageDeduplicationId provided explicitly")
    entries: list[SendEntry | SqsError] = []
    for raw in raw_entries:
        try:
            if raw.get("MessageBody") in (None, ""):
                raise MissingParameter("The request must contain the parameter MessageBody.")
            entries.append(_send_entry(raw))
        except SqsError as exc:
            entries.append(exc)
    valid = [e for e in entries if isinstance(e, SendEntry)]
    results = iter(await service.send_batch(arn, valid, sender_id=call.sender_id))
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for raw, entry in zip(raw_entries, entries, strict=True):
        outcome = entry if isinstance(entry, SqsError) else next(results)
        if isinstance(outcome, SqsError):
            failed.append(_failed(raw["Id"], outcome))
        else:
            successful.append({"Id": raw["Id"], **_sent_result(outcome)})
    return {"Successful": successful, "Failed": failed}


def _wanted(names: list[str], available: list[str]) -> list[str]:
    if "All" in names or ".*" in names or "*" in names:
        return available
    out = []
    for name in available:
        for pattern in names:
            # `Hel.*` selects every name starting with `Hel` (Hello and Help.Me alike, as recorded on AWS)
            if pattern == name or (pattern.endswith(".*") and name.startswith(pattern[:-2])):
                out.append(name)
                break
    return out


def _message(msg: ReceivedMessage, system_names: list[str], attribute_names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"MessageId": msg.message_id, "ReceiptHandle": msg.receipt_handle,
                           "MD5OfBody": msg.md5_of_body, "Body": msg.body}
    if system_names:
        chosen = msg.attributes if "All" in system_names else {
            k: v for k, v in msg.attributes.items() if k in system_names}
        if chosen:
            out["Attributes"] = chosen
    picked = {n: msg.message_attributes[n] for n in _wanted(attribute_names, list(msg.message_attributes))}
    if picked:
        # The digest of the attributes returned: what the Java, .NET and PHP SDKs recompute and compare.
        out["MD5OfMessageAttributes"] = md5_of_attributes(picked)
        out["MessageAttributes"] = {n: a.to_json() for n, a in picked.items()}
    return out


async def receive_message(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    queue = service.get_queue_by_arn(arn)
    assert queue is not None
    limit = _int(call.params, "MaxNumberOfMessages")
    visibility = _int(call.params, "VisibilityTimeout")
    wait = _int(call.params, "WaitTimeSeconds")
    if wait is None:
        wait = int(queue.attributes.get("ReceiveMessageWaitTimeSeconds", "0"))
    elif not 0 <= wait <= 20:
        raise InvalidParameterValue(f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 "
                                    "and <= 20, if provided.")
    system_names = [str(n) for n in (call.params.get("MessageSystemAttributeNames") or [])]
    system_names += [str(n) for n in (call.params.get("AttributeNames") or [])]
    for name in system_names:
        if name != "All" and name not in SYSTEM_ATTRIBUTE_NAMES:
            raise InvalidParameterValue(f"Value {name} for parameter AttributeNames is invalid. Reason: Unknown "
                                        "Attribute.")
    attribute_names = [str(n) for n in (call.params.get("MessageAttributeNames") or [])]
    messages = await service.receive(arn, 1 if limit is None else limit, visibility, float(wait),
                                     _str(call, "ReceiveRequestAttemptId"))
    if not messages:
        return {}  # AWS answers `{}`: no Messages key at all
    return {"Messages": [_message(m, system_names, attribute_names) for m in messages]}


async def delete_message(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    handle = _str(call, "ReceiptHandle", required=True)
    assert handle is not None
    error = (await service.delete_many(arn, [handle]))[0]
    if error is not None:
        raise error
    return {}


async def delete_message_batch(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    entries = _entries(call, "DeleteMessageBatchRequestEntry")
    handles = [str(e.get("ReceiptHandle") or "") for e in entries]
    errors = await service.delete_many(arn, handles)
    return {
        "Successful": [{"Id": e["Id"]} for e, err in zip(entries, errors, strict=True) if err is None],
        "Failed": [_failed(e["Id"], err) for e, err in zip(entries, errors, strict=True) if err is not None],
    }


async def change_message_visibility(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    handle = _str(call, "ReceiptHandle", required=True)
    timeout = _int(call.params, "VisibilityTimeout")
    if timeout is None:
        raise MissingParameter("The request must contain the parameter VisibilityTimeout.")
    assert handle is not None
    await service.change_visibility(arn, handle, timeout)
    return {}


async def change_message_visibility_batch(service: QueueService, call: Call) -> dict[str, Any]:
    arn = _queue_arn(service, call)
    entries = _entries(call, "ChangeMessageVisibilityBatchRequestEntry")
    pairs = []
    for e in entries:
        timeout = e.get("VisibilityTimeout")
        pairs.append((str(e.get("ReceiptHandle") or ""), timeout if isinstance(timeout, int) else -1))
    errors = await service.change_visibility_many(arn, pairs)
    return {
        "Successful": [{"Id": e["Id"]} for e, err in zip(entries, errors, strict=True) if err is None],
        "Failed": [_failed(e["Id"], err) for e, err in zip(entries, errors, strict=True) if err is not None],
    }


OPERATIONS: dict[str, Handler] = {
    "CreateQueue": create_queue,
    "GetQueueUrl": get_queue_url,
    "ListQueues": list_queues,
    "ListDeadLetterSourceQueues": list_dead_letter_source_queues,
    "DeleteQueue": delete_queue,
    "PurgeQueue": purge_queue,
    "GetQueueAttributes": get_queue_attributes,
    "SetQueueAttributes": set_queue_attributes,
    "TagQueue": tag_queue,
    "UntagQueue": untag_queue,
    "ListQueueTags": list_queue_tags,
    "SendMessage": send_message,
    "SendMessageBatch": send_message_batch,
    "ReceiveMessage": receive_message,
    "DeleteMessage": delete_message,
    "DeleteMessageBatch": delete_message_batch,
    "ChangeMessageVisibility": change_message_visibility,
    "ChangeMessageVisibilityBatch": change_message_visibility_batch,
}
UNSUPPORTED = frozenset({"AddPermission", "RemovePermission", "StartMessageMoveTask", "CancelMessageMoveTask",
                         "ListMessageMoveTasks"})


async def dispatch(service: QueueService, action: str, call: Call) -> dict[str, Any]:
    handler = OPERATIONS.get(action)
    if handler is None:
        if action in UNSUPPORTED:
            raise UnsupportedOperation(f"{action} is not supported by nimbus (see docs/compatibility.md).")
        raise InvalidAction(f"The action {action or '(none)'} is not valid for this endpoint.")
    return await handler(service, call)
