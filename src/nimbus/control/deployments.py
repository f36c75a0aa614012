"""Deployment history: who changed a function's code, when, and to what (create, update code, publish).

The registry calls `record` inside the transaction that makes the change; the caller's identity comes from
`current_actor`, which the API sets per request (api/actor.py) from the authenticated access key.
"""

from __future__ import annotations

import base64
import binascii
import time
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from nimbus.control.models import DeploymentRow

current_actor: ContextVar[str] = ContextVar("nimbus_actor", default="anonymous")


def record(s: Session, function_name: str, action: str, version: str, code_sha256: str) -> None:
    """Add one history entry to the caller's transaction."""
    s.add(DeploymentRow(function_name=function_name, action=action, version=version, code_sha256=code_sha256,
                        actor=current_actor.get(), at_ms=int(time.time() * 1000)))


def code_sha256_b64(digest: str) -> str:
    """The stored hex digest as the API shows `CodeSha256` (base64), so both read the same."""
    try:
        return base64.b64encode(bytes.fromhex(digest)).decode()
    except (ValueError, binascii.Error):
        return digest


def history(engine: Engine, function_name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest `limit` entries of a function's history, newest first (`codeSha256` in base64 like the
    API's `CodeSha256`)."""
    stmt = (select(DeploymentRow).where(DeploymentRow.function_name == function_name)
            .order_by(DeploymentRow.id.desc()).limit(limit))
    with Session(engine) as s:
        return [
            {"action": r.action, "version": r.version, "codeSha256": code_sha256_b64(r.code_sha256), "actor": r.actor,
             "time": r.at_ms}
            for r in s.scalars(stmt)
        ]
