"""Reading and writing executions, operations and history events (SQLAlchemy Core; SQLite or PostgreSQL).
Every function takes the connection of the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from nimbus.durable import tables as t
from nimbus.durable.operations import Op


def load_execution(conn: Connection, execution_id: str, lock: bool = True) -> dict[str, Any] | None:
    """The execution row, locked for the transaction on PostgreSQL (SQLite serialises writers anyway)."""
    q = select(t.executions).where(t.executions.c.id == execution_id)
    if lock and conn.dialect.name != "sqlite":
        q = q.with_for_update()
    row = conn.execute(q).mappings().first()
    return dict(row) if row is not None else None


def load_ops(conn: Connection, execution_id: str) -> dict[str, Op]:
    rows = conn.execute(
        select(t.operations).where(t.operations.c.execution_id == execution_id).order_by(t.operations.c.seq)
    ).mappings()
    return {r["op_id"]: _op(r) for r in rows}


def load_op(conn: Connection, execution_id: str, op_id: str) -> Op | None:
    row = conn.execute(
        select(t.operations).where(t.operations.c.execution_id == execution_id, t.operations.c.op_id == op_id)
    ).mappings().first()
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
            conn.execute(insert(t.operations).values(execution_id=execution_id, op_id=op.id, seq=op.seq, **values))
            op.new = False
        else:
            conn.execute(update(t.operations).where(t.operations.c.execution_id == execution_id,
                                                    t.operations.c.op_id == op.id).values(**values))
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
    conn.execute(insert(t.events), rows)
    return first_id + len(events)


def load_events(conn: Connection, execution_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(t.events.c.data).where(t.events.c.execution_id == execution_id).order_by(t.events.c.event_id)
    ).scalars()
    return [dict(r) for r in rows]


def set_execution(conn: Connection, execution_id: str, **values: Any) -> None:
    conn.execute(update(t.executions).where(t.executions.c.id == execution_id).values(**values))


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
