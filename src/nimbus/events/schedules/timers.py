"""The firing loop of everything that runs on a schedule expression: Scheduler schedules and EventBridge rules
with a ScheduleExpression ("timers", rows of `sched_timers`).

Exactly once per tick, across restarts: a tick is decided in one transaction that moves the timer's
`next_fire_ms` on and writes the tick to the outbox (`sched_fires`, unique per timer and tick). Delivering
the outbox row (an async invocation put on invoke/'s durable queue, with a request id derived from the
timer and tick, or a message on a queue) and deleting it follow; after a crash the outbox is delivered again
at start-up, unless invoke/'s queue already holds that request id. Ticks missed while the server was down
collapse into one fire at start-up (the latest missed tick), when it is younger than the timer's maximum
event age (RetryPolicy.MaximumEventAgeInSeconds, default 24 h).

Timers live in memory as a heap of due times; the loop sleeps until the earliest one (or a change). With a
FLEXIBLE window, a tick runs at a pseudo-random moment within the window after the scheduled time (the same
moment after a restart: it is derived from the timer and the tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.events.schedules.expressions import Expression, parse
from nimbus.events.tables import FIRES, TIMERS
from nimbus.observe.metrics import Sample

log = logging.getLogger("nimbus.events.schedules")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Timer:
    """What the loop needs of a schedule or rule: when it ticks, and its definition (kept for delivery)."""

    key: str
    kind: str  # "schedule" | "rule"
    expression: Expression
    timezone: str
    anchor_ms: int  # StartDate, else the creation time (rate ticks count from it)
    end_ms: int | None
    window_ms: int  # FlexibleTimeWindow (0: OFF)
    max_age_ms: int  # ticks missed for longer than this are not fired at start-up
    enabled: bool
    doc: dict[str, Any]
    next_tick_ms: int | None = None

    def due_ms(self, tick_ms: int) -> int:
        if self.window_ms <= 0:
            return tick_ms
        digest = hashlib.sha256(f"{self.key}/{tick_ms}".encode()).digest()
        return tick_ms + int.from_bytes(digest[:8], "big") % self.window_ms


@dataclass
class FireStats:
    fires: int = 0
    failures: int = 0
    lateness_s: list[float] = field(default_factory=list)  # the last few thousand (benchmark, metrics)
    lateness_max_s: float = 0.0
    lateness_sum_s: float = 0.0

    def late(self, seconds: float) -> None:
        self.fires += 1
        self.lateness_sum_s += seconds
        self.lateness_max_s = max(self.lateness_max_s, seconds)
        self.lateness_s.append(seconds)
        if len(self.lateness_s) > 20000:
            del self.lateness_s[:10000]


# deliver(timer, tick_ms, attempt) -> None on success; raises to retry later (Deliver decides the end).
Deliver = Callable[[Timer, int, int, dict[str, Any]], Awaitable[bool]]


class TimerLoop:
    """Fires timers. `deliver(timer, tick, attempts, fire_doc)` returns True when the fire is finished (sent,
    or given up and dead-lettered) and False to try again later; `after_last(timer)` runs when a timer has no
    more ticks (ActionAfterCompletion)."""

    def __init__(self, engine: Engine, deliver: Deliver, after_last: Callable[[Timer], Awaitable[None]],
                 already_queued: Callable[[list[str]], set[str]] | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.engine = engine
        self.deliver = deliver
        self.after_last = after_last
        self.already_queued = already_queued or (lambda ids: set())
        self.clock = clock
        self.timers: dict[str, Timer] = {}
        self._heap: list[tuple[int, str, int]] = []  # (due ms, key, tick ms)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats = FireStats()
        self._retry_ms = 1000

    # ------------------------------------------------------------------------------ registration

    @staticmethod
    def timer_from_row(key: str, kind: str, doc: dict[str, Any], next_fire_ms: int | None) -> Timer:
        t = doc["_timer"]
        return Timer(key=key, kind=kind, expression=parse(t["expression"]), timezone=t["timezone"],
                     anchor_ms=t["anchor_ms"], end_ms=t.get("end_ms"), window_ms=t.get("window_ms", 0),
                     max_age_ms=t.get("max_age_ms", 86_400_000), enabled=t.get("enabled", True), doc=doc,
                     next_tick_ms=next_fire_ms)

    def first_tick(self, timer: Timer, now: int) -> int | None:
        """The first tick of a new or changed timer: rate starts at once (or at its StartDate)."""
        if timer.expression.kind == "rate" and timer.anchor_ms <= now:
            # The first run of a rate schedule is immediate; later ones keep the period from its start.
            return now if timer.end_ms is None or now <= timer.end_ms else None
        if timer.expression.kind == "at":
            # A time already past is accepted by AWS; nimbus runs it once, at once.
            return timer.expression.next_after(-1, timer.timezone, timer.anchor_ms)
        return timer.expression.next_after(now - 1, timer.timezone, timer.anchor_ms, timer.end_ms)

    def put(self, conn: Any, timer: Timer, now: int) -> None:
        """Store a new or replaced timer in the caller's transaction (the owner's row is written with it)."""
        timer.next_tick_ms = self.first_tick(timer, now) if timer.enabled else None
        exists = conn.execute(select(TIMERS.c.key).where(TIMERS.c.key == timer.key)).scalar()
        values = {"kind": timer.kind, "doc": timer.doc, "next_fire_ms": timer.next_tick_ms}
        if exists:
            conn.execute(update(TIMERS).where(TIMERS.c.key == timer.key).values(**values))
        else:
            conn.execute(insert(TIMERS).values(key=timer.key, **values))

    def remove_row(self, conn: Any, key: str) -> None:
        conn.execute(delete(TIMERS).where(TIMERS.c.key == key))
        conn.execute(delete(FIRES).where(FIRES.c.timer_key == key))

    def activate(self, timer: Timer) -> None:
        """After the caller committed `put`: schedule it in memory."""
        self.timers[timer.key] = timer
        if timer.enabled and timer.next_tick_ms is not None:
            heapq.heappush(self._heap, (timer.due_ms(timer.next_tick_ms), timer.key, timer.next_tick_ms))
        self._wake.set()

    def forget(self, key: str) -> None:
        self.timers.pop(key, None)  # heap entries of it are skipped when popped
        self._wake.set()

    # --------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        now = self.clock()
        rows = await asyncio.to_thread(self._load)
        missed: list[tuple[Timer, int]] = []
        for key, kind, doc, next_ms in rows:
            try:
                timer = self.timer_from_row(key, kind, doc, next_ms)
            except Exception:
                log.exception("timer %s cannot be loaded", key)
                continue
            self.timers[key] = timer
            if not timer.enabled or next_ms is None:
                continue
            if timer.due_ms(next_ms) < now:
                # Missed while down: the latest missed tick fires once, then the schedule goes on.
                latest = next_ms
                while True:
                    nxt = timer.expression.next_after(latest, timer.timezone, timer.anchor_ms, timer.end_ms)
                    if nxt is None or nxt > now:
                        break
                    latest = nxt
                if now - latest <= timer.max_age_ms:
                    missed.append((timer, latest))
                    timer.next_tick_ms = latest
                    heapq.heappush(self._heap, (now, key, latest))
                else:
                    timer.next_tick_ms = timer.expression.next_after(now, timer.timezone, timer.anchor_ms,
                                                                     timer.end_ms)
                    await asyncio.to_thread(self._advance_only, timer)
                    if timer.next_tick_ms is not None:
                        heapq.heappush(self._heap, (timer.due_ms(timer.next_tick_ms), key, timer.next_tick_ms))
                continue
            heapq.heappush(self._heap, (timer.due_ms(next_ms), key, next_ms))
        if missed:
            log.info("%d schedules missed a tick while the server was down: each fires once now", len(missed))
        await self._redeliver_outbox()
        self._task = asyncio.create_task(self._loop(), name="timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)

    def _load(self) -> list[tuple[str, str, dict[str, Any], int | None]]:
        with self.engine.connect() as conn:
            return [(r.key, r.kind, dict(r.doc), r.next_fire_ms) for r in conn.execute(select(TIMERS))]

    def _advance_only(self, timer: Timer) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(TIMERS).where(TIMERS.c.key == timer.key).values(next_fire_ms=timer.next_tick_ms))

    # --------------------------------------------------------------------------------------- loop

    async def _loop(self) -> None:
        while True:
            now = self.clock()
            due: list[tuple[Timer, int, int]] = []
            while self._heap and self._heap[0][0] <= now:
                due_ms, key, tick = heapq.heappop(self._heap)
                timer = self.timers.get(key)
                if timer is None or not timer.enabled or timer.next_tick_ms != tick:
                    continue  # deleted, disabled or rescheduled since
                due.append((timer, tick, due_ms))
            if due:
                try:
                    await self._fire(due)
                except Exception:
                    log.exception("firing %d schedules failed; retrying", len(due))
                    for timer, tick, due_ms in due:
                        heapq.heappush(self._heap, (due_ms + self._retry_ms, timer.key, tick))
                    await asyncio.sleep(self._retry_ms / 1000)
                continue
            self._wake.clear()
            timeout = (self._heap[0][0] - now) / 1000 if self._heap else 60.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, min(timeout, 60.0)))

    async def _fire(self, due: list[tuple[Timer, int, int]]) -> None:
        """Decide the ticks (one transaction: outbox rows + next ticks), then deliver them concurrently."""
        now = self.clock()
        plans = []
        for timer, tick, due_ms in due:
            nxt = timer.expression.next_after(max(tick, now if timer.expression.kind != "rate" else tick),
                                              timer.timezone, timer.anchor_ms, timer.end_ms)
            if timer.expression.kind == "rate" and nxt is not None and nxt <= now:
                # Behind by more than a period (a long stall): skip to the next future tick.
                nxt = timer.expression.next_after(now, timer.timezone, timer.anchor_ms, timer.end_ms)
            plans.append((timer, tick, due_ms, nxt))
        fire_ids = await asyncio.to_thread(self._decide, plans)
        for (timer, tick, due_ms, nxt), fire_id in zip(plans, fire_ids, strict=True):
            timer.next_tick_ms = nxt
            if nxt is not None:
                heapq.heappush(self._heap, (timer.due_ms(nxt), timer.key, nxt))
            if fire_id is None:
                continue  # this tick was decided before (a restart between deciding and delivering)
            self._spawn(timer, fire_id, tick, 0, {}, last=nxt is None, due_ms=due_ms)

    def _decide(self, plans: list[tuple[Timer, int, int, int | None]]) -> list[int | None]:
        ids: list[int | None] = []
        with self.engine.begin() as conn:
            for timer, tick, due_ms, nxt in plans:
                conn.execute(update(TIMERS).where(TIMERS.c.key == timer.key).values(next_fire_ms=nxt))
                try:
                    with conn.begin_nested():
                        result = conn.execute(insert(FIRES).values(
                            timer_key=timer.key, tick_ms=tick, due_ms=due_ms, attempts=0, doc={}))
                    ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
                except IntegrityError:
                    ids.append(None)
        return ids

    def _spawn(self, timer: Timer, fire_id: int, tick: int, attempts: int, doc: dict[str, Any],
               last: bool, due_ms: int | None = None) -> None:
        task = asyncio.create_task(self._deliver(timer, fire_id, tick, attempts, doc, last, due_ms))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _deliver(self, timer: Timer, fire_id: int, tick: int, attempts: int, doc: dict[str, Any],
                       last: bool, due_ms: int | None = None) -> None:
        while True:
            try:
                finished = await self.deliver(timer, tick, attempts, doc)
            except Exception:
                log.exception("delivering tick %s of %s failed", tick, timer.key)
                finished = False
            if due_ms is not None:
                # Lateness: from the tick's due time to its target accepting it (the async invocation
                # committed to invoke/'s queue, the message sent), as Scheduler's own part of the delay.
                self.stats.late(max(0.0, (self.clock() - due_ms) / 1000))
                due_ms = None
            if finished:
                await asyncio.to_thread(self._done, fire_id)
                break
            attempts += 1
            self.stats.failures += 1
            delay = min(2 ** min(attempts, 10), 300)  # exponential backoff, as Scheduler retries
            await asyncio.to_thread(self._requeue, fire_id, attempts, self.clock() + delay * 1000)
            await asyncio.sleep(delay)
        if last:
            await self.after_last(timer)

    def _done(self, fire_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(FIRES).where(FIRES.c.id == fire_id))

    def _requeue(self, fire_id: int, attempts: int, due_ms: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(FIRES).where(FIRES.c.id == fire_id).values(attempts=attempts, due_ms=due_ms))

    async def _redeliver_outbox(self) -> None:
        """Ticks decided before a crash but not known delivered: deliver them (unless already queued)."""

        def read() -> list[Any]:
            with self.engine.connect() as conn:
                return list(conn.execute(select(FIRES)))

        rows = await asyncio.to_thread(read)
        if not rows:
            return
        queued = self.already_queued([request_id_for(r.timer_key, r.tick_ms) for r in rows])
        for r in rows:
            timer = self.timers.get(r.timer_key)
            if timer is None or request_id_for(r.timer_key, r.tick_ms) in queued:
                await asyncio.to_thread(self._done, r.id)
                continue
            self._spawn(timer, r.id, r.tick_ms, r.attempts, dict(r.doc), last=timer.next_tick_ms is None)

    # -------------------------------------------------------------------------------------- figures

    def next_fire(self, key: str) -> int | None:
        timer = self.timers.get(key)
        if timer is None or not timer.enabled or timer.next_tick_ms is None:
            return None
        return timer.due_ms(timer.next_tick_ms)

    def samples(self) -> Iterable[Sample]:
        s = self.stats
        yield Sample("nimbus_schedule_fires", "Ticks of schedules and scheduled rules fired.", (),
                     [((), float(s.fires))], "counter")
        yield Sample("nimbus_schedule_delivery_failures", "Failed deliveries of schedule ticks (retried).", (),
                     [((), float(s.failures))], "counter")
        yield Sample("nimbus_schedule_lateness_seconds_sum", "Seconds between ticks' due times and their firing.",
                     (), [((), s.lateness_sum_s)], "counter")
        yield Sample("nimbus_schedule_lateness_seconds_max", "The largest lateness of a tick since start.", (),
                     [((), s.lateness_max_s)])
        recent = sorted(s.lateness_s[-2000:])
        p99 = recent[min(len(recent) - 1, int(len(recent) * 0.99))] if recent else 0.0
        yield Sample("nimbus_schedule_lateness_seconds_p99", "The 99th percentile lateness of the last 2,000 ticks.",
                     (), [((), p99)])
        yield Sample("nimbus_schedules", "Timers (schedules and scheduled rules) loaded.", (),
                     [((), float(len(self.timers)))])


def request_id_for(key: str, tick_ms: int) -> str:
    """The async request id of a timer's tick: the same after a restart, so a re-delivery can be detected."""
    h = hashlib.sha256(f"{key}@{tick_ms}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-a{h[17:20]}-{h[20:32]}"
