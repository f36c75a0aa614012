"""Metering's upsert on PostgreSQL (the shared-deployment database); skips where PostgreSQL is not installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from nimbus.control.db import make_engine, migrate
from nimbus.observe.metering import HOUR, Meter
from tests.invoke.test_queue_postgres import pg_url  # noqa: F401 (the PostgreSQL server fixture)


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[Engine]:  # noqa: F811
    engine = make_engine(pg_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_aggregates_add_up_across_flushes(engine: Engine) -> None:
    meter = Meter(engine)
    t0 = 1_767_225_600
    for _ in range(3):
        meter.record("pg-fn", "x86_64", 256, 9.5, now=t0 + 1)
        meter.flush_sync()
    meter.record("pg-fn", "x86_64", 256, 1.0, init_ms=50.0, now=t0 + HOUR)
    meter.flush_sync()
    usage = meter.usage(t0, t0 + 2 * HOUR, "pg-fn")
    assert [(u.requests, u.billed_ms, u.init_billed_ms) for u in usage] == [(4, 3 * 10 + 51, 50)]
    assert [h["requests"] for h in meter.hourly("pg-fn", t0, t0 + 2 * HOUR)] == [3, 1]
