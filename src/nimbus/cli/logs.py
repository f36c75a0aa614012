"""`nimbus logs NAME [--follow] [--since 10m]`: print a function's log events, like `aws logs tail`.

Speaks only the HTTP API: CloudWatch Logs' FilterLogEvents in the JSON 1.1 protocol."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.text import Text

from nimbus.cli.client import signing_auth

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
TARGET = "Logs_20140328."
POLL_SECONDS = 1.0
# While following, each poll looks back behind the newest event seen, because an invocation's lines are
# stored when it ends, after newer lines of other invocations; event ids keep repeats from printing twice.
# The window is the function's timeout plus INIT and batching slack, within these bounds.
LOOKBACK_MS = 30_000
LOOKBACK_SLACK_MS = 15_000
LOOKBACK_MAX_MS = 300_000

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")

out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class LogsError(Exception):
    """An error answer from the Logs API, or no answer at all."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_since(text: str) -> int:
    """`30s`, `10m`, `2h`, `1d`, `1w` (a bare number is seconds) -> milliseconds."""
    m = _SINCE.match(text)
    if not m:
        raise typer.BadParameter(f"expected a duration like 30s, 10m, 2h or 1d, got {text!r}", param_hint="--since")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"] * 1000


class LogsClient:
    """The few CloudWatch Logs calls the CLI makes."""

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout, auth=signing_auth(self.endpoint))

    def close(self) -> None:
        self._http.close()

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(
                "/",
                json=body,
                headers={"X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"},
            )
        except httpx.TransportError as exc:
            raise LogsError("ConnectionError", f"cannot reach a nimbus server at {self.endpoint} ({exc})") from None
        try:
            doc = response.json()
        except ValueError:
            doc = {}
        if response.status_code >= 400:
            code = str(doc.get("__type") or f"HTTP {response.status_code}").rsplit("#", 1)[-1]
            raise LogsError(code, str(doc.get("message") or doc.get("Message") or response.text))
        return doc if isinstance(doc, dict) else {}

    def function_config(self, name: str) -> dict[str, Any] | None:
        """The function's configuration from the Lambda API, or None when it cannot be read (e.g. the
        function was deleted but its logs remain)."""
        try:
            response = self._http.get(f"/2015-03-31/functions/{name}/configuration")
            doc = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def filter_events(self, group: str, start_ms: int, pattern: str | None) -> Iterator[dict[str, Any]]:
        """Every event from `start_ms` on, oldest first, across all pages."""
        body: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "interleaved": True}
        if pattern:
            body["filterPattern"] = pattern
        while True:
            page = self.call("FilterLogEvents", body)
            yield from page.get("events", [])
            token = page.get("nextToken")
            if not token:
                return
            body["nextToken"] = token


def format_event(event: dict[str, Any]) -> Text:
    """`<ISO time> <stream> <message>`; user text is never read as markup."""
    when = datetime.fromtimestamp(int(event.get("timestamp", 0)) / 1000, UTC).isoformat(timespec="milliseconds")
    message = str(event.get("message", "")).rstrip("\n")
    return Text.assemble((when, "dim"), " ", (str(event.get("logStreamName", "")), "cyan"), " ", message)


def emit(line: Text) -> None:
    """Print one event: styled on a terminal, byte for byte otherwise (a console would turn the tabs of
    REPORT lines into spaces, and `cut -f` on piped output relies on them)."""
    if out.is_terminal:
        out.print(line)
    else:
        sys.stdout.write(line.plain + "\n")
        sys.stdout.flush()


def logs(
    name: Annotated[
        str,
        typer.Argument(help="Function name (logs in its LoggingConfig.LogGroup, /aws/lambda/NAME by default) "
                       "or a log group starting with /"),
    ],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C")] = False,
    since: Annotated[str, typer.Option("--since", help="How far back to start: 30s, 10m, 2h, 1d")] = "10m",
    filter_pattern: Annotated[
        str | None,
        typer.Option("--filter", help='CloudWatch filter pattern, e.g. ERROR or "{ $.level = \\"ERROR\\" }"'),
    ] = None,
    endpoint: Annotated[
        str, typer.Option("--endpoint", envvar="NIMBUS_ENDPOINT", help="nimbus server URL")
    ] = DEFAULT_ENDPOINT,
) -> None:
    """Print a function's logs (START/END/REPORT lines and what the function wrote)."""
    start = int(time.time() * 1000) - parse_since(since)
    group = name if name.startswith("/") else f"/aws/lambda/{name}"
    client = LogsClient(endpoint)
    seen: dict[str, int] = {}  # eventId -> timestamp, for the events inside the lookback window
    newest = start
    lookback = LOOKBACK_MS
    try:
        config = None if name.startswith("/") else client.function_config(name)
        if config is not None:
            # A function's LoggingConfig can send its logs to another group than /aws/lambda/NAME.
            custom = (config.get("LoggingConfig") or {}).get("LogGroup")
            if isinstance(custom, str) and custom:
                group = custom
            timeout = config.get("Timeout")
            if follow and isinstance(timeout, int):
                lookback = min(LOOKBACK_MAX_MS, max(LOOKBACK_MS, timeout * 1000 + LOOKBACK_SLACK_MS))
        while True:
            for event in client.filter_events(group, max(start, newest - lookback), filter_pattern):
                event_id = str(event.get("eventId") or f"{event.get('timestamp')}/{event.get('message')}")
                if event_id in seen:
                    continue
                ts = int(event.get("timestamp", 0))
                seen[event_id] = ts
                newest = max(newest, ts)
                emit(format_event(event))
            if not follow:
                return
            cutoff = newest - lookback
            seen = {k: v for k, v in seen.items() if v >= cutoff}
            time.sleep(POLL_SECONDS)
    except LogsError as exc:
        if exc.code == "ResourceNotFoundException":
            err.print(
                Text(f"error: log group {group} does not exist (has the function been invoked yet?)", style="red")
            )
        else:
            err.print(Text(f"error: {exc.code}: {exc.message}", style="red"))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    finally:
        client.close()
