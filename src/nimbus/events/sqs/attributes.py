"""Queue attributes: names, defaults and the ranges SQS accepts (all values are strings on the wire), and the
validation of message attributes and bodies against SQS's documented limits."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from nimbus.events.sqs.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidMessageContents,
    InvalidParameterValue,
)
from nimbus.events.sqs.types import MessageAttribute

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
FIFO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")
# Characters SQS accepts in a body or string attribute (the XML 1.0 character set).
_INVALID_CHARS = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_NAME = re.compile(r"^[\w.-]{1,256}$")  # letters and digits of any script (AWS-recorded), _ - .
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

# name -> (low, high) for the integer attributes
RANGES: dict[str, tuple[int, int]] = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1048576),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43200),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}
STANDARD_DEFAULTS = {
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": "30",
    "SqsManagedSseEnabled": "true",
}
FIFO_DEFAULTS = {
    **STANDARD_DEFAULTS,
    "FifoQueue": "true",
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}
FIFO_ONLY = frozenset({"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"})
SETTABLE = frozenset({*RANGES, "Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId",
                      "SqsManagedSseEnabled", *FIFO_ONLY})
READ_ONLY = frozenset({"QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                       "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp"})
ALL_NAMES = SETTABLE | READ_ONLY
MAX_RECEIVE_COUNT = (1, 1000)


def invalid_value(name: str, reason: str | None = None) -> InvalidAttributeValue:
    text = f"Invalid value for the parameter {name}."
    return InvalidAttributeValue(text + (f" Reason: {reason}" if reason else ""))


def check_queue_attributes(attributes: Mapping[str, str], fifo: bool, creating: bool,
                           max_message_size: int) -> dict[str, str]:
    """The attributes normalized (canonical booleans and integers) or the error SQS answers."""
    out: dict[str, str] = {}
    for name, raw in attributes.items():
        value = str(raw)
        if name not in SETTABLE:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        if name in FIFO_ONLY and not fifo:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        if name in RANGES:
            low, high = RANGES[name]
            if name == "MaximumMessageSize":
                high = min(high, max_message_size)
            try:
                number = int(value)
            except ValueError:
                raise invalid_value(name) from None
            if not low <= number <= high:
                raise invalid_value(name)
            value = str(number)
        elif name in ("FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled"):
            if value.lower() not in ("true", "false"):
                raise invalid_value(name)
            value = value.lower()
            if name == "FifoQueue" and value != "true":  # only FIFO queues get here; "true" is their type
                raise invalid_value(name, "Modifying queue type is not supported.")
        elif name == "DeduplicationScope":
            if value not in ("messageGroup", "queue"):
                raise invalid_value(name)
        elif name == "FifoThroughputLimit":
            if value not in ("perQueue", "perMessageGroupId"):
                raise invalid_value(name)
        elif name == "Policy" and value:
            try:
                json.loads(value)
            except ValueError:
                raise invalid_value(name) from None
        elif name == "RedriveAllowPolicy" and value:
            parse_redrive_allow_policy(value)
        elif name == "RedrivePolicy" and value:
            parse_redrive_policy(value)
        out[name] = value
    return out


def parse_redrive_policy(value: str) -> tuple[str, int]:
    """(deadLetterTargetArn, maxReceiveCount) of a RedrivePolicy JSON string."""
    try:
        policy = json.loads(value)
        target = policy["deadLetterTargetArn"]
        count = int(policy["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        raise InvalidParameterValue(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a valid JSON "
            "map with deadLetterTargetArn and maxReceiveCount.") from None
    if not isinstance(target, str) or not target.startswith("arn:aws:sqs:"):
        raise InvalidParameterValue(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value for deadLetterTargetArn.")
    low, high = MAX_RECEIVE_COUNT
    if not low <= count <= high:
        raise InvalidParameterValue(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: "
            f"{count}, valid values are from {low} to {high} both inclusive.")
    return target, count


def parse_redrive_allow_policy(value: str) -> tuple[str, list[str]]:
    """(redrivePermission, sourceQueueArns) of a RedriveAllowPolicy JSON string."""
    try:
        policy = json.loads(value)
        permission = policy["redrivePermission"]
        sources = list(policy.get("sourceQueueArns", []))
    except (ValueError, KeyError, TypeError):
        raise InvalidParameterValue(
            f"Value {value} for parameter RedriveAllowPolicy is invalid. Reason: Amazon SQS can't parse the "
            "redrive allow policy.") from None
    if permission not in ("allowAll", "denyAll", "byQueue"):
        raise InvalidParameterValue(
            f"Value {value} for parameter RedriveAllowPolicy is invalid. Reason: Invalid value for "
            "redrivePermission.")
    if permission == "byQueue" and not 1 <= len(sources) <= 10:
        raise InvalidParameterValue(
            f"Value {value} for parameter RedriveAllowPolicy is invalid. Reason: sourceQueueArns must list 1 to "
            "10 queues when redrivePermission is byQueue.")
    return permission, [str(s) for s in sources]


def check_body(body: str) -> None:
    bad = _INVALID_CHARS.search(body)
    if bad is not None:
        raise InvalidMessageContents(
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
            "#xE000 to #xFFFD | #x10000 to #x10FFFF")


def check_message_attributes(attributes: Mapping[str, MessageAttribute], system: bool = False) -> int:
    """Validate message attributes; returns the bytes they count toward the message size."""
    if len(attributes) > 10:
        raise InvalidParameterValue(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [10].")
    size = 0
    kind = "system" if system else "user"
    for name, attr in attributes.items():
        if system:
            if name != "AWSTraceHeader":
                raise InvalidParameterValue(f"Message system attribute name '{name}' is invalid.")
            if attr.data_type != "String":
                raise InvalidParameterValue(
                    "Message system attribute 'AWSTraceHeader' must have data type 'String'.")
        else:
            lowered = name.lower()
            if (not _ATTRIBUTE_NAME.match(name) or lowered.startswith(("aws.", "amazon."))
                    or name.startswith(".") or name.endswith(".") or ".." in name):
                raise InvalidParameterValue(
                    f"Message ({kind}) attribute name '{name}' is invalid. Reason: an attribute name can contain "
                    "A-Z, a-z, 0-9, underscore (_), hyphen (-), and period (.); it must not start or end with a "
                    "period, have successive periods, or start with AWS. or Amazon.")
        base, _, suffix = attr.data_type.partition(".")
        if base not in ("String", "Number", "Binary") or len(attr.data_type) > 256:
            raise InvalidParameterValue(
                f"The type of message ({kind}) attribute '{name}' is invalid. You must use only the following "
                "supported type prefixes: Binary, Number, String.")
        if base == "Binary":
            if not attr.binary_value:
                raise InvalidParameterValue(
                    f"Message ({kind}) attribute '{name}' must contain a non-empty value of type 'Binary'.")
            size += len(attr.binary_value)
        else:
            if not attr.string_value:
                raise InvalidParameterValue(
                    f"Message ({kind}) attribute '{name}' must contain a non-empty value of type '{base}'.")
            if base == "Number":
                digits = sum(ch.isdigit() for ch in attr.string_value)
                if not _NUMBER.match(attr.string_value.strip()) or digits > 38:
                    raise InvalidParameterValue(
                        f"Can't cast the value of message ({kind}) attribute '{name}' to a number.")
            if _INVALID_CHARS.search(attr.string_value):
                raise InvalidParameterValue(
                    f"Message ({kind}) attribute '{name}' must contain a valid string value: characters outside "
                    "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF are not allowed.")
            size += len(attr.string_value.encode("utf-8"))
        size += len(name.encode("utf-8")) + len(attr.data_type.encode("utf-8"))
    return size
