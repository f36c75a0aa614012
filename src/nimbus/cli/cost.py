"""`nimbus cost [--month YYYY-MM] [--function NAME]`: metered usage (requests, GB-seconds) and what the same
usage would cost on AWS Lambda with its public price table. Speaks the HTTP API (`GET /nimbus/v1/cost`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from nimbus.cli.client import ApiError, LambdaClient

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def _row(line: dict[str, Any]) -> list[str]:
    return [line["function"], line["architecture"], f"{line['memoryMB']} MB", f"{line['requests']:,}",
            f"{line['gbSeconds']:,.3f}", _usd(line["requestCost"]),
            _usd(line["durationCost"] + line["provisionedCost"]), _usd(line["total"])]


def cost(
    month: Annotated[str | None, typer.Option("--month", help="Month to report, YYYY-MM (default: this month, UTC)")]
    = None,
    function: Annotated[str | None, typer.Option("--function", help="Only this function (no free tier credited)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON report")] = False,
    endpoint: Annotated[str | None, typer.Option("--endpoint", envvar="NIMBUS_ENDPOINT", help="nimbus server URL")]
    = None,
) -> None:
    """What this month's (or --month's) invocations would cost on AWS Lambda."""
    params: dict[str, str] = {}
    if month:
        params["month"] = month
    if function:
        params["function"] = function
    try:
        report: dict[str, Any] = LambdaClient(endpoint).json("GET", "/nimbus/v1/cost", params=params)
    except ApiError as exc:
        err.print(f"error: {exc.error_type}: {exc.message}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps(report))
        return
    title = f"AWS Lambda cost of {report['month']}" + (f" — {function}" if function else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False, show_edge=False)
    rows = [_row(line) for line in report["lines"]]
    summary = [["total", "", "", f"{report['requests']:,}", f"{report['gbSeconds']:,.3f}", "", "",
                _usd(report["gross"])]]
    if report.get("freeTierApplied"):
        summary.append(["free tier", "", "", "1M", "400,000", "", "", "-" + _usd(report["freeTierCredit"])])
    summary.append(["due on AWS", "", "", "", "", "", "", _usd(report["total"])])
    for i, col in enumerate(("Function", "Arch", "Memory", "Requests", "GB-seconds", "Req. $", "Dur. $",
                             "Total $")):
        # Figures never wrap or get cut to "$0.000…" in a narrow terminal: names fold instead.
        widest = max([len(col), *(len(r[i]) for r in rows + summary)])
        if col in ("Function", "Arch"):
            table.add_column(col, overflow="fold", min_width=min(widest, 8))
        else:
            table.add_column(col, justify="right", no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*row)
    table.add_section()
    for row in summary:
        table.add_row(*row, style="bold" if row[0] == "due on AWS" else None)
    # Piped into a file or another program there is no terminal width to respect: print whole rows.
    console = out if out.is_terminal else Console(highlight=False, width=max(out.width, 160))
    console.print(table)
    prices = report["prices"]
    console.print(f"AWS prices: ${prices['perMillionRequests']:.2f} per 1M requests; per GB-second "
                  + ", ".join(f"{a} ${p:.10f}".rstrip("0") for a, p in prices["gbSecond"].items())
                  + ". On nimbus the same usage costs only your own hardware.", style="dim")
