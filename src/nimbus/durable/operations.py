"""The operation state machine: how a checkpoint batch, a timer, a callback or a chained invoke's end changes
an execution's operations, and the history events each change records. Pure: no database, no clock of its
own (the caller passes `now_ms`), so it is unit-tested directly.

Operations are kept in the SDK's wire form (`Id`, `Type`, `Status`, `StepDetails`, ...) with timestamps in
epoch milliseconds, as the invocation event carries them; `api/` turns them into epoch seconds."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nimbus.errors import InvalidParameterValue

TYPES = ("EXECUTION", "CONTEXT", "STEP", "WAIT", "CALLBACK", "CHAINED_INVOKE")
ACTIONS = {
    "EXECUTION": ("SUCCEED", "FAIL"),
    "CONTEXT": ("START", "SUCCEED", "FAIL"),
    "STEP": ("START", "SUCCEED", "FAIL", "RETRY"),
    "WAIT": ("START", "CANCEL"),
    "CALLBACK": ("START",),
    "CHAINED_INVOKE": ("START",),
}
_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_SECONDS = 31_622_400
MAX_PAYLOAD = 6_291_456
MAX_ERROR = 32_768  # the reference emulator's bound on one error object (the model allows 1 MB)
_EVENT_PREFIX = {"CONTEXT": "Context", "STEP": "Step", "WAIT": "Wait", "CALLBACK": "Callback",
                 "CHAINED_INVOKE": "ChainedInvoke"}


@dataclass(slots=True)
class Op:
    """One operation of an execution."""

    data: dict[str, Any]
    seq: int
    internal: dict[str, Any] | None = None
    due_ms: int | None = None
    changed: bool = False
    changed_seq: int = 0
    new: bool = False

    @property
    def id(self) -> str:
        return str(self.data["Id"])

    @property
    def type(self) -> str:
        return str(self.data["Type"])

    @property
    def status(self) -> str:
        return str(self.data["Status"])


@dataclass(slots=True)
class Outcome:
    """What a batch did besides changing operations."""

    touched: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    end: tuple[str, str | None, dict[str, Any] | None] | None = None  # (status, result, error)
    chained: list[str] = field(default_factory=list)  # CHAINED_INVOKE ops to start


def invalid(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


def event(op: Op | None, kind: str, now_ms: int, details: dict[str, Any] | None = None,
          data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A history Event (EventId is assigned when stored)."""
    src = op.data if op is not None else (data or {})
    out: dict[str, Any] = {"EventType": kind, "EventTimestamp": now_ms}
    for key in ("Id", "Name", "ParentId", "SubType"):
        if src.get(key) is not None:
            out[key] = src[key]
    out[f"{kind}Details"] = details or {}
    return out


def _result(payload: str | None) -> dict[str, Any]:
    return {"Payload": payload or "", "Truncated": False}


def _error(error: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"Payload": dict(error or {}), "Truncated": False}


def _seconds(options: Mapping[str, Any] | None, key: str, field_name: str, low: int, high: int) -> int:
    value = (options or {}).get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(f"{field_name} must be an integer between {low} and {high}.")
    return value


def validate_batch(ops: Mapping[str, Op], updates: list[Any]) -> None:
    """The whole batch is refused before any of it applies (§5.4 of the facts)."""
    if not isinstance(updates, list):
        raise invalid("Updates must be a list.")
    executions = [i for i, u in enumerate(updates) if isinstance(u, dict) and u.get("Type") == "EXECUTION"]
    if len(executions) > 1:
        raise invalid("Cannot checkpoint multiple EXECUTION updates.")
    if executions and executions[0] != len(updates) - 1:
        raise invalid("EXECUTION checkpoint must be the last update.")
    started: dict[str, str] = {}  # id -> type, STARTed in this batch
    seen: dict[str, list[str]] = {}  # id -> actions in this batch
    for u in updates:
        if not isinstance(u, dict):
            raise invalid("Each update must be an object.")
        op_id, kind, action = u.get("Id"), u.get("Type"), u.get("Action")
        if not isinstance(op_id, str) or not _ID.match(op_id):
            raise invalid("Operation Id must be 1 to 64 characters of [a-zA-Z0-9-_].")
        if kind not in TYPES:
            raise invalid("Unknown operation type.")
        if action not in ACTIONS[str(kind)]:
            raise invalid("Invalid action for the given operation type.")
        name, sub = u.get("Name"), u.get("SubType")
        if name is not None and (not isinstance(name, str) or len(name) > 256):
            raise invalid("Operation Name must be at most 256 characters.")
        if sub is not None and (not isinstance(sub, str) or len(sub) > 32):
            raise invalid("Operation SubType must be at most 32 characters.")
        payload = u.get("Payload")
        if payload is not None and (not isinstance(payload, str) or len(payload.encode()) > MAX_PAYLOAD):
            raise invalid(f"Payload must be a string of at most {MAX_PAYLOAD} bytes.")
        error = u.get("Error")
        if error is not None:
            if not isinstance(error, dict):
                raise invalid("Error must be an ErrorObject.")
            if len(repr(error).encode()) > MAX_ERROR:
                raise invalid(f"Error object size must be less than {MAX_ERROR} bytes.")
        if action == "SUCCEED" and error is not None:
            raise invalid("A SUCCEED update cannot carry an Error.")
        if action == "FAIL" and payload is not None:
            raise invalid("A FAIL update cannot carry a Payload.")
        if kind == "EXECUTION":
            continue
        previous = seen.get(op_id)
        if previous is not None and not (previous == ["START"] and action != "START" and kind in ("STEP", "CONTEXT")):
            raise invalid("Cannot checkpoint multiple operations with the same ID.")
        seen.setdefault(op_id, []).append(str(action))
        parent = u.get("ParentId")
        if parent is not None:
            existing_parent = ops.get(parent)
            if not (started.get(parent) == "CONTEXT" or (existing_parent is not None
                                                         and existing_parent.type == "CONTEXT")):
                raise invalid("Invalid parent operation id.")
        current = ops.get(op_id)
        if current is not None:
            if kind != current.type:
                raise invalid("Inconsistent operation type.")
            if sub is not None and sub != current.data.get("SubType"):
                raise invalid("Inconsistent operation subtype.")
            if name is not None and name != current.data.get("Name"):
                raise invalid("Inconsistent operation name.")
            if parent is not None and parent != current.data.get("ParentId"):
                raise invalid("Inconsistent parent operation id.")
        if action == "START":
            started[op_id] = str(kind)


def apply_batch(
    ops: dict[str, Op],
    updates: list[dict[str, Any]],
    now_ms: int,
    next_seq: Callable[[], int],
    callback_id: Callable[[str], str],
) -> Outcome:
    """Apply a validated batch in order. New operations are added to `ops`; changed ones get `changed`."""
    out = Outcome()
    for u in updates:
        kind, action = u["Type"], u["Action"]
        if kind == "EXECUTION":
            if action == "SUCCEED":
                out.end = ("SUCCEEDED", u.get("Payload") or "", None)
            else:
                out.end = ("FAILED", None, u.get("Error") or {})
            continue
        op = ops.get(u["Id"])
        handler = _HANDLERS[kind]
        op = handler(op, u, now_ms, next_seq, callback_id, out)
        op.changed = True
        ops[op.id] = op
        if op.id not in out.touched:
            out.touched.append(op.id)
    return out


def _new(u: Mapping[str, Any], status: str, now_ms: int, next_seq: Callable[[], int]) -> Op:
    data: dict[str, Any] = {"Id": u["Id"], "Type": u["Type"], "Status": status, "StartTimestamp": now_ms}
    for key in ("ParentId", "Name", "SubType"):
        if u.get(key) is not None:
            data[key] = u[key]
    return Op(data, next_seq(), new=True)


def _step(op: Op | None, u: dict[str, Any], now_ms: int, next_seq: Callable[[], int],
          _cb: Callable[[str], str], out: Outcome) -> Op:
    action = u["Action"]
    if action == "START":
        if op is not None and op.status not in ("READY", "PENDING"):
            raise invalid(f"Cannot start a STEP operation in status {op.status}.")
        if op is None:
            op = _new(u, "STARTED", now_ms, next_seq)
            op.data["StepDetails"] = {"Attempt": 0}
        op.data["Status"] = "STARTED"
        op.data.setdefault("StepDetails", {}).pop("NextAttemptTimestamp", None)
        op.due_ms = None
        out.events.append(event(op, "StepStarted", now_ms))
        return op
    if op is None:
        raise invalid("Cannot update a STEP operation that was not started.")
    if op.status not in ("STARTED", "READY"):
        raise invalid(f"Cannot {action} a STEP operation in status {op.status}.")
    details = op.data.setdefault("StepDetails", {"Attempt": 0})
    details["Attempt"] = int(details.get("Attempt", 0)) + 1
    details.pop("Result", None)
    details.pop("Error", None)
    retry = {"CurrentAttempt": details["Attempt"]}
    if action == "RETRY":
        delay = _seconds(u.get("StepOptions"), "NextAttemptDelaySeconds", "NextAttemptDelaySeconds", 1, MAX_SECONDS)
        op.data["Status"] = "PENDING"
        details["NextAttemptTimestamp"] = now_ms + delay * 1000
        op.due_ms = details["NextAttemptTimestamp"]
        if u.get("Payload") is not None:
            details["Result"] = u["Payload"]
        if u.get("Error") is not None:
            details["Error"] = u["Error"]
        out.events.append(event(op, "StepFailed", now_ms, {
            "Error": _error(u.get("Error")), "RetryDetails": {**retry, "NextAttemptDelaySeconds": delay}}))
        return op
    op.data["EndTimestamp"] = now_ms
    details.pop("NextAttemptTimestamp", None)
    op.due_ms = None
    if action == "SUCCEED":
        op.data["Status"] = "SUCCEEDED"
        details["Result"] = u.get("Payload") or ""
        out.events.append(event(op, "StepSucceeded", now_ms, {"Result": _result(u.get("Payload")),
                                                             "RetryDetails": retry}))
    else:
        op.data["Status"] = "FAILED"
        details["Error"] = u.get("Error") or {}
        out.events.append(event(op, "StepFailed", now_ms, {"Error": _error(u.get("Error")), "RetryDetails": retry}))
    return op


def _context(op: Op | None, u: dict[str, Any], now_ms: int, next_seq: Callable[[], int],
             _cb: Callable[[str], str], out: Outcome) -> Op:
    action = u["Action"]
    if action == "START":
        if op is not None:
            raise invalid("Cannot start a CONTEXT operation that already exists.")
        op = _new(u, "STARTED", now_ms, next_seq)
        out.events.append(event(op, "ContextStarted", now_ms))
        return op
    if op is None or op.status != "STARTED":
        raise invalid(f"Cannot {action} a CONTEXT operation that is not STARTED.")
    op.data["EndTimestamp"] = now_ms
    details: dict[str, Any] = {}
    if (u.get("ContextOptions") or {}).get("ReplayChildren"):
        details["ReplayChildren"] = True
    if action == "SUCCEED":
        op.data["Status"] = "SUCCEEDED"
        details["Result"] = u.get("Payload") or ""
        out.events.append(event(op, "ContextSucceeded", now_ms, {"Result": _result(u.get("Payload"))}))
    else:
        op.data["Status"] = "FAILED"
        details["Error"] = u.get("Error") or {}
        out.events.append(event(op, "ContextFailed", now_ms, {"Error": _error(u.get("Error"))}))
    op.data["ContextDetails"] = details
    return op


def _wait(op: Op | None, u: dict[str, Any], now_ms: int, next_seq: Callable[[], int],
          _cb: Callable[[str], str], out: Outcome) -> Op:
    if u["Action"] == "START":
        if op is not None:
            raise invalid("Cannot start a WAIT operation that already exists.")
        seconds = _seconds(u.get("WaitOptions"), "WaitSeconds", "WaitSeconds", 1, MAX_SECONDS)
        op = _new(u, "STARTED", now_ms, next_seq)
        op.data["WaitDetails"] = {"ScheduledEndTimestamp": now_ms + seconds * 1000}
        op.internal = {"seconds": seconds}
        op.due_ms = now_ms + seconds * 1000
        out.events.append(event(op, "WaitStarted", now_ms, {
            "Duration": seconds, "ScheduledEndTimestamp": op.due_ms}))
        return op
    if op is None or op.status != "STARTED":
        raise invalid("Cannot cancel a WAIT operation that is not STARTED.")
    op.data["Status"] = "CANCELLED"
    op.data["EndTimestamp"] = now_ms
    op.due_ms = None
    out.events.append(event(op, "WaitCancelled", now_ms, {"Error": _error(u.get("Error"))}))
    return op


def _callback(op: Op | None, u: dict[str, Any], now_ms: int, next_seq: Callable[[], int],
              callback_id: Callable[[str], str], out: Outcome) -> Op:
    if op is not None:
        raise invalid("Cannot start a CALLBACK operation that already exists.")
    options = u.get("CallbackOptions") or {}
    timeout = _seconds({"v": options.get("TimeoutSeconds", 0)}, "v", "TimeoutSeconds", 0, 99_999_999)
    heartbeat = _seconds({"v": options.get("HeartbeatTimeoutSeconds", 0)}, "v", "HeartbeatTimeoutSeconds",
                         0, 99_999_999)
    op = _new(u, "STARTED", now_ms, next_seq)
    cid = callback_id(op.id)
    op.data["CallbackDetails"] = {"CallbackId": cid}
    op.internal = {"timeout_at": now_ms + timeout * 1000 if timeout else None,
                   "heartbeat_s": heartbeat or None,
                   "heartbeat_at": now_ms + heartbeat * 1000 if heartbeat else None}
    op.due_ms = callback_due(op.internal)
    details: dict[str, Any] = {"CallbackId": cid}
    if timeout:
        details["Timeout"] = timeout
    if heartbeat:
        details["HeartbeatTimeout"] = heartbeat
    out.events.append(event(op, "CallbackStarted", now_ms, details))
    return op


def callback_due(internal: Mapping[str, Any]) -> int | None:
    moments = [m for m in (internal.get("timeout_at"), internal.get("heartbeat_at")) if m]
    return min(moments) if moments else None


def _chained(op: Op | None, u: dict[str, Any], now_ms: int, next_seq: Callable[[], int],
             _cb: Callable[[str], str], out: Outcome) -> Op:
    if op is not None:
        raise invalid("Cannot start a CHAINED_INVOKE operation that already exists.")
    options = u.get("ChainedInvokeOptions") or {}
    target = options.get("FunctionName")
    if not isinstance(target, str) or not target:
        raise invalid("ChainedInvokeOptions.FunctionName is required.")
    op = _new(u, "STARTED", now_ms, next_seq)
    op.internal = {"function": target, "input": u.get("Payload") or "", "tenant": options.get("TenantId")}
    details: dict[str, Any] = {"FunctionName": target, "Input": {"Payload": u.get("Payload") or "",
                                                                 "Truncated": False}}
    if options.get("TenantId"):
        details["TenantId"] = options["TenantId"]
    out.events.append(event(op, "ChainedInvokeStarted", now_ms, details))
    out.chained.append(op.id)
    return op


_HANDLERS: dict[str, Callable[..., Op]] = {
    "STEP": _step, "CONTEXT": _context, "WAIT": _wait, "CALLBACK": _callback, "CHAINED_INVOKE": _chained,
}


def fire_due(op: Op, now_ms: int) -> dict[str, Any] | None:
    """What happens by itself when `op.due_ms` has passed: a wait ends, a step retry becomes READY, a callback
    times out. Returns the history event, or None when nothing changed (chained invokes are started by the
    scheduler, not here)."""
    if op.due_ms is None or op.due_ms > now_ms:
        return None
    if op.type == "WAIT" and op.status == "STARTED":
        op.data["Status"] = "SUCCEEDED"
        op.data["EndTimestamp"] = now_ms
        op.due_ms = None
        op.changed = True
        return event(op, "WaitSucceeded", now_ms, {"Duration": (op.internal or {}).get("seconds")})
    if op.type == "STEP" and op.status == "PENDING":
        op.data["Status"] = "READY"
        op.data.setdefault("StepDetails", {}).pop("NextAttemptTimestamp", None)
        op.due_ms = None
        op.changed = True
        return None  # no history event: the next attempt's StepStarted records it
    if op.type == "CALLBACK" and op.status == "STARTED":
        internal = op.internal or {}
        heartbeat = internal.get("heartbeat_at") is not None and internal["heartbeat_at"] <= now_ms
        kind = "Callback.Heartbeat" if heartbeat else "Callback.Timeout"
        message = "Callback heartbeat timed out" if heartbeat else "Callback timed out"
        error = {"ErrorType": kind, "ErrorMessage": message}
        complete(op, "TIMED_OUT", None, error, now_ms)
        return event(op, "CallbackTimedOut", now_ms, {"Error": _error(error)})
    return None


def complete(op: Op, status: str, result: str | None, error: Mapping[str, Any] | None, now_ms: int) -> None:
    """Finish a CALLBACK or CHAINED_INVOKE from outside (callback API, timeout, target's end)."""
    key = "CallbackDetails" if op.type == "CALLBACK" else "ChainedInvokeDetails"
    details = dict(op.data.get(key) or {})
    if result is not None:
        details["Result"] = result
    if error is not None:
        details["Error"] = dict(error)
    op.data[key] = details
    op.data["Status"] = status
    op.data["EndTimestamp"] = now_ms
    op.due_ms = None
    op.changed = True


def completion_event(op: Op, status: str, result: str | None, error: Mapping[str, Any] | None,
                     now_ms: int) -> dict[str, Any]:
    suffix = {"SUCCEEDED": "Succeeded", "FAILED": "Failed", "TIMED_OUT": "TimedOut", "STOPPED": "Stopped"}[status]
    kind = _EVENT_PREFIX[op.type] + suffix
    details = {"Result": _result(result)} if status == "SUCCEEDED" else {"Error": _error(error)}
    return event(op, kind, now_ms, details)


def waiting_on_something(ops: Mapping[str, Op]) -> bool:
    """Whether a PENDING answer is justified: something will complete by itself or from outside."""
    for op in ops.values():
        status = op.status
        if op.type in ("WAIT", "CALLBACK", "CHAINED_INVOKE") and status == "STARTED":
            return True
        if op.type == "STEP" and status in ("PENDING", "READY"):
            return True
    return False
