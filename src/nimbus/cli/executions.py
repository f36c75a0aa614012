"""`nimbus executions list | show | stop | approve | reject`: durable executions over the Lambda API
(ListDurableExecutionsByFunction, GetDurableExecution + GetDurableExecutionHistory as a timeline,
StopDurableExecution, SendDurableExecutionCallbackSuccess/Failure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from nimbus.cli.client import ApiError, LambdaClient
from nimbus.cli.functions import Endpoint, console, fail

app = typer.Typer(no_args_is_help=True, help="Durable executions: list, show a timeline, stop, answer callbacks.")
STATUS_STYLE = {"RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red", "TIMED_OUT": "red", "STOPPED": "yellow"}


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _path(arn: str, suffix: str = "") -> str:
    return f"/2025-12-01/durable-executions/{quote(arn, safe='')}{suffix}"


@app.command("list")
def list_(
    function: Annotated[str, typer.Argument(help="Function name or ARN")],
    status: Annotated[list[str] | None, typer.Option("--status", "-s", help="RUNNING, SUCCEEDED, ...")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first)")] = 50,
    endpoint: Endpoint = None,
) -> None:
    """List a function's durable executions, newest first."""
    client = LambdaClient(endpoint)
    params: list[tuple[str, str]] = [("MaxItems", str(min(limit, 1000)))]
    params += [("Statuses", s) for s in status or []]
    try:
        doc = client.json("GET", f"/2025-12-01/functions/{quote(function, safe='')}/durable-executions",
                          params=params)
    except ApiError as exc:
        raise fail(exc) from None
    table = Table("name", "status", "started", "ended", "arn")
    for e in doc.get("DurableExecutions", [])[:limit]:
        style = STATUS_STYLE.get(e["Status"], "")
        table.add_row(e["DurableExecutionName"], Text(e["Status"], style=style), _when(e.get("StartTimestamp")),
                      _when(e.get("EndTimestamp")), e["DurableExecutionArn"])
    console.print(table)


def _summary(event: dict[str, Any]) -> str:
    """The interesting part of an event's details, in a line."""
    details = next((v for k, v in event.items() if k.endswith("Details") and isinstance(v, dict)), {})
    parts = []
    for key in ("Duration", "CallbackId", "FunctionName", "Timeout", "HeartbeatTimeout", "RequestId"):
        if details.get(key) is not None:
            parts.append(f"{key}={details[key]}")
    retry = details.get("RetryDetails")
    if retry:
        parts.append(f"attempt {retry.get('CurrentAttempt')}" + (
            f", retry in {retry['NextAttemptDelaySeconds']} s" if retry.get("NextAttemptDelaySeconds") else ""))
    for key in ("Result", "Input"):
        payload = (details.get(key) or {}).get("Payload")
        if payload:
            parts.append(f"{key.lower()}={payload[:60]}")
    error = (details.get("Error") or {}).get("Payload")
    if error:
        parts.append(f"error={error.get('ErrorType', '')}: {str(error.get('ErrorMessage', ''))[:60]}")
    return "  ".join(parts)


def _style(kind: str) -> str:
    if kind.endswith(("Failed", "TimedOut", "Stopped")):
        return "red"
    if kind.endswith("Succeeded"):
        return "green"
    if kind.endswith("Started"):
        return "cyan"
    return "dim"


@app.command()
def show(
    arn: Annotated[str, typer.Argument(help="Durable execution ARN")],
    endpoint: Endpoint = None,
) -> None:
    """An execution's status and its history as a timeline."""
    client = LambdaClient(endpoint)
    try:
        ex = client.json("GET", _path(arn))
        events: list[dict[str, Any]] = []
        params: dict[str, str] = {"IncludeExecutionData": "true", "MaxItems": "1000"}
        while True:
            page = client.json("GET", _path(arn, "/history"), params=params)
            events.extend(page.get("Events", []))
            if not page.get("NextMarker"):
                break
            params["Marker"] = page["NextMarker"]
    except ApiError as exc:
        raise fail(exc) from None
    status = ex["Status"]
    console.print(Text.assemble((ex["DurableExecutionName"], "bold"), "  ",
                                (status, STATUS_STYLE.get(status, "")), f"  version {ex.get('Version', '')}"))
    console.print(f"started {_when(ex.get('StartTimestamp'))}   ended {_when(ex.get('EndTimestamp'))}")
    if ex.get("Result") is not None:
        console.print(f"result  {ex['Result'][:200]}")
    if ex.get("Error"):
        console.print(Text(f"error   {json.dumps(ex['Error'])[:200]}", style="red"))
    start = events[0]["EventTimestamp"] if events else 0.0
    end = events[-1]["EventTimestamp"] if events else 0.0
    span = max(end - start, 1e-3)
    table = Table("#", "+time", "", "event", "name", "details", box=None, pad_edge=False)
    width = 24
    for e in events:
        offset = e["EventTimestamp"] - start
        pos = min(width - 1, int(offset / span * (width - 1)))
        bar = Text("·" * pos + "●" + "·" * (width - 1 - pos), style=_style(e["EventType"]))
        table.add_row(str(e["EventId"]), f"{offset:8.3f}s", bar, Text(e["EventType"], style=_style(e["EventType"])),
                      e.get("Name") or "", _summary(e))
    console.print(table)


@app.command()
def stop(
    arn: Annotated[str, typer.Argument(help="Durable execution ARN")],
    message: Annotated[str, typer.Option("--message", "-m", help="Why it was stopped")] = "Stopped by the user.",
    endpoint: Endpoint = None,
) -> None:
    """Stop a running execution (no more invocations; waiting callbacks are dropped)."""
    try:
        LambdaClient(endpoint).json("POST", _path(arn, "/stop"), json={"ErrorMessage": message})
    except ApiError as exc:
        raise fail(exc) from None
    console.print(f"stopped {arn}")


@app.command()
def approve(
    callback_id: Annotated[str, typer.Argument(help="Callback id (see `nimbus executions show`)")],
    result: Annotated[str, typer.Argument(help="Result handed to the waiting code")] = "{}",
    endpoint: Endpoint = None,
) -> None:
    """Complete a callback successfully (SendDurableExecutionCallbackSuccess)."""
    try:
        LambdaClient(endpoint).request("POST", f"/2025-12-01/durable-execution-callbacks/{quote(callback_id, safe='')}"
                                       "/succeed", content=result.encode())
    except ApiError as exc:
        raise fail(exc) from None
    console.print("callback completed")


@app.command()
def reject(
    callback_id: Annotated[str, typer.Argument(help="Callback id")],
    message: Annotated[str, typer.Option("--message", "-m")] = "Rejected.",
    endpoint: Endpoint = None,
) -> None:
    """Fail a callback (SendDurableExecutionCallbackFailure)."""
    try:
        LambdaClient(endpoint).json("POST", f"/2025-12-01/durable-execution-callbacks/{quote(callback_id, safe='')}"
                                    "/fail", json={"ErrorType": "Rejected", "ErrorMessage": message})
    except ApiError as exc:
        raise fail(exc) from None
    console.print("callback failed")
