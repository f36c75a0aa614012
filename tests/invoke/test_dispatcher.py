"""The dispatcher against the real SQLite queue and a fake data plane: retries and their spacing, throttle
backoff, event age, destinations, reserved concurrency, fairness, and the water-filling share-out."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.eventconfigs import AsyncConfig
from nimbus.errors import ResourceNotFound, TooManyRequests
from nimbus.invoke.destinations import AttemptResult
from nimbus.invoke.dispatcher import Dispatcher, _water_fill
from nimbus.invoke.queue import LeasedEvent, NewEvent, SqlEventQueue, make_queue

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


class FakeTarget:
    """A data plane whose functions behave as `behaviour[name](event) -> AttemptResult` (or raise)."""

    def __init__(self) -> None:
        self.reserved: dict[str, int | None] = {}
        self.behaviour: dict[str, Callable[[LeasedEvent], Any]] = {}
        self.calls: list[tuple[str, str, int]] = []  # (function, request id, attempts so far)
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.delay = 0.0

    def reserved_concurrency(self, function_name: str) -> int | None:
        if function_name not in self.behaviour:
            raise ResourceNotFound("gone")
        return self.reserved.get(function_name)

    def in_flight(self, function_name: str) -> int:
        return self.running.get(function_name, 0)

    def lease_ms(self, function_name: str) -> int:
        return 60_000

    async def run(self, event: LeasedEvent) -> AttemptResult:
        fn = event.function_name
        self.calls.append((fn, event.request_id, event.attempts))
        self.running[fn] = self.running.get(fn, 0) + 1
        self.peak[fn] = max(self.peak.get(fn, 0), self.running[fn])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            result: AttemptResult = self.behaviour[fn](event)
            return result
        finally:
            self.running[fn] -= 1

    def function_arn(self, function_name: str, qualifier: str | None) -> str:
        return f"{ARN}{function_name}:{qualifier or '$LATEST'}"

    def split_destination(self, arn: str) -> tuple[str, str | None]:
        return arn.removeprefix(ARN), None

    def new_request_id(self) -> str:
        return "dest-request"


def ok(event: LeasedEvent) -> AttemptResult:
    return AttemptResult("$LATEST", f"{ARN}{event.function_name}:$LATEST", b'{"ok": true}', None)


def boom(event: LeasedEvent) -> AttemptResult:
    return AttemptResult("$LATEST", f"{ARN}{event.function_name}:$LATEST", b'{"errorMessage": "boom"}', "Unhandled")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dispatcher") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(template: Path, tmp_path: Path) -> Engine:
    shutil.copy(template, tmp_path / "nimbus.db")
    return make_engine(f"sqlite:///{tmp_path / 'nimbus.db'}")


@pytest.fixture
async def queue(engine: Engine) -> AsyncIterator[SqlEventQueue]:
    q = make_queue(engine)
    await q.start()
    yield q
    await q.stop()


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": tmp_path, "async_retry_delays": "0.05,0.1", "async_poll_interval": 0.05,
                            "async_throttle_backoff_min": 0.02, "async_max_concurrency": 4}
    return Settings(**{**base, **kw})


def config(retries: int = 2, age: int = 21600, on_success: str | None = None,
           on_failure: str | None = None) -> Callable[[str, str | None], AsyncConfig]:
    return lambda fn, q: AsyncConfig(retries, age, on_success, on_failure)


async def until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def drained(queue: SqlEventQueue, *functions: str) -> bool:
    stats = await queue.stats()
    return not [s for s in stats if s.function_name in functions]


async def run_until_drained(d: Dispatcher, queue: SqlEventQueue, *functions: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await drained(queue, *functions):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not drained: {await queue.stats()}")
        await asyncio.sleep(0.02)


def ev(n: int, fn: str = "f") -> NewEvent:
    return NewEvent(request_id=f"rid-{n}", function_name=fn, qualifier=None, payload=json.dumps({"n": n}).encode())


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_function_errors_retry_with_the_same_request_id(tmp_path: Path, queue: SqlEventQueue,
                                                               retries: int) -> None:
    target = FakeTarget()
    target.behaviour = {"f": boom, "dest": ok}
    d = Dispatcher(settings(tmp_path), queue, target, config(retries, on_failure=f"{ARN}dest"))
    await d.start()
    try:
        await queue.enqueue([ev(1)])
        await until(lambda: any(c[0] == "dest" for c in target.calls))
    finally:
        await d.stop()
    attempts = [c for c in target.calls if c[0] == "f"]
    assert [c[1] for c in attempts] == ["rid-1"] * (retries + 1)
    assert [c[2] for c in attempts] == list(range(retries + 1))
    assert d.retried == retries and d.failed == 1


async def test_failure_record_reaches_the_destination(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    received: list[LeasedEvent] = []
    target.behaviour = {"f": boom, "dest": lambda e: received.append(e) or ok(e)}
    d = Dispatcher(settings(tmp_path), queue, target, config(0, on_failure=f"{ARN}dest"))
    await d.start()
    try:
        await queue.enqueue([ev(1)])
        await until(lambda: bool(received))
    finally:
        await d.stop()
    (record_event,) = received
    assert record_event.request_id == "dest-request"  # the record travels as an async invocation of its own
    record = json.loads(record_event.payload)
    assert record["requestContext"] == {"requestId": "rid-1", "functionArn": f"{ARN}f:$LATEST",
                                        "condition": "RetriesExhausted", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"] == {"errorMessage": "boom"}


async def test_throttles_back_off_without_counting_as_attempts(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    throttles = [2]

    def flaky(event: LeasedEvent) -> AttemptResult:
        if throttles[0]:
            throttles[0] -= 1
            raise TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
        return ok(event)

    target.behaviour = {"f": flaky, "dest": ok}
    d = Dispatcher(settings(tmp_path), queue, target, config(0, on_success=f"{ARN}dest"))
    await d.start()
    try:
        await queue.enqueue([ev(1)])
        await until(lambda: any(c[0] == "dest" for c in target.calls))
    finally:
        await d.stop()
    assert d.throttled == 2 and d.delivered >= 1
    assert [c[2] for c in target.calls if c[0] == "f"] == [0, 0, 0]  # throttles are not attempts


async def test_event_age_is_checked_before_a_retry(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    target.behaviour = {"f": boom, "dest": ok}
    s = settings(tmp_path, async_retry_delays="5")
    d = Dispatcher(s, queue, target, config(2, age=1, on_failure=f"{ARN}dest"))
    await d.start()
    try:
        await queue.enqueue([ev(1)])
        await until(lambda: d.failed == 1)
    finally:
        await d.stop()
    assert len([c for c in target.calls if c[0] == "f"]) == 1  # a 5 s retry would outlive the 1 s age


async def test_zero_reserved_concurrency_never_runs(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    target.behaviour = {"f": ok}
    target.reserved["f"] = 0
    d = Dispatcher(settings(tmp_path), queue, target, config(2))
    await d.start()
    try:
        await queue.enqueue([ev(1), ev(2)])
        await run_until_drained(d, queue, "f")
    finally:
        await d.stop()
    assert target.calls == [] and d.failed == 2


async def test_reserved_concurrency_caps_deliveries(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    target.behaviour = {"f": ok}
    target.reserved["f"] = 2
    target.delay = 0.03
    d = Dispatcher(settings(tmp_path, async_max_concurrency=8), queue, target, config())
    await d.start()
    try:
        await queue.enqueue([ev(n) for n in range(12)])
        await run_until_drained(d, queue, "f")
    finally:
        await d.stop()
    assert len(target.calls) == 12
    assert target.peak["f"] <= 2 and d.peak_running["f"] <= 2


async def test_deleted_function_events_are_dropped(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    d = Dispatcher(settings(tmp_path), queue, target, config())
    await d.start()
    try:
        await queue.enqueue([ev(1, "gone")])
        await run_until_drained(d, queue, "gone")
    finally:
        await d.stop()
    assert d.dropped == 1


async def test_a_backlog_does_not_starve_a_newcomer(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    target.behaviour = {"busy": ok, "quiet": ok}
    target.delay = 0.02
    d = Dispatcher(settings(tmp_path, async_max_concurrency=2), queue, target, config())
    await queue.enqueue([ev(n, "busy") for n in range(100)])
    await d.start()
    try:
        await until(lambda: len(target.calls) >= 4)
        await queue.enqueue([ev(1000 + n, "quiet") for n in range(3)])
        await until(lambda: len([c for c in target.calls if c[0] == "quiet"]) == 3)
        busy_done = len([c for c in target.calls if c[0] == "busy"])
    finally:
        await d.stop()
    assert busy_done < 60  # the quiet function was served long before the busy backlog (100 x 20 ms / 2) ended


def test_water_filling_shares_slots_by_fewest_running() -> None:
    assert _water_fill(["a", "b"], {"a": 100, "b": 100}, {"a": 4}, 4, 0) == {"b": 4}
    assert _water_fill(["a", "b"], {"a": 100, "b": 100}, {}, 4, 0) == {"a": 2, "b": 2}
    assert _water_fill(["a", "b", "c"], {"a": 1, "b": 0, "c": 5}, {}, 4, 1) == {"a": 1, "c": 3}
    assert _water_fill(["a"], {"a": 3}, {}, 10, 0) == {"a": 3}
    assert _water_fill([], {}, {}, 10, 0) == {}


async def test_events_waiting_for_reserved_capacity_still_expire(tmp_path: Path, queue: SqlEventQueue) -> None:
    target = FakeTarget()
    target.behaviour = {"f": ok}
    target.reserved["f"] = 1
    target.delay = 3.0  # the one slot stays taken
    d = Dispatcher(settings(tmp_path), queue, target, config(age=1), shortest_age=lambda fn: 1)
    await d.start()
    try:
        await queue.enqueue([ev(1), ev(2), ev(3)])
        await until(lambda: d.failed == 2, timeout=10)
        assert len(target.calls) == 1  # the expired ones never ran
    finally:
        await d.stop()
