"""The SQL event queue on SQLite: group commit, leases and their expiry, completions, start-up recovery."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nimbus.control.db import make_engine, migrate
from nimbus.invoke.queue import Completion, NewEvent, SqliteEventQueue, make_queue, now_ms


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database, made once (migrations take a second or two) and copied for each test."""
    path = tmp_path_factory.mktemp("queue") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(template: Path, tmp_path: Path) -> Engine:
    shutil.copy(template, tmp_path / "nimbus.db")
    return make_engine(f"sqlite:///{tmp_path / 'nimbus.db'}")


@pytest.fixture
async def queue(engine: Engine) -> AsyncIterator[SqliteEventQueue]:
    q = make_queue(engine)
    assert isinstance(q, SqliteEventQueue)
    await q.start()
    yield q
    await q.stop()


def ev(n: int, fn: str = "f") -> NewEvent:
    return NewEvent(request_id=f"rid-{n}", function_name=fn, qualifier=None, payload=b'{"n": %d}' % n)


async def test_enqueue_then_lease_oldest_first_once(queue: SqliteEventQueue) -> None:
    await queue.enqueue([ev(1), ev(2), ev(3)])
    first = await queue.lease("f", 2, 60_000)
    assert [e.request_id for e in first] == ["rid-1", "rid-2"]
    assert first[0].payload == b'{"n": 1}' and first[0].attempts == 0
    second = await queue.lease("f", 5, 60_000)
    assert [e.request_id for e in second] == ["rid-3"]
    assert await queue.lease("f", 5, 60_000) == []  # all leased
    (stats,) = await queue.stats("f")
    assert (stats.depth, stats.in_flight, stats.delayed) == (3, 3, 0)


async def test_completion_acks_and_adds_follow_ups_atomically(queue: SqliteEventQueue) -> None:
    await queue.enqueue([ev(1)])
    (leased,) = await queue.lease("f", 1, 60_000)
    await queue.complete([Completion(leased, follow_up=[ev(9, "dest")])])
    assert await queue.stats("f") == []
    (dest,) = await queue.lease("dest", 5, 60_000)
    assert dest.request_id == "rid-9"


async def test_retry_later_keeps_counters_and_waits(queue: SqliteEventQueue) -> None:
    await queue.enqueue([ev(1)])
    (leased,) = await queue.lease("f", 1, 60_000)
    leased.attempts, leased.last_error, leased.last_version, leased.last_response = 1, "Unhandled", "$LATEST", b"{}"
    await queue.complete([Completion(leased, retry_at_ms=now_ms() + 300)])
    (stats,) = await queue.stats("f")
    assert (stats.depth, stats.in_flight, stats.delayed) == (1, 0, 1)
    assert await queue.lease("f", 1, 60_000) == []
    due = (await queue.ready_functions())["f"]
    assert due > now_ms()
    await asyncio.sleep(0.35)
    (again,) = await queue.lease("f", 1, 60_000)
    assert (again.request_id, again.attempts, again.last_error, again.last_response) == ("rid-1", 1, "Unhandled", b"{}")


async def test_an_expired_lease_makes_the_event_ready_again(queue: SqliteEventQueue) -> None:
    await queue.enqueue([ev(1)])
    await queue.lease("f", 1, 50)  # a dispatcher that dies holding it
    assert await queue.lease("f", 1, 50) == []
    await asyncio.sleep(0.08)
    (again,) = await queue.lease("f", 1, 60_000)
    assert again.request_id == "rid-1"


async def test_a_dead_processes_leases_are_released_at_start(engine: Engine) -> None:
    first = make_queue(engine)
    await first.start()
    await first.enqueue([ev(1), ev(2)])
    await first.lease("f", 2, 3_600_000)  # an hour: expiry would take long
    await first.stop()  # no completions: as if the process had died
    second = make_queue(engine)
    await second.start()
    try:
        assert [e.request_id for e in await second.lease("f", 5, 60_000)] == ["rid-1", "rid-2"]
    finally:
        await second.stop()


async def test_concurrent_enqueues_share_transactions(queue: SqliteEventQueue) -> None:
    before = queue.committed_batches
    await asyncio.gather(*(queue.enqueue([ev(n)]) for n in range(200)))
    assert queue.committed_batches - before < 50
    assert queue.enqueued == 200
    (stats,) = await queue.stats("f")
    assert stats.depth == 200 and stats.oldest_enqueued_ms is not None


async def test_enqueue_returns_only_after_commit(queue: SqliteEventQueue, engine: Engine) -> None:
    await queue.enqueue([ev(1)])
    # A separate connection sees it at once: it is committed, not buffered.
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM async_events").scalar() == 1


async def test_ready_functions_and_fairness_inputs(queue: SqliteEventQueue) -> None:
    t0 = now_ms()
    await queue.enqueue([ev(1, "a"), ev(2, "b")])
    ready = await queue.ready_functions()
    assert set(ready) == {"a", "b"} and all(t0 - 1000 <= due <= time.time() * 1000 for due in ready.values())


async def test_purge_function(queue: SqliteEventQueue) -> None:
    await queue.enqueue([ev(1, "gone"), ev(2, "kept")])
    assert await asyncio.to_thread(queue.purge_function, "gone") == 1
    assert [s.function_name for s in await queue.stats()] == ["kept"]


def test_postgres_leases_skip_locked_rows(engine: Engine) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    q = make_queue(engine)
    stmt = q.lease_statement("f", 10, 1_000, 2_000)
    pg = str(stmt.compile(dialect=postgresql.dialect()))
    assert "FOR UPDATE SKIP LOCKED" in pg and "RETURNING" in pg
    lite = str(stmt.compile(dialect=sqlite.dialect()))
    assert "FOR UPDATE" not in lite and "RETURNING" in lite
