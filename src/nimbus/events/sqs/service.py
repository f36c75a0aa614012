"""The queue service: every queue's messages are indexed in memory for receives (a heap of visibility times
for standard queues, ordered groups for FIFO queues) and written through to the database by `QueueStore`
before any call that changed them returns. The database is the record; memory is rebuilt from it at start-up.

One server process owns the queues of a data dir: with a shared PostgreSQL several nodes would each index
their own view, so the queue service runs on one node (see docs/compatibility.md).

Long polls wait on futures that sends, visibility changes and deletes resolve, with a timeout no later than
the next message's visibility time: nothing polls.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import heapq
import json
import logging
import time
import uuid
from bisect import insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, update

import nimbus.events.sqs.attributes as qattrs
from nimbus.config import Settings
from nimbus.events.sqs.digests import md5_of_attributes, md5_of_body
from nimbus.events.sqs.errors import (
    InvalidAttributeName,
    InvalidParameterValue,
    MessageNotInflight,
    MissingParameter,
    OverLimit,
    PurgeQueueInProgress,
    QueueDeletedRecently,
    QueueNameExists,
    QueueNotFound,
    ReceiptHandleIsInvalid,
    SqsError,
)
from nimbus.events.sqs.store import Changes, QueueStore
from nimbus.events.sqs.tables import DEDUP, MESSAGES, QUEUES
from nimbus.events.sqs.types import MessageAttribute, Queue, ReceivedMessage, SentMessage

log = logging.getLogger("nimbus.events.sqs")

DEDUP_WINDOW_MS = 5 * 60 * 1000
PURGE_COOLDOWN_S = 60.0
DELETED_RECENTLY_S = 60.0
SWEEP_INTERVAL_S = 30.0
SYSTEM_ATTRIBUTE_NAMES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
                          "SequenceNumber", "MessageDeduplicationId", "MessageGroupId", "AWSTraceHeader",
                          "DeadLetterQueueSourceArn")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class SendEntry:
    """One message to send (SendMessage, or one entry of SendMessageBatch)."""

    body: str
    attributes: dict[str, MessageAttribute] = field(default_factory=dict)
    system_attributes: dict[str, MessageAttribute] = field(default_factory=dict)
    delay_seconds: int | None = None
    group_id: str | None = None
    dedup_id: str | None = None


@dataclass(slots=True)
class QueueStats:
    """One queue's figures: visible messages, in flight, delayed, and the oldest message's send time."""

    name: str
    arn: str
    fifo: bool
    depth: int
    in_flight: int
    delayed: int
    oldest_sent_ms: int | None
    sent: int
    received: int
    deleted: int


@dataclass(slots=True, eq=False)
class _Message:
    id: int
    message_id: str
    body: str
    md5_body: str
    attributes: dict[str, MessageAttribute]
    md5_attributes: str | None
    system_attributes: dict[str, MessageAttribute]
    group_id: str | None
    dedup_id: str | None
    sender_id: str
    sent_ms: int
    visible_ms: int
    receive_count: int = 0
    first_receive_ms: int | None = None
    dlq_source_arn: str | None = None
    nonce: str | None = None  # of the newest receipt handle

    def row(self, queue_arn: str) -> dict[str, Any]:
        return {
            "id": self.id, "queue_arn": queue_arn, "message_id": self.message_id,
            "body": self.body.encode("utf-8"),
            "attributes": json.dumps({k: v.to_json() for k, v in self.attributes.items()}) if self.attributes else None,
            "system_attributes": (json.dumps({k: v.to_json() for k, v in self.system_attributes.items()})
                                  if self.system_attributes else None),
            "group_id": self.group_id, "dedup_id": self.dedup_id, "sender_id": self.sender_id,
            "sent_ms": self.sent_ms, "visible_ms": self.visible_ms, "receive_count": self.receive_count,
            "first_receive_ms": self.first_receive_ms, "dlq_source_arn": self.dlq_source_arn,
        }

    def state_row(self) -> dict[str, Any]:
        return {"_id": self.id, "visible_ms": self.visible_ms, "receive_count": self.receive_count,
                "first_receive_ms": self.first_receive_ms}


class _QueueState:
    """One queue: its settings and its messages' index."""

    def __init__(self, queue: Queue, tags: dict[str, str], created_s: int, modified_s: int) -> None:
        self.queue = queue
        self.tags = tags
        self.created_s = created_s
        self.modified_s = modified_s
        self.messages: dict[int, _Message] = {}
        self.heap: list[tuple[int, int]] = []  # standard: (visible_ms, id), stale entries skipped
        self.groups: dict[str, list[_Message]] = {}  # FIFO: group -> messages in send order
        self.dedup: dict[str, tuple[int, str, int]] = {}  # FIFO: key -> (expires_ms, message_id, id)
        self.attempts: dict[str, tuple[int, list[tuple[_Message, str | None]]]] = {}  # FIFO receive attempts
        self.waiters: set[asyncio.Future[None]] = set()
        # Messages handed out and not yet deleted or visible again: a cheap running estimate, recounted exactly
        # (counts()) by the sweep and before a receive is refused for reaching the in-flight cap.
        self.in_flight = 0
        self.last_purge = 0.0
        self.sent = self.received = self.deleted = 0
        self.redrive: tuple[str, int] | None = None
        self.refresh()

    def refresh(self) -> None:
        policy = self.queue.attributes.get("RedrivePolicy")
        self.redrive = qattrs.parse_redrive_policy(policy) if policy else None

    def attr_int(self, name: str) -> int:
        return int(self.queue.attributes[name])

    def add(self, msg: _Message) -> None:
        self.messages[msg.id] = msg
        if self.queue.fifo:
            assert msg.group_id is not None
            insort(self.groups.setdefault(msg.group_id, []), msg, key=lambda m: m.id)
        else:
            heapq.heappush(self.heap, (msg.visible_ms, msg.id))

    def remove(self, msg: _Message) -> None:
        if self.messages.pop(msg.id, None) is None:
            return
        if self.queue.fifo:
            assert msg.group_id is not None
            group = self.groups.get(msg.group_id)
            if group is not None:
                with contextlib.suppress(ValueError):
                    group.remove(msg)
                if not group:
                    del self.groups[msg.group_id]
        if msg.receive_count and msg.visible_ms > now_ms():
            self.in_flight = max(0, self.in_flight - 1)

    def reschedule(self, msg: _Message) -> None:
        """`msg.visible_ms` changed: index it again (standard queues)."""
        if not self.queue.fifo:
            heapq.heappush(self.heap, (msg.visible_ms, msg.id))

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    def next_visible_ms(self) -> int | None:
        """When a message may next become receivable (None: no message at all)."""
        if self.queue.fifo:
            heads = [g[0].visible_ms for g in self.groups.values() if g]
            return min(heads) if heads else None
        while self.heap:
            vis, mid = self.heap[0]
            msg = self.messages.get(mid)
            if msg is None or msg.visible_ms != vis:
                heapq.heappop(self.heap)
                continue
            return vis
        return None

    def counts(self, now: int) -> tuple[int, int, int, int | None]:
        visible = in_flight = delayed = 0
        oldest: int | None = None
        for msg in self.messages.values():
            if msg.visible_ms <= now:
                visible += 1
            elif msg.receive_count:
                in_flight += 1
            else:
                delayed += 1
            if oldest is None or msg.sent_ms < oldest:
                oldest = msg.sent_ms
        return visible, in_flight, delayed, oldest


def _receipt(queue: Queue, msg: _Message) -> str:
    raw = f"{msg.id}:{msg.nonce}:{msg.message_id}:{queue.arn}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _parse_receipt(handle: str) -> tuple[int, str, str, str]:
    try:
        text = base64.urlsafe_b64decode(handle.encode("ascii")).decode()
        row, nonce, message_id, arn = text.split(":", 3)
        return int(row), nonce, message_id, arn
    except (ValueError, UnicodeError, binascii.Error):
        raise ReceiptHandleIsInvalid(f'The input receipt handle "{handle}" is not a valid receipt handle.') from None


class QueueService:
    """SQS queues of one nimbus server (see the package docstring for the interface)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.region = settings.region
        self.account = settings.account_id
        self.max_message_bytes = settings.sqs_max_message_bytes
        self.max_in_flight = settings.sqs_max_in_flight
        self.store = QueueStore(engine)
        self._queues: dict[str, _QueueState] = {}  # arn -> state
        self._deleted: dict[str, float] = {}  # arn -> monotonic time of deletion
        self._next_id = 1
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.store.start()
        queues, messages, dedup = await asyncio.to_thread(self.store.load)
        for q in queues:
            attributes = json.loads(q.attributes)
            queue = Queue(q.arn, q.name, q.account, bool(q.fifo), int(attributes.get("VisibilityTimeout", 30)),
                          attributes)
            self._queues[q.arn] = _QueueState(queue, json.loads(q.tags), int(q.created_s), int(q.modified_s))
        orphans = 0
        for m in messages:
            self._next_id = max(self._next_id, int(m.id) + 1)
            state = self._queues.get(m.queue_arn)
            if state is None:
                orphans += 1
                continue
            attrs = {k: MessageAttribute.from_json(v) for k, v in json.loads(m.attributes or "{}").items()}
            system = {k: MessageAttribute.from_json(v) for k, v in json.loads(m.system_attributes or "{}").items()}
            body = bytes(m.body).decode("utf-8")
            msg = _Message(int(m.id), m.message_id, body, md5_of_body(body), attrs, md5_of_attributes(attrs), system,
                           m.group_id, m.dedup_id, m.sender_id, int(m.sent_ms), int(m.visible_ms),
                           int(m.receive_count), None if m.first_receive_ms is None else int(m.first_receive_ms),
                           m.dlq_source_arn)
            # A message in flight when the server stopped stays invisible until its timeout, as on SQS.
            state.add(msg)
        now = now_ms()
        for state in self._queues.values():
            state.in_flight = state.counts(now)[1]
        for d in dedup:
            state = self._queues.get(d.queue_arn)
            if state is not None and d.expires_ms > now:
                state.dedup[d.dedup_key] = (int(d.expires_ms), d.message_id, int(d.sequence_number))
        if orphans:
            log.warning("sqs: %d stored messages belong to no queue; ignored", orphans)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="sqs-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for state in self._queues.values():
            state.wake()
        await self.store.stop()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self.sweep()
            except Exception:
                log.exception("sqs: retention sweep failed")

    async def sweep(self) -> None:
        """Drop messages older than their queue's retention period and dedup ids past their window."""
        now = now_ms()
        changes = Changes()
        for state in self._queues.values():
            limit = now - state.attr_int("MessageRetentionPeriod") * 1000
            for msg in [m for m in state.messages.values() if m.sent_ms <= limit]:
                state.remove(msg)
                changes.deletes.append(msg.id)
            state.in_flight = state.counts(now)[1]
            expired = [k for k, (exp, _, _) in state.dedup.items() if exp <= now]
            for key in expired:
                del state.dedup[key]
        changes.other.append(lambda conn: _delete_expired_dedup(conn, now))
        await self.store.write(changes)

    # ------------------------------------------------------------------------------- queues

    def arn_for(self, name: str, account: str | None = None) -> str:
        return f"arn:aws:sqs:{self.region}:{account or self.account}:{name}"

    def get_queue_by_arn(self, queue_arn: str) -> Queue | None:
        state = self._queues.get(queue_arn)
        return None if state is None else state.queue

    def queue(self, name: str, account: str | None = None) -> Queue:
        """The queue called `name` (GetQueueUrl), or QueueNotFound."""
        state = self._queues.get(self.arn_for(name, account))
        if state is None:
            raise QueueNotFound()
        return state.queue

    def _state(self, queue_arn: str) -> _QueueState:
        state = self._queues.get(queue_arn)
        if state is None:
            raise QueueNotFound()
        return state

    def list_queues(self, prefix: str = "") -> list[Queue]:
        return sorted((s.queue for s in self._queues.values() if s.queue.name.startswith(prefix)),
                      key=lambda q: q.name)

    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None,
                           tags: Mapping[str, str] | None = None) -> Queue:
        """Create a queue, or return the existing one when every given attribute matches (SQS's idempotence)."""
        attributes = dict(attributes or {})
        fifo_flag = str(attributes.get("FifoQueue", "false")).lower() == "true"
        fifo = name.endswith(".fifo")
        if not (qattrs.FIFO_NAME if fifo_flag else qattrs.QUEUE_NAME).match(name) or (fifo and not fifo_flag):
            if fifo_flag:
                raise InvalidParameterValue(
                    "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, "
                    "must end with .fifo suffix and be 1 to 80 in length.")
            raise InvalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
        given = qattrs.check_queue_attributes(attributes, fifo, True, self.max_message_bytes)
        if not fifo:
            given.pop("FifoQueue", None)
        arn = self.arn_for(name)
        existing = self._queues.get(arn)
        if existing is not None:
            for key, value in given.items():
                if existing.queue.attributes.get(key, "") != value:
                    raise QueueNameExists(
                        f"A queue already exists with the same name and a different value for attribute {key}")
            return existing.queue
        deleted = self._deleted.get(arn)
        if deleted is not None and time.monotonic() - deleted < DELETED_RECENTLY_S:
            raise QueueDeletedRecently(
                "You must wait 60 seconds after deleting a queue before you can create another with the same "
                "name.")
        merged = {**(qattrs.FIFO_DEFAULTS if fifo else qattrs.STANDARD_DEFAULTS), **given}
        if merged.get("RedrivePolicy"):
            self._check_redrive(arn, fifo, merged["RedrivePolicy"])
        tag_map = self._check_tags(dict(tags or {}))
        now_s = int(time.time())
        queue = Queue(arn, name, self.account, fifo, int(merged["VisibilityTimeout"]), merged)
        state = _QueueState(queue, tag_map, now_s, now_s)
        self._queues[arn] = state
        row = {"arn": arn, "name": name, "account": self.account, "fifo": fifo, "attributes": json.dumps(merged),
               "tags": json.dumps(tag_map), "created_s": now_s, "modified_s": now_s}
        try:
            await self.store.write(Changes(other=[lambda conn: conn.execute(insert(QUEUES), [row])]))
        except Exception:
            self._queues.pop(arn, None)
            raise
        log.info("sqs: queue %s created", arn)
        return queue

    def _check_redrive(self, source_arn: str, fifo: bool, policy: str) -> None:
        target, _ = qattrs.parse_redrive_policy(policy)
        dlq = self._queues.get(target)
        if dlq is None:
            raise InvalidParameterValue(
                f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter target does not exist.")
        if dlq.queue.fifo != fifo:
            kind = "FIFO" if fifo else "standard"
            raise InvalidParameterValue(
                f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue of a {kind} "
                f"queue must be a {kind} queue.")
        allow = dlq.queue.attributes.get("RedriveAllowPolicy")
        if allow:
            permission, sources = qattrs.parse_redrive_allow_policy(allow)
            if permission == "denyAll" or (permission == "byQueue" and source_arn not in sources):
                raise InvalidParameterValue(
                    f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Queue {source_arn} is not "
                    "allowed to use the dead-letter queue by its RedriveAllowPolicy.")

    @staticmethod
    def _check_tags(tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or len(str(value)) > 256 or key.lower().startswith("aws:"):
                raise InvalidParameterValue(f"Tag {key} is invalid: keys are 1 to 128 characters without the "
                                            "aws: prefix, values up to 256.")
        return {k: str(v) for k, v in tags.items()}

    async def delete_queue(self, queue_arn: str) -> None:
        state = self._state(queue_arn)
        del self._queues[queue_arn]
        self._deleted[queue_arn] = time.monotonic()
        state.wake()

        def drop(conn: Connection) -> None:
            conn.execute(delete(QUEUES).where(QUEUES.c.arn == queue_arn))
            conn.execute(delete(MESSAGES).where(MESSAGES.c.queue_arn == queue_arn))
            conn.execute(delete(DEDUP).where(DEDUP.c.queue_arn == queue_arn))

        await self.store.write(Changes(other=[drop]))
        log.info("sqs: queue %s deleted", queue_arn)

    def get_attributes(self, queue_arn: str, names: Sequence[str]) -> dict[str, str]:
        state = self._state(queue_arn)
        for name in names:
            if name != "All" and name not in qattrs.ALL_NAMES:
                raise InvalidAttributeName(f"Unknown Attribute {name}.")
            if name in qattrs.FIFO_ONLY and not state.queue.fifo:
                raise InvalidAttributeName(f"Unknown Attribute {name}.")
        visible, in_flight, delayed, _ = state.counts(now_ms())
        everything = {
            **state.queue.attributes,
            "QueueArn": state.queue.arn,
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "CreatedTimestamp": str(state.created_s),
            "LastModifiedTimestamp": str(state.modified_s),
        }
        everything = {k: v for k, v in everything.items() if v != ""}
        if "All" in names:
            return everything
        return {n: everything[n] for n in names if n in everything}

    async def set_attributes(self, queue_arn: str, attributes: Mapping[str, str]) -> None:
        state = self._state(queue_arn)
        given = qattrs.check_queue_attributes(attributes, state.queue.fifo, False, self.max_message_bytes)
        if given.get("RedrivePolicy"):
            self._check_redrive(queue_arn, state.queue.fifo, given["RedrivePolicy"])
        merged = {**state.queue.attributes, **given}
        merged = {k: v for k, v in merged.items() if v != "" or k not in ("RedrivePolicy", "RedriveAllowPolicy",
                                                                           "Policy")}
        await self._save_queue(state, merged, state.tags)

    async def _save_queue(self, state: _QueueState, attributes: dict[str, str], tags: dict[str, str]) -> None:
        q = state.queue
        state.queue = Queue(q.arn, q.name, q.account, q.fifo, int(attributes["VisibilityTimeout"]), attributes)
        state.tags = tags
        state.modified_s = int(time.time())
        state.refresh()
        values = {"attributes": json.dumps(attributes), "tags": json.dumps(tags), "modified_s": state.modified_s}
        await self.store.write(Changes(other=[
            lambda conn: conn.execute(update(QUEUES).where(QUEUES.c.arn == q.arn).values(**values))]))

    def tags(self, queue_arn: str) -> dict[str, str]:
        return dict(self._state(queue_arn).tags)

    async def tag_queue(self, queue_arn: str, tags: Mapping[str, str]) -> None:
        state = self._state(queue_arn)
        merged = {**state.tags, **self._check_tags(dict(tags))}
        if len(merged) > 50:
            raise InvalidParameterValue("Too many tags added for queue. Maximum 50 tags are allowed.")
        await self._save_queue(state, state.queue.attributes, merged)

    async def untag_queue(self, queue_arn: str, keys: Sequence[str]) -> None:
        state = self._state(queue_arn)
        await self._save_queue(state, state.queue.attributes, {k: v for k, v in state.tags.items() if k not in keys})

    def dead_letter_sources(self, queue_arn: str) -> list[Queue]:
        self._state(queue_arn)
        return [s.queue for s in self._queues.values() if s.redrive is not None and s.redrive[0] == queue_arn]

    async def purge(self, queue_arn: str) -> None:
        """Delete every message (PurgeQueue): once per 60 seconds per queue."""
        state = self._state(queue_arn)
        now = time.monotonic()
        if state.last_purge and now - state.last_purge < PURGE_COOLDOWN_S:
            raise PurgeQueueInProgress(f"Only one PurgeQueue operation on {state.queue.name} is allowed every "
                                       "60 seconds.")
        state.last_purge = now
        ids = list(state.messages)
        state.dedup.clear()  # AWS-recorded: a purge also forgets the FIFO deduplication ids
        state.messages.clear()
        state.heap.clear()
        state.groups.clear()
        state.in_flight = 0
        await self.store.write(Changes(deletes=ids, other=[
            lambda conn: conn.execute(delete(DEDUP).where(DEDUP.c.queue_arn == queue_arn))]))

    # ------------------------------------------------------------------------------ messages

    async def send(self, queue_arn: str, body: str, attributes: Mapping[str, MessageAttribute] | None = None, *,
                   delay_seconds: int | None = None, group_id: str | None = None, dedup_id: str | None = None,
                   system_attributes: Mapping[str, MessageAttribute] | None = None,
                   sender_id: str | None = None) -> SentMessage:
        """Send one message; durable when it returns."""
        entry = SendEntry(body, dict(attributes or {}), dict(system_attributes or {}), delay_seconds, group_id,
                          dedup_id)
        result = (await self.send_batch(queue_arn, [entry], sender_id=sender_id))[0]
        if isinstance(result, SqsError):
            raise result
        return result

    async def send_batch(self, queue_arn: str, entries: Sequence[SendEntry],
                         sender_id: str | None = None) -> list[SentMessage | SqsError]:
        """Send several messages in one transaction; each entry's result or error, in order."""
        state = self._state(queue_arn)
        now = now_ms()
        results: list[SentMessage | SqsError] = []
        fresh: list[_Message] = []
        new_dedup: list[tuple[str, tuple[int, str, int]]] = []
        for entry in entries:
            try:
                msg, dedup_key = self._prepare(state, entry, now, sender_id or self.account)
            except SqsError as exc:
                results.append(exc)
                continue
            if dedup_key is not None:
                seen = state.dedup.get(dedup_key)
                if seen is not None and seen[0] > now:
                    results.append(self._sent(msg, seen[1], seen[2]))
                    continue
                record = (now + DEDUP_WINDOW_MS, msg.message_id, msg.id)
                state.dedup[dedup_key] = record
                new_dedup.append((dedup_key, record))
            fresh.append(msg)
            results.append(self._sent(msg, msg.message_id, msg.id))
        if fresh:
            changes = Changes(inserts=[m.row(queue_arn) for m in fresh])
            if new_dedup:
                rows = [{"queue_arn": queue_arn, "dedup_key": k, "message_id": r[1], "sequence_number": r[2],
                         "expires_ms": r[0]} for k, r in new_dedup]

                def put_dedup(conn: Connection) -> None:
                    keys = [r["dedup_key"] for r in rows]
                    conn.execute(delete(DEDUP).where(DEDUP.c.queue_arn == queue_arn, DEDUP.c.dedup_key.in_(keys)))
                    conn.execute(insert(DEDUP), rows)

                changes.other.append(put_dedup)
            try:
                await self.store.write(changes)
            except Exception:
                for key, _ in new_dedup:
                    state.dedup.pop(key, None)
                raise
            if self._queues.get(queue_arn) is state:
                for msg in fresh:
                    state.add(msg)
                state.sent += len(fresh)
                state.wake()
        return results

    @staticmethod
    def _sent(msg: _Message, message_id: str, row_id: int) -> SentMessage:
        md5_system = md5_of_attributes(msg.system_attributes)
        return SentMessage(message_id, msg.md5_body, msg.md5_attributes, md5_system,
                           f"{row_id:020d}" if msg.group_id is not None and msg.dedup_id is not None else None)

    def _prepare(self, state: _QueueState, entry: SendEntry, now: int, sender_id: str) -> tuple[_Message, str | None]:
        queue = state.queue
        body = entry.body
        if body is None or body == "":
            raise MissingParameter("The request must contain the parameter MessageBody.")
        qattrs.check_body(body)
        size = len(body.encode("utf-8")) + qattrs.check_message_attributes(entry.attributes)
        qattrs.check_message_attributes(entry.system_attributes, system=True)
        limit = min(state.attr_int("MaximumMessageSize"), self.max_message_bytes)
        if size > limit:
            raise InvalidParameterValue(
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.")
        delay = entry.delay_seconds
        if delay == 0 and queue.fifo:
            delay = None  # 0 is accepted on a FIFO queue and means the queue's delay (AWS-recorded)
        if delay is not None:
            if queue.fifo:
                raise InvalidParameterValue(
                    f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request include parameter "
                    "that is not valid for this queue type.")
            if not 0 <= delay <= 900:
                raise InvalidParameterValue(
                    f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and "
                    "<= 900.")
        else:
            delay = state.attr_int("DelaySeconds")
        dedup_key: str | None = None
        dedup_id = entry.dedup_id
        if queue.fifo:
            if not entry.group_id:
                raise MissingParameter("The request must contain the parameter MessageGroupId.")
            if dedup_id is None:
                if queue.attributes.get("ContentBasedDeduplication") != "true":
                    raise InvalidParameterValue(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId "
                        "provided explicitly")
                dedup_id = hashlib.sha256(body.encode("utf-8")).hexdigest()
            scope = entry.group_id if queue.attributes.get("DeduplicationScope") == "messageGroup" else ""
            dedup_key = f"{scope}\x1f{dedup_id}"
        elif dedup_id is not None:
            raise InvalidParameterValue(
                f"Value {dedup_id} for parameter MessageDeduplicationId is invalid. Reason: The request includes a "
                "parameter that is not valid for this queue type.")
        for name, value in (("MessageGroupId", entry.group_id), ("MessageDeduplicationId", dedup_id)):
            if value is not None and (not 1 <= len(value) <= 128 or not all(33 <= ord(c) <= 126 for c in value)):
                raise InvalidParameterValue(
                    f"Value {value} for parameter {name} is invalid. Reason: {name} can only include alphanumeric "
                    "and punctuation characters. 1 to 128 in length.")
        row_id = self._next_id
        self._next_id += 1
        msg = _Message(row_id, str(uuid.uuid4()), body, md5_of_body(body), dict(entry.attributes),
                       md5_of_attributes(entry.attributes), dict(entry.system_attributes), entry.group_id,
                       dedup_id if queue.fifo else None, sender_id, now, now + delay * 1000)
        return msg, dedup_key

    async def receive(self, queue_arn: str, max_messages: int = 10, visibility_timeout: int | None = None,
                      wait_seconds: float = 0.0, attempt_id: str | None = None) -> list[ReceivedMessage]:
        """Receive up to `max_messages`, waiting up to `wait_seconds` for the first one."""
        if not 1 <= max_messages <= 10:
            raise InvalidParameterValue(
                f"Value {max_messages} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and "
                "10, if provided.")
        if visibility_timeout is not None and not 0 <= visibility_timeout <= 43200:
            raise InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and "
                "<= 43200, if provided.")
        state = self._state(queue_arn)
        if attempt_id is not None and state.queue.fifo:
            repeated = self._repeat_attempt(state, attempt_id)
            if repeated is not None:
                return repeated
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_seconds)
        while True:
            if state.in_flight >= self.max_in_flight:
                state.in_flight = state.counts(now_ms())[1]  # the estimate drifts: decide on the exact figure
            capped = state.in_flight >= self.max_in_flight
            if capped:
                if wait_seconds <= 0 and not state.queue.fifo:  # FIFO queues answer empty, never OverLimit
                    raise OverLimit(f"Too many messages in flight on queue {state.queue.name}.")
                taken: list[_Message] = []
                changes = Changes()
            else:
                taken, changes = self._take(state, max_messages, visibility_timeout)
            if taken or changes:
                await self.store.write(changes)
            if taken:
                state.received += len(taken)
                if attempt_id is not None and state.queue.fifo:
                    state.attempts[attempt_id] = (now_ms() + DEDUP_WINDOW_MS, [(m, m.nonce) for m in taken])
                return [self._received(state, m) for m in taken]
            remaining = deadline - loop.time()
            if remaining <= 0 or self._queues.get(queue_arn) is not state:
                return []
            # At the cap, visible messages do not help: wait for a delete or a visibility change, and look
            # again once a second for in-flight messages whose visibility ran out (that wakes nobody).
            await self._wait(state, min(remaining, 1.0) if capped else remaining, use_due=not capped)

    def _repeat_attempt(self, state: _QueueState, attempt_id: str) -> list[ReceivedMessage] | None:
        """A FIFO receive retried with the same ReceiveRequestAttemptId within 5 minutes gets the same messages
        and receipt handles again, while they are all still in flight from that receive."""
        found = state.attempts.get(attempt_id)
        now = now_ms()
        for key in [k for k, (exp, _) in state.attempts.items() if exp <= now]:
            del state.attempts[key]
        if found is None or found[0] <= now:
            return None
        held = found[1]
        if all(msg.nonce == nonce and msg.visible_ms > now and msg.id in state.messages for msg, nonce in held):
            return [self._received(state, msg) for msg, _ in held]
        return None

    async def wait_available(self, queue_arn: str, timeout: float) -> bool:
        """True once the queue has a receivable message; False after `timeout` seconds without one."""
        state = self._state(queue_arn)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            if self._has_visible(state, now_ms()):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0 or self._queues.get(queue_arn) is not state:
                return False
            await self._wait(state, remaining)

    async def _wait(self, state: _QueueState, remaining: float, use_due: bool = True) -> None:
        due = state.next_visible_ms() if use_due else None
        if due is not None:
            remaining = min(remaining, max(0.001, (due - now_ms()) / 1000))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.add(waiter)
        try:
            await asyncio.wait({waiter}, timeout=remaining)
        finally:
            state.waiters.discard(waiter)
            if not waiter.done():
                waiter.cancel()

    def _has_visible(self, state: _QueueState, now: int) -> bool:
        due = state.next_visible_ms()
        return due is not None and due <= now

    def _take(self, state: _QueueState, limit: int, visibility: int | None) -> tuple[list[_Message], Changes]:
        """Pick and lease receivable messages, redriving those past maxReceiveCount (in memory; the returned
        changes make it durable)."""
        now = now_ms()
        vt = state.queue.visibility_timeout if visibility is None else visibility
        retention_limit = now - state.attr_int("MessageRetentionPeriod") * 1000
        changes = Changes()
        taken: list[_Message] = []

        def usable(msg: _Message) -> bool:
            if msg.sent_ms <= retention_limit:
                state.remove(msg)
                changes.deletes.append(msg.id)
                return False
            redrive = state.redrive is not None and msg.receive_count >= state.redrive[1]
            return not (redrive and self._redrive(state, msg, changes, now))

        if state.queue.fifo:
            # Groups in the order they became receivable (as recorded on AWS: a group never received comes
            # before one whose messages came back from a visibility timeout), then by send order.
            for group_id in sorted(state.groups, key=lambda g: (state.groups[g][0].visible_ms, state.groups[g][0].id)):
                for msg in list(state.groups.get(group_id, ())):
                    if msg.visible_ms > now:
                        break  # in flight (or delayed): the rest of the group waits, in order
                    if not usable(msg):
                        continue
                    taken.append(msg)
                    if len(taken) >= limit:
                        break
                if len(taken) >= limit:
                    break  # groups are filled one after the other: a group's messages stay together
        else:
            while state.heap and len(taken) < limit:
                vis, mid = state.heap[0]
                if vis > now:
                    break
                heapq.heappop(state.heap)
                candidate = state.messages.get(mid)
                if candidate is None or candidate.visible_ms != vis:
                    continue
                if usable(candidate):
                    taken.append(candidate)
        for msg in taken:
            if not msg.receive_count:
                state.in_flight += 1  # a message received again was counted already (estimate)
            msg.receive_count += 1
            if msg.first_receive_ms is None:
                msg.first_receive_ms = now
            msg.nonce = uuid.uuid4().hex[:16]
            msg.visible_ms = now + vt * 1000
            changes.updates.append(msg.state_row())
            state.reschedule(msg)
        return taken, changes

    def _redrive(self, source: _QueueState, msg: _Message, changes: Changes, now: int) -> bool:
        assert source.redrive is not None
        dlq = self._queues.get(source.redrive[0])
        if dlq is None or dlq is source:
            return False
        source.remove(msg)
        msg.visible_ms = now
        msg.nonce = None
        msg.dlq_source_arn = source.queue.arn
        dlq.add(msg)
        changes.moves.append({"_id": msg.id, "queue_arn": dlq.queue.arn, "visible_ms": msg.visible_ms,
                              "receive_count": msg.receive_count, "first_receive_ms": msg.first_receive_ms,
                              "dlq_source_arn": msg.dlq_source_arn})
        dlq.wake()
        return True

    def _received(self, state: _QueueState, msg: _Message) -> ReceivedMessage:
        attributes = {
            "SenderId": msg.sender_id,
            "SentTimestamp": str(msg.sent_ms),
            "ApproximateReceiveCount": str(msg.receive_count),
            "ApproximateFirstReceiveTimestamp": str(msg.first_receive_ms),
        }
        if state.queue.fifo:
            attributes["MessageGroupId"] = msg.group_id or ""
            attributes["MessageDeduplicationId"] = msg.dedup_id or ""
            attributes["SequenceNumber"] = f"{msg.id:020d}"
        elif msg.group_id is not None:
            attributes["MessageGroupId"] = msg.group_id
        trace = msg.system_attributes.get("AWSTraceHeader")
        if trace is not None and trace.string_value:
            attributes["AWSTraceHeader"] = trace.string_value
        if msg.dlq_source_arn:
            attributes["DeadLetterQueueSourceArn"] = msg.dlq_source_arn
        return ReceivedMessage(msg.message_id, _receipt(state.queue, msg), msg.body, msg.md5_body, state.queue.arn,
                               attributes, dict(msg.attributes), msg.md5_attributes)

    def _find(self, state: _QueueState, handle: str) -> tuple[_Message | None, str]:
        row, nonce, message_id, arn = _parse_receipt(handle)
        if arn != state.queue.arn:
            raise ReceiptHandleIsInvalid(f'The input receipt handle "{handle}" is not a valid receipt handle.')
        msg = state.messages.get(row)
        if msg is None or msg.message_id != message_id:
            return None, nonce
        return msg, nonce

    async def delete(self, queue_arn: str, receipt_handles: Sequence[str]) -> list[str]:
        """Delete messages by receipt handle; returns the handles that were invalid."""
        errors = await self.delete_many(queue_arn, receipt_handles)
        return [h for h, e in zip(receipt_handles, errors, strict=True) if e is not None]

    async def delete_many(self, queue_arn: str, receipt_handles: Sequence[str]) -> list[SqsError | None]:
        """Delete messages by receipt handle; each handle's error or None, in order."""
        state = self._state(queue_arn)
        now = now_ms()
        results: list[SqsError | None] = []
        changes = Changes()
        for handle in receipt_handles:
            try:
                found, nonce = self._find(state, handle)
            except SqsError as exc:
                results.append(exc)
                continue
            results.append(None)
            msg = found
            if msg is None:
                continue  # already deleted: SQS answers success
            if msg.nonce != nonce:
                if state.queue.fifo:
                    results[-1] = InvalidParameterValue(
                        f"Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has "
                        "expired.")
                continue  # an older handle of a message received again: success, the message stays
            if state.queue.fifo and msg.visible_ms <= now:
                results[-1] = InvalidParameterValue(
                    f"Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.")
                continue
            state.remove(msg)
            changes.deletes.append(msg.id)
        if changes.deletes:
            state.deleted += len(changes.deletes)
            await self.store.write(changes)
            if state.queue.fifo:
                state.wake()  # the next message of a group may be receivable now
        return results

    async def change_visibility(self, queue_arn: str, receipt_handle: str, visibility_timeout: int) -> None:
        error = (await self.change_visibility_many(queue_arn, [(receipt_handle, visibility_timeout)]))[0]
        if error is not None:
            raise error

    async def change_visibility_many(self, queue_arn: str,
                                     entries: Sequence[tuple[str, int]]) -> list[SqsError | None]:
        """ChangeMessageVisibility for several handles; each one's error or None, in order."""
        state = self._state(queue_arn)
        now = now_ms()
        results: list[SqsError | None] = []
        changes = Changes()
        wake = False
        for handle, timeout in entries:
            try:
                if not 0 <= timeout <= 43200:
                    raise InvalidParameterValue(
                        f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and "
                        "<= 43200, if provided.")
                msg, nonce = self._find(state, handle)
                if msg is None:
                    raise InvalidParameterValue(
                        f"Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or "
                        "is not available for visibility timeout change.")
                # AWS-recorded: a standard queue takes any genuine handle of the message, also after its
                # visibility ran out; a FIFO queue only the newest one.
                if state.queue.fifo and msg.nonce != nonce:
                    raise MessageNotInflight("Message does not exist or is not available for visibility timeout "
                                             "change.")
            except SqsError as exc:
                results.append(exc)
                continue
            msg.visible_ms = now + timeout * 1000
            state.reschedule(msg)
            changes.updates.append(msg.state_row())
            wake = wake or timeout == 0
            results.append(None)
        if changes:
            await self.store.write(changes)
        if wake:
            state.wake()
        return results

    # ------------------------------------------------------------------------------- figures

    def stats(self) -> list[QueueStats]:
        now = now_ms()
        out = []
        for state in sorted(self._queues.values(), key=lambda s: s.queue.name):
            visible, in_flight, delayed, oldest = state.counts(now)
            out.append(QueueStats(state.queue.name, state.queue.arn, state.queue.fifo, visible, in_flight, delayed,
                                  oldest, state.sent, state.received, state.deleted))
        return out


def _delete_expired_dedup(conn: Connection, now: int) -> None:
    conn.execute(delete(DEDUP).where(DEDUP.c.expires_ms <= now))


__all__ = ["QueueService", "QueueStats", "SendEntry"]
