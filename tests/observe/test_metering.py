"""Metering: billed duration per invocation, aggregated per function and hour in the database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nimbus.control.db import make_engine, migrate
from nimbus.observe.metering import HOUR, Meter, month_range
from nimbus.observe.report import billed_ms


@pytest.fixture()
def meter(tmp_path: Path) -> Meter:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    return Meter(engine)


def test_billed_duration_rounds_up_to_the_ms_and_includes_init() -> None:
    assert billed_ms(0.0) == 1
    assert billed_ms(0.2) == 1
    assert billed_ms(1.0) == 1
    assert billed_ms(1.01) == 2
    # Since August 2025 AWS bills INIT: 1233.96 ms + 463.512 ms of INIT -> 1698 ms (a real REPORT).
    assert billed_ms(1233.96, 463.512) == 1698


def test_records_aggregate_in_memory_and_flush_as_one_row_per_hour(meter: Meter) -> None:
    t0 = 1_767_225_600  # 2026-01-01T00:00:00Z
    for _ in range(1000):
        meter.record("f", "x86_64", 256, 199.5, now=t0 + 10)
    meter.record("f", "x86_64", 256, 10.0, init_ms=100.2, now=t0 + 20)
    meter.record("f", "x86_64", 256, 10.0, now=t0 + HOUR + 1)  # the next hour
    meter.record("g", "arm64", 512, 1.0, now=t0 + 30)
    meter.flush_sync()
    meter.record("f", "x86_64", 256, 0.5, now=t0 + 40)  # a second flush adds to the same row
    meter.flush_sync()
    with meter.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT function_name, hour_start, requests, billed_ms, init_billed_ms FROM metering_usage "
            "ORDER BY function_name, hour_start").all()
    assert rows == [
        ("f", t0, 1002, 1000 * 200 + 111 + 1, 101),
        ("f", t0 + HOUR, 1, 10, 0),
        ("g", t0, 1, 1, 0),
    ]
    start, end = month_range("2026-01")
    usage = {(u.function, u.architecture): u for u in meter.usage(start, end)}
    f = usage[("f", "x86_64")]
    assert f.requests == 1003 and f.billed_ms == 200_122 and f.memory_mb == 256
    assert f.gb_seconds == pytest.approx(0.25 * 200.122)
    assert usage[("g", "arm64")].requests == 1
    assert [u.function for u in meter.usage(start, end, "g")] == ["g"]
    assert meter.usage(*month_range("2026-02")) == []
    hours = meter.hourly("f", start, end)
    assert [h["requests"] for h in hours] == [1002, 1]


def test_disabled_meter_records_nothing(meter: Meter) -> None:
    meter.enabled = False
    assert meter.record("f", "x86_64", 128, 5.5) == 6
    meter.flush_sync()
    assert meter.usage(0, 2**40) == []


def test_provisioned_concurrency_time_is_metered(meter: Meter) -> None:
    meter.provisioned("p", "x86_64", 1024, 3_600_000, now=1_767_225_600)
    meter.flush_sync()
    (u,) = meter.usage(*month_range("2026-01"))
    assert u.requests == 0 and u.provisioned_gb_seconds == pytest.approx(3600)


def test_month_range() -> None:
    dec = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    jan = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert month_range("2026-12") == (dec, jan)
    assert month_range(None, now=dec + 5) == (dec, jan)
    with pytest.raises(ValueError):
        month_range("2026-13")
    with pytest.raises(ValueError):
        month_range("26-01")


async def test_background_flush_and_stop(meter: Meter) -> None:
    meter.flush_interval = 0.01
    await meter.start()
    meter.record("f", "x86_64", 128, 3.0)
    await meter.stop()  # flushes what is left
    assert meter.usage(0, 2**40)[0].requests == 1
