"""The durable-execution service: starts executions, answers the SDK's checkpoint and state calls, runs the
control-plane operations, and schedules re-invocations (timers, retries, callbacks, chained invokes,
execution timeouts, invocation retries). All state is in the database; in memory there is only the set of
invocations in flight and the waiters of synchronous Invokes, so a suspended execution costs a few rows.

Database work runs synchronously on the event loop: each operation is one short transaction, and running
them on the one loop thread serialises everything that touches an execution (the per-execution lock of the
reference emulator). On PostgreSQL the execution row is also locked (`FOR UPDATE`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, select, update

from nimbus.config import Settings
from nimbus.control.registry import Registry
from nimbus.durable import operations as opsm
from nimbus.durable import store
from nimbus.durable import tables as t
from nimbus.durable.errors import CallbackTimeout, DurableExecutionAlreadyStarted, invalid_token
from nimbus.durable.metrics import DurableMetrics
from nimbus.durable.operations import Op
from nimbus.errors import InvalidParameterValue, LambdaError, ResourceConflict, ResourceNotFound, TooManyRequests
from nimbus.invoke import router
from nimbus.invoke.service import Invoker

log = logging.getLogger("nimbus.durable")

RUNNING = "RUNNING"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")
MAX_FAILED_INVOCATIONS = 5  # as the reference emulator: then the execution FAILS
PENDING_STRIKES = 3  # PENDING answers with nothing to wait on before the execution FAILS
EVENT_PAGE_OPS = 1000  # operations in the invocation event / one state page
EVENT_PAGE_BYTES = 5 * 1024 * 1024
MAX_IN_FLIGHT = 512  # invocations the scheduler runs at once; the rest wait their turn
SYNC_INVOKE_LIMIT = 900.0  # a synchronous Invoke of a durable function waits at most 15 minutes


def now_ms() -> int:
    return int(time.time() * 1000)


def new_token() -> str:
    return base64.b64encode(os.urandom(24)).decode()


def callback_id(execution_id: str, op_id: str) -> str:
    """Callback ids name their execution and operation, so no lookup table is needed."""
    return base64.b64encode(f"{execution_id}|{op_id}".encode()).decode()


def parse_callback_id(value: str) -> tuple[str, str]:
    try:
        exec_id, op_id = base64.b64decode(value, validate=True).decode().split("|", 1)
        return exec_id, op_id
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ResourceNotFound("Callback not found") from None


def execution_id_of(arn: str) -> str:
    """The execution id is the ARN's last `/` segment (as the SDK assumes)."""
    return arn.rsplit("/", 1)[-1]


def api_op(data: dict[str, Any]) -> dict[str, Any]:
    """An operation as the REST API returns it: timestamps in epoch seconds."""
    out = dict(data)
    for key in ("StartTimestamp", "EndTimestamp"):
        if out.get(key) is not None:
            out[key] = out[key] / 1000
    for section, key in (("StepDetails", "NextAttemptTimestamp"), ("WaitDetails", "ScheduledEndTimestamp")):
        details = out.get(section)
        if details and details.get(key) is not None:
            out[section] = {**details, key: details[key] / 1000}
    return out


def api_event(data: dict[str, Any], include_data: bool) -> dict[str, Any]:
    out = dict(data)
    out["EventTimestamp"] = out["EventTimestamp"] / 1000
    for key, value in list(out.items()):
        if key.endswith("Details") and isinstance(value, dict):
            details = dict(value)
            if details.get("ScheduledEndTimestamp") is not None:
                details["ScheduledEndTimestamp"] = details["ScheduledEndTimestamp"] / 1000
            for stamp in ("StartTimestamp", "EndTimestamp"):
                if details.get(stamp) is not None:
                    details[stamp] = details[stamp] / 1000
            if not include_data:
                for k in ("Result", "Input"):
                    if isinstance(details.get(k), dict):
                        details[k] = {"Truncated": True}
            out[key] = details
    return out


@dataclass(slots=True)
class Started:
    """What Invoke answers for a durable function."""

    arn: str
    version: str
    existing: bool


class DurableService:
    """One per server: owns the durable tables and the scheduler task."""

    def __init__(self, settings: Settings, engine: Engine, registry: Registry, invoker: Invoker) -> None:
        self._settings = settings
        self._engine = engine
        self._registry = registry
        self._invoker = invoker
        self.metrics = DurableMetrics(invoker.observer.metrics.registry)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[str] = set()  # executions with an invocation in flight (this process)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._stopping = False
        self._counted_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        with self._tx() as conn:
            # Invocations in flight when the server died run again (their tokens are void); chained invokes of
            # plain functions that were running are dispatched again (at least once, as Lambda's async paths).
            ex = t.executions.c
            now = now_ms()
            conn.execute(update(t.executions).where(ex.status == RUNNING, ex.in_flight.is_(True))
                         .values(in_flight=False, token=None, invoke_at_ms=now))
            op = t.operations.c
            rows = conn.execute(select(op.execution_id, op.op_id, op.internal).where(
                op.type == "CHAINED_INVOKE", op.status == "STARTED", op.due_ms.is_(None))).all()
            for exec_id, op_id, internal in rows:
                if not (internal or {}).get("child"):
                    conn.execute(update(t.operations).where(op.execution_id == exec_id, op.op_id == op_id)
                                 .values(due_ms=now))
            self.metrics.suspended.set(self._count_suspended(conn))
        self._task = asyncio.create_task(self._scheduler(), name="durable-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._engine.begin() as conn:
            yield conn

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ start (Invoke)

    def is_durable(self, function: str, qualifier: str | None) -> bool:
        """Whether Invoke on (function, qualifier) starts a durable execution."""
        try:
            name, arn_qualifier = self._registry.split_qualifier(function)
            snapshot = self._registry.snapshot(name)
            spec = router.resolve(snapshot, qualifier or arn_qualifier).spec
        except LambdaError:
            return False
        return spec.durable_config is not None

    def start_execution(self, function: str, qualifier: str | None, payload: bytes, name: str | None,
                        parent: dict[str, str] | None = None, trace_id: str | None = None) -> Started:
        """Create an execution (idempotent by name and payload) and schedule its first invocation."""
        if name is not None and not opsm._ID.match(name):
            raise InvalidParameterValue(
                "DurableExecutionName must be 1 to 64 characters of [a-zA-Z0-9-_].")
        fn_name, arn_qualifier = self._registry.split_qualifier(function)
        snapshot = self._registry.snapshot(fn_name)
        spec = router.resolve(snapshot, qualifier or arn_qualifier).spec
        if spec.durable_config is None:
            raise InvalidParameterValue(f"Function {snapshot.function_arn} is not a durable function.")
        text = payload.decode() if payload else ""
        if text.strip() == "":
            text = "{}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        exec_name = name or str(uuid.uuid4())
        with self._tx() as conn:
            row = store.find_by_name(conn, snapshot.name, exec_name)
            if row is not None:
                if row.input_hash != digest:
                    raise DurableExecutionAlreadyStarted(
                        f"Durable execution with name {exec_name} already exists with a different input.")
                return Started(row.arn, row.version, True)
            exec_id = uuid.uuid4().hex
            arn = f"{snapshot.function_arn}:{spec.version}/durable-execution/{exec_name}/{exec_id}"
            now = now_ms()
            config = dict(spec.durable_config)
            timeout_s = int(config.get("ExecutionTimeout") or 86_400)
            store.add_execution(conn, dict(
                id=exec_id, arn=arn, function_name=snapshot.name, version=spec.version, name=exec_name,
                status=RUNNING, input_payload=text, input_hash=digest, start_ms=now, end_ms=None, result=None,
                error=None, timeout_at_ms=now + timeout_s * 1000, invoke_at_ms=now, in_flight=False, token=None,
                change_seq=1, delivered_seq=0, op_seq=1, event_seq=2, failures=0, invocations=0, replay=None,
                parent=parent, config=config, trace_id=trace_id,
            ))
            execution_op = {"Id": exec_id, "Type": "EXECUTION", "Status": "STARTED", "StartTimestamp": now,
                            "ExecutionDetails": {"InputPayload": text}}
            store.add_op(conn, dict(
                execution_id=exec_id, op_id=exec_id, seq=0, type="EXECUTION", status="STARTED",
                changed_seq=1, due_ms=None, data=execution_op, internal=None))
            store.add_events(conn, exec_id, 1, [opsm.event(None, "ExecutionStarted", now, {
                "Input": {"Payload": text, "Truncated": False}, "ExecutionTimeout": timeout_s},
                data={"Id": exec_id, "Name": exec_name})])
        self.metrics.started.labels(snapshot.name).inc()
        self._wake.set()
        return Started(arn, spec.version, False)

    async def wait_for_end(self, arn: str, timeout: float = SYNC_INVOKE_LIMIT) -> dict[str, Any] | None:
        """Block until the execution ends (or `timeout`); its row, or None on timeout."""
        exec_id = execution_id_of(arn)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(exec_id, []).append(future)
        try:
            with self._tx() as conn:
                row = store.load_execution(conn, exec_id, lock=False)
            if row is not None and row["status"] in TERMINAL:
                return row
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                return None
            with self._tx() as conn:
                return store.load_execution(conn, exec_id, lock=False)
        finally:
            waiters = self._waiters.get(exec_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[exec_id]

    # ------------------------------------------------------------------ data plane

    def checkpoint(self, arn: str, token: Any, updates: Any, client_token: str | None) -> dict[str, Any]:
        """CheckpointDurableExecution (facts §4.1)."""
        exec_id = execution_id_of(arn)
        if not isinstance(token, str) or not token:
            raise invalid_token()
        updates = [] if updates is None else updates
        if not isinstance(updates, list):
            raise InvalidParameterValue("Updates must be a list.")
        ended: dict[str, Any] | None = None
        with self._tx() as conn:
            row = store.load_execution(conn, exec_id)
            if row is None or row["arn"] != arn:
                raise ResourceNotFound(f"Durable execution not found: {arn}")
            replay = row["replay"] or {}
            if client_token and replay.get("token") == token and replay.get("client") == client_token:
                return dict(replay["response"])
            if row["status"] != RUNNING or row["token"] is None or row["token"] != token:
                raise invalid_token()
            now = now_ms()
            named = {str(u.get(k)) for u in updates if isinstance(u, dict) for k in ("Id", "ParentId") if u.get(k)}
            ops = store.load_relevant_ops(conn, exec_id, named, row["delivered_seq"], now)
            opsm.validate_batch(ops, updates)
            events = self._fire_due_ops(ops, now)
            seq: list[int] = [int(row["op_seq"])]

            def next_seq() -> int:
                seq[0] += 1
                return seq[0]

            outcome = opsm.apply_batch(ops, updates, now, next_seq, lambda op_id: callback_id(exec_id, op_id))
            for op_id in outcome.chained:
                ops[op_id].due_ms = now  # the scheduler dispatches it
            events.extend(outcome.events)
            change_seq = store.save_ops(conn, exec_id, ops.values(), row["change_seq"])
            event_seq = store.add_events(conn, exec_id, row["event_seq"], events)
            delta = [api_op(op.data) for op in sorted(ops.values(), key=lambda o: o.seq)
                     if op.changed_seq > row["delivered_seq"]]
            response: dict[str, Any] = {"NewExecutionState": {"Operations": delta}}
            values: dict[str, Any] = {"op_seq": seq[0], "change_seq": change_seq, "delivered_seq": change_seq,
                                      "event_seq": event_seq}
            if outcome.end is None:
                response["CheckpointToken"] = values["token"] = new_token()
            values["replay"] = {"token": token, "client": client_token, "response": response}
            if outcome.end is not None:
                status, result, error = outcome.end
                ended = self._end(conn, row, status, result, error, now, values)
            else:
                store.set_execution(conn, exec_id, **values)
        if ended is not None:
            self._after_end(ended)
        if outcome.chained or any(op.due_ms is not None for op in ops.values()):
            self._wake.set()
        return response

    def get_state(self, arn: str, token: str | None, marker: str | None, max_items: int | None) -> dict[str, Any]:
        """GetDurableExecutionState: all operations in creation order, paged (facts §4.2)."""
        exec_id = execution_id_of(arn)
        with self._tx() as conn:
            row = store.load_execution(conn, exec_id, lock=False)
            if row is None or row["arn"] != arn:
                raise ResourceNotFound(f"Durable execution not found: {arn}")
            if not token or row["token"] is None or token != row["token"]:
                raise invalid_token()
            ops = list(store.load_ops(conn, exec_id).values())
        start = _marker(marker)
        limit = max(1, min(max_items or 100, EVENT_PAGE_OPS))
        page = ops[start:start + limit]
        out: dict[str, Any] = {"Operations": [api_op(op.data) for op in page]}
        if start + limit < len(ops):
            out["NextMarker"] = str(start + limit)
        return out

    def _fire_due_ops(self, ops: dict[str, Op], now: int) -> list[dict[str, Any]]:
        """Complete the timers of this execution that have come due (lazily, before answering)."""
        events = []
        for op in ops.values():
            if op.due_ms is not None and op.due_ms <= now and op.type != "CHAINED_INVOKE":
                due = op.due_ms
                ev = opsm.fire_due(op, now)
                if op.changed:
                    self.metrics.lateness.observe(max(0, now - due) / 1000)
                if ev is not None:
                    events.append(ev)
        return events

    # ------------------------------------------------------------------ ending

    def _end(self, conn: Connection, row: dict[str, Any], status: str, result: str | None,
             error: dict[str, Any] | None, now: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the execution in this transaction (with `extra` column values written in the same
        UPDATE); returns what `_after_end` needs."""
        exec_id = row["id"]
        row = {**row, **(extra or {})}
        values: dict[str, Any] = {**(extra or {}), "status": status, "result": result, "error": error, "end_ms": now,
                                  "timeout_at_ms": None, "invoke_at_ms": None, "token": None}
        op = store.load_op(conn, exec_id, exec_id)
        if op is not None:
            op.data["Status"] = status
            op.data["EndTimestamp"] = now
            op.changed = True
            values["change_seq"] = store.save_ops(conn, exec_id, [op], row["change_seq"])
        store.clear_due(conn, exec_id)
        kind = {"SUCCEEDED": "ExecutionSucceeded", "FAILED": "ExecutionFailed", "TIMED_OUT": "ExecutionTimedOut",
                "STOPPED": "ExecutionStopped"}[status]
        details = ({"Result": {"Payload": result or "", "Truncated": False}} if status == "SUCCEEDED"
                   else {"Error": {"Payload": error or {}, "Truncated": False}})
        values["event_seq"] = store.add_events(conn, exec_id, row["event_seq"], [
            opsm.event(None, kind, now, details, data={"Id": exec_id, "Name": row["name"]})])
        store.set_execution(conn, exec_id, **values)
        return {"id": exec_id, "status": status, "result": result, "error": error, "parent": row["parent"],
                "function": row["function_name"]}

    def _after_end(self, ended: dict[str, Any]) -> None:
        status = ended["status"]
        counter = {"SUCCEEDED": self.metrics.succeeded, "FAILED": self.metrics.failed,
                   "TIMED_OUT": self.metrics.failed, "STOPPED": self.metrics.stopped}[status]
        counter.labels(ended["function"]).inc()
        for future in self._waiters.pop(ended["id"], []):
            if not future.done():
                future.set_result(None)
        parent = ended.get("parent")
        if parent:
            self._complete_chained(parent["execution"], parent["op"], status, ended["result"], ended["error"])

    # ------------------------------------------------------------------ outside completions

    def _complete_chained(self, exec_id: str, op_id: str, status: str, result: str | None,
                          error: dict[str, Any] | None) -> None:
        with self._tx() as conn:
            row = store.load_execution(conn, exec_id)
            op = store.load_op(conn, exec_id, op_id)
            if row is None or op is None or row["status"] != RUNNING or op.status != "STARTED":
                return
            now = now_ms()
            opsm.complete(op, status, result if status == "SUCCEEDED" else None,
                          None if status == "SUCCEEDED" else (error or {}), now)
            self._record_outside(conn, row, op, opsm.completion_event(op, status, result, error, now), now)
        self._wake.set()

    def _record_outside(self, conn: Connection, row: dict[str, Any], op: Op, ev: dict[str, Any], now: int) -> None:
        """Persist a change made from outside an invocation and schedule the function to see it."""
        change = store.save_ops(conn, row["id"], [op], row["change_seq"])
        nxt = store.add_events(conn, row["id"], row["event_seq"], [ev])
        values: dict[str, Any] = {"change_seq": change, "event_seq": nxt}
        if not row["in_flight"]:
            values["invoke_at_ms"] = now
        store.set_execution(conn, row["id"], **values)

    def _callback_op(self, conn: Connection, cid: str) -> tuple[dict[str, Any], Op]:
        exec_id, op_id = parse_callback_id(cid)
        row = store.load_execution(conn, exec_id)
        op = store.load_op(conn, exec_id, op_id) if row is not None else None
        if row is None or op is None or op.type != "CALLBACK":
            raise ResourceNotFound("Callback not found")
        if op.status != "STARTED" or row["status"] != RUNNING:
            raise CallbackTimeout("Callback has already completed or timed out")
        return row, op

    def callback_success(self, cid: str, result: bytes) -> None:
        if len(result) > 1_048_576:
            raise InvalidParameterValue("Callback result must be at most 1048576 bytes.")
        text = result.decode("utf-8", errors="replace")
        with self._tx() as conn:
            row, op = self._callback_op(conn, cid)
            now = now_ms()
            opsm.complete(op, "SUCCEEDED", text, None, now)
            self._record_outside(conn, row, op, opsm.completion_event(op, "SUCCEEDED", text, None, now), now)
        self._wake.set()

    def callback_failure(self, cid: str, error: dict[str, Any]) -> None:
        with self._tx() as conn:
            row, op = self._callback_op(conn, cid)
            now = now_ms()
            opsm.complete(op, "FAILED", None, error, now)
            self._record_outside(conn, row, op, opsm.completion_event(op, "FAILED", None, error, now), now)
        self._wake.set()

    def callback_heartbeat(self, cid: str) -> None:
        with self._tx() as conn:
            _row, op = self._callback_op(conn, cid)
            internal = dict(op.internal or {})
            if internal.get("heartbeat_s"):
                internal["heartbeat_at"] = now_ms() + int(internal["heartbeat_s"]) * 1000
                conn.execute(update(t.operations).where(
                    t.operations.c.execution_id == _row["id"], t.operations.c.op_id == op.id).values(
                    internal=internal, due_ms=opsm.callback_due(internal)))
        self._wake.set()

    # ------------------------------------------------------------------ control plane

    def _row(self, conn: Connection, arn: str) -> dict[str, Any]:
        row = store.load_execution(conn, execution_id_of(arn), lock=False)
        if row is None or row["arn"] != arn:
            raise ResourceNotFound(f"Durable execution not found: {arn}")
        return row

    def get_execution(self, arn: str, include_data: bool = True) -> dict[str, Any]:
        with self._tx() as conn:
            row = self._row(conn, arn)
        out: dict[str, Any] = {
            "DurableExecutionArn": row["arn"], "DurableExecutionName": row["name"],
            "FunctionArn": self._registry.arn(row["function_name"], row["version"]),
            "Status": row["status"], "StartTimestamp": row["start_ms"] / 1000, "Version": row["version"],
            "DurableConfig": row["config"],
        }
        if row["end_ms"] is not None:
            out["EndTimestamp"] = row["end_ms"] / 1000
        if row["timeout_at_ms"] is not None:
            out["ExpectedExecutionTimeoutTimestamp"] = row["timeout_at_ms"] / 1000
        if row["trace_id"]:
            out["TraceHeader"] = {"XAmznTraceId": row["trace_id"]}
        if include_data:
            out["InputPayload"] = row["input_payload"]
            if row["result"] is not None and row["status"] == "SUCCEEDED":
                out["Result"] = row["result"]
            if row["error"] is not None:
                out["Error"] = row["error"]
        out["ExecutionDataIncluded"] = include_data
        return out

    def list_executions(self, function: str, qualifier: str | None, name: str | None, statuses: list[str],
                        after_ms: int | None, before_ms: int | None, reverse: bool, marker: str | None,
                        max_items: int | None) -> dict[str, Any]:
        fn_name, arn_qualifier = self._registry.split_qualifier(function)
        self._registry.snapshot(fn_name)  # ResourceNotFound for an unknown function
        limit = max(1, min(max_items or 100, 1000))
        ex = t.executions.c
        conds = [ex.function_name == fn_name]
        version = qualifier or arn_qualifier
        if version:
            conds.append(ex.version == version)
        if name:
            conds.append(ex.name == name)
        if statuses:
            conds.append(ex.status.in_(statuses))
        if after_ms is not None:
            conds.append(ex.start_ms > after_ms)
        if before_ms is not None:
            conds.append(ex.start_ms < before_ms)
        start = _marker(marker)
        order = (ex.start_ms.asc(), ex.id.asc()) if reverse else (ex.start_ms.desc(), ex.id.desc())
        with self._tx() as conn:
            rows = conn.execute(select(ex.arn, ex.name, ex.function_name, ex.version, ex.status, ex.start_ms,
                                       ex.end_ms).where(and_(*conds)).order_by(*order)
                                .offset(start).limit(limit + 1)).all()
        items = []
        for r in rows[:limit]:
            item: dict[str, Any] = {"DurableExecutionArn": r.arn, "DurableExecutionName": r.name,
                                    "FunctionArn": self._registry.arn(r.function_name, r.version),
                                    "Status": r.status, "StartTimestamp": r.start_ms / 1000}
            if r.end_ms is not None:
                item["EndTimestamp"] = r.end_ms / 1000
            items.append(item)
        out: dict[str, Any] = {"DurableExecutions": items}
        if len(rows) > limit:
            out["NextMarker"] = str(start + limit)
        return out

    def history(self, arn: str, include_data: bool, marker: str | None, max_items: int | None,
                reverse: bool) -> dict[str, Any]:
        with self._tx() as conn:
            row = self._row(conn, arn)
            events = store.load_events(conn, row["id"])
        if reverse:
            events.reverse()
        start = _marker(marker)
        limit = max(1, min(max_items or 100, 1000))
        out: dict[str, Any] = {"Events": [api_event(e, include_data) for e in events[start:start + limit]]}
        if start + limit < len(events):
            out["NextMarker"] = str(start + limit)
        return out

    def stop_execution(self, arn: str, error: dict[str, Any] | None) -> float:
        """StopDurableExecution: STOPPED, no more invocations; idempotent on an ended execution."""
        ended = None
        with self._tx() as conn:
            row = self._row(conn, arn)
            if row["status"] in TERMINAL:
                return float(row["end_ms"] or now_ms()) / 1000
            now = now_ms()
            err = error or {"ErrorType": "Execution.Stopped", "ErrorMessage": "The execution was stopped."}
            ended = self._end(conn, row, "STOPPED", None, err, now)
        self._after_end(ended)
        self._wake.set()
        return now / 1000

    def delete_execution(self, arn: str) -> float:
        with self._tx() as conn:
            row = self._row(conn, arn)
            if row["status"] not in TERMINAL:
                raise ResourceConflict("Only a completed durable execution can be deleted.")
            conn.execute(delete(t.events).where(t.events.c.execution_id == row["id"]))
            conn.execute(delete(t.operations).where(t.operations.c.execution_id == row["id"]))
            conn.execute(delete(t.executions).where(t.executions.c.id == row["id"]))
        return now_ms() / 1000

    def _count_suspended(self, conn: Connection) -> int:
        ex = t.executions.c
        from sqlalchemy import func
        return int(conn.execute(select(func.count()).select_from(t.executions).where(
            ex.status == RUNNING, ex.in_flight.is_(False), ex.invoke_at_ms.is_(None))).scalar_one())

    # ------------------------------------------------------------------ scheduler

    async def _scheduler(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                self._tick(now_ms())
                with self._tx() as conn:
                    due = store.next_due(conn)
            except Exception:
                log.exception("durable scheduler tick failed")
                due = now_ms() + 1000
            delay = None if due is None else max(0.0, (due - now_ms()) / 1000)
            if delay == 0.0 and len(self._running) >= MAX_IN_FLIGHT:
                delay = None  # nothing can start before an invocation ends (which wakes us)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _tick(self, now: int) -> None:
        self._fire_due(now)
        self._time_out(now)
        self._start_invocations(now)

    def _fire_due(self, now: int) -> None:
        op = t.operations.c
        ended: list[dict[str, Any]] = []
        with self._tx() as conn:
            rows = conn.execute(select(op.execution_id, op.op_id).where(op.due_ms <= now)
                                .order_by(op.due_ms).limit(2000)).all()
            by_exec: dict[str, list[str]] = {}
            for exec_id, op_id in rows:
                by_exec.setdefault(exec_id, []).append(op_id)
            for exec_id, op_ids in by_exec.items():
                row = store.load_execution(conn, exec_id)
                if row is None or row["status"] != RUNNING:
                    conn.execute(update(t.operations).where(op.execution_id == exec_id).values(due_ms=None))
                    continue
                changed: list[Op] = []
                events: list[dict[str, Any]] = []
                for op_id in op_ids:
                    o = store.load_op(conn, exec_id, op_id)
                    if o is None:
                        continue
                    if o.type == "CHAINED_INVOKE":
                        o.due_ms = None
                        store.set_op(conn, exec_id, op_id, due_ms=None)
                        self._spawn(self._run_chained(exec_id, o))
                        continue
                    due = o.due_ms or now
                    ev = opsm.fire_due(o, now)
                    if o.changed:
                        self.metrics.lateness.observe(max(0, now - due) / 1000)
                        changed.append(o)
                    if ev is not None:
                        events.append(ev)
                if changed:
                    change = store.save_ops(conn, exec_id, changed, row["change_seq"])
                    nxt = store.add_events(conn, exec_id, row["event_seq"], events)
                    values: dict[str, Any] = {"change_seq": change, "event_seq": nxt}
                    if not row["in_flight"]:
                        values["invoke_at_ms"] = now
                    store.set_execution(conn, exec_id, **values)
        for e in ended:
            self._after_end(e)

    def _time_out(self, now: int) -> None:
        ex = t.executions.c
        ended = []
        with self._tx() as conn:
            ids = conn.execute(select(ex.id).where(ex.timeout_at_ms <= now).limit(1000)).scalars().all()
            for exec_id in ids:
                row = store.load_execution(conn, exec_id)
                if row is None or row["status"] != RUNNING:
                    continue
                err = {"ErrorType": "Execution.TimedOut",
                       "ErrorMessage": f"The execution timed out after {row['config'].get('ExecutionTimeout')} s."}
                ended.append(self._end(conn, row, "TIMED_OUT", None, err, now))
        for e in ended:
            self._after_end(e)

    def _start_invocations(self, now: int) -> None:
        room = MAX_IN_FLIGHT - len(self._running)
        if room <= 0:
            return
        ex = t.executions.c
        with self._tx() as conn:
            due = select(ex.id).where(ex.invoke_at_ms <= now, ex.in_flight.is_(False)).order_by(ex.invoke_at_ms)
            if conn.dialect.name != "sqlite":  # several servers on one PostgreSQL: each execution to one of them
                due = due.with_for_update(skip_locked=True)
            ids = conn.execute(due.limit(room)).scalars().all()
            for exec_id in ids:  # prepared in this one transaction: one commit for the whole batch
                if exec_id in self._running:
                    continue
                prepared = self._prepare_in(conn, exec_id)
                if prepared is None:
                    continue
                self._running.add(exec_id)
                self._spawn(self._invoke(exec_id, prepared))
            if time.monotonic() - self._counted_at > 1.0:  # a COUNT over the table: at most once a second
                self._counted_at = time.monotonic()
                self.metrics.suspended.set(self._count_suspended(conn))

    # ------------------------------------------------------------------ invocations

    async def _invoke(self, exec_id: str, prepared: tuple[dict[str, Any], str, bytes]) -> None:
        """One invocation of the function for an execution (at most one at a time per execution)."""
        try:
            row, token, payload = prepared
            started = now_ms()
            outcome_error: dict[str, Any] | None = None
            output: Any = None
            request_id = ""
            try:
                outcome = await self._invoker.invoke(row["function_name"], row["version"], payload,
                                                     invocation_type="RequestResponse", trace_id=row["trace_id"])
                request_id = outcome.request_id
                if outcome.function_error is not None:
                    outcome_error = _function_error(outcome.payload)
                else:
                    try:
                        output = json.loads(outcome.payload)
                    except ValueError:
                        output = None
            except TooManyRequests:
                self._finish(exec_id, token, started, None, None, "", throttled=True)
                return
            except LambdaError as exc:
                outcome_error = {"ErrorType": exc.error_type, "ErrorMessage": exc.message}
            self._finish(exec_id, token, started, output, outcome_error, request_id)
        except Exception:
            log.exception("durable invocation of %s failed", exec_id)
            with self._tx() as conn:
                store.set_execution(conn, exec_id, in_flight=False, invoke_at_ms=now_ms() + 1000)
        finally:
            self._running.discard(exec_id)
            self._wake.set()

    def _prepare(self, exec_id: str) -> tuple[dict[str, Any], str, bytes] | None:
        """Mint the invocation's token and build its event (marks the execution in flight)."""
        with self._tx() as conn:
            return self._prepare_in(conn, exec_id)

    def _prepare_in(self, conn: Connection, exec_id: str) -> tuple[dict[str, Any], str, bytes] | None:
        row = store.load_execution(conn, exec_id)
        if row is None or row["status"] != RUNNING:
            if row is not None:
                store.set_execution(conn, exec_id, in_flight=False, invoke_at_ms=None)
            return None
        ops = store.load_ops(conn, exec_id)
        now = now_ms()
        events = self._fire_due_ops(ops, now)
        change = store.save_ops(conn, exec_id, ops.values(), row["change_seq"])
        nxt = store.add_events(conn, exec_id, row["event_seq"], events)
        token = new_token()
        store.set_execution(conn, exec_id, token=token, change_seq=change, delivered_seq=change, event_seq=nxt,
                            in_flight=True, invoke_at_ms=None, invocations=row["invocations"] + 1, replay=None)
        ordered = sorted(ops.values(), key=lambda o: o.seq)
        whole = {"DurableExecutionArn": row["arn"], "CheckpointToken": token,
                 "InitialExecutionState": {"Operations": [op.data for op in ordered]}}
        if len(ordered) <= EVENT_PAGE_OPS:
            encoded_whole = json.dumps(whole).encode()
            if len(encoded_whole) <= EVENT_PAGE_BYTES:
                return row, token, encoded_whole
        page: list[dict[str, Any]] = []
        size = 0
        for op in ordered:
            encoded = len(json.dumps(op.data))
            if page and (len(page) >= EVENT_PAGE_OPS or size + encoded > EVENT_PAGE_BYTES):
                break
            page.append(op.data)
            size += encoded
        state: dict[str, Any] = {"Operations": page}
        if len(page) < len(ordered):
            state["NextMarker"] = str(len(page))
        event = {"DurableExecutionArn": row["arn"], "CheckpointToken": token, "InitialExecutionState": state}
        return row, token, json.dumps(event).encode()

    def _finish(self, exec_id: str, token: str, started: int, output: Any, error: dict[str, Any] | None,
                request_id: str, throttled: bool = False) -> None:
        ended = None
        with self._tx() as conn:
            row = store.load_execution(conn, exec_id)
            if row is None:
                return
            now = now_ms()
            values: dict[str, Any] = {"in_flight": False, "token": None}
            if row["status"] != RUNNING:  # stopped, timed out or ended by an EXECUTION checkpoint meanwhile
                store.set_execution(conn, exec_id, in_flight=False, token=None, invoke_at_ms=None)
                return
            if throttled:
                store.set_execution(conn, exec_id, in_flight=False, token=None, invoke_at_ms=now + 1000)
                return
            status = output.get("Status") if isinstance(output, dict) and error is None else None
            completed: dict[str, Any] = {"StartTimestamp": started, "EndTimestamp": now, "RequestId": request_id}
            if error is not None:
                completed["Error"] = {"Payload": error, "Truncated": False}
            ev = opsm.event(None, "InvocationCompleted", now, completed, data={})
            values["event_seq"] = store.add_events(conn, exec_id, row["event_seq"], [ev])
            if status == "SUCCEEDED" and output.get("Error") is None:
                values["failures"] = 0
                ended = self._end(conn, row, "SUCCEEDED", output.get("Result") or "", None, now, values)
            elif status == "FAILED" and output.get("Result") is None:
                ended = self._end(conn, row, "FAILED", None, output.get("Error") or {}, now, values)
            elif status == "PENDING":
                ops = store.load_ops(conn, exec_id)
                events = self._fire_due_ops(ops, now)
                change = store.save_ops(conn, exec_id, ops.values(), row["change_seq"])
                values["event_seq"] = store.add_events(conn, exec_id, values["event_seq"], events)
                values["change_seq"] = change
                if change > row["delivered_seq"]:
                    values["invoke_at_ms"] = now  # something happened it has not seen: go again
                    values["failures"] = 0
                elif opsm.waiting_on_something(ops):
                    values["failures"] = 0
                else:
                    values["failures"] = row["failures"] + 1
                    if values["failures"] >= PENDING_STRIKES:
                        ended = self._end(conn, row, "FAILED", None, {
                            "ErrorType": "Execution.InvalidResponse",
                            "ErrorMessage": "The function answered PENDING with nothing to wait for."}, now, values)
                    else:
                        values["invoke_at_ms"] = now
                if ended is None:
                    store.set_execution(conn, exec_id, **values)
            elif status is not None:
                ended = self._end(conn, row, "FAILED", None, {
                    "ErrorType": "InvalidParameterValueException",
                    "ErrorMessage": "The function's durable output is invalid."}, now, values)
            else:
                failures = row["failures"] + 1
                values["failures"] = failures
                if failures >= MAX_FAILED_INVOCATIONS:
                    ended = self._end(conn, row, "FAILED", None, error or {
                        "ErrorType": "Execution.InvalidResponse",
                        "ErrorMessage": "The function's output is not a durable execution output."}, now, values)
                else:
                    # back-off: 1, 2, 4, 8 s (the reference waits 5 s each time)
                    values["invoke_at_ms"] = now + 1000 * 2 ** (failures - 1)
                    store.set_execution(conn, exec_id, **values)
        if ended is not None:
            self._after_end(ended)

    async def _run_chained(self, exec_id: str, op: Op) -> None:
        """Start what a CHAINED_INVOKE operation calls: a durable function becomes a child execution, a plain
        one is invoked synchronously; either way its end completes the operation."""
        internal = dict(op.internal or {})
        target = str(internal.get("function"))
        payload = str(internal.get("input") or "").encode()
        try:
            if self.is_durable(target, None):
                name = f"{exec_id[:24]}-{hashlib.sha256(op.id.encode()).hexdigest()[:39]}"
                started = self.start_execution(target, None, payload, name,
                                               parent={"execution": exec_id, "op": op.id})
                with self._tx() as conn:
                    internal["child"] = started.arn
                    conn.execute(update(t.operations).where(t.operations.c.execution_id == exec_id,
                                                            t.operations.c.op_id == op.id).values(internal=internal))
                    child = store.load_execution(conn, execution_id_of(started.arn), lock=False)
                if started.existing and child is not None and child["status"] in TERMINAL:
                    self._complete_chained(exec_id, op.id, child["status"], child["result"], child["error"])
                return
            outcome = await self._invoker.invoke(target, None, payload, invocation_type="RequestResponse")
            if outcome.function_error is not None:
                self._complete_chained(exec_id, op.id, "FAILED", None, _function_error(outcome.payload))
            else:
                self._complete_chained(exec_id, op.id, "SUCCEEDED", outcome.payload.decode(), None)
        except LambdaError as exc:
            self._complete_chained(exec_id, op.id, "FAILED", None,
                                   {"ErrorType": exc.error_type, "ErrorMessage": exc.message})
        except Exception:
            log.exception("chained invoke of %s failed", target)
            self._complete_chained(exec_id, op.id, "FAILED", None,
                                   {"ErrorType": "ServiceException", "ErrorMessage": "The chained invoke failed."})


def _function_error(payload: bytes) -> dict[str, Any]:
    """A Lambda function error document as an ErrorObject."""
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"ErrorType": "Function.Error", "ErrorMessage": payload.decode(errors="replace")[:4096]}
    out: dict[str, Any] = {"ErrorType": str(doc.get("errorType", "Function.Error")),
                           "ErrorMessage": str(doc.get("errorMessage", ""))}
    if isinstance(doc.get("stackTrace"), list):
        out["StackTrace"] = [str(x) for x in doc["stackTrace"]]
    return out


def _marker(marker: str | None) -> int:
    if not marker:
        return 0
    if not marker.isdigit():
        raise InvalidParameterValue("Invalid marker.")
    return int(marker)
