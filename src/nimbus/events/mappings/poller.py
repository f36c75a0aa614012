"""The SQS poller of one event source mapping, as Lambda runs it: long-poll the queue, drop (delete) messages
no filter matches, invoke the function synchronously once per batch through `invoke/` (so concurrency
limits, logs and metrics apply), delete the batch on success, and on failure leave it (or, with
ReportBatchItemFailures, only the failed items) to reappear after the visibility timeout.

Concurrency: the poller runs a number of batch workers that follows the backlog. It starts with 5 (AWS's
starting point), adds one whenever a worker got a full batch (at most `SCALE_UP_PER_S` a second, AWS's
300 a minute), and a worker whose long poll comes back empty leaves while more than the floor remain.
The ceiling is the mapping's MaximumConcurrency (default 1,000 batches) and the function's reserved
concurrency; throttles back off instead of growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nimbus.errors import LambdaError, ResourceNotFound, TooManyRequests
from nimbus.events.mappings.service import Mapping
from nimbus.events.pattern import Pattern, compile_pattern
from nimbus.invoke.service import InvokeOutcome

log = logging.getLogger("nimbus.events.mappings")

START_WORKERS = 5
FLOOR_WORKERS = 2
MAX_WORKERS = 1000
SCALE_UP_PER_S = 5.0
LONG_POLL_S = 20.0


class Queues(Protocol):
    """The queue service's interface the poller uses (nimbus.events.sqs.QueueService)."""

    async def receive(self, queue_arn: str, max_messages: int = 10, visibility_timeout: int | None = None,
                      wait_seconds: float = 0.0, attempt_id: str | None = None) -> list[Any]: ...

    async def delete(self, queue_arn: str, receipt_handles: Any) -> list[str]: ...


class Invoke(Protocol):
    """`Invoker.invoke`'s signature, the part the poller uses."""

    async def __call__(self, function: str, qualifier: str | None, payload: bytes,
                       invocation_type: str = ...) -> InvokeOutcome: ...


@dataclass
class PollerStats:
    """Counters of one mapping (metrics, `nimbus` CLI, tests)."""

    batches: int = 0
    messages: int = 0
    failed_batches: int = 0  # function errors and throttles: the batch (or part of it) comes back
    failed_items: int = 0  # messages left on the queue after a partial batch failure
    filtered: int = 0  # messages deleted because no filter matched
    workers: int = 0
    peak_workers: int = 0
    handler_latency_ms: list[float] = field(default_factory=list)  # sent -> invoked (last few hundred)


def failed_items(payload: bytes, ids: list[str]) -> list[str]:
    """The message ids a ReportBatchItemFailures response leaves on the queue (Lambda's rules: an empty or
    null response or list is success; an invalid document or entry, or an unknown id, fails the batch)."""
    if not payload.strip():
        return []
    try:
        doc = json.loads(payload)
    except ValueError:
        return list(ids)
    if not isinstance(doc, dict):
        return []
    entries = doc.get("batchItemFailures")
    if entries is None:
        return []
    if not isinstance(entries, list):
        return list(ids)
    known = set(ids)
    out: list[str] = []
    for entry in entries:
        item = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(item, str) or not item or item not in known:
            return list(ids)
        out.append(item)
    return out


class SqsPoller:
    """Polls one queue for one mapping. `start()` spawns the workers; `stop()` cancels them (messages in
    flight come back after their visibility timeout, as when AWS's poller is interrupted)."""

    def __init__(self, mapping: Mapping, queues: Queues, invoke: Invoke, region: str,
                 ceiling: Callable[[str], int | None],
                 on_batch: Callable[[str, int, bool], None] | None = None,
                 before_delete: Callable[[], Awaitable[None]] | None = None,
                 visibility_timeout: int | None = None) -> None:
        self.mapping = mapping
        self.queues = queues
        self.invoke = invoke
        self.region = region
        self.ceiling = ceiling  # the function's reserved concurrency (None: unreserved)
        self.on_batch = on_batch or (lambda function, size, ok: None)
        # Called before a handled batch is deleted: the function's log lines are stored first, so after a
        # crash a message either has its logs or runs again (as invoke/'s async dispatcher acks).
        self.before_delete = before_delete
        # Lambda's rule: when window + function timeout exceed the queue's visibility timeout, received
        # messages stay invisible for window + timeout + 30 s (None: the queue's own).
        self.visibility_timeout = visibility_timeout
        self.stats = PollerStats()
        self.filters: list[Pattern] = [compile_pattern(p) for p in mapping.filters]
        self._workers: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # workers inside an invocation: stop() lets them finish
        self._last_scale = 0.0
        self._backoff_until = 0.0
        self._stopping = False

    @property
    def function(self) -> str:
        return self.mapping.function_name

    def _max_workers(self) -> int:
        cap = self.mapping.max_concurrency or MAX_WORKERS
        try:
            reserved = self.ceiling(self.function)
        except ResourceNotFound:
            reserved = None
        if reserved is not None:
            cap = min(cap, max(reserved, 1))
        return cap

    def start(self) -> None:
        self._stopping = False
        for _ in range(min(START_WORKERS, self._max_workers())):
            self._spawn()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop polling: idle workers are cancelled, those invoking finish their batch first (up to `grace`)."""
        self._stopping = True
        tasks = list(self._workers)
        for task in tasks:
            if task not in self._busy:
                task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _spawn(self) -> None:
        task = asyncio.create_task(self._worker(), name=f"esm-{self.mapping.uuid[:8]}")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        self.stats.workers = len(self._workers)
        self.stats.peak_workers = max(self.stats.peak_workers, self.stats.workers)

    def _scale_up(self) -> None:
        now = time.monotonic()
        if len(self._workers) >= self._max_workers() or now - self._last_scale < 1 / SCALE_UP_PER_S:
            return
        if now < self._backoff_until:
            return
        self._last_scale = now
        self._spawn()

    async def _worker(self) -> None:
        try:
            while not self._stopping:
                try:
                    messages = await self._collect()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the queue was deleted, or a bug: keep the mapping alive, slowly
                    log.warning("mapping %s: receiving from %s failed: %s", self.mapping.uuid,
                                self.mapping.queue_arn, exc)
                    await asyncio.sleep(1.0)
                    continue
                if not messages:
                    if len(self._workers) > max(FLOOR_WORKERS, 1):
                        return  # the backlog is gone: shrink
                    continue
                if len(messages) >= min(self.mapping.batch_size, 10):
                    self._scale_up()
                me = asyncio.current_task()
                assert me is not None
                self._busy.add(me)
                try:
                    await self._process(messages)
                finally:
                    self._busy.discard(me)
                wait = self._backoff_until - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
        finally:
            self._workers.discard(asyncio.current_task())
            self.stats.workers = len(self._workers)

    async def _collect(self) -> list[Any]:
        """One batch: up to BatchSize messages, within MaximumBatchingWindowInSeconds when it is set."""
        m = self.mapping
        per_call = min(m.batch_size, 10)
        if m.window <= 0:
            return await self.queues.receive(m.queue_arn, max_messages=per_call, wait_seconds=LONG_POLL_S,
                                             visibility_timeout=self.visibility_timeout)
        deadline = time.monotonic() + m.window
        batch: list[Any] = []
        while len(batch) < m.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 and batch:
                break
            wait = LONG_POLL_S if not batch else max(0.0, min(left, LONG_POLL_S))
            got = await self.queues.receive(m.queue_arn, max_messages=min(per_call, m.batch_size - len(batch)),
                                            wait_seconds=wait, visibility_timeout=self.visibility_timeout)
            batch.extend(got)
            if not got and (batch or left <= 0):
                if batch:
                    break
                deadline = time.monotonic() + m.window  # a quiet queue: the window starts at the first message
        return batch

    def _matches(self, record: dict[str, Any]) -> bool:
        if not self.filters:
            return True
        body: Any = record["body"]
        with contextlib.suppress(ValueError):
            body = json.loads(body)
        candidate = {**record, "body": body}
        return any(p.matches(candidate) for p in self.filters)

    async def _process(self, messages: list[Any]) -> None:
        m = self.mapping
        records = [msg.lambda_record(self.region) for msg in messages]
        keep: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for record in records:
            (keep if self._matches(record) else dropped).append(record)
        if dropped:
            self.stats.filtered += len(dropped)
            await self.queues.delete(m.queue_arn, [r["receiptHandle"] for r in dropped])
        if not keep:
            return
        now_ms = time.time() * 1000
        for r in keep:
            sent = r["attributes"].get("SentTimestamp")
            if sent:
                lat = self.stats.handler_latency_ms
                lat.append(now_ms - float(sent))
                if len(lat) > 512:
                    del lat[:256]
        payload = json.dumps({"Records": keep}, separators=(",", ":")).encode()
        self.stats.batches += 1
        self.stats.messages += len(keep)
        try:
            outcome = await self.invoke(m.function_name, m.qualifier, payload, "RequestResponse")
        except TooManyRequests:
            self.stats.failed_batches += 1
            self._backoff_until = time.monotonic() + 1.0
            self.on_batch(m.function_name, len(keep), False)
            return
        except LambdaError as exc:
            self.stats.failed_batches += 1
            log.warning("mapping %s: invoking %s failed: %s", m.uuid, m.function_name, exc.message)
            self._backoff_until = time.monotonic() + 1.0
            self.on_batch(m.function_name, len(keep), False)
            return
        if outcome.function_error is not None:
            self.stats.failed_batches += 1
            self.on_batch(m.function_name, len(keep), False)
            return  # the whole batch comes back after the visibility timeout
        done = keep
        if m.report_failures:
            failed = set(failed_items(outcome.payload, [r["messageId"] for r in keep]))
            if failed:
                self.stats.failed_batches += 1
                self.stats.failed_items += len(failed)
                done = [r for r in keep if r["messageId"] not in failed]
        self.on_batch(m.function_name, len(keep), len(done) == len(keep))
        if done:
            if self.before_delete is not None:
                await self.before_delete()
            await self.queues.delete(m.queue_arn, [r["receiptHandle"] for r in done])
