"""The Serverless Framework's variables: `${self:a.b}`, `${opt:stage}`, `${env:NAME}`, `${file(./x.yml):a.b}`,
`${param:name}` (from `params:` per stage, then `params.default`, then `--param`), `${sls:stage}`,
`${aws:region}`/`${aws:accountId}` and `${strToBool(...)}`, with comma-separated fallbacks
(`${opt:stage, self:provider.stage, 'dev'}`) and nesting (`${self:custom.${sls:stage}.memory}`). A value that
is one variable keeps its type (a mapping from a file stays a mapping); inside text it is interpolated."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nimbus.project import yamlmarks
from nimbus.project.yamlmarks import Document, Path_

_VAR = re.compile(r"\$\{([^${}]*)\}")  # innermost first: nested variables resolve from the inside out
_SOURCE = re.compile(r"^(?P<source>[a-zA-Z]+)(?:\((?P<arg>[^)]*)\))?(?::(?P<address>.*))?$")
_UNSUPPORTED = {"ssm", "cf", "s3", "sls.instanceId", "aws"}
_MISSING = object()


class Resolver:
    """Resolves every variable of a loaded project file."""

    def __init__(self, doc: Document, options: Mapping[str, str], env: Mapping[str, str],
                 params: Mapping[str, str], account_id: str = "000000000000") -> None:
        self.doc = doc
        self.options = options
        self.env = env
        self.cli_params = params
        self.account_id = account_id
        self._busy: set[Path_] = set()
        self._files: dict[Path, Document] = {}
        self._stage: str | None = None

    @property
    def stage(self) -> str:
        """`--stage`, else `provider.stage`, else `dev` (the framework's order)."""
        if self._stage is None:
            self._stage = "dev"  # a provider.stage that refers to ${sls:stage} sees the default
            found = self.options.get("stage") or self._lookup_self("provider.stage", ("provider", "stage"))
            self._stage = str(found) if found not in (None, _MISSING) else "dev"
        return self._stage

    @property
    def region(self) -> str:
        found = self.options.get("region") or self._lookup_self("provider.region", ("provider", "region"))
        return str(found) if found not in (None, _MISSING) else "us-east-1"

    def resolve(self) -> Any:
        """The whole document with its variables resolved."""
        return self.value(self.doc.value, (), self.doc)

    def value(self, v: Any, path: Path_, doc: Document) -> Any:
        if isinstance(v, dict):
            return {k: self.value(item, (*path, k), doc) for k, item in v.items()}
        if isinstance(v, list):
            return [self.value(item, (*path, i), doc) for i, item in enumerate(v)]
        if isinstance(v, str) and "${" in v:
            return self._string(v, path, doc)
        return v

    def _string(self, text: str, path: Path_, doc: Document) -> Any:
        for _ in range(100):
            match = _VAR.search(text)
            if match is None:
                return text
            found = self._expression(match.group(1), path, doc)
            if match.span() == (0, len(text)):
                if not isinstance(found, str):
                    return found
                text = found
                if "${" not in text:
                    return text
                continue
            if isinstance(found, dict | list):
                raise doc.error(path, f"${{{match.group(1)}}} is a {type(found).__name__} and cannot be part of "
                                      "a text")
            text = text[:match.start()] + _text(found) + text[match.end():]
        raise doc.error(path, "variables nest too deeply")

    def _expression(self, body: str, path: Path_, doc: Document) -> Any:
        for candidate in _split_fallbacks(body):
            found = self._candidate(candidate, path, doc)
            if found is not _MISSING and found is not None:
                return found
        raise doc.error(path, f"cannot resolve ${{{body}}}: no value found and no fallback given")

    def _candidate(self, text: str, path: Path_, doc: Document) -> Any:
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return json.loads(text)
        if text in ("true", "false"):
            return text == "true"
        match = _SOURCE.match(text)
        if match is None:
            raise doc.error(path, f"cannot understand the variable ${{{text}}}")
        source, arg, address = match["source"], match["arg"], match["address"]
        if source == "self":
            return self._lookup_self(address or "", path)
        if source == "opt":
            return self.options.get(address or "", _MISSING)
        if source == "env":
            return self.env.get(address or "", _MISSING)
        if source == "sls" and address == "stage":
            return self.stage
        if source == "param":
            return self._param(address or "", path, doc)
        if source == "aws" and address == "region":
            return self.region
        if source == "aws" and address == "accountId":
            return self.account_id
        if source == "file" and arg is not None:
            return self._file(arg.strip(), address, path, doc)
        if source == "strToBool" and arg is not None:
            return arg.strip().lower() in ("true", "1", "yes")
        if source in _UNSUPPORTED or source in ("sls", "aws"):
            raise doc.error(path, f"the variable source `{source}:` (in ${{{text}}}) is not supported by nimbus "
                                  "(supported: self, opt, env, file, param, sls:stage, aws:region, aws:accountId)")
        raise doc.error(path, f"unknown variable source `{source}` in ${{{text}}}")

    def _lookup_self(self, address: str, origin: Path_) -> Any:
        path: Path_ = tuple(p for p in address.split(".") if p) if address else ()
        node: Any = self.doc.value
        for depth, part in enumerate(path):
            if isinstance(node, str) and "${" in node:  # `custom: ${file(./x.yml)}` then `${self:custom.a}`
                node = self._lookup_self(".".join(str(p) for p in path[:depth]), origin)
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and str(part).isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return _MISSING
        if path in self._busy:
            raise self.doc.error(origin, f"${{self:{address}}} refers to itself")
        self._busy.add(path)
        try:
            return self.value(node, path, self.doc)
        finally:
            self._busy.discard(path)

    def _param(self, name: str, path: Path_, doc: Document) -> Any:
        if name in self.cli_params:
            return self.cli_params[name]
        params = self.doc.value.get("params") if isinstance(self.doc.value, dict) else None
        if isinstance(params, dict):
            for scope in (self.stage, "default"):
                section = params.get(scope)
                if isinstance(section, dict) and name in section:
                    return self._lookup_self(f"params.{scope}.{name}", path)
        return _MISSING

    def _file(self, name: str, address: str | None, path: Path_, doc: Document) -> Any:
        target = (doc.file.parent / name).resolve()
        if target not in self._files:
            if not target.is_file():
                raise doc.error(path, f"${{file({name})}}: no such file {target}")
            if target.suffix not in (".yml", ".yaml", ".json"):
                raise doc.error(path, f"${{file({name})}}: only .yml, .yaml and .json files are supported")
            self._files[target] = yamlmarks.load(target)
        sub = self._files[target]
        node: Any = sub.value
        parts: Path_ = tuple(p for p in (address or "").split(".") if p)
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return _MISSING
            node = node[part]
        return self.value(node, parts, sub)


def _split_fallbacks(body: str) -> list[str]:
    out: list[str] = []
    current = ""
    quote = ""
    depth = 0
    for ch in body:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(current)
            current = ""
            continue
        current += ch
    out.append(current)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
