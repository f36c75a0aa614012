"""The durable queue of accepted `Event` invocations: the interface the dispatcher and the Invoke API use
(`EventQueue`), and its SQL implementation over the platform's own database (SQLite in WAL mode by default,
PostgreSQL with `SELECT … FOR UPDATE SKIP LOCKED` leases), chosen by `make_queue`.

An event is a row of `async_events`. It is *ready* when `available_ms <= now`; leasing it sets
`available_ms` to the end of the lease, so an event whose dispatcher died becomes ready again by itself
(crash recovery by lease expiry) and one index, (function, available_ms, id), serves every lease.

Writes go through one writer task (group commit): every enqueue, lease and completion that arrives while
a transaction runs is applied in the next one, on one dedicated connection in one worker thread, and each
caller is answered when that transaction has committed. `enqueue` returning means the event is on disk, so
the Invoke API answers 202 only after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Engine, Table, bindparam, case, delete, func, insert, select, update

from nimbus.control.models import AsyncEventRow

log = logging.getLogger("nimbus.invoke.queue")

EVENTS = cast(Table, AsyncEventRow.__table__)
MAX_BATCH = 1024  # operations per transaction


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class NewEvent:
    """An event to put on the queue."""

    request_id: str
    function_name: str
    qualifier: str | None
    payload: bytes
    client_context: str | None = None
    trace_id: str | None = None
    enqueued_ms: int = field(default_factory=now_ms)

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "function_name": self.function_name,
            "qualifier": self.qualifier,
            "payload": self.payload,
            "client_context": self.client_context,
            "trace_id": self.trace_id,
            "enqueued_ms": self.enqueued_ms,
            "available_ms": self.enqueued_ms,
            "attempts": 0,
            "throttles": 0,
        }


@dataclass(slots=True)
class LeasedEvent:
    """An event a dispatcher holds until `lease_until_ms`; finish it with a `Completion`."""

    id: int
    request_id: str
    function_name: str
    qualifier: str | None
    payload: bytes
    client_context: str | None
    trace_id: str | None
    enqueued_ms: int
    attempts: int
    throttles: int
    lease_owner: str
    lease_until_ms: int
    last_version: str | None = None
    last_error: str | None = None
    last_response: bytes | None = None


@dataclass(slots=True)
class Completion:
    """What became of a leased event: done (`retry_at_ms` None: the row is deleted), or back on the queue
    from `retry_at_ms` with updated counters. `follow_up` events (destination records) are enqueued in the
    same transaction, so a record is never lost nor sent for an event that stays queued."""

    event: LeasedEvent
    retry_at_ms: int | None = None
    follow_up: list[NewEvent] = field(default_factory=list)


@dataclass(slots=True)
class QueueStats:
    """One function's queue: events waiting or in delivery, those leased now, those waiting for a retry
    or backoff, and when the oldest was accepted."""

    function_name: str
    depth: int
    in_flight: int
    delayed: int
    oldest_enqueued_ms: int | None


class EventQueue(Protocol):
    """What the Invoke API and the dispatcher need from the queue. Implementations must make `enqueue`
    durable before it returns and deliver every event at least once."""

    enqueued: int  # events accepted through `enqueue` since start (the dispatcher watches the intake rate)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        """Store events durably; returns once they are committed."""

    async def lease(self, function_name: str, limit: int, lease_ms: int,
                    accepted_before_ms: int | None = None) -> list[LeasedEvent]:
        """Take up to `limit` ready events of one function, oldest first, for `lease_ms` milliseconds (only
        those accepted before `accepted_before_ms` when given: the expired ones)."""

    async def complete(self, completions: Sequence[Completion]) -> None:
        """Ack, requeue (retry later) and enqueue follow-ups, atomically per call."""

    async def ready_functions(self) -> dict[str, int]:
        """Every function with queued events not leased now -> when its earliest one is due (epoch ms)."""

    async def stats(self, function_name: str | None = None) -> list[QueueStats]:
        """Queue figures per function (one function, or every function that has events)."""

    def add_listener(self, callback: Callable[[set[str]], None]) -> None:
        """Call `callback(function names)` on the event loop after events of theirs were committed."""

    def purge_function(self, function_name: str) -> int:
        """Drop every queued event of a deleted function; how many. Blocking: call from a worker thread."""


# ------------------------------------------------------------------------------------------ SQL queue


class _Op:
    """One write waiting for the next transaction."""

    __slots__ = ("kind", "args", "future")

    def __init__(self, kind: str, args: Any, future: asyncio.Future[Any]) -> None:
        self.kind = kind
        self.args = args
        self.future = future


class SqlEventQueue:
    """The queue in the platform's SQL database (SQLAlchemy Core, so SQLite and PostgreSQL share the SQL).

    PostgreSQL's leases lock rows with `FOR UPDATE SKIP LOCKED`, so several dispatchers (nodes) can lease
    concurrently without taking each other's events; SQLite has one writer anyway and ignores the clause.
    """

    dialect_name = "sql"

    def __init__(self, engine: Engine, *, owner: str | None = None, synchronous: str | None = None) -> None:
        self.engine = engine
        self.owner = owner or f"{os.uname().nodename[:40]}:{os.getpid()}"
        self._synchronous = synchronous
        self._ops: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: Connection | None = None
        self._listeners: list[Callable[[set[str]], None]] = []
        self._stopping = False
        self.committed_batches = 0
        self.committed_ops = 0
        self.enqueued = 0  # events accepted through `enqueue` since start

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nimbus-queue")
        await self._loop.run_in_executor(self._executor, self._open)
        self._task = asyncio.create_task(self._writer(), name="async-queue-writer")

    def _open(self) -> None:
        self._conn = self.engine.connect()
        if self._synchronous and self.engine.dialect.name == "sqlite":
            self._conn.exec_driver_sql(f"PRAGMA synchronous={self._synchronous}")
            self._conn.commit()

    async def stop(self) -> None:
        """Commit what is pending, then close."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None and self._loop is not None:
            await self._loop.run_in_executor(self._executor, self._close)
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def add_listener(self, callback: Callable[[set[str]], None]) -> None:
        self._listeners.append(callback)

    # ------------------------------------------------------------------------------------- writes

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        if events:
            await self._submit("enqueue", [e.row() for e in events])

    async def lease(self, function_name: str, limit: int, lease_ms: int,
                    accepted_before_ms: int | None = None) -> list[LeasedEvent]:
        if limit <= 0:
            return []
        result: list[LeasedEvent] = await self._submit("lease", (function_name, limit, lease_ms, accepted_before_ms))
        return result

    async def complete(self, completions: Sequence[Completion]) -> None:
        if completions:
            await self._submit("complete", list(completions))

    def _submit(self, kind: str, args: Any) -> asyncio.Future[Any]:
        if self._loop is None or self._wake is None or self._stopping:
            raise RuntimeError("the event queue is not running")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._ops.append(_Op(kind, args, future))
        self._wake.set()
        return future

    async def _writer(self) -> None:
        assert self._wake is not None and self._loop is not None
        while True:
            if not self._ops:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # Let requests already parsed on this loop iteration join this transaction.
            await asyncio.sleep(0)
            ops, self._ops = self._ops[:MAX_BATCH], self._ops[MAX_BATCH:]
            try:
                results = await self._loop.run_in_executor(self._executor, self._apply, ops)
            except Exception as exc:  # the whole transaction rolled back: every caller sees the error
                log.exception("async queue transaction failed (%d operations)", len(ops))
                for op in ops:
                    if not op.future.done():
                        op.future.set_exception(exc)
                continue
            touched: set[str] = set()
            for op, result in zip(ops, results, strict=True):
                if not op.future.done():
                    op.future.set_result(result)
                if op.kind == "enqueue":
                    touched.update(r["function_name"] for r in op.args)
                elif op.kind == "complete":
                    for c in op.args:
                        touched.update(e.function_name for e in c.follow_up)
            if touched:
                for callback in self._listeners:
                    try:
                        callback(touched)
                    except Exception:
                        log.exception("async queue listener failed")

    def _apply(self, ops: list[_Op]) -> list[Any]:
        """One transaction for a batch of operations (worker thread)."""
        conn = self._conn
        assert conn is not None
        now = now_ms()
        results: list[Any] = []
        try:
            inserts = [row for op in ops if op.kind == "enqueue" for row in op.args]
            if inserts:
                conn.execute(insert(EVENTS), inserts)
            for op in ops:
                if op.kind == "enqueue":
                    results.append(None)
                elif op.kind == "lease":
                    fn, limit, lease_ms, before = op.args
                    results.append(self._lease(conn, fn, limit, lease_ms, now, before))
                else:
                    self._complete(conn, op.args)
                    results.append(None)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        self.committed_batches += 1
        self.committed_ops += len(ops)
        self.enqueued += sum(len(op.args) for op in ops if op.kind == "enqueue")
        return results

    def _lease(self, conn: Connection, function_name: str, limit: int, lease_ms: int, now: int,
               accepted_before_ms: int | None = None) -> list[LeasedEvent]:
        until = now + lease_ms
        stmt = self.lease_statement(function_name, limit, now, until, accepted_before_ms)
        leased = [
            LeasedEvent(
                id=r.id, request_id=r.request_id, function_name=r.function_name, qualifier=r.qualifier,
                payload=bytes(r.payload), client_context=r.client_context, trace_id=r.trace_id,
                enqueued_ms=r.enqueued_ms, attempts=r.attempts, throttles=r.throttles, lease_owner=self.owner,
                lease_until_ms=until, last_version=r.last_version, last_error=r.last_error,
                last_response=None if r.last_response is None else bytes(r.last_response),
            )
            for r in conn.execute(stmt)
        ]
        leased.sort(key=lambda e: e.id)
        return leased

    def lease_statement(self, function_name: str, limit: int, now: int, until: int,
                        accepted_before_ms: int | None = None) -> Any:
        """`UPDATE … WHERE id IN (oldest ready ids … FOR UPDATE SKIP LOCKED) RETURNING …`: one statement for
        both databases (SQLite renders no locking clause; it has a single writer)."""
        conditions = [EVENTS.c.function_name == function_name, EVENTS.c.available_ms <= now]
        if accepted_before_ms is not None:
            conditions.append(EVENTS.c.enqueued_ms < accepted_before_ms)
        ready = (
            select(EVENTS.c.id)
            .where(*conditions)
            .order_by(EVENTS.c.available_ms, EVENTS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        stmt = (
            update(EVENTS)
            .where(EVENTS.c.id.in_(ready))
            .values(lease_owner=self.owner, available_ms=until)
            .returning(
                EVENTS.c.id, EVENTS.c.request_id, EVENTS.c.function_name, EVENTS.c.qualifier, EVENTS.c.payload,
                EVENTS.c.client_context, EVENTS.c.trace_id, EVENTS.c.enqueued_ms, EVENTS.c.attempts,
                EVENTS.c.throttles, EVENTS.c.last_version, EVENTS.c.last_error, EVENTS.c.last_response,
            )
        )
        return stmt

    def _complete(self, conn: Connection, completions: list[Completion]) -> None:
        done = [c.event.id for c in completions if c.retry_at_ms is None]
        if done:
            # Deleted whoever holds it now: the event ran (at least once) either way.
            conn.execute(delete(EVENTS).where(EVENTS.c.id.in_(done)))
        retries = [
            {
                "_id": c.event.id,
                "_owner": c.event.lease_owner,
                "_available": c.retry_at_ms,
                "_attempts": c.event.attempts,
                "_throttles": c.event.throttles,
                "_version": c.event.last_version,
                "_error": c.event.last_error,
                "_response": c.event.last_response,
            }
            for c in completions
            if c.retry_at_ms is not None
        ]
        if retries:
            conn.execute(
                update(EVENTS)
                .where(EVENTS.c.id == bindparam("_id"), EVENTS.c.lease_owner == bindparam("_owner"))
                .values(
                    available_ms=bindparam("_available"),
                    lease_owner=None,
                    attempts=bindparam("_attempts"),
                    throttles=bindparam("_throttles"),
                    last_version=bindparam("_version"),
                    last_error=bindparam("_error"),
                    last_response=bindparam("_response"),
                ),
                retries,
            )
        follow = [e.row() for c in completions for e in c.follow_up]
        if follow:
            conn.execute(insert(EVENTS), follow)

    # -------------------------------------------------------------------------------------- reads

    async def ready_functions(self) -> dict[str, int]:
        return await asyncio.to_thread(self._ready_functions)

    def _ready_functions(self) -> dict[str, int]:
        now = now_ms()
        stmt = (
            select(EVENTS.c.function_name, func.min(EVENTS.c.available_ms))
            .where((EVENTS.c.lease_owner.is_(None)) | (EVENTS.c.available_ms <= now))
            .group_by(EVENTS.c.function_name)
        )
        with self.engine.connect() as conn:
            return {name: int(due) for name, due in conn.execute(stmt)}

    async def stats(self, function_name: str | None = None) -> list[QueueStats]:
        return await asyncio.to_thread(self._stats, function_name)

    def _stats(self, function_name: str | None) -> list[QueueStats]:
        now = now_ms()
        leased = (EVENTS.c.lease_owner.is_not(None)) & (EVENTS.c.available_ms > now)
        waiting = (EVENTS.c.lease_owner.is_(None)) & (EVENTS.c.available_ms > now)
        stmt = select(
            EVENTS.c.function_name,
            func.count(),
            func.coalesce(func.sum(_case(leased)), 0),
            func.coalesce(func.sum(_case(waiting)), 0),
            func.min(EVENTS.c.enqueued_ms),
        ).group_by(EVENTS.c.function_name)
        if function_name is not None:
            stmt = stmt.where(EVENTS.c.function_name == function_name)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [QueueStats(r[0], int(r[1]), int(r[2]), int(r[3]), None if r[4] is None else int(r[4])) for r in rows]

    def purge_function(self, function_name: str) -> int:
        """Drop every queued event of a function (it was deleted). Blocking: call from a worker thread."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(EVENTS).where(EVENTS.c.function_name == function_name)).rowcount)


def _case(condition: Any) -> Any:
    return case((condition, 1), else_=0)


class SqliteEventQueue(SqlEventQueue):
    """The embedded queue: SQLite in WAL mode, in the registry's database file.

    One server process owns a SQLite data dir, so leases still held at start-up belong to a process that
    died: they are released at once instead of waiting for them to expire.
    """

    dialect_name = "sqlite"

    async def start(self) -> None:
        await super().start()
        released = await asyncio.to_thread(self._release_stale_leases)
        if released:
            log.warning("async queue: %d events were in delivery when the server stopped; delivering them again",
                        released)

    def _release_stale_leases(self) -> int:
        now = now_ms()
        with self.engine.begin() as conn:
            result = conn.execute(
                update(EVENTS)
                .where(EVENTS.c.lease_owner.is_not(None), EVENTS.c.available_ms > now)
                .values(lease_owner=None, available_ms=now)
            )
            return int(result.rowcount)


class PostgresEventQueue(SqlEventQueue):
    """A queue shared by several nimbus nodes in one PostgreSQL database: leases use row locks with
    SKIP LOCKED and expire by themselves when a node dies (no node may release another's leases)."""

    dialect_name = "postgresql"


def make_queue(engine: Engine, synchronous: str | None = None) -> SqlEventQueue:
    """The queue for the platform's database: SQLite (embedded default) or PostgreSQL."""
    name = engine.dialect.name
    if name == "sqlite":
        return SqliteEventQueue(engine, synchronous=synchronous)
    if name == "postgresql":
        return PostgresEventQueue(engine)
    raise ValueError(f"no async event queue for database dialect {name!r}")


__all__ = [
    "Completion",
    "EventQueue",
    "LeasedEvent",
    "NewEvent",
    "PostgresEventQueue",
    "QueueStats",
    "SqlEventQueue",
    "SqliteEventQueue",
    "make_queue",
    "now_ms",
]
