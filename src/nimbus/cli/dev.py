"""`nimbus dev`: deploy the project, then watch it (watchfiles). A saved source file updates the code of the
functions whose package changed (UpdateFunctionCode only: no publish; while dev runs the `live` aliases serve
`$LATEST`, so routes, URLs and schedules pick the new code up at once and warm environments are replaced). A
change to the project file runs a full deploy (plan + apply). Logs of every function stream to the terminal,
one colour per function; errors in the project file are printed with file:line:key and the loop keeps going.
`nimbus deploy` afterwards publishes a version and moves the aliases back onto it."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from nimbus.cli.client import ApiError, LambdaClient
from nimbus.cli.logs import LogsClient, LogsError
from nimbus.cli.project import (
    PROJECT_FILES,
    Config,
    Directory,
    Endpoint,
    Params,
    Region,
    Stage,
    deploy_project,
    find_project_file,
    load_service,
)
from nimbus.project.errors import ProjectError
from nimbus.project.model import ServiceSpec
from nimbus.project.package import build
from nimbus.project.plan import LIVE

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
FN = "/2015-03-31/functions"
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class LogStreamer(threading.Thread):
    """Polls the log groups of the service's functions and prints new events, one colour per function."""

    def __init__(self, endpoint: str, service: ServiceSpec, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="nimbus-dev-logs")
        self.client = LogsClient(endpoint)
        self.interval = interval
        self.stopped = threading.Event()
        self.since = int(time.time() * 1000)
        self.seen: dict[str, int] = {}
        self.set_service(service)

    def set_service(self, service: ServiceSpec) -> None:
        self.functions = {f.name: (f.key, COLOURS[i % len(COLOURS)]) for i, f in enumerate(service.functions)}

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for name, (key, colour) in list(self.functions.items()):
                try:
                    events = list(self.client.filter_events(f"/aws/lambda/{name}", self.since - 30_000, None))
                except (LogsError, OSError):
                    continue
                for event in events:
                    event_id = str(event.get("eventId"))
                    if event_id in self.seen:
                        continue
                    self.seen[event_id] = int(event.get("timestamp", 0))
                    message = str(event.get("message", "")).rstrip("\n")
                    out.print(Text.assemble((f"{key:>12} │ ", colour), message))
            cutoff = int(time.time() * 1000) - 60_000
            self.seen = {k: v for k, v in self.seen.items() if v >= cutoff}


class DevLoop:
    """One project under watch."""

    def __init__(self, directory: Path, config: Path | None, stage: str | None, region: str | None,
                 params: list[str] | None, endpoint: str | None) -> None:
        self.directory = directory
        self.config = config
        self.stage = stage
        self.region = region
        self.params = params
        self.endpoint = endpoint
        self.client = LambdaClient(endpoint)
        self.hashes: dict[str, str] = {}

    def load(self) -> ServiceSpec:
        file = find_project_file(self.directory, self.config)
        if file is None:
            raise ProjectError(self.directory, None, "", f"no {', '.join(PROJECT_FILES)} here")
        return load_service(file, self.stage, self.region, self.params)

    def full_deploy(self) -> ServiceSpec | None:
        """Plan and apply, then point the aliases at $LATEST; None when the deploy failed (already printed)."""
        try:
            deploy_project(self.directory, self.config, self.stage, self.region, self.params, None, False,
                           self.endpoint)
            service = self.load()
        except typer.Exit:
            return None
        except ProjectError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            return None
        for spec in service.functions:
            self.hashes[spec.name] = build(spec).sha256
            self._alias_to_latest(spec.name)
        return service

    def _alias_to_latest(self, name: str) -> None:
        try:
            self.client.json("PUT", f"{FN}/{quote(name)}/aliases/{LIVE}",
                             json={"FunctionVersion": "$LATEST", "RoutingConfig": {"AdditionalVersionWeights": {}}})
        except ApiError as exc:
            err.print(f"[yellow]warning:[/] {escape(name)}: {escape(exc.message)}")

    def code_update(self, service: ServiceSpec) -> None:
        """UpdateFunctionCode for every function whose package changed, in parallel."""
        started = time.perf_counter()
        try:
            packages = {spec.name: build(spec, {}) for spec in service.functions}
        except ProjectError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            return
        changed = [name for name, package in packages.items() if self.hashes.get(name) != package.sha256]
        if not changed:
            return

        def update(name: str) -> str | None:
            try:
                self.client.json("PUT", f"{FN}/{quote(name)}/code",
                                 json={"ZipFile": base64.b64encode(packages[name].data).decode()})
            except ApiError as exc:
                return f"{exc.error_type}: {exc.message}"
            self.hashes[name] = packages[name].sha256
            return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(update, changed))
        took = (time.perf_counter() - started) * 1000
        for name, problem in zip(changed, results, strict=True):
            if problem:
                err.print(f"[bold red]error:[/] updating {escape(name)}: {escape(problem)}")
            else:
                err.print(f"[green]updated[/] {escape(name)} [dim]({took:.0f} ms)[/]")


def dev(directory: Directory = Path("."), config: Config = None, stage: Stage = None, region: Region = None,
        param: Params = None, endpoint: Endpoint = None) -> None:
    """Deploy, then redeploy on every save (code-only updates in well under a second) and stream all logs."""
    from watchfiles import DefaultFilter, watch

    loop = DevLoop(directory, config, stage, region, param, endpoint)
    service = loop.full_deploy()
    if service is None:
        raise typer.Exit(1)
    streamer = LogStreamer(loop.client.endpoint, service)
    streamer.start()
    ignore = DefaultFilter(ignore_dirs=(*DefaultFilter.ignore_dirs, ".nimbus", ".serverless"))
    project_files = {find_project_file(directory, config)}
    err.print(f"[bold]watching[/] {escape(str(directory.resolve()))} — `{LIVE}` aliases serve $LATEST while dev "
              "runs; Ctrl-C to stop, then `nimbus deploy` to publish")
    try:
        for changes in watch(directory, watch_filter=ignore, debounce=15, step=10):
            paths = {Path(p).resolve() for _, p in changes}
            layer_dirs = [layer.path for layer in service.layers]
            if any(p.suffix in (".yml", ".yaml", ".json") and p.parent == directory.resolve() for p in paths) or \
                    any(f is not None and f.resolve() in paths for f in project_files) or \
                    any(p.is_relative_to(d) for p in paths for d in layer_dirs):
                err.print("[bold]project file or layer changed:[/] full deploy")
                fresh = loop.full_deploy()
                if fresh is not None:
                    service = fresh
                    streamer.set_service(service)
            else:
                loop.code_update(service)
    except KeyboardInterrupt:
        pass
    finally:
        streamer.stopped.set()
    err.print("stopped; run `nimbus deploy` to publish what you have")


__all__ = ["dev"]
