"""The async dispatcher: leases queued `Event` invocations and delivers them, as Lambda's poller does.

- Fairness: free delivery slots (`async_max_concurrency`) are shared out by water-filling, one slot at a
  time to the function with the fewest deliveries running, so one function's backlog cannot starve another.
- Reserved concurrency N caps a function's deliveries (async and sync together) at N; 0 sends new events
  straight to the OnFailure destination without running them (condition ZeroReservedConcurrency).
- Function errors (unhandled exception, timeout, out of memory) are retried MaximumRetryAttempts times
  after `async_retry_delays` (AWS: about 1 then 2 minutes); throttles and platform errors go back on the
  queue with exponential backoff (1 s doubling up to 5 min); an event older than MaximumEventAgeInSeconds
  (or that would be before its next try) is dropped with condition EventAgeExceeded. Every attempt keeps
  the event's request id.
- Completions are acked in batches after the function logs of their attempts are stored, so after a crash
  an event either has its logs or runs again (at least once). A crashed delivery's lease expires and the
  event is leased again (the embedded SQLite queue releases a dead process's leases at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nimbus.config import Settings
from nimbus.control.eventconfigs import AsyncConfig
from nimbus.errors import ResourceNotFound, TooManyRequests
from nimbus.invoke import destinations as dest
from nimbus.invoke.destinations import AttemptResult
from nimbus.invoke.queue import Completion, EventQueue, LeasedEvent, NewEvent, now_ms

log = logging.getLogger("nimbus.invoke.dispatcher")

INF = 2**62


class Target(Protocol):
    """What the dispatcher needs from the data plane (the Invoker in a server, fakes in tests)."""

    def reserved_concurrency(self, function_name: str) -> int | None:
        """The function's reserved concurrency; raises ResourceNotFound when it no longer exists."""

    def in_flight(self, function_name: str) -> int:
        """Invocations of the function running now, sync and async."""

    def lease_ms(self, function_name: str) -> int:
        """How long a delivery of the function may take, with margin (the lease it gets)."""

    async def run(self, event: LeasedEvent) -> AttemptResult:
        """Run the function once for the event. Raises ResourceNotFound (function or qualifier gone),
        TooManyRequests (no capacity); any other exception is a platform error."""

    def function_arn(self, function_name: str, qualifier: str | None) -> str:
        """The ARN qualified with the version `qualifier` resolves to now (for records of events that never
        ran)."""

    def split_destination(self, arn: str) -> tuple[str, str | None]:
        """(function name, qualifier) of a destination function ARN."""

    def new_request_id(self) -> str: ...


ConfigLookup = Callable[[str, str | None], AsyncConfig]


class Dispatcher:
    """Delivers the queue's events. Runs on the server's event loop."""

    def __init__(
        self,
        settings: Settings,
        queue: EventQueue,
        target: Target,
        configs: ConfigLookup,
        before_ack: Callable[[], Awaitable[None]] | None = None,
        ack_interval: float = 0.05,
        lease_interval: float = 0.01,
        shortest_age: Callable[[str], int] | None = None,
        on_dropped: Callable[[str, str], None] | None = None,
        on_destination_failure: Callable[[str], None] | None = None,
        on_dead_letter_failure: Callable[[str], None] | None = None,
        record_sink: dest.RecordSink | None = None,
        dead_letter: Callable[[str, str | None], str | None] | None = None,
        dead_letter_sink: dest.DeadLetterSink | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.target = target
        self.configs = configs
        self.before_ack = before_ack
        self.ack_interval = ack_interval
        self.lease_interval = lease_interval
        # The shortest MaximumEventAgeInSeconds among a function's configs (for expiring waiting events).
        self.shortest_age = shortest_age or (lambda fn: settings.async_max_event_age)
        # Metrics hooks: an event discarded without a destination (function, reason), and an invocation
        # record that could not be addressed to its destination (function).
        self.on_dropped = on_dropped or (lambda fn, reason: None)
        self.on_destination_failure = on_destination_failure or (lambda fn: None)
        self.on_dead_letter_failure = on_dead_letter_failure or (lambda fn: None)
        self.max_concurrency = settings.async_max_concurrency
        # Invocation records for queue and bus destinations (issue 15): sent before the event is acked.
        self.record_sink = record_sink
        self._external: dict[int, tuple[str, dict[str, Any]]] = {}
        # The function's DeadLetterConfig.TargetArn (function, qualifier) and how to send there (issue 15).
        self.dead_letter = dead_letter
        self.dead_letter_sink = dead_letter_sink
        self._dead_letters: dict[int, tuple[str, AttemptResult | None]] = {}
        self._known: dict[str, int] = {}  # function -> when its earliest queued event is due (epoch ms)
        self._generation: dict[str, int] = {}  # bumped whenever new events of the function commit
        self._paused: dict[str, int] = {}  # function -> no leases before (epoch ms), after a throttle
        self._running: dict[str, int] = {}
        self._total = 0
        self._deliveries: set[asyncio.Task[None]] = set()
        self._completions: list[Completion] = []
        self._wake = asyncio.Event()
        self._ack_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._rr = 0
        # Intake priority: while events arrive faster than `async_busy_intake_rate`, deliveries start at
        # most `async_busy_delivery_rate` a second (a token bucket), so accepting events keeps the CPU.
        self._intake_mark = (0.0, 0)
        self._intake_rate = 0.0
        self._tokens = 0.0
        self._tokens_at = 0.0
        # Counters (for the API, benchmarks and tests).
        self.delivered = 0
        self.retried = 0
        self.throttled = 0
        self.failed = 0
        self.dropped = 0
        self.peak_running: dict[str, int] = {}

    def outcome_counts(self) -> dict[str, int]:
        """Attempts by outcome since the start (metrics)."""
        return {"delivered": self.delivered, "retried": self.retried, "throttled": self.throttled,
                "failed": self.failed, "dropped": self.dropped}

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._stopping = False
        self.queue.add_listener(self._on_enqueued)
        self._tasks = [
            asyncio.create_task(self._loop(), name="async-dispatcher"),
            asyncio.create_task(self._acker(), name="async-acker"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop leasing, let deliveries in flight finish (up to `grace` seconds), store their outcomes.
        Deliveries still running are abandoned: their leases expire and the events run again."""
        self._stopping = True
        self._wake.set()
        loop_task, acker = self._tasks if self._tasks else (None, None)
        if loop_task is not None:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        if self._deliveries:
            await asyncio.wait(self._deliveries, timeout=grace)
            for task in self._deliveries:
                task.cancel()
        if acker is not None:
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker
        await self._flush_completions()
        self._tasks = []

    def running(self, function_name: str | None = None) -> int:
        """Deliveries in flight (leased and not finished)."""
        return self._total if function_name is None else self._running.get(function_name, 0)

    def _on_enqueued(self, functions: set[str]) -> None:
        now = now_ms()
        for fn in functions:
            self._known[fn] = min(self._known.get(fn, INF), now)
            self._generation[fn] = self._generation.get(fn, 0) + 1
        self._wake.set()

    # ----------------------------------------------------------------------------------- leasing

    async def _loop(self) -> None:
        poll_ms = int(self.settings.async_poll_interval * 1000)
        last_scan = -INF
        while not self._stopping:
            now = now_ms()
            if now - last_scan >= poll_ms:
                last_scan = now
                try:
                    for fn, due in (await self.queue.ready_functions()).items():
                        self._known[fn] = min(self._known.get(fn, INF), due)
                    await self._expire_waiting(now)
                except Exception:
                    log.exception("async dispatcher: scanning the queue failed")
            leased = 0
            try:
                leased = await self._lease_round(now_ms())
            except Exception:
                log.exception("async dispatcher: leasing failed")
                await asyncio.sleep(1.0)
            if leased:
                # Under load, lease rounds a little apart take many events each: one transaction per
                # round instead of one per event or two (what the queue costs per delivery matters).
                await asyncio.sleep(self.lease_interval)
                continue
            now = now_ms()
            next_due = min(
                [max(due, self._paused.get(fn, 0)) for fn, due in self._known.items()], default=INF
            )
            # Work that is due but could not start (no capacity, intake busy) is retried a round later
            # (a delivery finishing wakes the loop at once); otherwise sleep until the next due event.
            timeout_ms = min(max(next_due - now, int(self.lease_interval * 1000)), poll_ms - (now - last_scan))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(timeout_ms, 1) / 1000)

    def _busy_budget(self) -> int | None:
        """How many deliveries may start now while the intake is busy (None: not busy, no limit)."""
        t = time.monotonic()
        mark_t, mark_n = self._intake_mark
        if t - mark_t >= 0.25:
            count = self.queue.enqueued
            if mark_t:
                self._intake_rate = (count - mark_n) / (t - mark_t)
            self._intake_mark = (t, count)
        rate = self.settings.async_busy_delivery_rate
        if self._intake_rate < self.settings.async_busy_intake_rate or rate <= 0:
            self._tokens = rate * 0.05
            self._tokens_at = t
            return None
        self._tokens = min(rate * 0.05, self._tokens + (t - self._tokens_at) * rate)
        self._tokens_at = t
        return max(0, int(self._tokens))

    def _capacity(self, fn: str, free: int) -> int:
        """How many more deliveries of `fn` may start (reserved concurrency minus what runs)."""
        try:
            reserved = self.target.reserved_concurrency(fn)
        except ResourceNotFound:
            return free  # leased only to be dropped
        if reserved is None or reserved == 0:  # 0: straight to the failure destination, nothing runs
            return free
        mine = self._running.get(fn, 0)
        others = max(0, self.target.in_flight(fn) - mine)
        return max(0, reserved - mine - others)

    async def _expire_waiting(self, now: int) -> None:
        """Events of functions at their reserved concurrency wait for a slot; those past the shortest
        maximum age of their function are leased anyway, to be failed with EventAgeExceeded (an event
        that turns out younger for its qualifier is requeued as a throttle)."""
        for fn, due in list(self._known.items()):
            if due > now or self._capacity(fn, 1) > 0:
                continue
            try:
                cutoff = now - self.shortest_age(fn) * 1000
            except ResourceNotFound:
                continue
            for event in await self.queue.lease(fn, 100, self.target_lease_ms(fn), accepted_before_ms=cutoff):
                self._start(event)

    async def _lease_round(self, now: int) -> int:
        free = self.max_concurrency - self._total
        budget = self._busy_budget()
        if budget is not None:
            free = min(free, budget)
        if free <= 0:
            return 0
        ready = [fn for fn, due in self._known.items() if due <= now and self._paused.get(fn, 0) <= now]
        if not ready:
            return 0
        capacity = {fn: self._capacity(fn, free) for fn in ready}
        allot = _water_fill(ready, capacity, self._running, free, self._rr)
        self._rr += 1
        if not allot:
            return 0
        generations = {fn: self._generation.get(fn, 0) for fn in allot}
        results = await asyncio.gather(
            *(self.queue.lease(fn, n, self.target_lease_ms(fn)) for fn, n in allot.items())
        )
        total = 0
        self._tokens -= sum(len(events) for events in results)
        for (fn, n), events in zip(allot.items(), results, strict=True):
            if len(events) < n and self._generation.get(fn, 0) == generations[fn]:
                self._known.pop(fn, None)  # drained for now: due retries and other nodes' come with a scan
            for event in events:
                self._start(event)
            total += len(events)
        return total

    def target_lease_ms(self, function_name: str) -> int:
        try:
            return self.target.lease_ms(function_name)
        except ResourceNotFound:
            return 60_000

    def _start(self, event: LeasedEvent) -> None:
        fn = event.function_name
        running = self._running.get(fn, 0) + 1
        self._running[fn] = running
        self._total += 1
        if running > self.peak_running.get(fn, 0):
            self.peak_running[fn] = running
        task = asyncio.create_task(self._deliver(event))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    # ---------------------------------------------------------------------------------- delivery

    async def _deliver(self, event: LeasedEvent) -> None:
        fn = event.function_name
        try:
            completion = await self._attempt(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not lose the event: its lease expires and it runs again
            log.exception("async delivery failed", extra={"request_id": event.request_id})
            completion = None
        finally:
            left = self._running.get(fn, 1) - 1
            if left:
                self._running[fn] = left
            else:
                self._running.pop(fn, None)
            self._total -= 1
            self._wake.set()
        external = self._external.pop(event.id, None)
        if completion is not None and external is not None:
            await self._send_external(event, *external)
        dead = self._dead_letters.pop(event.id, None)
        if completion is not None and dead is not None:
            await self._send_dead_letter(event, *dead)
        if completion is not None:
            self._completions.append(completion)
            self._ack_wake.set()

    async def _send_external(self, event: LeasedEvent, destination: str, record: dict[str, Any]) -> None:
        try:
            if self.record_sink is None:
                raise RuntimeError("no destination sink for queues and buses")
            await self.record_sink(destination, record)
        except Exception as exc:  # AWS drops the record too, counting a DestinationDeliveryFailure
            log.warning("invocation record not sent to %s: %s", destination, exc,
                        extra={"request_id": event.request_id})
            self.on_destination_failure(event.function_name)

    async def _send_dead_letter(self, event: LeasedEvent, arn: str, last: AttemptResult | None) -> None:
        try:
            if self.dead_letter_sink is None:
                raise RuntimeError("no dead-letter sink")
            await self.dead_letter_sink(arn, event.payload, dest.dead_letter_attributes(event, last))
        except Exception as exc:  # AWS drops the event too, counting DeadLetterErrors
            log.warning("event not sent to the dead-letter queue %s: %s", arn, exc,
                        extra={"request_id": event.request_id})
            self.on_dead_letter_failure(event.function_name)

    async def _attempt(self, event: LeasedEvent) -> Completion:
        fn = event.function_name
        config = self.configs(fn, event.qualifier)
        age_limit = event.enqueued_ms + config.maximum_event_age * 1000
        try:
            reserved = self.target.reserved_concurrency(fn)
        except ResourceNotFound:
            return self._drop(event, "the function no longer exists")
        if reserved == 0:
            return self._fail(event, config, dest.ZERO_RESERVED_CONCURRENCY)
        if now_ms() > age_limit:
            return self._fail(event, config, dest.EVENT_AGE_EXCEEDED)
        try:
            result = await self.target.run(event)
        except ResourceNotFound:
            return self._drop(event, "the function or its qualifier no longer exists")
        except TooManyRequests as exc:
            self.throttled += 1
            return self._backoff(event, config, age_limit, f"throttled ({exc.extra.get('Reason', '')})")
        except Exception as exc:
            log.warning("async delivery: platform error, retrying later: %s", exc,
                        extra={"request_id": event.request_id, "function": fn})
            return self._backoff(event, config, age_limit, "platform error")
        event.attempts += 1
        event.throttles = 0
        event.last_version = result.version
        event.last_error = result.function_error
        event.last_response = result.payload
        if result.function_error is None:
            self.delivered += 1
            if event.attempts > 1:
                log.info("async attempt %d of request %s succeeded", event.attempts, event.request_id,
                         extra={"request_id": event.request_id, "function": fn, "attempt": event.attempts})
            return self._finish(event, config.on_success, dest.SUCCESS, result)
        if event.attempts > config.maximum_retry_attempts:
            return self._fail(event, config, dest.RETRIES_EXHAUSTED, result)
        delay_ms = int(self.settings.async_retry_delay(event.attempts) * 1000)
        retry_at = now_ms() + delay_ms
        if retry_at > age_limit:
            return self._fail(event, config, dest.EVENT_AGE_EXCEEDED, result)
        self.retried += 1
        log.info(
            "async attempt %d of request %s failed (%s); retrying in %.0f s", event.attempts, event.request_id,
            result.function_error, delay_ms / 1000,
            extra={"request_id": event.request_id, "function": fn, "attempt": event.attempts},
        )
        return Completion(event, retry_at_ms=retry_at)

    def _backoff(self, event: LeasedEvent, config: AsyncConfig, age_limit: int, why: str) -> Completion:
        low, high = self.settings.async_throttle_backoff_min, self.settings.async_throttle_backoff_max
        delay_ms = int(min(low * 2**min(event.throttles, 40), high) * 1000)
        event.throttles += 1
        now = now_ms()
        self._paused[event.function_name] = max(self._paused.get(event.function_name, 0),
                                                now + min(delay_ms, int(low * 1000)))
        if now + delay_ms > age_limit:
            last = self._last(event)
            return self._fail(event, config, dest.EVENT_AGE_EXCEEDED, last)
        log.debug("async delivery %s: requeued for %.1f s", why, delay_ms / 1000,
                  extra={"request_id": event.request_id})
        return Completion(event, retry_at_ms=now + delay_ms)

    @staticmethod
    def _last(event: LeasedEvent) -> AttemptResult | None:
        if event.attempts == 0 or event.last_version is None:
            return None
        return AttemptResult(event.last_version, "", event.last_response or b"", event.last_error)

    def _drop(self, event: LeasedEvent, why: str) -> Completion:
        self.dropped += 1
        self.on_dropped(event.function_name, "FunctionDeleted")
        log.warning("async event dropped: %s", why, extra={"request_id": event.request_id,
                                                          "function": event.function_name})
        return Completion(event)

    def _fail(self, event: LeasedEvent, config: AsyncConfig, condition: str,
              last: AttemptResult | None = None) -> Completion:
        self.failed += 1
        log.warning(
            "async event failed: %s after %d attempts", condition, event.attempts,
            extra={"request_id": event.request_id, "function": event.function_name, "attempt": event.attempts},
        )
        if self.dead_letter is not None and condition != dest.ZERO_RESERVED_CONCURRENCY:
            try:
                arn = self.dead_letter(event.function_name, event.qualifier)
            except ResourceNotFound:
                arn = None
            if arn:
                self._dead_letters[event.id] = (arn, last)
        return self._finish(event, config.on_failure, condition, last)

    def _finish(self, event: LeasedEvent, destination: str | None, condition: str,
                last: AttemptResult | None) -> Completion:
        if destination is None:
            if condition != dest.SUCCESS:
                self.on_dropped(event.function_name, condition)
            return Completion(event)
        if last is not None and last.function_arn:
            arn = last.function_arn
        else:
            try:
                arn = self.target.function_arn(event.function_name, last.version if last else event.qualifier)
            except ResourceNotFound:
                arn = self.target.function_arn(event.function_name, None)
        record = dest.invocation_record(event, condition, arn, last)
        if not dest.is_function(destination):
            self._external[event.id] = (destination, record)
            return Completion(event)
        follow = dest.record_event(destination, record, self.target.new_request_id(),
                                   self.settings.async_payload_max_bytes, self.target.split_destination)
        if follow is None:
            self.on_destination_failure(event.function_name)
        return Completion(event, follow_up=[follow] if follow is not None else [])

    # -------------------------------------------------------------------------------------- acks

    async def _acker(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            await asyncio.sleep(self.ack_interval)  # let more completions join this batch
            await self._flush_completions()

    async def _flush_completions(self) -> None:
        batch, self._completions = self._completions, []
        if not batch:
            return
        try:
            if self.before_ack is not None:
                await self.before_ack()
            await self.queue.complete(batch)
        except Exception:  # not acked: the leases expire and the events run again (at least once)
            log.exception("async dispatcher: storing %d outcomes failed", len(batch))
            return
        woke = False
        for c in batch:
            if c.retry_at_ms is not None:
                fn = c.event.function_name
                self._known[fn] = min(self._known.get(fn, INF), c.retry_at_ms)
                woke = True
        if woke:
            self._wake.set()


def _water_fill(ready: list[str], capacity: dict[str, int], running: dict[str, int], free: int,
                rotation: int) -> dict[str, int]:
    """Share `free` slots among `ready` functions one at a time, each to the function with the fewest
    deliveries (running + given so far) that still has capacity; ties go round-robin by `rotation`."""
    if not ready:
        return {}
    k = rotation % len(ready)
    order = ready[k:] + ready[:k]
    rank = {fn: i for i, fn in enumerate(order)}
    allot: dict[str, int] = {}
    candidates = [fn for fn in order if capacity.get(fn, 0) > 0]
    while free > 0 and candidates:
        fn = min(candidates, key=lambda f: (running.get(f, 0) + allot.get(f, 0), rank[f]))
        allot[fn] = allot.get(fn, 0) + 1
        free -= 1
        if allot[fn] >= capacity[fn]:
            candidates.remove(fn)
    return allot


def lease_ms(timeout_s: float, settings: Settings) -> int:
    """A delivery's lease: the function's timeout plus INIT plus a margin."""
    return int(math.ceil((timeout_s + settings.init_timeout + settings.async_lease_margin) * 1000))


__all__ = ["Dispatcher", "NewEvent", "Target", "lease_ms"]
