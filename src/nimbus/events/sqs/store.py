"""Durability of the queue service: one writer task applies every change that arrived while the previous
transaction ran in the next one (group commit, as `invoke/queue.py`), on one connection in one worker
thread, and answers each caller once its transaction has committed. SendMessage answers only after its
rows are on disk, so an accepted message survives a kill -9.

Within one transaction the changes apply in a fixed order (message inserts, message updates, message
deletes, then queue and dedup changes); the service never issues a change that depends on a later kind in
the same batch (a queue deleted and re-created is refused for 60 s, as SQS does)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update

from nimbus.events.sqs.tables import DEDUP, MESSAGES, QUEUES

log = logging.getLogger("nimbus.events.sqs.store")

MAX_BATCH = 4096  # changes per transaction
SqlChange = Callable[[Connection], object]


@dataclass(slots=True)
class Changes:
    """One caller's writes."""

    inserts: list[dict[str, Any]] = field(default_factory=list)  # MESSAGES rows
    updates: list[dict[str, Any]] = field(default_factory=list)  # {_id, visible_ms, receive_count, first_receive_ms}
    moves: list[dict[str, Any]] = field(default_factory=list)  # {_id, queue_arn, visible_ms, dlq_source_arn, ...}
    deletes: list[int] = field(default_factory=list)  # MESSAGES ids
    other: list[SqlChange] = field(default_factory=list)  # queue rows, dedup rows, purges

    def __bool__(self) -> bool:
        return bool(self.inserts or self.updates or self.moves or self.deletes or self.other)


class QueueStore:
    """Group-committed writes and start-up reads of the queue tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: list[tuple[Changes, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: Connection | None = None
        self._stopping = False
        self.transactions = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nimbus-sqs")
        await self._loop.run_in_executor(self._executor, self._open)
        self._task = asyncio.create_task(self._writer(), name="sqs-writer")

    def _open(self) -> None:
        self._conn = self.engine.connect()

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

    def write(self, changes: Changes) -> asyncio.Future[None]:
        """Queue `changes` for the next transaction; the future resolves once they are committed."""
        if self._loop is None or self._wake is None or self._stopping:
            raise RuntimeError("the SQS store is not running")
        future: asyncio.Future[None] = self._loop.create_future()
        if not changes:
            future.set_result(None)
            return future
        self._pending.append((changes, future))
        self._wake.set()
        return future

    async def _writer(self) -> None:
        assert self._wake is not None and self._loop is not None
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(0)  # let requests parsed in this loop iteration join the transaction
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._loop.run_in_executor(self._executor, self._apply, [c for c, _ in batch])
            except Exception as exc:
                log.exception("SQS transaction failed (%d writes)", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _apply(self, batch: list[Changes]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            inserts = [row for c in batch for row in c.inserts]
            if inserts:
                conn.execute(insert(MESSAGES), inserts)
            updates = [row for c in batch for row in c.updates]
            if updates:
                conn.execute(
                    update(MESSAGES).where(MESSAGES.c.id == bindparam("_id")).values(
                        visible_ms=bindparam("visible_ms"), receive_count=bindparam("receive_count"),
                        first_receive_ms=bindparam("first_receive_ms")),
                    updates,
                )
            moves = [row for c in batch for row in c.moves]
            if moves:
                conn.execute(
                    update(MESSAGES).where(MESSAGES.c.id == bindparam("_id")).values(
                        queue_arn=bindparam("queue_arn"), visible_ms=bindparam("visible_ms"),
                        receive_count=bindparam("receive_count"), first_receive_ms=bindparam("first_receive_ms"),
                        dlq_source_arn=bindparam("dlq_source_arn")),
                    moves,
                )
            deletes = [i for c in batch for i in c.deletes]
            for start in range(0, len(deletes), 500):
                conn.execute(delete(MESSAGES).where(MESSAGES.c.id.in_(deletes[start:start + 500])))
            for c in batch:
                for change in c.other:
                    change(conn)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        self.transactions += 1

    # ------------------------------------------------------------------------------ start-up reads

    def load(self) -> tuple[list[Any], list[Any], list[Any]]:
        """Every queue, message (in send order) and live dedup entry. Blocking: call from a thread."""
        with self.engine.connect() as conn:
            queues = list(conn.execute(select(QUEUES)))
            messages = list(conn.execute(select(MESSAGES).order_by(MESSAGES.c.id)))
            dedup = list(conn.execute(select(DEDUP)))
        return queues, messages, dedup
