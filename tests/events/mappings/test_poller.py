"""The SQS poller (events/mappings/poller.py): partial batch responses with Lambda's rules, and scaling with
the backlog within MaximumConcurrency and reserved concurrency (fake queue and invoke)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nimbus.events.mappings.poller import SqsPoller, failed_items
from nimbus.events.mappings.service import Mapping
from nimbus.invoke.service import InvokeOutcome

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


class FakeQueue:
    """Always a full batch of 10 (an endless backlog); records what was deleted."""

    def __init__(self) -> None:
        self.n = 0
        self.deleted = 0

    async def receive(self, queue_arn: str, max_messages: int = 10, visibility_timeout: int | None = None,
                      wait_seconds: float = 0.0, attempt_id: str | None = None) -> list[Any]:
        await asyncio.sleep(0)
        out = []
        for _ in range(max_messages):
            self.n += 1
            out.append(Msg(str(self.n)))
        return out

    async def delete(self, queue_arn: str, receipt_handles: Any) -> list[str]:
        self.deleted += len(receipt_handles)
        return []


class Msg:
    def __init__(self, n: str) -> None:
        self.n = n

    def lambda_record(self, region: str) -> dict[str, Any]:
        return {"messageId": self.n, "receiptHandle": self.n, "body": "{}", "attributes": {}}


class FakeInvoke:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def __call__(self, function: str, qualifier: str | None, payload: bytes,
                       invocation_type: str = "RequestResponse") -> InvokeOutcome:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.02)
        self.running -= 1
        return InvokeOutcome("sync", "r", "$LATEST", b"")


def mapping(max_concurrency: int | None) -> Mapping:
    return Mapping(uuid="u" * 36, function_name="f", qualifier=None, queue_arn="arn:aws:sqs:us-east-1:0:q",
                   state="Enabled", batch_size=10, window=0, report_failures=False, max_concurrency=max_concurrency,
                   filters=())


async def run(poller: SqsPoller, seconds: float) -> None:
    poller.start()
    await asyncio.sleep(seconds)
    await poller.stop()


async def test_scales_up_with_a_backlog_within_maximum_concurrency() -> None:
    queue, invoke = FakeQueue(), FakeInvoke()
    poller = SqsPoller(mapping(None), queue, invoke, "us-east-1", lambda fn: None)
    await run(poller, 1.2)
    assert invoke.peak > 5  # started with 5, grew with the backlog
    assert queue.deleted > 0

    capped, invoke2 = FakeQueue(), FakeInvoke()
    await run(SqsPoller(mapping(2), capped, invoke2, "us-east-1", lambda fn: None), 0.6)
    assert invoke2.peak == 2  # MaximumConcurrency

    reserved, invoke3 = FakeQueue(), FakeInvoke()
    await run(SqsPoller(mapping(None), reserved, invoke3, "us-east-1", lambda fn: 3), 0.6)
    assert invoke3.peak == 3  # the function's reserved concurrency
