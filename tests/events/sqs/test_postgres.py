"""The queue service on a live PostgreSQL (a throwaway cluster, as tests/invoke/test_queue_postgres.py):
the migration, a send/receive/delete round trip, and the messages and dedup ids a restart reloads.
Skipped where PostgreSQL's server binaries or psycopg are missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.events.sqs import MessageAttribute, QueueService
from tests.invoke.test_queue_postgres import pg_url  # noqa: F401 (the module's PostgreSQL fixture)


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[Engine]:  # noqa: F811
    engine = make_engine(pg_url)
    migrate(engine)
    yield engine
    engine.dispose()


async def test_round_trip_and_reload_on_postgres(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    svc = QueueService(settings, engine)
    await svc.start()
    q = await svc.create_queue(f"pg-{tmp_path.name[-20:]}.fifo", {"FifoQueue": "true"})
    sent = await svc.send(q.arn, "über", {"b": MessageAttribute("Binary", binary_value=b"\x00\x01")},
                          group_id="g", dedup_id="d1")
    await svc.send(q.arn, "second", group_id="g", dedup_id="d2")
    got = await svc.receive(q.arn, 1)
    assert got[0].message_id == sent.message_id
    assert await svc.delete(q.arn, [got[0].receipt_handle]) == []
    await svc.stop()
    again = QueueService(settings, engine)
    await again.start()
    dup = await again.send(q.arn, "über", group_id="g", dedup_id="d1")  # the dedup window survived
    assert dup.message_id == sent.message_id
    assert [m.body for m in await again.receive(q.arn, 10)] == ["second"]
    await again.stop()
