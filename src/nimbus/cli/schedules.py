"""`nimbus schedules`: the server's EventBridge Scheduler schedules with their expression, time zone, target
and next fire time, from `GET /nimbus/v1/schedules`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from nimbus.cli.client import ApiError, LambdaClient

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def format_next(epoch: float | None, now: float | None = None) -> str:
    """`2026-12-04 18:00:00Z (in 12 min)`, or `-` when the schedule will not fire again (or is disabled)."""
    if epoch is None:
        return "-"
    delta = epoch - (time.time() if now is None else now)
    if delta < 60:
        rel = f"in {max(0, int(delta))} s"
    elif delta < 3600:
        rel = f"in {int(delta // 60)} min"
    elif delta < 172800:
        rel = f"in {delta / 3600:.1f} h"
    else:
        rel = f"in {delta / 86400:.0f} d"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ") + f" ({rel})"


def schedules(
    group: Annotated[str, typer.Option("--group", help="Only schedules of this group")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON")] = False,
    endpoint: Annotated[str | None, typer.Option("--endpoint", envvar="NIMBUS_ENDPOINT", help="nimbus server URL")]
    = None,
) -> None:
    """EventBridge Scheduler schedules: expression, time zone, state, target and next fire time."""
    try:
        doc = LambdaClient(endpoint).json("GET", "/nimbus/v1/schedules")
    except ApiError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    rows = [s for s in doc.get("Schedules", []) if not group or s["GroupName"] == group]
    if as_json:
        out.print_json(json.dumps({"Schedules": rows}))
        return
    if not rows:
        out.print("no schedules" + (f" in group {group!r}" if group else ""))
        return
    table = Table(box=box.SIMPLE_HEAD)
    for title in ("Schedule", "Expression", "Time zone", "State", "Next fire time", "Target"):
        table.add_column(title, overflow="fold")
    rows.sort(key=lambda s: (s["NextFireTime"] is None, s["NextFireTime"] or 0))
    for s in rows:
        name = s["Name"] if s["GroupName"] == "default" else f"{s['GroupName']}/{s['Name']}"
        target = s["Target"].split(":function:", 1)[-1] if ":function:" in s["Target"] else s["Target"]
        table.add_row(name, s["ScheduleExpression"], s["ScheduleExpressionTimezone"], s["State"],
                      format_next(s["NextFireTime"]), target)
    out.print(table)
