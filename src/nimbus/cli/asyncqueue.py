"""The async queue's figures for the CLI: queued events and the oldest one's age per function, from
`GET /nimbus/v1/async-queue`."""

from __future__ import annotations

from nimbus.cli.client import ApiError, LambdaClient


def format_age(ms: int | None) -> str:
    """`-`, `850 ms`, `12.3 s`, `4 min`, `2.5 h`."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min"
    return f"{ms / 3_600_000:.1f} h"


def async_queues(client: LambdaClient) -> dict[str, tuple[str, str]]:
    """Function name -> (queued events, oldest event age), for functions with queued events. Empty when
    the server does not have the endpoint."""
    try:
        doc = client.json("GET", "/nimbus/v1/async-queue")
    except ApiError:
        return {}
    return {
        f["FunctionName"]: (str(f["Depth"]), format_age(f.get("OldestEventAgeMs")))
        for f in doc.get("Functions", [])
    }
