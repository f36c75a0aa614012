"""The timer loop (events/schedules/timers.py) over a real SQLite database: a tick fires once, not again after
a restart; a tick decided but not delivered before a crash is delivered at start-up; a missed tick fires once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from nimbus.control.db import make_engine, migrate
from nimbus.events.schedules.timers import Timer, TimerLoop


def engine(tmp_path: Path) -> Engine:
    e = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(e)
    return e


def at_doc(seconds_ahead: float) -> tuple[dict[str, Any], str]:
    when = time.time() + seconds_ahead
    text = "at(" + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + ")"
    return {"_timer": {"expression": text, "timezone": "UTC", "anchor_ms": 0, "enabled": True}}, text


class Recorder:
    def __init__(self, hang: bool = False) -> None:
        self.ticks: list[tuple[str, int]] = []
        self.hang = hang

    async def deliver(self, timer: Timer, tick: int, attempts: int, doc: dict[str, Any]) -> bool:
        if self.hang:
            await asyncio.Event().wait()
        self.ticks.append((timer.key, tick))
        return True

    async def after_last(self, timer: Timer) -> None:
        return None


def add(loop: TimerLoop, e: Engine, key: str, doc: dict[str, Any]) -> None:
    timer = TimerLoop.timer_from_row(key, "schedule", doc, None)
    with e.begin() as conn:
        loop.put(conn, timer, int(time.time() * 1000))
    loop.activate(timer)


async def wait_until(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_fires_once_and_not_again_after_restart(tmp_path: Path) -> None:
    e = engine(tmp_path)
    rec = Recorder()
    loop = TimerLoop(e, rec.deliver, rec.after_last)
    await loop.start()
    doc, _ = at_doc(1.0)
    add(loop, e, "schedule:default/a", doc)
    await wait_until(lambda: rec.ticks)
    await asyncio.sleep(0.2)
    await loop.stop()
    assert len(rec.ticks) == 1
    again = Recorder()
    loop2 = TimerLoop(e, again.deliver, again.after_last)
    await loop2.start()
    await asyncio.sleep(0.5)
    await loop2.stop()
    assert again.ticks == []


async def test_decided_but_undelivered_tick_is_delivered_at_start(tmp_path: Path) -> None:
    e = engine(tmp_path)
    stuck = Recorder(hang=True)
    loop = TimerLoop(e, stuck.deliver, stuck.after_last)
    await loop.start()
    doc, _ = at_doc(0.5)
    add(loop, e, "schedule:default/b", doc)
    await wait_until(lambda: bool(loop._inflight))  # noqa: SLF001 (the tick is decided, its delivery hangs)
    loop._inflight.clear()  # noqa: SLF001 (a crash: the delivery never finishes)
    await loop.stop()
    rec = Recorder()
    loop2 = TimerLoop(e, rec.deliver, rec.after_last)
    await loop2.start()
    await wait_until(lambda: rec.ticks)
    await asyncio.sleep(0.3)
    await loop2.stop()
    assert [k for k, _ in rec.ticks] == ["schedule:default/b"]


async def test_queued_request_is_not_delivered_twice(tmp_path: Path) -> None:
    e = engine(tmp_path)
    stuck = Recorder(hang=True)
    loop = TimerLoop(e, stuck.deliver, stuck.after_last)
    await loop.start()
    doc, _ = at_doc(0.3)
    add(loop, e, "schedule:default/c", doc)
    await wait_until(lambda: bool(loop._inflight))  # noqa: SLF001 (the tick is decided, its delivery hangs)
    loop._inflight.clear()  # noqa: SLF001
    await loop.stop()
    rec = Recorder()
    # invoke/'s queue already holds the tick's request id: it was enqueued before the crash.
    loop2 = TimerLoop(e, rec.deliver, rec.after_last, already_queued=lambda ids: set(ids))
    await loop2.start()
    await asyncio.sleep(0.3)
    await loop2.stop()
    assert rec.ticks == []


async def test_rate_ticks_missed_while_down_fire_once(tmp_path: Path) -> None:
    e = engine(tmp_path)
    rec = Recorder()
    loop = TimerLoop(e, rec.deliver, rec.after_last)
    start_ms = int(time.time() * 1000) - 10 * 60_000  # ten missed minutes
    doc = {"_timer": {"expression": "rate(1 minute)", "timezone": "UTC", "anchor_ms": start_ms, "enabled": True}}
    timer = TimerLoop.timer_from_row("schedule:default/d", "schedule", doc, None)
    with e.begin() as conn:
        loop.put(conn, timer, start_ms)  # stored with its first tick ten minutes ago
    await loop.start()
    await wait_until(lambda: rec.ticks)
    await asyncio.sleep(0.3)
    await loop.stop()
    assert len(rec.ticks) == 1
    assert int(time.time() * 1000) - rec.ticks[0][1] < 60_000  # the latest missed tick
