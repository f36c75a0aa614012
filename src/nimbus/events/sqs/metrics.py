"""The queue service's Prometheus series, read at scrape time (observe/metrics `Source`): messages sent,
received and deleted per queue (counters), and each queue's depth, in-flight and delayed counts and the age
of its oldest message (gauges; CloudWatch's ApproximateNumberOfMessages* and ApproximateAgeOfOldestMessage)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from nimbus.events.sqs.service import QueueService
from nimbus.observe.metrics import Sample


def queue_samples(service: QueueService) -> Iterable[Sample]:
    stats = service.stats()
    now_ms = time.time() * 1000
    for name, doc, pick in (
        ("nimbus_sqs_messages_sent", "Messages accepted by SendMessage(Batch) and in-process sends.", "sent"),
        ("nimbus_sqs_messages_received", "Messages handed out by ReceiveMessage.", "received"),
        ("nimbus_sqs_messages_deleted", "Messages deleted by DeleteMessage(Batch).", "deleted"),
    ):
        yield Sample(name, doc, ("queue",), [((s.name,), float(getattr(s, pick))) for s in stats], kind="counter")
    yield Sample("nimbus_sqs_messages_visible", "Messages available for retrieval (ApproximateNumberOfMessages).",
                 ("queue",), [((s.name,), float(s.depth)) for s in stats])
    yield Sample("nimbus_sqs_messages_in_flight", "Messages received and not yet deleted or visible again.",
                 ("queue",), [((s.name,), float(s.in_flight)) for s in stats])
    yield Sample("nimbus_sqs_messages_delayed", "Messages not yet visible because of a delay.", ("queue",),
                 [((s.name,), float(s.delayed)) for s in stats])
    yield Sample("nimbus_sqs_oldest_message_age_seconds", "Age of the oldest message in the queue.", ("queue",),
                 [((s.name,), max(0.0, (now_ms - s.oldest_sent_ms) / 1000)) for s in stats
                  if s.oldest_sent_ms is not None])
