"""The values the queue service hands across its interface: queues, message attributes, sent and received
messages (plain dataclasses; the wire shapes are `api/sqs`'s business)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class MessageAttribute:
    """One message attribute: `data_type` is String, Number or Binary, maybe with a custom suffix
    (`Number.int`); Binary values carry `binary_value`, the others `string_value`."""

    data_type: str
    string_value: str | None = None
    binary_value: bytes | None = None

    @property
    def is_binary(self) -> bool:
        return self.data_type.split(".", 1)[0] == "Binary"

    def to_json(self) -> dict[str, Any]:
        """The stored (and JSON-protocol) form."""
        out: dict[str, Any] = {"DataType": self.data_type}
        if self.binary_value is not None:
            out["BinaryValue"] = base64.b64encode(self.binary_value).decode()
        else:
            out["StringValue"] = self.string_value
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> MessageAttribute:
        binary = value.get("BinaryValue")
        return cls(str(value["DataType"]), value.get("StringValue"),
                   None if binary is None else base64.b64decode(binary))


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue as other components see it."""

    arn: str
    name: str
    account: str
    fifo: bool
    visibility_timeout: int
    attributes: dict[str, str]  # the settable attributes, as SQS spells them (strings)

    @property
    def url_path(self) -> str:
        """`/<account>/<name>`: the queue URL without the endpoint (which is the request's own host)."""
        return f"/{self.account}/{self.name}"


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str
    md5_of_body: str
    md5_of_message_attributes: str | None = None
    md5_of_system_attributes: str | None = None
    sequence_number: str | None = None


@dataclass(slots=True)
class ReceivedMessage:
    """A message as one receive handed it out."""

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    queue_arn: str
    attributes: dict[str, str] = field(default_factory=dict)  # every system attribute, values as strings
    message_attributes: dict[str, MessageAttribute] = field(default_factory=dict)
    md5_of_message_attributes: str | None = None

    def lambda_record(self, region: str) -> dict[str, Any]:
        """One `Records[]` entry of the event Lambda's SQS poller delivers."""
        keep = ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
                "SequenceNumber", "MessageGroupId", "MessageDeduplicationId", "AWSTraceHeader",
                "DeadLetterQueueSourceArn")
        attributes = {k: self.attributes[k] for k in keep if k in self.attributes}
        message_attributes: dict[str, Any] = {}
        for name, attr in self.message_attributes.items():
            entry: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": attr.data_type}
            if attr.binary_value is not None:
                entry["binaryValue"] = base64.b64encode(attr.binary_value).decode()
            else:
                entry["stringValue"] = attr.string_value
            message_attributes[name] = entry
        return {
            "messageId": self.message_id,
            "receiptHandle": self.receipt_handle,
            "body": self.body,
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfMessageAttributes": self.md5_of_message_attributes,  # null when there are none
            "md5OfBody": self.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": region,
        }
