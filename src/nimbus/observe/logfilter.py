"""CloudWatch Logs filter patterns (the `filterPattern` of FilterLogEvents), compiled to predicates over a
log message. Supported subset:

- empty pattern: every event matches;
- terms, all of which must occur (case-sensitive substring): `ERROR timeout`;
- quoted phrases, for text with spaces or punctuation: `"Task timed out"`;
- `?term` / `?"phrase"`: at least one of the `?` terms must occur: `?ERROR ?WARN`;
- `-term` / `-"phrase"`: the term must not occur: `ERROR -healthcheck`;
- `%regex%`: a (Python `re`) regular expression search, e.g. `%ERROR|WARN%`;
- JSON patterns on messages that are JSON objects: `{ $.level = "ERROR" }`, `{ $.latency > 500 }`,
  `{ $.user.id != 42 }`, `{ $.a[0].b = "x*" }` (`*` is a wildcard in strings), `&&`, `||`, parentheses,
  `IS TRUE` / `IS FALSE` / `IS NULL`, `EXISTS` / `NOT EXISTS`;
- space-delimited patterns over the message's whitespace-separated fields (a field in `"..."` or `[...]`
  is one field): `[ip, user, ..., status = 5*, bytes > 1000]`, where `...` stands for any number of
  fields, `=` / `!=` compare strings (`*` wildcard) or numbers, `<`, `>`, `<=`, `>=` compare numbers,
  and `&&`, `||` and parentheses combine conditions, e.g. `[..., code = 4* || code = 5*, ...]`.

`SqlTerms` lists the plain required terms so a store can narrow candidates in SQL first.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nimbus.errors import InvalidParameterValue

# The numeric operators both pattern kinds accept.
_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}

Predicate = Callable[[str], bool]


@dataclass(frozen=True)
class CompiledPattern:
    """A compiled filter pattern: `matches(message)`, plus terms every match must contain."""

    matches: Predicate
    required_terms: tuple[str, ...] = field(default=())


def _invalid(pattern: str, why: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid filter pattern {pattern!r}: {why}")


def compile_pattern(pattern: str | None) -> CompiledPattern:
    """Compile a filter pattern; raises InvalidParameterValue when it cannot be parsed."""
    text = (pattern or "").strip()
    if not text or text == '""':
        return CompiledPattern(lambda _m: True)
    if text.startswith("{"):
        return CompiledPattern(_compile_json(text))
    if text.startswith("["):
        return CompiledPattern(_compile_space_delimited(text))
    return _compile_terms(text)


# ---------------------------------------------------------------------------------------------- terms


def _compile_terms(text: str) -> CompiledPattern:
    required: list[str] = []
    optional: list[Predicate] = []
    excluded: list[Predicate] = []
    all_of: list[Predicate] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        prefix = ""
        if text[i] in "?-" and i + 1 < n and not text[i + 1].isspace():
            prefix, i = text[i], i + 1
        if text[i] == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise _invalid(text, "unterminated quoted term")
            term, i, regex = "".join(buf), j + 1, False
        elif text[i] == "%":
            j = text.find("%", i + 1)
            if j < 0:
                raise _invalid(text, "unterminated %regex%")
            term, i, regex = text[i + 1 : j], j + 1, True
        else:
            j = i
            while j < n and not text[j].isspace():
                j += 1
            term, i, regex = text[i:j], j, False
        if regex:
            try:
                rx = re.compile(term)
            except re.error as exc:
                raise _invalid(text, f"bad regular expression: {exc}") from None
            pred = _regex_predicate(rx)
        else:
            pred = _term_predicate(term)
        if prefix == "?":
            optional.append(pred)
        elif prefix == "-":
            excluded.append(pred)
        else:
            all_of.append(pred)
            if not regex and term:
                required.append(term)

    def matches(message: str) -> bool:
        if not all(p(message) for p in all_of):
            return False
        if optional and not any(p(message) for p in optional):
            return False
        return not any(p(message) for p in excluded)

    return CompiledPattern(matches, tuple(required))


def _regex_predicate(rx: re.Pattern[str]) -> Predicate:
    return lambda message: rx.search(message) is not None


def _term_predicate(term: str) -> Predicate:
    return lambda message: term in message


# ---------------------------------------------------------------------------------------------- JSON

_TOKEN = re.compile(
    r"""\s*(?:(?P<op>\(|\)|&&|\|\||!=|<=|>=|=|<|>)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<word>[^\s=!<>()&|"]+))"""
)
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()
JsonPred = Callable[[Any], bool]


def _tokenize(body: str, pattern: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _TOKEN.match(body, pos)
        if not m or m.end() == pos:
            raise _invalid(pattern, f"unexpected text at {body[pos:]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _selector(path: str, pattern: str) -> Callable[[Any], Any]:
    if not path.startswith("$"):
        raise _invalid(pattern, f"a selector must start with $, got {path!r}")
    steps: list[str | int] = []
    rest = path[1:]
    while rest:
        m = _SEGMENT.match(rest)
        if not m:
            raise _invalid(pattern, f"bad selector {path!r}")
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        rest = rest[m.end() :]

    def get(doc: Any) -> Any:
        cur = doc
        for step in steps:
            if isinstance(step, int):
                if not isinstance(cur, list) or step >= len(cur):
                    return _MISSING
                cur = cur[step]
            else:
                if not isinstance(cur, dict) or step not in cur:
                    return _MISSING
                cur = cur[step]
        return cur

    return get


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _ordering(op: str, limit: float) -> Callable[[float], bool]:
    """`value <op> limit` as a predicate, for the numeric operators of both pattern kinds."""
    compare = _ORDER[op]
    return lambda value: bool(compare(value, limit))


def _comparison(get: Callable[[Any], Any], op: str, kind: str, raw: str, pattern: str) -> JsonPred:
    if kind == "str":
        value: str = json.loads(raw)
        number = None
    else:
        value = raw
        number = _number(raw)
    if op in ("<", ">", "<=", ">="):
        if number is None:
            raise _invalid(pattern, f"{op} needs a number, got {raw!r}")
        cmp = _ordering(op, number)

        def numeric(doc: Any) -> bool:
            v = get(doc)
            return isinstance(v, int | float) and not isinstance(v, bool) and cmp(v)

        return numeric

    def equal(v: Any) -> bool:
        if isinstance(v, bool) or v is None or v is _MISSING or isinstance(v, dict | list):
            return False
        if isinstance(v, int | float):
            return number is not None and v == number
        return fnmatch.fnmatchcase(v, value) if "*" in value else v == value

    if op == "=":
        return lambda doc: equal(get(doc))

    def not_equal(doc: Any) -> bool:
        v = get(doc)
        return v is not _MISSING and not equal(v)

    return not_equal


class _JsonParser:
    def __init__(self, tokens: list[tuple[str, str]], pattern: str) -> None:
        self.tokens, self.pos, self.pattern = tokens, 0, pattern

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _invalid(self.pattern, "unexpected end of pattern")
        self.pos += 1
        return tok

    def expr(self) -> JsonPred:
        return self._chain("||", self.conj, any)

    def conj(self) -> JsonPred:
        return self._chain("&&", self.atom, all)

    def _chain(
        self, op: str, operand: Callable[[], JsonPred], combine: Callable[[Iterable[bool]], bool]
    ) -> JsonPred:
        """`operand (op operand)*`, combined with any() for || and all() for &&."""
        parts = [operand()]
        while self.peek() == ("op", op):
            self.pos += 1
            parts.append(operand())
        return parts[0] if len(parts) == 1 else (lambda doc: combine(p(doc) for p in parts))

    def atom(self) -> JsonPred:
        kind, text = self.take()
        if (kind, text) == ("op", "("):
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise _invalid(self.pattern, "expected )")
            return inner
        if kind != "word":
            raise _invalid(self.pattern, f"expected a selector, got {text!r}")
        get = _selector(text, self.pattern)
        kind, op = self.take()
        if kind == "word" and op.upper() == "IS":
            what = self.take()[1].upper()
            expected: dict[str, Any] = {"TRUE": True, "FALSE": False, "NULL": None}
            if what not in expected:
                raise _invalid(self.pattern, f"IS must be followed by TRUE, FALSE or NULL, not {what}")
            want = expected[what]
            return lambda doc: (v := get(doc)) is not _MISSING and v is want
        if kind == "word" and op.upper() == "NOT":
            if self.take()[1].upper() != "EXISTS":
                raise _invalid(self.pattern, "expected EXISTS after NOT")
            return lambda doc: get(doc) is _MISSING
        if kind == "word" and op.upper() == "EXISTS":
            return lambda doc: get(doc) is not _MISSING
        if kind != "op" or op not in ("=", "!=", "<", ">", "<=", ">="):
            raise _invalid(self.pattern, f"expected a comparison operator, got {op!r}")
        vkind, raw = self.take()
        if vkind == "op":
            raise _invalid(self.pattern, f"expected a value, got {raw!r}")
        return _comparison(get, op, vkind, raw, self.pattern)


def _compile_json(text: str) -> Predicate:
    if not text.endswith("}"):
        raise _invalid(text, "a JSON pattern must end with }")
    tokens = _tokenize(text[1:-1], text)
    if not tokens:
        raise _invalid(text, "empty JSON pattern")
    parser = _JsonParser(tokens, text)
    pred = parser.expr()
    if parser.peek() is not None:
        raise _invalid(text, f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]

    def matches(message: str) -> bool:
        start = message.find("{")
        if start < 0:
            return False
        try:
            doc = json.loads(message[start:])
        except ValueError:
            return False
        return isinstance(doc, dict) and pred(doc)

    return matches


# ------------------------------------------------------------------------------------ space-delimited

_FIELD = re.compile(r'"[^"]*"|\[[^\]]*\]|\S+')
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ELLIPSIS = "..."
FieldPred = Callable[[dict[str, str]], bool]


def _message_fields(message: str) -> list[str]:
    """Whitespace-separated fields; `"a b"` and `[a b]` are one field each, without their delimiters."""
    return [f[1:-1] if len(f) >= 2 and f[0] + f[-1] in ('""', "[]") else f for f in _FIELD.findall(message)]


def _field_comparison(name: str, op: str, kind: str, raw: str, pattern: str) -> FieldPred:
    value: str = json.loads(raw) if kind == "str" else raw
    number = _number(value)
    if op in ("<", ">", "<=", ">="):
        if number is None:
            raise _invalid(pattern, f"{op} needs a number, got {raw!r}")
        cmp = _ordering(op, number)

        def numeric(fields: dict[str, str]) -> bool:
            got = _number(fields.get(name, ""))
            return got is not None and cmp(got)

        return numeric

    def equal(fields: dict[str, str]) -> bool:
        got = fields.get(name)
        if got is None:
            return False
        if number is not None and "*" not in value:
            as_number = _number(got)
            if as_number is not None:
                return as_number == number
        return fnmatch.fnmatchcase(got, value) if "*" in value else got == value

    return equal if op == "=" else (lambda fields: name in fields and not equal(fields))


class _FieldParser(_JsonParser):
    """The condition grammar of JSON patterns, over named fields instead of `$.` selectors."""

    def __init__(self, tokens: list[tuple[str, str]], pattern: str, names: set[str]) -> None:
        super().__init__(tokens, pattern)
        self.names = names

    def atom(self) -> JsonPred:
        kind, text = self.take()
        if (kind, text) == ("op", "("):
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise _invalid(self.pattern, "expected )")
            return inner
        if kind != "word" or text not in self.names:
            raise _invalid(self.pattern, f"expected a field name, got {text!r}")
        kind, op = self.take()
        if kind != "op" or op not in ("=", "!=", "<", ">", "<=", ">="):
            raise _invalid(self.pattern, f"expected a comparison operator, got {op!r}")
        vkind, raw = self.take()
        if vkind == "op":
            raise _invalid(self.pattern, f"expected a value, got {raw!r}")
        return _field_comparison(text, op, vkind, raw, self.pattern)


def _split_specs(body: str, pattern: str) -> list[str]:
    """The comma-separated field specs of `[...]`, commas inside quotes kept."""
    specs: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            specs.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if quoted:
        raise _invalid(pattern, "unterminated quoted value")
    specs.append("".join(current).strip())
    if any(not spec for spec in specs):
        raise _invalid(pattern, "empty field in space-delimited pattern")
    return specs


def _compile_space_delimited(text: str) -> Predicate:
    if not text.endswith("]"):
        raise _invalid(text, "a space-delimited pattern must end with ]")
    specs = _split_specs(text[1:-1], text)
    names: list[str | None] = []  # None: an ellipsis
    for spec in specs:
        if spec == ELLIPSIS:
            names.append(None)
            continue
        name = re.split(r"[\s=!<>&|()]", spec, maxsplit=1)[0]
        if not _NAME.match(name):
            raise _invalid(text, f"bad field name {name!r}")
        names.append(name)
    known = {n for n in names if n is not None}
    conditions: list[JsonPred] = []
    for spec in specs:
        if spec == ELLIPSIS or _NAME.match(spec):
            continue
        parser = _FieldParser(_tokenize(spec, text), text, known)
        conditions.append(parser.expr())
        if parser.peek() is not None:
            raise _invalid(text, f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]

    def bind(i: int, fields: list[str], j: int, bound: dict[str, str]) -> bool:
        if i == len(names):
            return j == len(fields) and all(cond(bound) for cond in conditions)
        name = names[i]
        if name is None:  # an ellipsis takes any number of fields, fewest first
            return any(bind(i + 1, fields, k, bound) for k in range(j, len(fields) + 1))
        if j >= len(fields):
            return False
        return bind(i + 1, fields, j + 1, {**bound, name: fields[j]})

    return lambda message: bind(0, _message_fields(message), 0, {})
