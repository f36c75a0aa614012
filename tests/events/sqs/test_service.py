"""The queue service in-process over a real SQLite database: visibility, long polls woken by sends, redrive,
FIFO groups and dedup, durability across a restart, the MD5 test vector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.events.sqs import MessageAttribute, QueueNotFound, QueueService, SqsError
from nimbus.events.sqs.digests import md5_of_attributes, md5_of_body
from nimbus.events.sqs.errors import InvalidParameterValue, MissingParameter, OverLimit, QueueNameExists


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Engine:
    engine = make_engine(settings.resolved_database_url())
    migrate(engine)
    return engine


@pytest.fixture
async def service(settings: Settings, engine: Engine) -> AsyncIterator[QueueService]:
    svc = QueueService(settings, engine)
    await svc.start()
    yield svc
    await svc.stop()


def test_md5_of_attributes_matches_the_aws_recorded_vector() -> None:
    attrs = {"Author": MessageAttribute("String", "John Grisham"), "Title": MessageAttribute("String", "The Whistler"),
             "WeeksOn": MessageAttribute("Number", "6")}
    assert md5_of_attributes(attrs) == "d25a6aea97eb8f585bfa92d314504a92"
    assert md5_of_attributes({}) is None
    assert md5_of_body("hello") == "5d41402abc4b2a76b9719d911017c592"


async def test_visibility_timeout_hides_then_returns_a_message(service: QueueService) -> None:
    q = await service.create_queue("q1")
    await service.send(q.arn, "hello")
    first = await service.receive(q.arn, 10, visibility_timeout=1)
    assert [m.body for m in first] == ["hello"]
    assert first[0].attributes["ApproximateReceiveCount"] == "1"
    assert await service.receive(q.arn, 10) == []
    again = await service.receive(q.arn, 10, wait_seconds=3)
    assert [m.body for m in again] == ["hello"]
    assert again[0].attributes["ApproximateReceiveCount"] == "2"
    assert again[0].attributes["ApproximateFirstReceiveTimestamp"] == first[0].attributes[
        "ApproximateFirstReceiveTimestamp"]
    assert await service.delete(q.arn, [first[0].receipt_handle]) == []  # a stale handle: success, message stays
    assert service.stats()[0].in_flight == 1
    assert await service.delete(q.arn, [again[0].receipt_handle]) == []
    assert service.stats()[0].in_flight == 0 and service.stats()[0].depth == 0


async def test_long_poll_is_woken_by_a_send(service: QueueService) -> None:
    q = await service.create_queue("q2")
    waiting = asyncio.create_task(service.receive(q.arn, 1, wait_seconds=20))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await service.send(q.arn, "wake")
    got = await asyncio.wait_for(waiting, 5)  # far below the 20 s wait
    assert [m.body for m in got] == ["wake"]


async def test_redrive_to_the_dead_letter_queue_after_max_receive_count(service: QueueService) -> None:
    dlq = await service.create_queue("dlq")
    src = await service.create_queue("src", {"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 2})})
    await service.send(src.arn, "poison")
    for _ in range(2):
        assert len(await service.receive(src.arn, 1, visibility_timeout=0)) == 1
    assert await service.receive(src.arn, 1) == []
    moved = await service.receive(dlq.arn, 1)
    assert [m.body for m in moved] == ["poison"]
    assert moved[0].attributes["DeadLetterQueueSourceArn"] == src.arn
    assert [s.name for s in (service.dead_letter_sources(dlq.arn))] == ["src"]


async def test_fifo_order_group_blocking_and_dedup(service: QueueService) -> None:
    q = await service.create_queue("f.fifo", {"FifoQueue": "true"})
    with pytest.raises(InvalidParameterValue):  # neither a dedup id nor content-based dedup
        await service.send(q.arn, "x", group_id="g")
    with pytest.raises(MissingParameter):
        await service.send(q.arn, "x", dedup_id="d")
    first = await service.send(q.arn, "a1", group_id="a", dedup_id="1")
    dup = await service.send(q.arn, "a1 again", group_id="a", dedup_id="1")
    assert dup.message_id == first.message_id and dup.sequence_number == first.sequence_number
    await service.send(q.arn, "a2", group_id="a", dedup_id="2")
    await service.send(q.arn, "b1", group_id="b", dedup_id="3")
    got = await service.receive(q.arn, 2)
    assert [m.body for m in got] == ["a1", "a2"]
    assert int(got[0].attributes["SequenceNumber"]) < int(got[1].attributes["SequenceNumber"])
    other = await service.receive(q.arn, 10)  # group a is in flight: only b
    assert [m.body for m in other] == ["b1"]
    assert await service.receive(q.arn, 10) == []
    await service.delete(q.arn, [m.receipt_handle for m in got])
    assert await service.receive(q.arn, 10) == []  # b still in flight


async def test_messages_survive_a_restart(settings: Settings, engine: Engine) -> None:
    svc = QueueService(settings, engine)
    await svc.start()
    q = await svc.create_queue("durable")
    attrs = {"n": MessageAttribute("Number", "7"), "b": MessageAttribute("Binary", binary_value=b"\x00\x01")}
    sent = await svc.send(q.arn, "kept", attrs)
    # no stop(): what was committed is all there is
    again = QueueService(settings, engine)
    await again.start()
    got = await again.receive(q.arn, 1)
    assert got[0].message_id == sent.message_id and got[0].body == "kept"
    assert got[0].md5_of_message_attributes == sent.md5_of_message_attributes
    assert got[0].message_attributes["b"].binary_value == b"\x00\x01"
    await again.stop()
    await svc.stop()


async def test_queue_errors(service: QueueService) -> None:
    await service.create_queue("same", {"VisibilityTimeout": "10"})
    assert (await service.create_queue("same", {"VisibilityTimeout": "10"})).name == "same"
    with pytest.raises(QueueNameExists):
        await service.create_queue("same", {"VisibilityTimeout": "11"})
    with pytest.raises(QueueNotFound):
        service.queue("missing")
    with pytest.raises(SqsError):
        await service.create_queue("bad name")
    q = service.queue("same")
    with pytest.raises(InvalidParameterValue):
        await service.send(q.arn, "x" * (1024 * 1024 + 1))
    with pytest.raises(InvalidParameterValue):
        await service.receive(q.arn, 11)


async def test_in_flight_cap_refuses_short_polls_until_messages_come_back(tmp_path: Path, engine: Engine) -> None:
    svc = QueueService(Settings(data_dir=tmp_path, sqs_max_in_flight=2), engine)
    await svc.start()
    try:
        q = await svc.create_queue("capped")
        for n in range(4):
            await svc.send(q.arn, f"m{n}")
        held = await svc.receive(q.arn, 1, visibility_timeout=600)
        assert len(await svc.receive(q.arn, 1, visibility_timeout=1)) == 1
        with pytest.raises(OverLimit):
            await svc.receive(q.arn, 1)
        assert await svc.receive(q.arn, 1, wait_seconds=0.2) == []  # a long poll is answered empty
        # the second message's visibility runs out: the cap is recounted and receives go on
        assert len(await svc.receive(q.arn, 1, wait_seconds=5)) == 1
        await svc.delete(q.arn, [held[0].receipt_handle])
        assert len(await svc.receive(q.arn, 1)) == 1
    finally:
        await svc.stop()


async def test_fifo_receive_retried_with_the_same_attempt_id_gets_the_same_messages(service: QueueService) -> None:
    q = await service.create_queue("attempts.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    for body in ("a", "b", "c"):
        await service.send(q.arn, body, group_id="g")
    first = await service.receive(q.arn, 2, attempt_id="try-1")
    again = await service.receive(q.arn, 2, attempt_id="try-1")  # e.g. the answer was lost on the network
    assert [(m.message_id, m.receipt_handle) for m in again] == [(m.message_id, m.receipt_handle) for m in first]
    assert await service.receive(q.arn, 2, attempt_id="try-2") == []  # the group is in flight


async def test_lambda_record_has_the_sqs_event_shape(service: QueueService) -> None:
    q = await service.create_queue("records")
    await service.send(q.arn, "plain")
    await service.send(q.arn, "with", {"Author": MessageAttribute("String", "John Grisham")})
    plain, with_attrs = sorted(await service.receive(q.arn, 10), key=lambda m: m.body != "plain")
    record = plain.lambda_record("us-east-1")
    assert set(record) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                           "md5OfMessageAttributes", "md5OfBody", "eventSource", "eventSourceARN", "awsRegion"}
    assert record["md5OfMessageAttributes"] is None and record["messageAttributes"] == {}
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == q.arn
    assert set(record["attributes"]) == {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                         "ApproximateFirstReceiveTimestamp"}
    other = with_attrs.lambda_record("us-east-1")
    assert other["messageAttributes"] == {"Author": {"stringValue": "John Grisham", "stringListValues": [],
                                                     "binaryListValues": [], "dataType": "String"}}
    assert other["md5OfMessageAttributes"] == with_attrs.md5_of_message_attributes
