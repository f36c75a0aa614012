"""Reading and writing executions, operations and history events (SQLAlchemy Core; SQLite or PostgreSQL).
Every function takes the connection of the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, false, func, insert, or_, select, update

from nimbus.durable import tables as t
from nimbus.durable.operations import Op

# Statements built once: building `update().values()` per call costs more than running it on SQLite.
_EXEC = select(t.executions).where(t.executions.c.id == bindparam("id"))
_EXEC_LOCKED = _EXEC.with_for_update()
_OPS = select(t.operations).where(t.operations.c.execution_id == bindparam("eid")).order_by(t.operations.c.seq)
_OP = select(t.operations).where(t.operations.c.execution_id == bindparam("eid"),
                                 t.operations.c.op_id == bindparam("oid"))
_SET_EXEC = update(t.executions).where(t.executions.c.id == bindparam("_id"))
_SET_OP = update(t.operations).where(t.operations.c.execution_id == bindparam("_eid"),
                                     t.operations.c.op_id == bindparam("_oid"))
_ADD_OP = insert(t.operations)
_ADD_EXEC = insert(t.executions)
_BY_NAME = select(t.executions.c.arn, t.executions.c.input_hash, t.executions.c.version).where(
    t.executions.c.function_name == bindparam("fn"), t.executions.c.name == bindparam("name"))
_CLEAR_DUE = update(t.operations).where(t.operations.c.execution_id == bindparam("_eid"),
                                        t.operations.c.due_ms.is_not(None)).values(due_ms=None)
_ADD_EVENTS = insert(t.events)


def load_execution(conn: Connection, execution_id: str, lock: bool = True) -> dict[str, Any] | None:
    """The execution row, locked for the transaction on PostgreSQL (SQLite serialises writers anyway)."""
    q = _EXEC_LOCKED if lock and conn.dialect.name != "sqlite" else _EXEC
    row = conn.execute(q, {"id": execution_id}).mappings().first()
    return dict(row) if row is not None else None


def load_ops(conn: Connection, execution_id: str) -> dict[str, Op]:
    rows = conn.execute(_OPS, {"eid": execution_id}).mappings()
    return {r["op_id"]: _op(r) for r in rows}


def load_relevant_ops(conn: Connection, execution_id: str, ids: set[str], since_seq: int, now_ms: int) -> dict[str, Op]:
    """The operations a checkpoint needs, without reading (and JSON-decoding) the whole execution: the ones it
    names, those changed since `since_seq`, and those whose timer is due."""
    o = t.operations.c
    q = select(t.operations).where(o.execution_id == execution_id, or_(
        o.op_id.in_(sorted(ids)) if ids else false(), o.changed_seq > since_seq, o.due_ms <= now_ms,
    )).order_by(o.seq)
    return {r["op_id"]: _op(r) for r in conn.execute(q).mappings()}


def load_op(conn: Connection, execution_id: str, op_id: str) -> Op | None:
    row = conn.execute(_OP, {"eid": execution_id, "oid": op_id}).mappings().first()
    return _op(row) if row is not None else None


def _op(r: RowMapping) -> Op:
    return Op(dict(r["data"]), r["seq"], dict(r["internal"]) if r["internal"] else None, r["due_ms"],
              changed_seq=r["changed_seq"])


def save_ops(conn: Connection, execution_id: str, ops: Iterable[Op], change_seq: int) -> int:
    """Write the changed operations, each stamped with the next change number; returns the last one."""
    for op in ops:
        if not op.changed:
            continue
        change_seq += 1
        op.changed_seq = change_seq
        values = {"type": op.type, "status": op.status, "changed_seq": change_seq, "due_ms": op.due_ms,
                  "data": op.data, "internal": op.internal}
        if op.new:
            conn.execute(_ADD_OP, {"execution_id": execution_id, "op_id": op.id, "seq": op.seq, **values})
            op.new = False
        else:
            conn.execute(_SET_OP, {"_eid": execution_id, "_oid": op.id, **values})
        op.changed = False
    return change_seq


def add_events(conn: Connection, execution_id: str, first_id: int, events: list[dict[str, Any]]) -> int:
    """Append history events numbered from `first_id`; returns the next free id."""
    if not events:
        return first_id
    rows = []
    for i, ev in enumerate(events):
        ev["EventId"] = first_id + i
        rows.append({"execution_id": execution_id, "event_id": first_id + i, "data": ev})
    conn.execute(_ADD_EVENTS, rows)
    return first_id + len(events)


def load_events(conn: Connection, execution_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(t.events.c.data).where(t.events.c.execution_id == execution_id).order_by(t.events.c.event_id)
    ).scalars()
    return [dict(r) for r in rows]


def set_execution(conn: Connection, execution_id: str, **values: Any) -> None:
    conn.execute(_SET_EXEC, {"_id": execution_id, **values})


def next_due(conn: Connection) -> int | None:
    """The earliest moment the scheduler has something to do."""
    ex = t.executions.c
    moments = [
        conn.execute(select(func.min(t.operations.c.due_ms))).scalar(),
        conn.execute(select(func.min(ex.timeout_at_ms))).scalar(),
        conn.execute(select(func.min(ex.invoke_at_ms))).scalar(),
    ]
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def find_by_name(conn: Connection, function_name: str, name: str) -> Any:
    return conn.execute(_BY_NAME, {"fn": function_name, "name": name}).first()


def add_execution(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(_ADD_EXEC, values)


def add_op(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(_ADD_OP, values)


def set_op(conn: Connection, execution_id: str, op_id: str, **values: Any) -> None:
    conn.execute(_SET_OP, {"_eid": execution_id, "_oid": op_id, **values})


def clear_due(conn: Connection, execution_id: str) -> None:
    """No timer of this execution fires any more (it ended)."""
    conn.execute(_CLEAR_DUE, {"_eid": execution_id})
