"""The MD5 digests SQS returns and the SDKs check: of the body, and of message (or system) attributes in
SQS's binary encoding (name, full DataType, transport byte, value; each length-prefixed, sorted by name)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from nimbus.events.sqs.types import MessageAttribute


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: Mapping[str, MessageAttribute]) -> str | None:
    """None when there are no attributes: SQS then omits the digest (an MD5 of "" breaks Java/PHP SDKs)."""
    if not attributes:
        return None
    buf = bytearray()

    def chunk(data: bytes) -> None:
        buf.extend(struct.pack(">I", len(data)))
        buf.extend(data)

    for name in sorted(attributes):
        attr = attributes[name]
        chunk(name.encode("utf-8"))
        chunk(attr.data_type.encode("utf-8"))
        if attr.is_binary:
            buf.append(2)
            chunk(attr.binary_value or b"")
        else:
            buf.append(1)
            chunk((attr.string_value or "").encode("utf-8"))
    return hashlib.md5(bytes(buf), usedforsecurity=False).hexdigest()
