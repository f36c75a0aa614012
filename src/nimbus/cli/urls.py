"""`nimbus url create | get | delete`: a function's URL (its own HTTP endpoint), over the HTTP API."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from nimbus.cli.client import ApiError, LambdaClient
from nimbus.cli.functions import Endpoint, console, fail

app = typer.Typer(no_args_is_help=True, help="Manage function URLs (a function's own HTTP endpoint).")
Qualifier = Annotated[str | None, typer.Option("--qualifier", "-q", help="An alias (default: $LATEST)")]


def _path(name: str) -> str:
    return f"/2021-10-31/functions/{name}/url"


def _params(qualifier: str | None) -> dict[str, str]:
    return {"Qualifier": qualifier} if qualifier else {}


@app.command()
def create(
    name: str,
    auth_type: Annotated[str, typer.Option("--auth-type", help="NONE | AWS_IAM (SigV4-signed requests)")] = "NONE",
    public: Annotated[bool, typer.Option("--public", help="With NONE: add the policy statement that lets anyone "
                                                          "call the URL (without it the URL answers 403)")] = False,
    cors_origin: Annotated[list[str] | None, typer.Option("--cors-origin", help="Allowed CORS origin (repeat)")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="InvokeMode RESPONSE_STREAM")] = False,
    qualifier: Qualifier = None,
    endpoint: Endpoint = None,
) -> None:
    """Create a function URL and print it."""
    client = LambdaClient(endpoint)
    body: dict[str, Any] = {"AuthType": auth_type, "InvokeMode": "RESPONSE_STREAM" if stream else "BUFFERED"}
    if cors_origin:
        body["Cors"] = {"AllowOrigins": cors_origin, "AllowMethods": ["*"], "AllowHeaders": ["*"]}
    try:
        config = client.json("POST", _path(name), params=_params(qualifier), json=body)
        if public:
            statement = {"StatementId": "FunctionURLAllowPublicAccess", "Action": "lambda:InvokeFunctionUrl",
                         "Principal": "*", "FunctionUrlAuthType": "NONE"}
            client.json("POST", f"/2015-03-31/functions/{name}/policy", params=_params(qualifier), json=statement)
    except ApiError as exc:
        raise fail(exc) from None
    sys.stdout.write(config["FunctionUrl"] + "\n")
    if auth_type == "NONE" and not public:
        console.print("note: NONE URLs answer 403 until the policy allows them: add --public, or "
                      "aws lambda add-permission --action lambda:InvokeFunctionUrl --principal '*' "
                      "--function-url-auth-type NONE", style="yellow", highlight=False)


@app.command()
def get(name: str, qualifier: Qualifier = None, endpoint: Endpoint = None) -> None:
    """Print a function URL's configuration (JSON)."""
    try:
        config = LambdaClient(endpoint).json("GET", _path(name), params=_params(qualifier))
    except ApiError as exc:
        raise fail(exc) from None
    sys.stdout.write(json.dumps(config, indent=2) + "\n")


@app.command()
def delete(name: str, qualifier: Qualifier = None, endpoint: Endpoint = None) -> None:
    """Delete a function URL (a new one gets a new address)."""
    try:
        LambdaClient(endpoint).request("DELETE", _path(name), params=_params(qualifier))
    except ApiError as exc:
        raise fail(exc) from None
    console.print(f"deleted the URL of {name}")
