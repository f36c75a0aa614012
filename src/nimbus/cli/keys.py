"""`nimbus keys create | list | delete`: manage the access keys the server accepts (over the HTTP API)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from nimbus.cli.client import ApiError, LambdaClient
from nimbus.cli.functions import Endpoint, console, fail

app = typer.Typer(no_args_is_help=True, help="Manage access keys (SigV4 credentials for the API).")
KEYS = "/nimbus/v1/keys"


@app.command()
def create(
    description: Annotated[str, typer.Option("--description", "-d", help="What the key is for")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the key as JSON")] = False,
    endpoint: Endpoint = None,
) -> None:
    """Create an access key with full access. Its secret is shown this once."""
    client = LambdaClient(endpoint)
    try:
        key = client.json("POST", KEYS, json={"Description": description})
    except ApiError as exc:
        raise fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(key, indent=2) + "\n")
        return
    sys.stdout.write(
        f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']}\n"
        f"export AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}\n"
        f"export AWS_ENDPOINT_URL={client.endpoint}\n"
        f"# or, in ~/.aws/credentials:\n"
        f"# [nimbus]\n# aws_access_key_id = {key['AccessKeyId']}\n"
        f"# aws_secret_access_key = {key['SecretAccessKey']}\n"
    )


@app.command("list")
def list_keys(endpoint: Endpoint = None) -> None:
    """List access keys (never their secrets)."""
    client = LambdaClient(endpoint)
    try:
        keys = client.json("GET", KEYS)["AccessKeys"]
    except ApiError as exc:
        raise fail(exc) from None
    header = ("AccessKeyId", "Kind", "Created", "Description")
    cells = [(k["AccessKeyId"], k["Kind"], k["CreateDate"], k.get("Description", "")) for k in keys]
    if not console.is_terminal:
        widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        return
    table = Table(*header)
    for row in cells:
        table.add_row(*row)
    console.print(table)


@app.command()
def delete(access_key_id: str, endpoint: Endpoint = None) -> None:
    """Delete an access key: requests signed with it are refused from now on."""
    client = LambdaClient(endpoint)
    try:
        client.request("DELETE", f"{KEYS}/{access_key_id}")
    except ApiError as exc:
        raise fail(exc) from None
    console.print(f"deleted {access_key_id}")
