"""The EventBridge event-pattern matcher, shared by bus rules (`events/bus/`) and the FilterCriteria of event
source mappings (`events/mappings/`).

A pattern is a JSON object mirroring the event: an object value descends into the event's field of that
name, an array value lists what the field may be (OR), and keys of one object must all match (AND). An
event field holding an array matches when any element does. Array entries are literals (strings, numbers
compared numerically, booleans, null) or one-key operator objects:
`prefix`, `suffix`, `equals-ignore-case`, `wildcard`, `anything-but` (a value, a list, or a prefix/suffix/
equals-ignore-case/wildcard object), `numeric` (`["<", 5, ">=", 1]`), `exists`, `cidr`; a `$or` key takes a
list of sub-patterns. https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

_MISSING = object()
_NUMERIC_OPS = {"<", "<=", "=", ">", ">="}
_MAX_NUMBER = 5e9  # EventBridge's numeric matching range is -5.0e9 .. +5.0e9

Leaf = Callable[[Any], bool]


class InvalidPattern(ValueError):
    """The pattern is not a valid EventBridge pattern (the message says why)."""


class Pattern:
    """A compiled pattern; `matches(event)` takes the event as decoded JSON (a dict)."""

    def __init__(self, source: dict[str, Any]) -> None:
        self.source = source
        self._match = _compile_object(_expand_dots(source), "")

    def matches(self, event: Any) -> bool:
        return self._match(_expand_dots(event) if _has_dotted_key(event) else event)


def _has_dotted_key(doc: Any) -> bool:
    if isinstance(doc, dict):
        return any("." in k or _has_dotted_key(v) for k, v in doc.items())
    if isinstance(doc, list):
        return any(_has_dotted_key(x) for x in doc)
    return False


def _expand_dots(doc: Any) -> Any:
    """`{"a.b": x}` as `{"a": {"b": x}}`: EventBridge matches on dot-joined paths, so both spell the same."""
    if isinstance(doc, list):
        return [_expand_dots(x) for x in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        value = _expand_dots(value)
        if "." in key and key != "$or" and not key.startswith("."):
            head, _, rest = key.partition(".")
            value = _expand_dots({rest: value})
            key = head
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def compile_pattern(text: str | dict[str, Any]) -> Pattern:
    """Parse and validate a pattern (a JSON string or an already decoded object)."""
    if isinstance(text, str):
        try:
            # Duplicate keys: the last one wins, as on AWS (json.loads already behaves so).
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidPattern(f"Event pattern is not valid JSON: {exc}") from None
    else:
        doc = text
    if not isinstance(doc, dict) or not doc:
        raise InvalidPattern("Event pattern must be a non-empty JSON object.")
    return Pattern(doc)


def _compile_object(doc: dict[str, Any], path: str) -> Callable[[Any], bool]:
    parts: list[Callable[[Any], bool]] = []
    for key, value in doc.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, dict) and v for v in value):
                raise InvalidPattern(f"{where}: $or needs a list of at least two patterns.")
            alternatives = [_compile_object(v, path) for v in value]
            parts.append(_any_of(alternatives))
        elif isinstance(value, dict):
            if not value:
                raise InvalidPattern(f"{where}: an empty object matches nothing.")
            sub = _compile_object(value, where)
            parts.append(_descend(key, sub))
        elif isinstance(value, list):
            if not value:
                raise InvalidPattern(f"{where}: empty arrays are not allowed in a pattern.")
            parts.append(_compile_field(key, [_compile_leaf(v, where) for v in value]))
        else:
            raise InvalidPattern(f"{where}: match values must be in an array or an object.")
    return lambda ev: all(p(ev) for p in parts)


def _any_of(alternatives: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    return lambda ev: any(a(ev) for a in alternatives)


def _descend(key: str, sub: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """An object pattern under `key`. EventBridge matches flattened leaf paths: an array of objects matches
    when one of them does, and a missing (or leaf) value is an empty object (so `exists: false` below it
    matches)."""

    def match(ev: Any) -> bool:
        value = ev.get(key) if isinstance(ev, dict) else None
        if isinstance(value, dict):
            return sub(value)
        if isinstance(value, list):
            objects = [x for x in value if isinstance(x, dict)]
            if objects:
                return any(sub(x) for x in objects)
        return sub({})

    return match


def _compile_field(key: str, leaves: list[tuple[Leaf, bool]]) -> Callable[[Any], bool]:
    """A field matched by `leaves` (each: test, whether it applies to a missing field: `exists: false`)."""

    def match(ev: Any) -> bool:
        value = ev.get(key, _MISSING) if isinstance(ev, dict) else _MISSING
        if isinstance(value, dict):
            value = _MISSING  # an object is not a leaf: only `exists: false` matches it
        for test, on_missing in leaves:
            if on_missing:
                if value is _MISSING or (isinstance(value, list) and not value):
                    return True
                continue
            if value is _MISSING:
                continue
            if isinstance(value, list):
                if any(test(v) for v in value):
                    return True
            elif test(value):
                return True
        return False

    return match


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _literal(expected: Any) -> Leaf:
    if _is_number(expected):
        return lambda v: _is_number(v) and float(v) == float(expected)
    if expected is None:
        return lambda v: v is None
    if isinstance(expected, bool):
        return lambda v: isinstance(v, bool) and v is expected
    if isinstance(expected, str):
        return lambda v: isinstance(v, str) and v == expected
    raise InvalidPattern(f"Unsupported match value {json.dumps(expected)}.")


def _string_op(name: str, arg: Any, where: str) -> Leaf:
    if name in ("prefix", "suffix", "equals-ignore-case", "wildcard") and isinstance(arg, dict) and name != "wildcard":
        # {"prefix": {"equals-ignore-case": "x"}} (and the same for suffix)
        if list(arg) != ["equals-ignore-case"] or not isinstance(arg["equals-ignore-case"], str):
            raise InvalidPattern(f"{where}: {name} takes a string.")
        low = arg["equals-ignore-case"].lower()
        if name == "prefix":
            return lambda v: isinstance(v, str) and v.lower().startswith(low)
        if name == "suffix":
            return lambda v: isinstance(v, str) and v.lower().endswith(low)
    if not isinstance(arg, str):
        raise InvalidPattern(f"{where}: {name} takes a string.")
    if name == "prefix":
        return lambda v: isinstance(v, str) and v.startswith(arg)
    if name == "suffix":
        return lambda v: isinstance(v, str) and v.endswith(arg)
    if name == "equals-ignore-case":
        low = arg.lower()
        return lambda v: isinstance(v, str) and v.lower() == low
    if "**" in arg:
        raise InvalidPattern(f"{where}: consecutive wildcard characters are not allowed.")
    regex = re.compile("".join(".*" if c == "*" else re.escape(c) for c in arg.replace("\\*", "\0")).replace(
        "\0", r"\*"), re.DOTALL)
    return lambda v: isinstance(v, str) and regex.fullmatch(v) is not None


def _numeric(arg: Any, where: str) -> Leaf:
    if not isinstance(arg, list) or not arg or len(arg) % 2 or len(arg) > 4:
        raise InvalidPattern(f"{where}: numeric takes one or two (operator, number) pairs.")
    checks: list[Callable[[float], bool]] = []
    seen: set[str] = set()
    for i in range(0, len(arg), 2):
        op, num = arg[i], arg[i + 1]
        if op not in _NUMERIC_OPS or not _is_number(num) or abs(num) > _MAX_NUMBER:
            raise InvalidPattern(f"{where}: bad numeric comparison {json.dumps(arg)}.")
        kind = "lower" if op in (">", ">=") else "upper" if op in ("<", "<=") else "eq"
        if kind in seen or (kind == "eq" and len(arg) > 2):
            raise InvalidPattern(f"{where}: bad numeric range {json.dumps(arg)}.")
        seen.add(kind)
        n = float(num)
        checks.append({
            "<": lambda x, n=n: x < n, "<=": lambda x, n=n: x <= n, "=": lambda x, n=n: x == n,
            ">": lambda x, n=n: x > n, ">=": lambda x, n=n: x >= n,
        }[op])
    return lambda v: _is_number(v) and all(c(float(v)) for c in checks)


def _cidr(arg: Any, where: str) -> Leaf:
    try:
        net = ipaddress.ip_network(arg, strict=False)
    except (TypeError, ValueError):
        raise InvalidPattern(f"{where}: cidr takes a CIDR block.") from None

    def test(v: Any) -> bool:
        try:
            return isinstance(v, str) and ipaddress.ip_address(v) in net
        except ValueError:
            return False

    return test


def _anything_but(arg: Any, where: str) -> Leaf:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise InvalidPattern(f"{where}: anything-but takes one operator.")
        (name, inner), = arg.items()
        if name not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            raise InvalidPattern(f"{where}: anything-but does not take {name}.")
        items = inner if isinstance(inner, list) else [inner]
        for x in items:
            if not isinstance(x, str) or (name in ("prefix", "suffix") and not x):
                raise InvalidPattern(f"{where}: anything-but {name} takes non-empty strings.")
        tests = [_string_op(name, x, where) for x in items]
        # Values that are not strings (numbers, null) are "anything but" a string pattern: they match.
        return lambda v: not any(t(v) for t in tests)
    values = arg if isinstance(arg, list) else [arg]
    if not values or any(isinstance(x, (dict | list, bool)) or x is None for x in values):
        raise InvalidPattern(f"{where}: anything-but takes strings or numbers.")
    excluded = [_literal(x) for x in values]
    return lambda v: not any(t(v) for t in excluded)


def _compile_leaf(value: Any, where: str) -> tuple[Leaf, bool]:
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise InvalidPattern(f"{where}: nested arrays are not allowed.")
        return _literal(value), False
    if len(value) != 1:
        raise InvalidPattern(f"{where}: an operator object has exactly one key.")
    (name, arg), = value.items()
    if name == "exists":
        if not isinstance(arg, bool):
            raise InvalidPattern(f"{where}: exists takes true or false.")
        return (lambda v: True), not arg
    if name in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        return _string_op(name, arg, where), False
    if name == "numeric":
        return _numeric(arg, where), False
    if name == "anything-but":
        return _anything_but(arg, where), False
    if name == "cidr":
        return _cidr(arg, where), False
    raise InvalidPattern(f"{where}: unrecognized match type {name}.")
