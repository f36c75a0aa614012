"""`nimbus deploy` (project mode), `remove`, `rollback` and `deployments`: a whole service from its
`serverless.yml` or SAM `template.yaml`, per stage. Parsing, packaging and planning are client side
(`nimbus.project`); every change goes through the HTTP API (`cli/deployer.py`)."""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nimbus.cli.client import ApiError, LambdaClient
from nimbus.cli.deployer import Deployer, DeployFailed, MissingApi, rollback_targets
from nimbus.project import plan as planning
from nimbus.project.errors import ProjectError
from nimbus.project.model import ServiceSpec
from nimbus.project.package import Package, build, build_layer

out = Console(highlight=False, soft_wrap=True)  # URLs stay whole on one line
err = Console(stderr=True, highlight=False, soft_wrap=True)

PROJECT_FILES = ("serverless.yml", "serverless.yaml", "template.yaml", "template.yml")

Endpoint = Annotated[str | None, typer.Option("--endpoint", envvar="NIMBUS_ENDPOINT", help="nimbus server URL")]
Stage = Annotated[str | None, typer.Option("--stage", "-s", help="Stage [default: provider.stage or dev]")]
Region = Annotated[str | None, typer.Option("--region", "-r", help="Region for ${opt:region}")]
Config = Annotated[Path | None, typer.Option("--config", "-c", help="Project file [default: serverless.yml or "
                                                                      "template.yaml in the directory]")]
Params = Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE for ${param:NAME}, repeatable")]


def find_project_file(directory: Path, config: Path | None) -> Path | None:
    """`--config`, else the first project file found in `directory`."""
    if config is not None:
        return config if config.is_absolute() else (directory / config if not config.exists() else config)
    return next((directory / n for n in PROJECT_FILES if (directory / n).is_file()), None)


def load_service(file: Path, stage: str | None, region: str | None, params: list[str] | None) -> ServiceSpec:
    """Parse a serverless.yml or SAM template into a ServiceSpec (ProjectError on any problem)."""
    options = {k: v for k, v in {"stage": stage, "region": region}.items() if v}
    pairs: dict[str, str] = {}
    for pair in params or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        pairs[key] = value
    if not file.is_file():
        raise ProjectError(file, None, "", "no such project file")
    from nimbus.project import sam, serverless  # YAML parsing: loaded only by the commands that read files

    if sam.is_sam(file):
        return sam.parse(file, options, dict(os.environ), pairs)
    return serverless.parse(file, options, dict(os.environ), pairs)


def who() -> str:
    """`user@host` for the deployment history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _project_error(exc: ProjectError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(2)


def _api_error(exc: ApiError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(exc.error_type)}: {escape(exc.message)}")
    return typer.Exit(1)


def print_plan(plan: planning.Plan, endpoint: str) -> None:
    """The plan, before anything changes: + create, ~ update, - delete."""
    svc = plan.service
    err.print(f"Service [bold]{escape(svc.service)}[/], stage [bold]{escape(svc.stage)}[/] on {escape(endpoint)}")
    styles = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}
    for layer in plan.layers:
        err.print(f"  [green]+ publish[/] layer {escape(layer.layer.name)}  "
                  f"[dim](new version, {len(layer.package.data) / 1024:.1f} kB)[/]")
    for change in plan.functions:
        sign, style = styles[change.action]
        detail = ""
        if change.action == "create" and change.spec and change.package:
            detail = (f"{change.spec.runtime}, {change.spec.memory} MB, "
                      f"code {len(change.package.data) / 1024:.1f} kB")
        elif change.action == "update":
            detail = change.summary()
        err.print(f"  [{style}]{sign} {change.action:<7}[/] function {escape(change.name)}"
                  + (f"  [dim]({escape(detail)})[/]" if detail else ""))
    for event in plan.events:
        sign, style = styles[event.action]
        if event.kind == "http-api":
            routes = event.body.get("routes") or {}
            what = ", ".join(f"{key} -> {fn.removeprefix(svc.prefix)}" for key, (fn, _) in routes.items())
        elif event.kind == "schedule":
            what = f"{event.body.get('ScheduleExpression', '')} -> {event.function}" if event.body else ""
        else:
            what = f"batch {event.body['BatchSize']} -> {event.function}" if event.body else ""
        err.print(f"  [{style}]{sign} {event.action:<7}[/] {event.kind} {escape(event.name)}"
                  + (f"  [dim]({escape(what)})[/]" if what else ""))
    if plan.unchanged:
        err.print(f"  [dim]= unchanged {len(plan.unchanged)} function(s): {escape(', '.join(plan.unchanged))}[/]")


def deploy_project(directory: Path, config: Path | None, stage: str | None, region: str | None,
                   params: list[str] | None, canary: str | None, dry_run: bool, endpoint: str | None) -> None:
    """Deploy a whole service: validate and package everything, print the plan, then apply it."""
    file = find_project_file(directory, config)
    if file is None:
        err.print(f"[bold red]error:[/] no {', '.join(PROJECT_FILES)} in {escape(str(directory))} (or give "
                  "--name and --handler to deploy one function from a directory)")
        raise typer.Exit(2)
    weight = parse_canary(canary)
    try:
        service = load_service(file, stage, region, params)
        for warning in service.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}")
        cache: dict[tuple[object, ...], Package] = {}
        packages = {spec.name: build(spec, cache) for spec in service.functions}
        layer_packages = {layer.key: build_layer(layer) for layer in service.layers}
    except ProjectError as exc:
        raise _project_error(exc) from None
    client = LambdaClient(endpoint)
    deployer = Deployer(client)
    try:
        state = deployer.state(service)
    except MissingApi as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except ApiError as exc:
        raise _api_error(exc) from None
    plan = planning.make(service, packages, state, layer_packages)
    print_plan(plan, client.endpoint)
    if plan.empty:
        err.print("[green]No changes.[/]")
        return
    if dry_run:
        err.print("[dim]--dry-run: nothing changed[/]")
        return
    try:
        seq = deployer.apply(plan, state, who(), weight)
    except DeployFailed as exc:
        err.print(f"[bold red]error:[/] deploy failed at {escape(exc.step)}: {escape(exc.cause.error_type)}: "
                  f"{escape(exc.cause.message)}")
        for line in exc.undone:
            err.print(f"  [dim]undone:[/] {escape(line)}")
        for line in exc.left:
            err.print(f"  [red]could not undo:[/] {escape(line)}")
        err.print("Nothing of this deploy serves traffic" if not exc.left else
                  "Fix the cause and run `nimbus deploy` again to resume: it plans only what is still missing.")
        raise typer.Exit(1) from None
    except ApiError as exc:
        raise _api_error(exc) from None
    suffix = f" as deployment #{seq}" + (f" (canary {weight:.0%})" if weight else "") if seq else ""
    err.print(f"[green]Deployed[/] {escape(service.service)} to stage {escape(service.stage)}{suffix}")
    print_urls(deployer, service)


def print_urls(deployer: Deployer, service: ServiceSpec) -> None:
    """The HTTP API's endpoint (host and path forms) and each function's URL (on its `live` alias), one per
    line on stdout."""
    if planning.desired_routes(service):
        try:
            api = deployer.http_api(service)
        except ApiError:
            api = None
        if api is not None:
            out.print(f"httpApi: {api.api['apiEndpoint']}")
            out.print(f"httpApi (path form): {deployer.client.endpoint}/execute-api/{api.api['apiId']}")
            for key in planning.desired_routes(service):
                err.print(f"  [dim]route[/] {escape(key)}")
    for spec in service.functions:
        if spec.url is None:
            continue
        try:
            url = deployer.client.json("GET", f"/2021-10-31/functions/{spec.name}/url",
                                       params={"Qualifier": planning.LIVE})
        except ApiError:
            continue
        out.print(f"{spec.key}: {url['FunctionUrl']}")


def parse_canary(text: str | None) -> float | None:
    """`10%` or `0.1` -> 0.1."""
    if text is None:
        return None
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise typer.BadParameter(f"expected a percentage like 10%, got {text!r}", param_hint="--canary") from None
    if not 0 < value < 1:
        raise typer.BadParameter("a canary is more than 0% and less than 100%", param_hint="--canary")
    return value


def _service_state(directory: Path, config: Path | None, stage: str | None, region: str | None,
                   params: list[str] | None, endpoint: str | None) -> tuple[ServiceSpec, Deployer,
                                                                             dict[str, planning.RemoteFunction]]:
    file = find_project_file(directory, config)
    if file is None:
        err.print(f"[bold red]error:[/] no {', '.join(PROJECT_FILES)} in {escape(str(directory))}")
        raise typer.Exit(2)
    try:
        service = load_service(file, stage, region, params)
    except ProjectError as exc:
        raise _project_error(exc) from None
    deployer = Deployer(LambdaClient(endpoint))
    try:
        functions = deployer.owned(service.service, service.stage, tuple(f.name for f in service.functions))
    except ApiError as exc:
        raise _api_error(exc) from None
    return service, deployer, functions


Directory = Annotated[Path, typer.Argument(file_okay=False, help="Project directory")]


def remove(directory: Directory = Path("."), config: Config = None, stage: Stage = None, region: Region = None,
           param: Params = None, endpoint: Endpoint = None) -> None:
    """Delete a deployed service (its functions, schedules and event source mappings) in a stage."""
    service, deployer, _ = _service_state(directory, config, stage, region, param, endpoint)
    try:
        state = deployer.state(ServiceSpec(service.file, service.service, service.stage, service.region, [],
                                           layers=service.layers))
        done = deployer.remove(state)
    except ApiError as exc:
        raise _api_error(exc) from None
    for line in done:
        err.print(f"  [red]- deleted[/] {escape(line)}")
    err.print(f"Removed {escape(service.service)} from stage {escape(service.stage)}" if done else
              f"Nothing deployed for {escape(service.service)} in stage {escape(service.stage)}")


def deployments(directory: Directory = Path("."), config: Config = None, stage: Stage = None,
                region: Region = None, param: Params = None, endpoint: Endpoint = None) -> None:
    """The deployment history of a stage: who, when, versions and code hashes; `*` marks what serves now."""
    service, deployer, functions = _service_state(directory, config, stage, region, param, endpoint)
    history = deployer.deployments(functions)
    current = deployer.current(functions, history)
    table = Table(title=f"{service.service} — stage {service.stage}", show_edge=False)
    for col in ("#", "When (UTC)", "Who", "Function", "Version", "CodeSha256"):
        table.add_column(col, overflow="fold")
    for entry in reversed(history):
        mark = f"{entry.seq}{' *' if entry.seq == current else ''}{' canary' if entry.canary else ''}"
        for i, (name, (version, sha)) in enumerate(sorted(entry.versions.items())):
            table.add_row(mark if i == 0 else "", entry.when if i == 0 else "", entry.who if i == 0 else "",
                          name.removeprefix(service.prefix), version, sha[:12])
    console = out if out.is_terminal else Console(highlight=False, width=200)
    console.print(table)


def rollback(directory: Directory = Path("."), config: Config = None, stage: Stage = None,
             region: Region = None, param: Params = None,
             to: Annotated[int | None, typer.Option("--to", help="Deployment number (see `nimbus deployments`) "
                                                    "[default: the one before the current]")] = None,
             endpoint: Endpoint = None) -> None:
    """Move every function's `live` alias back to an earlier deployment's versions, at once (no upload)."""
    service, deployer, functions = _service_state(directory, config, stage, region, param, endpoint)
    history = deployer.deployments(functions)
    current = deployer.current(functions, history)
    if to is None:
        earlier = [d.seq for d in history if current is not None and d.seq < current]
        if not earlier:
            err.print("[bold red]error:[/] no earlier deployment to roll back to")
            raise typer.Exit(1)
        to = max(earlier)
    if to not in {d.seq for d in history}:
        err.print(f"[bold red]error:[/] no deployment #{to} (see `nimbus deployments`)")
        raise typer.Exit(1)
    targets, missing = rollback_targets(functions, history, to)
    try:
        deployer.move_aliases(targets)
    except ApiError as exc:
        raise _api_error(exc) from None
    for name, version in sorted(targets.items()):
        err.print(f"  {escape(name)}:{planning.LIVE} -> version {version}")
    for name in missing:
        err.print(f"  [yellow]{escape(name)} did not exist at deployment #{to}: left as is[/]")
    err.print(f"[green]Rolled back[/] {escape(service.service)} stage {escape(service.stage)} to deployment #{to}")
