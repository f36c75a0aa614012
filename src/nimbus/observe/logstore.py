"""The function log store: log groups, streams and events in the database, with CloudWatch Logs' query
semantics (DescribeLogGroups/Streams, GetLogEvents, FilterLogEvents) and retention.

Writes never block an invocation: `append` only enqueues; a background task batches the queue into the
database from a worker thread. Readers call `flush()` first to see their own writes. All database work
runs in worker threads (`asyncio.to_thread`); one lock serialises writers so the in-memory cache of
stream ids stays consistent with deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from nimbus.config import Settings
from nimbus.control.models import LogEventRow, LogGroupRow, LogStreamRow
from nimbus.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from nimbus.observe.logfilter import compile_pattern

log = logging.getLogger("nimbus.logs")

T = TypeVar("T")

GROUPS = cast(Table, LogGroupRow.__table__)
STREAMS = cast(Table, LogStreamRow.__table__)
EVENTS = cast(Table, LogEventRow.__table__)

# CloudWatch's limits.
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                  2922, 3288, 3653)  # fmt: skip
DESCRIBE_LIMIT = 50
EVENTS_LIMIT = 10_000
PAGE_BYTES = 1024 * 1024  # a page holds at most 1 MB of events
EVENT_OVERHEAD = 26  # bytes CloudWatch counts per event on top of the message
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
DAY_MS = 86_400_000

# How many rows FilterLogEvents examines per call before answering a partial page with a nextToken
# (CloudWatch also answers partial or empty pages when a search takes long).
FILTER_SCAN_BUDGET = 200_000
FILTER_CHUNK = 5_000
RETENTION_BATCH = 5_000
INSERT_CHUNK = 256  # rows per INSERT statement (1,024 bound values; SQLite allows 32,766)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class EventPage:
    """A GetLogEvents answer."""

    events: list[dict[str, Any]]
    next_forward_token: str
    next_backward_token: str


@dataclass(frozen=True)
class FilterPage:
    """A FilterLogEvents answer; `next_token` is None when there is nothing more."""

    events: list[dict[str, Any]]
    next_token: str | None
    searched_streams: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- tokens
# Event positions are (timestamp, id): events are ordered by timestamp, then by arrival.


def _position_token(direction: str, ts: int, event_id: int) -> str:
    return f"{direction}/{ts:020d}{event_id:020d}"


def _parse_position(token: str) -> tuple[str, int, int]:
    direction, _, digits = token.partition("/")
    if direction not in ("f", "b") or len(digits) != 40 or not digits.isdigit():
        raise InvalidParameterValue("The specified nextToken is invalid.")
    return direction, int(digits[:20]), int(digits[20:])


def _offset_token(offset: int) -> str:
    return f"o/{offset:020d}"


def _parse_offset(token: str | None) -> int:
    if token is None:
        return 0
    kind, _, digits = token.partition("/")
    if kind != "o" or not digits.isdigit():
        raise InvalidParameterValue("The specified nextToken is invalid.")
    return int(digits)


class LogStore:
    """CloudWatch-Logs-like storage of function logs."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        flush_interval: float = 0.15,
        flush_lines: int = 5_000,
        max_pending_lines: int = 1_000_000,
        retention_interval: float = 600.0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.flush_interval = flush_interval
        self.flush_lines = flush_lines
        self.max_pending_lines = max_pending_lines
        self.retention_interval = retention_interval
        self.dropped_lines = 0
        self._queue: deque[tuple[str, str, list[tuple[int, str]]]] = deque()
        self._pending_lines = 0
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_lock: asyncio.Lock | None = None
        self._db_lock = threading.Lock()
        self._stream_ids: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the background writer and the retention sweeper."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._writer(), name="logstore-writer"),
            asyncio.create_task(self._sweeper(), name="logstore-retention"),
        ]

    async def stop(self) -> None:
        """Stop the background tasks and write everything still queued."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        writer, others = self._tasks[:1], self._tasks[1:]
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in writer:
            await task  # it finishes the batch it is writing, then sees _stopping
        self._tasks = []
        await self.flush()

    # ---------------------------------------------------------------------------------------- write

    def append(self, group: str, stream: str, lines: list[tuple[int, str]]) -> None:
        """Queue (epoch ms, text) lines for `group`/`stream`; never blocks. Groups and streams are created
        on first write. Lines beyond `max_pending_lines` (the database cannot keep up) are dropped."""
        if not lines:
            return
        if self._pending_lines >= self.max_pending_lines:
            if self.dropped_lines == 0:
                log.warning("log store is falling behind; dropping function log lines")
            self.dropped_lines += len(lines)
            return
        self._queue.append((group, stream, lines))
        self._pending_lines += len(lines)
        if self._pending_lines >= self.flush_lines and self._wake is not None:
            if self._loop is not None and _in_other_thread(self._loop):
                self._loop.call_soon_threadsafe(self._wake.set)
            else:
                self._wake.set()

    async def flush(self) -> None:
        """Write every queued line now (read-your-writes for queries and tests)."""
        lock = self._write_lock or asyncio.Lock()
        async with lock:
            batch = self._drain()
            if batch:
                try:
                    await asyncio.to_thread(self._write_batch, batch)
                except Exception:
                    self._requeue(batch)  # (a full disk, a locked database): written once it works again
                    raise

    def flush_sync(self) -> None:
        """Write every queued line from the calling thread (for use without an event loop)."""
        batch = self._drain()
        if batch:
            self._write_batch(batch)

    def _requeue(self, batch: list[tuple[str, str, list[tuple[int, str]]]]) -> None:
        self._queue.extendleft(reversed(batch))
        self._pending_lines += sum(len(b[2]) for b in batch)

    def _drain(self) -> list[tuple[str, str, list[tuple[int, str]]]]:
        batch = []
        queue = self._queue
        while queue:
            batch.append(queue.popleft())
        self._pending_lines = max(0, self._pending_lines - sum(len(b[2]) for b in batch))
        return batch

    async def _writer(self) -> None:
        assert self._wake is not None
        failing = False
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the writer alive: the batch waits in the queue for the next try
                if not failing:
                    log.exception("writing function logs failed; retrying (new lines are dropped past "
                                  "%d pending)", self.max_pending_lines)
                failing = True
            else:
                if failing:
                    log.info("writing function logs works again")
                failing = False

    async def _sweeper(self) -> None:
        while not self._stopping:
            try:
                await asyncio.to_thread(self.apply_retention)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("log retention sweep failed")
            await asyncio.sleep(self.retention_interval)

    def _write_batch(self, batch: Sequence[tuple[str, str, list[tuple[int, str]]]]) -> None:
        # Runs in a worker thread but holds the GIL for its Python parts, stalling the event loop: keep the
        # per-line work minimal (one pass, values flattened straight into the INSERT's parameters).
        by_stream: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for group, stream, lines in batch:
            known = by_stream.get((group, stream))
            if known is None:
                by_stream[(group, stream)] = list(lines)
            else:
                known.extend(lines)
        ingestion = now_ms()
        with self._db_lock:
            known_streams = set(self._stream_ids)
            try:
                self._write_grouped(by_stream, ingestion)
            except Exception:
                # Streams created in the failed transaction were rolled back with it: forget their ids.
                for key in set(self._stream_ids) - known_streams:
                    del self._stream_ids[key]
                raise

    def _write_grouped(self, by_stream: dict[tuple[str, str], list[tuple[int, str]]], ingestion: int) -> None:
        """One transaction writing every stream's lines. Caller holds `_db_lock`."""
        with self.engine.begin() as conn:
            values: list[int | str] = []
            stats: list[dict[str, Any]] = []
            for (group, stream), lines in by_stream.items():
                sid = self._stream_id(conn, group, stream, ingestion)
                size = 0
                for ts, text in lines:
                    if text.isascii():
                        if len(text) > MAX_EVENT_BYTES:
                            text = text[:MAX_EVENT_BYTES]
                        size += len(text)
                    else:
                        data = text.encode()
                        if len(data) > MAX_EVENT_BYTES:
                            text = data[:MAX_EVENT_BYTES].decode("utf-8", errors="ignore")
                            data = text.encode()
                        size += len(data)
                    values += (sid, ts, ingestion, text)
                stamps = [ts for ts, _ in lines]
                stats.append({"sid": sid, "first": min(stamps), "last": max(stamps), "bytes": size})
            self._insert_events(conn, values)
            self._update_stream_stats(conn, stats, ingestion)

    def _insert_events(self, conn: Connection, values: list[int | str]) -> None:
        """Insert events given as flat (stream_id, timestamp_ms, ingestion_ms, message) values.

        Multi-row INSERTs in chunks: one statement per chunk means the driver drops and retakes the GIL
        once per chunk instead of once per row, which would otherwise stall the event loop thread (a GIL
        convoy) on every row of a busy server. Chunks are small, of one size (the driver's statement cache
        keeps it prepared), and the thread yields the CPU after each: on a small machine a batch written in
        one go holds a core for milliseconds, which showed up as the p99 latency of invocations."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        row_sql = f"({mark}, {mark}, {mark}, {mark})"
        step = INSERT_CHUNK * 4
        for start in range(0, len(values), step):
            chunk = values[start : start + step]
            sql = (
                "INSERT INTO log_events (stream_id, timestamp_ms, ingestion_ms, message) VALUES "
                + ", ".join([row_sql] * (len(chunk) // 4))
            )
            conn.exec_driver_sql(sql, tuple(chunk))
            os.sched_yield()

    def _update_stream_stats(self, conn: Connection, stats: list[dict[str, Any]], ingestion: int) -> None:
        first: Any = bindparam("first")
        last: Any = bindparam("last")
        stmt = (
            update(STREAMS)
            .where(STREAMS.c.id == bindparam("sid"))
            .values(
                first_event_ms=case(
                    (or_(STREAMS.c.first_event_ms.is_(None), STREAMS.c.first_event_ms > first), first),
                    else_=STREAMS.c.first_event_ms,
                ),
                last_event_ms=case(
                    (or_(STREAMS.c.last_event_ms.is_(None), STREAMS.c.last_event_ms < last), last),
                    else_=STREAMS.c.last_event_ms,
                ),
                last_ingestion_ms=ingestion,
                stored_bytes=STREAMS.c.stored_bytes + bindparam("bytes"),
            )
        )
        conn.execute(stmt, stats)

    def _stream_id(self, conn: Connection, group: str, stream: str, now: int) -> int:
        """The id of `group`/`stream`, creating both as needed. Caller holds `_db_lock`."""
        key = (group, stream)
        sid = self._stream_ids.get(key)
        if sid is not None:
            return sid
        if conn.execute(select(GROUPS.c.name).where(GROUPS.c.name == group)).first() is None:
            conn.execute(insert(GROUPS).values(name=group, created_ms=now, retention_days=self._default_retention()))
        row = conn.execute(select(STREAMS.c.id).where(STREAMS.c.group_name == group, STREAMS.c.name == stream)).first()
        if row is None:
            result = conn.execute(insert(STREAMS).values(group_name=group, name=stream, created_ms=now, stored_bytes=0))
            sid = int(result.inserted_primary_key[0])  # type: ignore[index]
        else:
            sid = int(row[0])
        self._stream_ids[key] = sid
        return sid

    def _default_retention(self) -> int | None:
        days = self.settings.log_retention_days
        return days if days and days > 0 else None

    # ------------------------------------------------------------------------------ group/stream admin

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a query method in a worker thread after flushing queued lines."""
        await self.flush()
        return await asyncio.to_thread(fn, *args, **kwargs)

    def create_log_group(self, name: str) -> None:
        with self._db_lock, self.engine.begin() as conn:
            if conn.execute(select(GROUPS.c.name).where(GROUPS.c.name == name)).first() is not None:
                raise ResourceConflict("The specified log group already exists")
            conn.execute(
                insert(GROUPS).values(name=name, created_ms=now_ms(), retention_days=self._default_retention())
            )

    def delete_log_group(self, name: str) -> None:
        with self._db_lock, self.engine.begin() as conn:
            self._require_group(conn, name)
            ids = select(STREAMS.c.id).where(STREAMS.c.group_name == name).scalar_subquery()
            conn.execute(delete(EVENTS).where(EVENTS.c.stream_id.in_(ids)))
            conn.execute(delete(STREAMS).where(STREAMS.c.group_name == name))
            conn.execute(delete(GROUPS).where(GROUPS.c.name == name))
            for key in [k for k in self._stream_ids if k[0] == name]:
                del self._stream_ids[key]

    def create_log_stream(self, group: str, stream: str) -> None:
        with self._db_lock, self.engine.begin() as conn:
            self._require_group(conn, group)
            exists = conn.execute(
                select(STREAMS.c.id).where(STREAMS.c.group_name == group, STREAMS.c.name == stream)
            ).first()
            if exists is not None:
                raise ResourceConflict("The specified log stream already exists")
            conn.execute(insert(STREAMS).values(group_name=group, name=stream, created_ms=now_ms(), stored_bytes=0))

    def delete_log_stream(self, group: str, stream: str) -> None:
        with self._db_lock, self.engine.begin() as conn:
            sid = self._require_stream(conn, group, stream)
            conn.execute(delete(EVENTS).where(EVENTS.c.stream_id == sid))
            conn.execute(delete(STREAMS).where(STREAMS.c.id == sid))
            self._stream_ids.pop((group, stream), None)

    def put_retention_policy(self, group: str, days: int | None) -> None:
        """Set (or with None, remove) a group's retention."""
        if days is not None and days not in RETENTION_DAYS:
            raise InvalidParameterValue(
                f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]"
            )
        with self._db_lock, self.engine.begin() as conn:
            self._require_group(conn, group)
            conn.execute(update(GROUPS).where(GROUPS.c.name == group).values(retention_days=days))

    def put_log_events(self, group: str, stream: str, events: list[tuple[int, str]]) -> dict[str, Any]:
        """PutLogEvents: store events now (synchronously), rejecting ones too old or too far in the future
        the way CloudWatch does. Returns `rejectedLogEventsInfo` fields (empty when all were accepted)."""
        now = now_ms()
        with self._db_lock, self.engine.begin() as conn:
            retention = self._require_group(conn, group)
            self._require_stream(conn, group, stream)
        oldest = now - 14 * DAY_MS
        if retention is not None:
            oldest = max(oldest, now - retention * DAY_MS)
        newest = now + 2 * 3_600_000
        rejected: dict[str, Any] = {}
        accepted: list[tuple[int, str]] = []
        for i, (ts, text) in enumerate(events):
            if ts < oldest:
                rejected["tooOldLogEventEndIndex"] = i + 1
            elif ts > newest:
                rejected.setdefault("tooNewLogEventStartIndex", i)
            else:
                accepted.append((ts, text))
        if accepted:
            self._write_batch([(group, stream, accepted)])
        return rejected

    def apply_retention(self, at_ms: int | None = None) -> int:
        """Delete events older than their group's retention; returns how many were deleted."""
        at = now_ms() if at_ms is None else at_ms
        deleted = 0
        with self.engine.connect() as conn:
            groups = conn.execute(
                select(GROUPS.c.name, GROUPS.c.retention_days).where(GROUPS.c.retention_days.is_not(None))
            ).all()
        for name, days in groups:
            cutoff = at - int(days) * DAY_MS
            streams = select(STREAMS.c.id).where(STREAMS.c.group_name == name).scalar_subquery()
            doomed = (
                select(EVENTS.c.id)
                .where(EVENTS.c.stream_id.in_(streams), EVENTS.c.timestamp_ms < cutoff)
                .limit(RETENTION_BATCH)
                .scalar_subquery()
            )
            while True:  # bounded batches, so writers never wait long for the database
                with self._db_lock, self.engine.begin() as conn:
                    count = conn.execute(delete(EVENTS).where(EVENTS.c.id.in_(doomed))).rowcount or 0
                deleted += count
                if count < RETENTION_BATCH:
                    break
        return deleted

    def _require_group(self, conn: Connection, name: str) -> int | None:
        row = conn.execute(select(GROUPS.c.retention_days).where(GROUPS.c.name == name)).first()
        if row is None:
            raise ResourceNotFound("The specified log group does not exist.")
        return None if row[0] is None else int(row[0])

    def _require_stream(self, conn: Connection, group: str, stream: str) -> int:
        self._require_group(conn, group)
        row = conn.execute(select(STREAMS.c.id).where(STREAMS.c.group_name == group, STREAMS.c.name == stream)).first()
        if row is None:
            raise ResourceNotFound("The specified log stream does not exist.")
        return int(row[0])

    # ------------------------------------------------------------------------------------- queries

    def _group_arn(self, name: str) -> str:
        return f"arn:aws:logs:{self.settings.region}:{self.settings.account_id}:log-group:{name}"

    def describe_log_groups(
        self,
        prefix: str | None = None,
        pattern: str | None = None,
        names: Sequence[str] | None = None,
        limit: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Groups in name order; a token when more remain."""
        limit = limit or DESCRIBE_LIMIT
        offset = _parse_offset(next_token)
        stored = (
            select(func.coalesce(func.sum(STREAMS.c.stored_bytes), 0))
            .where(STREAMS.c.group_name == GROUPS.c.name)
            .scalar_subquery()
        )
        stmt = select(GROUPS.c.name, GROUPS.c.created_ms, GROUPS.c.retention_days, stored).order_by(GROUPS.c.name)
        if prefix:
            stmt = stmt.where(GROUPS.c.name.startswith(prefix, autoescape=True))
        if pattern:
            stmt = stmt.where(GROUPS.c.name.contains(pattern, autoescape=True))
        if names:
            stmt = stmt.where(GROUPS.c.name.in_(list(names)))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.offset(offset).limit(limit + 1)).all()
        groups = []
        for name, created, retention, size in rows[:limit]:
            if pattern and name.find(pattern) < 0:  # LIKE is case-insensitive on SQLite
                continue
            arn = self._group_arn(name)
            doc: dict[str, Any] = {"logGroupName": name, "creationTime": created, "arn": f"{arn}:*"}
            if not pattern:
                if retention is not None:
                    doc["retentionInDays"] = retention
                doc.update(
                    metricFilterCount=0,
                    storedBytes=int(size),
                    logGroupClass="STANDARD",
                    logGroupArn=arn,
                    deletionProtectionEnabled=False,
                )
            groups.append(doc)
        return groups, (_offset_token(offset + limit) if len(rows) > limit else None)

    def describe_log_streams(
        self,
        group: str,
        prefix: str | None = None,
        order_by: str = "LogStreamName",
        descending: bool = False,
        limit: int | None = None,
        next_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Streams of `group` by name or by last event time; a token when more remain."""
        if order_by not in ("LogStreamName", "LastEventTime"):
            raise InvalidParameterValue("orderBy must be LogStreamName or LastEventTime")
        if order_by == "LastEventTime" and prefix:
            raise InvalidParameterValue("Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = limit or DESCRIBE_LIMIT
        offset = _parse_offset(next_token)
        s = STREAMS.c
        if order_by == "LogStreamName":
            keys = [s.name.desc() if descending else s.name.asc()]
        else:
            last = func.coalesce(s.last_event_ms, s.created_ms)
            keys = [last.desc(), s.id.desc()] if descending else [last.asc(), s.id.asc()]
        stmt = select(STREAMS).where(s.group_name == group).order_by(*keys)
        if prefix:
            stmt = stmt.where(s.name.startswith(prefix, autoescape=True))
        with self.engine.connect() as conn:
            self._require_group(conn, group)
            rows = conn.execute(stmt.offset(offset).limit(limit + 1)).mappings().all()
        streams = []
        for r in rows[:limit]:
            if prefix and not r["name"].startswith(prefix):
                continue
            doc: dict[str, Any] = {
                "logStreamName": r["name"],
                "creationTime": r["created_ms"],
                "arn": f"{self._group_arn(group)}:log-stream:{r['name']}",
                "storedBytes": int(r["stored_bytes"] or 0),
            }
            if r["first_event_ms"] is not None:
                doc["firstEventTimestamp"] = r["first_event_ms"]
                doc["lastEventTimestamp"] = r["last_event_ms"]
            if r["last_ingestion_ms"] is not None:
                doc["lastIngestionTime"] = r["last_ingestion_ms"]
                doc["uploadSequenceToken"] = f"{r['id']:010d}{r['last_ingestion_ms']:020d}"
            streams.append(doc)
        return streams, (_offset_token(offset + limit) if len(rows) > limit else None)

    def get_log_events(
        self,
        group: str,
        stream: str,
        start_time: int | None = None,
        end_time: int | None = None,
        next_token: str | None = None,
        limit: int | None = None,
        start_from_head: bool = False,
    ) -> EventPage:
        """GetLogEvents: one page of a stream, always in ascending order.

        Without a token the page is the newest `limit` events (or the oldest with `start_from_head`).
        `f/` tokens continue forward, `b/` tokens backward; at either end the given token comes back.
        """
        limit = limit or EVENTS_LIMIT
        e = EVENTS.c
        position = _parse_position(next_token) if next_token else None
        with self.engine.connect() as conn:
            sid = self._require_stream(conn, group, stream)
            stmt = select(e.id, e.timestamp_ms, e.message, e.ingestion_ms).where(e.stream_id == sid)
            if start_time is not None:
                stmt = stmt.where(e.timestamp_ms >= start_time)
            if end_time is not None:
                stmt = stmt.where(e.timestamp_ms < end_time)
            forward = start_from_head if position is None else position[0] == "f"
            if position is not None:
                _, ts, eid = position
                after = or_(e.timestamp_ms > ts, and_(e.timestamp_ms == ts, e.id > eid))
                before = or_(e.timestamp_ms < ts, and_(e.timestamp_ms == ts, e.id < eid))
                stmt = stmt.where(after if forward else before)
            if forward:
                stmt = stmt.order_by(e.timestamp_ms.asc(), e.id.asc())
            else:
                stmt = stmt.order_by(e.timestamp_ms.desc(), e.id.desc())
            rows = _within_page(conn.execute(stmt.limit(limit)), limit)
        if not forward:
            rows.reverse()
        events = [{"timestamp": ts, "message": msg, "ingestionTime": ing} for _id, ts, msg, ing in rows]
        if rows:
            first, last = rows[0], rows[-1]
            fwd = _position_token("f", last[1], last[0])
            back = _position_token("b", first[1], first[0])
        elif position is not None:
            _, ts, eid = position
            fwd, back = _position_token("f", ts, eid), _position_token("b", ts, eid)
        else:
            # Empty page without a token: forward continues from the start of the range, so new events
            # show up; backward from its end.
            fwd = _position_token("f", max(0, (start_time or 0)), 0)
            back = _position_token("b", end_time if end_time is not None else now_ms() + 1, 0)
        return EventPage(events, fwd, back)

    def follow(self, group: str, after: int | None, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Follow mode (the dashboard): the events of `group` stored after the event row `after` (in storage
        order, which is not time order: an invocation's lines are stored when it ends, stamped from when it
        began), and the cursor for the next poll. With `after` None: no events, only the cursor (the newest
        row now). Blocking: call through `run`."""
        e, s = EVENTS.c, STREAMS.c
        with self.engine.connect() as conn:
            streams = select(s.id).where(s.group_name == group).scalar_subquery()
            if after is None:
                newest = conn.execute(select(func.max(e.id)).where(e.stream_id.in_(streams))).scalar()
                return [], int(newest or 0)
            rows = conn.execute(
                select(e.id, s.name, e.timestamp_ms, e.message)
                .join(STREAMS, s.id == e.stream_id)
                .where(s.group_name == group, e.id > after)
                .order_by(e.id.asc())
                .limit(limit)
            ).all()
        events = [{"timestamp": ts, "stream": name, "message": msg, "id": f"{ts:020d}{rid:020d}"}
                  for rid, name, ts, msg in rows]
        return events, int(rows[-1][0]) if rows else after

    def filter_log_events(
        self,
        group: str,
        stream_names: Sequence[str] | None = None,
        stream_prefix: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        filter_pattern: str | None = None,
        next_token: str | None = None,
        limit: int | None = None,
        start_from_head: bool = True,
    ) -> FilterPage:
        """FilterLogEvents: events of many streams interleaved by time, matching `filter_pattern`.

        Ascending by default (descending with `start_from_head=False`; a token keeps its direction).
        `next_token` is set only when more events may remain.
        """
        if stream_names and stream_prefix:
            raise InvalidParameterValue("logStreamNames and logStreamNamePrefix are mutually exclusive.")
        limit = limit or EVENTS_LIMIT
        compiled = compile_pattern(filter_pattern)
        position = _parse_position(next_token) if next_token else None
        forward = start_from_head if position is None else position[0] == "f"
        e, s = EVENTS.c, STREAMS.c
        with self.engine.connect() as conn:
            self._require_group(conn, group)
            stream_q = select(s.id, s.name).where(s.group_name == group)
            if stream_names:
                stream_q = stream_q.where(s.name.in_(list(stream_names)))
            if stream_prefix:
                stream_q = stream_q.where(s.name.startswith(stream_prefix, autoescape=True))
            names = {
                int(sid): name
                for sid, name in conn.execute(stream_q).all()
                if not stream_prefix or name.startswith(stream_prefix)
            }
            if not names:
                return FilterPage([], None)
            # A subquery, not a parameter list: groups can have more streams than SQLite allows variables.
            stream_ids = stream_q.with_only_columns(s.id).scalar_subquery()
            base = select(e.id, e.stream_id, e.timestamp_ms, e.message, e.ingestion_ms).where(
                e.stream_id.in_(stream_ids)
            )
            if start_time is not None:
                base = base.where(e.timestamp_ms >= start_time)
            if end_time is not None:
                base = base.where(e.timestamp_ms <= end_time)
            for term in compiled.required_terms:  # narrows candidates; exact match is checked below
                base = base.where(e.message.contains(term, autoescape=True))
            if forward:
                base = base.order_by(e.timestamp_ms.asc(), e.id.asc())
            else:
                base = base.order_by(e.timestamp_ms.desc(), e.id.desc())
            events: list[dict[str, Any]] = []
            size = 0
            scanned = 0
            cursor = position[1:] if position is not None else None
            more = False
            while True:
                stmt = base
                if cursor is not None:
                    ts, eid = cursor
                    if forward:
                        stmt = stmt.where(or_(e.timestamp_ms > ts, and_(e.timestamp_ms == ts, e.id > eid)))
                    else:
                        stmt = stmt.where(or_(e.timestamp_ms < ts, and_(e.timestamp_ms == ts, e.id < eid)))
                chunk = conn.execute(stmt.limit(FILTER_CHUNK)).all()
                full = False
                for eid, sid, ts, msg, ing in chunk:
                    scanned += 1
                    if compiled.matches(msg):
                        cost = len(msg.encode()) + EVENT_OVERHEAD
                        if len(events) >= limit or (events and size + cost > PAGE_BYTES):
                            full = True
                            break
                        size += cost
                        events.append(
                            {
                                "logStreamName": names[int(sid)],
                                "timestamp": ts,
                                "message": msg,
                                "ingestionTime": ing,
                                "eventId": f"{ts:020d}{eid:020d}",
                            }
                        )
                    cursor = (ts, eid)
                if full:
                    more = True
                    break
                if len(chunk) < FILTER_CHUNK:
                    break
                if scanned >= FILTER_SCAN_BUDGET:
                    more = True
                    break
        token = _position_token("f" if forward else "b", *cursor) if more and cursor is not None else None
        return FilterPage(events, token)


def _within_page(result: Iterable[Any], limit: int) -> list[tuple[int, int, str, int]]:
    """Rows up to `limit` and the 1 MB page size."""
    rows: list[tuple[int, int, str, int]] = []
    size = 0
    for eid, ts, msg, ing in result:
        cost = len(msg.encode()) + EVENT_OVERHEAD
        if rows and size + cost > PAGE_BYTES:
            break
        size += cost
        rows.append((int(eid), int(ts), msg, int(ing)))
        if len(rows) >= limit:
            break
    return rows


def _in_other_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is not loop
    except RuntimeError:
        return True
