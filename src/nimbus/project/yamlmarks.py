"""YAML with positions: a document loaded into plain Python values plus the line of every key, so any later
error can say `serverless.yml:12: functions.hello.timeout: ...`. CloudFormation's short tags (`!Ref`, `!GetAtt`,
`!Sub`, ...) load as their long forms (`{"Ref": ...}`), as SAM and the framework's `resources` use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nimbus.project.errors import ProjectError

Path_ = tuple[str | int, ...]

_CFN_TAGS = {"!Ref": "Ref", "!Condition": "Condition"}


def dotted(path: Path_) -> str:
    """`("functions", "hello", "events", 0)` -> `functions.hello.events[0]`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Document:
    """A loaded YAML file: its value and the 1-based line of each path in it."""

    file: Path
    value: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: Path_, message: str) -> ProjectError:
        """A ProjectError at `path` in this file."""
        return ProjectError(self.file, self.line(path), dotted(path), message)


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        tag = node.tag
        if tag.startswith("!") and not tag.startswith("!!"):
            return self._cfn(node, path)
        if isinstance(node, yaml.MappingNode):
            self.scalars.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalars.construct_object(key_node)
                if not isinstance(key, str | int | float | bool):
                    raise ProjectError(self.doc.file, key_node.start_mark.line + 1, dotted(path),
                                       "a mapping key must be a plain value")
                key = str(key)
                if key in out:
                    raise ProjectError(self.doc.file, key_node.start_mark.line + 1, dotted((*path, key)),
                                       "duplicate key")
                self.doc.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node)

    def _cfn(self, node: yaml.Node, path: Path_) -> Any:
        name = node.tag[1:]
        long = _CFN_TAGS.get(node.tag) or f"Fn::{name}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = node.value
            if long == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        else:
            node = yaml.MappingNode("tag:yaml.org,2002:map", node.value, node.start_mark, node.end_mark)
            value = self.build(node, path)
        return {long: value}


def load(file: Path) -> Document:
    """Load `file` with the line of every key; a syntax error becomes a ProjectError at its line."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise ProjectError(file, None, "", f"cannot read: {exc.strerror}") from None
    return loads(text, file)


def loads(text: str, file: Path) -> Document:
    """Like `load`, from text."""
    doc = Document(file, None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ProjectError(file, mark.line + 1 if mark else None, "",
                           f"invalid YAML: {exc.problem or exc.context}") from None
    doc.value = {} if node is None else _Builder(doc).build(node, ())
    return doc
