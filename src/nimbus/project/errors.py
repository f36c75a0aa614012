"""The one error a project file can raise: it names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path


class ProjectError(Exception):
    """A problem in a project file at `file:line`, under the dotted `key` (`functions.hello.timeout`)."""

    def __init__(self, file: Path | str, line: int | None, key: str, message: str) -> None:
        self.file = Path(file)
        self.line = line
        self.key = key
        self.message = message
        where = f"{self.file}:{line}" if line is not None else str(self.file)
        super().__init__(f"{where}: {key or '(top level)'}: {message}")
