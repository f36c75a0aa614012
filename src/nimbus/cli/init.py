"""`nimbus init`: a new project from a template (Python HTTP API, scheduled job, queue worker, FastAPI through
Mangum, Node.js HTTP), each with a serverless.yml, its own tests and a README that deploys and calls it.
Interactive (rich prompts) without `--template`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.prompt import Prompt

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATES = {
    "python-http-api": "Python HTTP API (httpApi routes, payload 2.0)",
    "python-scheduled": "Python scheduled job (schedule: rate/cron)",
    "python-queue-worker": "Python SQS queue worker (batch item failures)",
    "python-fastapi": "FastAPI app through Mangum (ASGI adapter), requirements vendored with pip",
    "node-http": "Node.js HTTP API function (nodejs20.x)",
}
_SERVICE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,39}$")
err = Console(stderr=True, highlight=False)


def host_python_runtime() -> str:
    """The newest `python3.X` interpreter on PATH as a runtime id (nimbus runs Python functions on the host's
    interpreters), else python3.12."""
    for minor in range(14, 9, -1):
        if shutil.which(f"python3.{minor}"):
            return f"python3.{minor}"
    return "python3.12"


def render(template: str, target: Path, service: str, runtime: str) -> list[Path]:
    """Copy a template into `target`, filling in `{{service}}` and `{{runtime}}`; returns the files written."""
    source = TEMPLATES_DIR / template
    written: list[Path] = []
    for path in sorted(source.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text().replace("{{service}}", service).replace("{{runtime}}", runtime)
        dest.write_text(text)
        written.append(dest)
    return written


def init(
    directory: Annotated[Path | None, typer.Argument(help="Where to create the project [default: ./NAME]")] = None,
    template: Annotated[str | None, typer.Option("--template", "-t", help=f"One of: {', '.join(TEMPLATES)}")]
    = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Service name [default: the directory's]")]
    = None,
    runtime: Annotated[str | None, typer.Option("--runtime", help="Python runtime id [default: the newest "
                                                "python3.X on this host]")] = None,
) -> None:
    """Create a project from a template (asks which one when --template is not given)."""
    if template is None:
        for i, (key, text) in enumerate(TEMPLATES.items(), 1):
            err.print(f"  [bold]{i}[/] {key}  [dim]{escape(text)}[/]")
        choice = Prompt.ask("Template", choices=[*TEMPLATES, *map(str, range(1, len(TEMPLATES) + 1))],
                            default="python-http-api", show_choices=False, console=err)
        template = list(TEMPLATES)[int(choice) - 1] if choice.isdigit() else choice
    if template not in TEMPLATES:
        raise typer.BadParameter(f"unknown template {template!r}; one of: {', '.join(TEMPLATES)}",
                                 param_hint="--template")
    if name is None:
        default = directory.resolve().name if directory is not None else template
        name = default if directory is not None else Prompt.ask("Service name", default=default, console=err)
    if not _SERVICE.match(name):
        raise typer.BadParameter("a service name starts with a letter and has only letters, digits and hyphens "
                                 "(at most 40)", param_hint="--name")
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        err.print(f"[bold red]error:[/] {escape(str(target))} exists and is not empty")
        raise typer.Exit(1)
    written = render(template, target, name, runtime or host_python_runtime())
    err.print(f"[green]Created[/] {escape(name)} from {template} in {escape(str(target))} "
              f"({len(written)} files). Next: cd {escape(str(target))} && nimbus deploy  (see README.md)")
