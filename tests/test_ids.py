"""Hot-path ids (nimbus/ids.py): request ids are version 4 UUIDs in canonical form, all different; trace ids
have X-Ray's layout."""

from __future__ import annotations

import re
import uuid

from nimbus.ids import RandomHex, new_request_id, new_trace_id


def test_request_ids_are_distinct_uuid4s() -> None:
    ids = [new_request_id() for _ in range(5000)]  # crosses several 2 KiB refills
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_trace_ids_and_hex() -> None:
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", new_trace_id())
    source = RandomHex()
    taken = [source.take(24) for _ in range(400)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", t) for t in taken) and len(set(taken)) == len(taken)
