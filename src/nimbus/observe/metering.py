"""Metering: what every invocation would be billed for on AWS Lambda (requests, billed duration at 1 ms
granularity, memory, architecture), aggregated per function, architecture and memory size per hour in the
database (table `metering_usage`), never one row per invocation.

The hot path only adds to an in-memory dict; a background task flushes it every few seconds with one
upsert per aggregate, in a worker thread (as `logstore` does). Since 1 August 2025 AWS bills the INIT
phase of on-demand functions too: billed duration = ceil(INIT + handler duration) on a cold start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nimbus.control.models import MeteringRow
from nimbus.observe.report import billed_ms

log = logging.getLogger("nimbus.metering")

USAGE = cast(Table, MeteringRow.__table__)
HOUR = 3600


@dataclass
class Usage:
    """Aggregated usage of one function with one (architecture, memory size)."""

    function: str
    architecture: str
    memory_mb: int
    requests: int = 0
    billed_ms: int = 0
    init_billed_ms: int = 0
    provisioned_ms: int = 0  # environment-milliseconds of provisioned concurrency kept ready

    @property
    def gb_seconds(self) -> float:
        return self.memory_mb / 1024 * self.billed_ms / 1000

    @property
    def provisioned_gb_seconds(self) -> float:
        return self.memory_mb / 1024 * self.provisioned_ms / 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "architecture": self.architecture,
            "memoryMB": self.memory_mb,
            "requests": self.requests,
            "billedMs": self.billed_ms,
            "initBilledMs": self.init_billed_ms,
            "gbSeconds": self.gb_seconds,
            "provisionedGbSeconds": self.provisioned_gb_seconds,
        }


def month_range(month: str | None, now: float | None = None) -> tuple[int, int]:
    """[start, end) epoch seconds of `month` ("YYYY-MM", UTC), the current month when None."""
    if month is None:
        when = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        year, mon = when.year, when.month
    else:
        try:
            year_text, mon_text = month.split("-")
            year, mon = int(year_text), int(mon_text)
            if len(year_text) != 4 or not 1 <= mon <= 12:
                raise ValueError
        except ValueError:
            raise ValueError(f"month must be YYYY-MM, got {month!r}") from None
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


class Meter:
    """Per-invocation billing records, batched in memory and flushed to the database periodically."""

    def __init__(self, engine: Engine, *, flush_interval: float = 5.0, enabled: bool = True) -> None:
        self.engine = engine
        self.enabled = enabled
        self.flush_interval = flush_interval
        # (function, hour start, architecture, memory) -> [requests, billed ms, init billed ms, provisioned ms]
        self._pending: dict[tuple[str, int, str, int], list[int]] = {}
        self._hour = 0
        self._hour_end = 0
        self._db_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._flusher(), name="metering-flush")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    # -------------------------------------------------------------------------------------- writes

    def record(self, function: str, architecture: str, memory_mb: int, duration_ms: float,
               init_ms: float | None = None, now: float | None = None) -> int:
        """Meter one invocation (hot path: a dict update). Returns its billed duration in ms."""
        billed = billed_ms(duration_ms, init_ms)
        if not self.enabled:
            return billed
        if now is None:
            now = time.time()
        if now >= self._hour_end or now < self._hour:
            self._hour = int(now) // HOUR * HOUR
            self._hour_end = self._hour + HOUR
        key = (function, self._hour, architecture, memory_mb)
        acc = self._pending.get(key)
        if acc is None:
            acc = self._pending[key] = [0, 0, 0, 0]
        acc[0] += 1
        acc[1] += billed
        if init_ms:
            acc[2] += math.ceil(init_ms)
        return billed

    def provisioned(self, function: str, architecture: str, memory_mb: int, environment_ms: float,
                    now: float | None = None) -> None:
        """Meter provisioned concurrency kept ready: `environment_ms` = environments x milliseconds."""
        if not self.enabled:
            return
        hour = int(time.time() if now is None else now) // HOUR * HOUR
        acc = self._pending.setdefault((function, hour, architecture, memory_mb), [0, 0, 0, 0])
        acc[3] += math.ceil(environment_ms)

    async def flush(self) -> None:
        """Write the pending aggregates now (in a worker thread)."""
        batch = self._take()
        if batch:
            await asyncio.to_thread(self._write, batch)

    def flush_sync(self) -> None:
        batch = self._take()
        if batch:
            self._write(batch)

    def _take(self) -> dict[tuple[str, int, str, int], list[int]]:
        batch, self._pending = self._pending, {}
        return batch

    async def _flusher(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep flushing later batches
                log.exception("writing metering records failed")

    def _write(self, batch: dict[tuple[str, int, str, int], list[int]]) -> None:
        rows = [
            {"function_name": fn, "hour_start": hour, "architecture": arch, "memory_mb": mem,
             "requests": a[0], "billed_ms": a[1], "init_billed_ms": a[2], "provisioned_ms": a[3]}
            for (fn, hour, arch, mem), a in batch.items()
        ]
        keys = ["function_name", "hour_start", "architecture", "memory_mb"]
        sums = ["requests", "billed_ms", "init_billed_ms", "provisioned_ms"]
        dialect = self.engine.dialect.name
        with self._db_lock, self.engine.begin() as conn:
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
                stmt = insert(USAGE)
                stmt = stmt.on_conflict_do_update(
                    index_elements=keys,
                    set_={c: USAGE.c[c] + getattr(stmt.excluded, c) for c in sums},
                )
                conn.execute(stmt, rows)
                return
            for row in rows:  # other databases: update, else insert
                where = [USAGE.c[k] == row[k] for k in keys]
                done = conn.execute(update(USAGE).where(*where).values({c: USAGE.c[c] + row[c] for c in sums}))
                if not done.rowcount:
                    conn.execute(USAGE.insert().values(row))

    # --------------------------------------------------------------------------------------- reads

    def usage(self, start: int, end: int, function: str | None = None) -> list[Usage]:
        """Usage between epoch seconds [start, end), per function, architecture and memory size.
        Call `flush()` first to include the last seconds."""
        c = USAGE.c
        stmt = (
            select(c.function_name, c.architecture, c.memory_mb, func.sum(c.requests), func.sum(c.billed_ms),
                   func.sum(c.init_billed_ms), func.sum(c.provisioned_ms))
            .where(c.hour_start >= start, c.hour_start < end)
            .group_by(c.function_name, c.architecture, c.memory_mb)
            .order_by(c.function_name, c.architecture, c.memory_mb)
        )
        if function is not None:
            stmt = stmt.where(c.function_name == function)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [Usage(fn, arch, int(mem), int(r or 0), int(b or 0), int(i or 0), int(p or 0))
                for fn, arch, mem, r, b, i, p in rows]

    def hourly(self, function: str, start: int, end: int) -> list[dict[str, Any]]:
        """Per-hour requests and GB-seconds of one function (the dashboard's cost chart)."""
        c = USAGE.c
        stmt = (
            select(c.hour_start, func.sum(c.requests), func.sum(c.billed_ms * c.memory_mb))
            .where(c.function_name == function, c.hour_start >= start, c.hour_start < end)
            .group_by(c.hour_start)
            .order_by(c.hour_start)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [{"hour": int(h), "requests": int(r or 0), "gbSeconds": int(mbms or 0) / 1024 / 1000}
                for h, r, mbms in rows]
