"""`nimbus queues`: the server's SQS queues with their depth, messages in flight and delayed, and the oldest
message's age, from `GET /nimbus/v1/queues` (the same figures as GetQueueAttributes, for every queue at once)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from nimbus.cli.asyncqueue import format_age
from nimbus.cli.client import ApiError, LambdaClient

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def queues(
    prefix: Annotated[str, typer.Option("--prefix", help="Only queues whose name starts with this")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON")] = False,
    endpoint: Annotated[str | None, typer.Option("--endpoint", envvar="NIMBUS_ENDPOINT", help="nimbus server URL")]
    = None,
) -> None:
    """SQS queues: messages visible, in flight, delayed, and the oldest message's age."""
    try:
        doc = LambdaClient(endpoint).json("GET", "/nimbus/v1/queues")
    except ApiError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    rows = [q for q in doc.get("Queues", []) if q["QueueName"].startswith(prefix)]
    if as_json:
        out.print_json(json.dumps({"Queues": rows}))
        return
    if not rows:
        out.print("no queues" + (f" starting with {prefix!r}" if prefix else ""))
        return
    now_ms = int(time.time() * 1000)
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("Queue", overflow="fold", min_width=12)  # a name is shown whole, folded when narrow
    table.add_column("Type", no_wrap=True)
    counters = out.width >= 100  # the since-start counters only when the terminal has room for them
    for title in ("Visible", "In flight", "Delayed", "Oldest", *(("Sent", "Received", "Deleted") if counters else ())):
        table.add_column(title, justify="right", no_wrap=True)
    for q in rows:
        oldest = q.get("OldestSentTimestamp")
        cells = [q["QueueName"], "fifo" if q["FifoQueue"] else "std", f"{q['Visible']:,}", f"{q['InFlight']:,}",
                 f"{q['Delayed']:,}", format_age(None if oldest is None else max(0, now_ms - int(oldest)))]
        if counters:
            cells += [f"{q['Sent']:,}", f"{q['Received']:,}", f"{q['Deleted']:,}"]
        table.add_row(*cells)
    out.print(table)
