"""`nimbus` console script: server, deploy, invoke, functions, delete, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nimbus.cli import executions, functions, keys, project, urls
from nimbus.cli.cost import cost
from nimbus.cli.dev import dev
from nimbus.cli.init import init
from nimbus.cli.logs import logs
from nimbus.cli.queues import queues
from nimbus.cli.schedules import schedules

app = typer.Typer(no_args_is_help=True, add_completion=False, help="nimbus: self-hosted AWS Lambda.")


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Address to listen on [NIMBUS_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [NIMBUS_PORT]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where state and code live [NIMBUS_DATA_DIR]")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL, e.g. postgresql+psycopg://... [NIMBUS_DATABASE_URL]")
    ] = None,
    isolation: Annotated[
        str | None, typer.Option(help="auto | namespaces | process [NIMBUS_ISOLATION]")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Region in ARNs [NIMBUS_REGION]")] = None,
    account_id: Annotated[str | None, typer.Option(help="12-digit account id [NIMBUS_ACCOUNT_ID]")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds an idle environment is kept [NIMBUS_IDLE_TIMEOUT]")
    ] = None,
    auth: Annotated[
        str | None, typer.Option(help="sigv4 (default) | none: check request signatures [NIMBUS_AUTH]")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow --auth none on a non-loopback address [NIMBUS_INSECURE]")
    ] = False,
    network: Annotated[
        str | None, typer.Option(help="Functions' outbound network: auto | veth | pasta | none [NIMBUS_NETWORK]")
    ] = None,
    network_deny: Annotated[
        str | None, typer.Option(help="CIDRs no function may reach, comma-separated [NIMBUS_NETWORK_DENY]")
    ] = None,
    network_dns: Annotated[
        str | None, typer.Option(help="Nameservers for functions (default: the host's) [NIMBUS_NETWORK_DNS]")
    ] = None,
    registry_insecure: Annotated[
        str | None, typer.Option(help="Image registries reached over plain HTTP / without TLS checks, "
                                 "host:port comma-separated [NIMBUS_REGISTRY_INSECURE]")
    ] = None,
    registry_auth_file: Annotated[
        Path | None, typer.Option(help="containers-auth.json with registry credentials [NIMBUS_REGISTRY_AUTH_FILE]")
    ] = None,
) -> None:
    """Start the whole platform in one process on embedded defaults."""
    import pydantic

    from nimbus.config import Settings
    from nimbus.server import run

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "database_url": database_url,
            "isolation": isolation,
            "region": region,
            "account_id": account_id,
            "idle_timeout": idle_timeout,
            "auth": auth,
            "insecure": insecure or None,
            "network": network,
            "network_deny": network_deny,
            "network_dns": network_dns,
            "registry_insecure": registry_insecure,
            "registry_auth_file": registry_auth_file,
        }.items()
        if v is not None
    }
    try:
        settings = Settings(**overrides)
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            typer.echo(f"error: invalid setting {where} (flag --{where.replace('_', '-')} or "
                       f"NIMBUS_{where.upper()}): {err['msg']}", err=True)
        raise typer.Exit(2) from None
    run(settings)



app.command()(functions.deploy)
app.command()(functions.invoke)
app.command("functions")(functions.functions)
app.command()(functions.delete)
app.command()(project.remove)
app.command()(project.rollback)
app.command()(project.deployments)
app.command("init")(init)
app.command("dev")(dev)
app.command("logs")(logs)
app.command("cost")(cost)
app.command("queues")(queues)  # SQS queues (issue 15)
app.command("schedules")(schedules)  # EventBridge Scheduler schedules, next fire times (issue 15)
app.add_typer(keys.app, name="keys")
app.add_typer(urls.app, name="url")
app.add_typer(executions.app, name="executions")  # durable executions (issue 18)
