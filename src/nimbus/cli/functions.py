"""`nimbus deploy | invoke | functions | delete`: manage and call functions over the HTTP API."""

from __future__ import annotations

import base64
import io
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nimbus.cli.asyncqueue import async_queues
from nimbus.cli.client import ApiError, LambdaClient

console = Console()
err = Console(stderr=True, soft_wrap=True)  # long error messages stay one line (grep-able, copy-able)

Endpoint = Annotated[
    str | None, typer.Option("--endpoint", envvar="NIMBUS_ENDPOINT", help="nimbus server URL")
]
FN = "/2015-03-31/functions"


def fail(exc: ApiError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(exc.error_type)}: {escape(exc.message)}", highlight=False)
    return typer.Exit(1)


def zip_directory(directory: Path) -> bytes:
    """Zip a directory's contents (paths relative to it), keeping exec bits, skipping caches."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".git"))
            for name in sorted(files):
                path = Path(root) / name
                zf.write(path, path.relative_to(directory).as_posix())
    return buf.getvalue()


def default_runtime(client: LambdaClient) -> str:
    """The newest Python runtime the server has (it says which: `GET /nimbus/v1/runtimes`)."""
    try:
        available: list[str] = client.json("GET", "/nimbus/v1/runtimes").get("runtimes", [])
    except ApiError as exc:
        raise fail(exc) from None
    found = sorted((r for r in available if r.startswith("python3.")), key=lambda r: int(r.split(".")[1]))
    return found[-1] if found else "python3.12"


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--env")
        env[key] = value
    return env


def deploy(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Directory with the code, or "
                                              "the project (serverless.yml / template.yaml)")] = Path("."),
    name: Annotated[str | None, typer.Option("--name", "-n", help="Function name (one function, no project "
                                             "file)")] = None,
    handler: Annotated[str | None, typer.Option("--handler", help="e.g. app.handler")] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Container image URI (registry/repo:tag) or tarball instead of "
                                 "DIRECTORY")
    ] = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="Runtime id [default: the newest Python the server has]")
    ] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="Memory in MB")] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="Timeout in seconds")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable")] = None,
    role: Annotated[str, typer.Option("--role")] = "arn:aws:iam::000000000000:role/nimbus-function",
    publish: Annotated[bool, typer.Option("--publish", help="Publish a version")] = False,
    endpoint: Endpoint = None,
    project_file: Annotated[Path | None, typer.Option("--config", "-c", help="Project file [default: serverless.yml "
                                                "or template.yaml in DIRECTORY]")] = None,
    stage: Annotated[str | None, typer.Option("--stage", "-s", help="Stage (project mode)")] = None,
    region: Annotated[str | None, typer.Option("--region", "-r", help="Region for ${opt:region}")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE for ${param:NAME}")] = None,
    canary: Annotated[str | None, typer.Option("--canary", help="Send this share (e.g. 10%) of each changed "
                                               "function's traffic to the new version")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only")] = False,
) -> None:
    """Deploy a project (serverless.yml / SAM template.yaml in DIRECTORY): print the plan, then apply it.
    With --name and --handler: zip DIRECTORY into one function (created or updated) and print its ARN; with
    --name and --image: a container-image function from a registry URI or an image tarball."""
    if name is not None and image is not None:
        deploy_image(LambdaClient(endpoint), name, image, memory, timeout, env, role, publish)
        return
    if name is None:
        from nimbus.cli.project import deploy_project

        deploy_project(directory, project_file, stage, region, param, canary, dry_run, endpoint)
        return
    if handler is None:
        raise typer.BadParameter("deploying one function (--name) needs --handler", param_hint="--handler")
    if not name:
        raise typer.BadParameter("a function name is required", param_hint="--name")
    client = LambdaClient(endpoint)
    code = zip_directory(directory)
    config = {"Runtime": runtime or default_runtime(client), "Handler": handler,
              **_shared_config(role, memory, timeout, env)}
    zipped = base64.b64encode(code).decode()
    try:
        if _exists(client, name):
            wait_settled(client, name)
            client.json("PUT", f"{FN}/{name}/configuration", json=config)
            wait_settled(client, name)
            result = client.json("PUT", f"{FN}/{name}/code", json={"ZipFile": zipped, "Publish": publish})
            action = "updated"
        else:
            body = {"FunctionName": name, "Code": {"ZipFile": zipped}, "Publish": publish, **config}
            result = client.json("POST", FN, json=body)
            action = "created"
        wait_settled(client, name)
    except ApiError as exc:
        raise fail(exc) from None
    err.print(f"{action} [bold]{name}[/] ({len(code)} bytes, version {result.get('Version')})")
    console.print(result["FunctionArn"], highlight=False)


def _shared_config(role: str, memory: int | None, timeout: int | None, env: list[str] | None) -> dict[str, Any]:
    """The configuration `deploy` sets for zip and image functions alike."""
    config: dict[str, Any] = {"Role": role}
    if memory is not None:
        config["MemorySize"] = memory
    if timeout is not None:
        config["Timeout"] = timeout
    if env is not None:
        config["Environment"] = {"Variables": parse_env(env)}
    return config


def _exists(client: LambdaClient, name: str) -> bool:
    try:
        client.json("GET", f"{FN}/{name}/configuration")
    except ApiError as exc:
        if exc.status != 404:
            raise
        return False
    return True


def wait_settled(client: LambdaClient, name: str, timeout: float = 300.0) -> None:
    """Wait until the function is Active and its last update Successful, as AWS's `function-active-v2`
    and `function-updated-v2` waiters do: a function is Pending right after CreateFunction (issue 21)."""
    deadline = time.monotonic() + timeout
    while True:
        conf = client.json("GET", f"{FN}/{name}/configuration")
        if conf.get("State") != "Pending" and conf.get("LastUpdateStatus") != "InProgress":
            return
        if time.monotonic() > deadline:
            raise ApiError(409, "ResourceConflictException", f"{name} is still {conf.get('State')}")
        time.sleep(0.05)


def deploy_image(client: LambdaClient, name: str, image: str, memory: int | None, timeout: int | None,
                 env: list[str] | None, role: str, publish: bool) -> None:
    """`deploy --image`: create or update a PackageType Image function, then wait (with a spinner) while the
    server pulls and unpacks the image (the function is Pending meanwhile)."""
    config = _shared_config(role, memory, timeout, env)
    try:
        if Path(image).is_file():  # a tarball (docker save / an OCI layout): uploaded, then deployed by digest
            with err.status(f"uploading {escape(image)} ..."):
                image = str(client.json("POST", "/nimbus/v1/images", content=Path(image).read_bytes(),
                                        headers={"Content-Type": "application/x-tar"})["ImageUri"])
        if _exists(client, name):
            wait_settled(client, name)
            client.json("PUT", f"{FN}/{name}/configuration", json=config)
            wait_settled(client, name)  # (a second change while one is InProgress is a ResourceConflict)
            result = client.json("PUT", f"{FN}/{name}/code", json={"ImageUri": image, "Publish": publish})
            action = "updated"
        else:
            body = {"FunctionName": name, "PackageType": "Image", "Code": {"ImageUri": image}, "Publish": publish,
                    **config}
            result = client.json("POST", FN, json=body)
            action = "created"
        started = time.monotonic()
        with err.status(f"pulling and unpacking {escape(image)} ...") as status:
            while result.get("State") == "Pending" or result.get("LastUpdateStatus") == "InProgress":
                time.sleep(0.5)
                status.update(f"pulling and unpacking {escape(image)} ... {time.monotonic() - started:.0f} s")
                result = client.json("GET", f"{FN}/{name}/configuration")
    except ApiError as exc:
        raise fail(exc) from None
    if result.get("State") == "Failed":
        err.print(f"[bold red]error:[/] {escape(str(result.get('StateReasonCode')))}: "
                  f"{escape(str(result.get('StateReason')))}", highlight=False)
        raise typer.Exit(1)
    err.print(f"{action} [bold]{name}[/] (image {escape(image)} = sha256:{result.get('CodeSha256')}, "
              f"version {result.get('Version')})")
    console.print(result["FunctionArn"], highlight=False)


def invoke(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    payload: Annotated[str | None, typer.Option("--payload", "-p", help="JSON event")] = None,
    payload_file: Annotated[
        Path | None,
        typer.Option("--payload-file", exists=True, dir_okay=False, readable=True, help="File with the JSON event"),
    ] = None,
    qualifier: Annotated[str | None, typer.Option("--qualifier", "-q", help="Version or alias")] = None,
    is_async: Annotated[bool, typer.Option("--async", help="Invoke asynchronously (Event)")] = False,
    show_log: Annotated[bool, typer.Option("--log", help="Print the invocation's log tail")] = False,
    endpoint: Endpoint = None,
) -> None:
    """Invoke a function and print its response."""
    if payload is not None and payload_file is not None:
        raise typer.BadParameter("give --payload or --payload-file, not both")
    body = payload_file.read_bytes() if payload_file else (payload or "{}").encode()
    headers = {"X-Amz-Invocation-Type": "Event" if is_async else "RequestResponse"}
    if show_log and not is_async:
        headers["X-Amz-Log-Type"] = "Tail"
    params = {"Qualifier": qualifier} if qualifier else {}
    try:
        response = LambdaClient(endpoint).request(
            "POST", f"{FN}/{name}/invocations", content=body, headers=headers, params=params
        )
    except ApiError as exc:
        raise fail(exc) from None
    if show_log and "x-amz-log-result" in response.headers:
        # Raw, not through rich: log lines must not be wrapped or reinterpreted.
        sys.stderr.write(base64.b64decode(response.headers["x-amz-log-result"]).decode(errors="replace"))
        sys.stderr.flush()
    if is_async:
        err.print(f"accepted (request id {response.headers.get('x-amzn-requestid', '?')})")
        return
    sys.stdout.write(response.text + "\n")
    if response.headers.get("x-amz-function-error"):
        raise typer.Exit(1)


def functions(endpoint: Endpoint = None) -> None:
    """List functions in a table."""
    client = LambdaClient(endpoint)
    rows: list[dict[str, Any]] = []
    marker: str | None = None
    try:
        while True:
            page = client.json("GET", FN, params={"Marker": marker} if marker else {})
            rows += page.get("Functions", [])
            marker = page.get("NextMarker")
            if not marker:
                break
    except ApiError as exc:
        raise fail(exc) from None
    queues = async_queues(client)  # queued async events and the oldest one's age (cli/asyncqueue.py)
    header = ("Name", "Runtime", "Handler", "Memory", "Timeout", "Code size", "Last modified", "Queued",
              "Oldest event")
    cells = [
        (fn["FunctionName"], str(fn.get("Runtime", "")), str(fn.get("Handler", "")), f"{fn.get('MemorySize')} MB",
         f"{fn.get('Timeout')} s", str(fn.get("CodeSize")), str(fn.get("LastModified", "")),
         *queues.get(fn["FunctionName"], ("0", "-")))
        for fn in rows
    ]
    if not console.is_terminal:
        # Piped or redirected: plain aligned columns, never truncated (a table squeezed into 80 columns
        # cut names short and `nimbus functions | grep NAME` found nothing).
        widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        return
    table = Table(*header)
    table.columns[0].overflow = "fold"  # a name is shown whole, folded if it must be
    for row in cells:
        table.add_row(*row)
    console.print(table)


def delete(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: Annotated[str | None, typer.Option("--qualifier", "-q", help="Delete only this version")] = None,
    endpoint: Endpoint = None,
) -> None:
    """Delete a function (or one version of it)."""
    try:
        LambdaClient(endpoint).request(
            "DELETE", f"{FN}/{name}", params={"Qualifier": qualifier} if qualifier else {}
        )
    except ApiError as exc:
        raise fail(exc) from None
    err.print(f"deleted {name}{':' + qualifier if qualifier else ''}")


