"""Partial batch responses (events/mappings/poller.py `failed_items`), with Lambda's rules."""

from __future__ import annotations

import pytest

from nimbus.events.mappings.poller import failed_items

IDS = ["a", "b", "c"]


@pytest.mark.parametrize(("payload", "expected"), [
    (b"", []),
    (b"null", []),
    (b'{"batchItemFailures": []}', []),
    (b'{"batchItemFailures": null}', []),
    (b'{"other": 1}', []),
    (b'"ok"', []),
    (b'{"batchItemFailures": [{"itemIdentifier": "b"}]}', ["b"]),
    (b'{"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "c"}]}', ["b", "c"]),
    (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', IDS),
    (b'{"batchItemFailures": [{"itemIdentifier": null}]}', IDS),
    (b'{"batchItemFailures": [{"id": "b"}]}', IDS),
    (b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}', IDS),
    (b'{"batchItemFailures": "b"}', IDS),
    (b"not json", IDS),
])
def test_failed_items(payload: bytes, expected: list[str]) -> None:
    assert failed_items(payload, IDS) == expected
