"""Tags, reserved concurrency and account settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nimbus.control import validation as v
from nimbus.control.core import TOTAL_CODE_SIZE_LIMIT, RegistryCore
from nimbus.control.models import CodeSigningConfigRow, FunctionRow, VersionRow
from nimbus.errors import InvalidParameterValue, ResourceNotFound

# The ARNs TagResource takes, as AWS prints the pattern today (LocalStack snapshot test_tag_exceptions):
# functions, layers, code signing configs, event source mappings, capacity providers.
TAGGABLE_ARN_PATTERN = (
    r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|"
    r"event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|"
    r"capacity-provider:[a-zA-Z0-9-_]+)"
)


class AccountOps(RegistryCore):
    """TagResource/UntagResource/ListTags, Put/Get/DeleteFunctionConcurrency, GetAccountSettings."""

    # ---------------------------------------------------------------- tags

    def _tag_target(self, resource: str) -> tuple[str, str]:
        """("function", name) or ("csc", id) for a taggable ARN (an unqualified function ARN, a code
        signing config); other kinds of Lambda resource are not taggable on this server."""
        v.check_pattern(resource, TAGGABLE_ARN_PATTERN, "resource", max_len=256, min_len=1)
        kind = resource.split(":")[5]
        if kind == "code-signing-config":
            return "csc", resource.rsplit(":", 1)[1]
        if kind != "function":
            raise ResourceNotFound("The resource you requested does not exist.")
        loc = self.locate(resource)
        if loc.qualifier is not None:
            raise InvalidParameterValue(
                "Tags on function aliases and versions are not supported. Please specify a function ARN."
            )
        return "function", loc.name

    def _tag_row(self, s: Session, resource: str, kind: str, key: str) -> FunctionRow | CodeSigningConfigRow:
        if kind == "csc":
            row = s.get(CodeSigningConfigRow, key)
            if row is None:
                raise ResourceNotFound(f"The Lambda code signing configuration {resource} can not be found.")
            return row
        return self._function(s, key)

    @contextmanager
    def _tag_write(self, kind: str, key: str) -> Iterator[Session]:
        if kind == "function":
            with self._write(key) as s:
                yield s
        else:  # not a function: no snapshot to refresh
            with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s

    def tag_resource(self, resource: str, tags: dict[str, str]) -> None:
        kind, key = self._tag_target(resource)
        with self._tag_write(kind, key) as s:
            row = self._tag_row(s, resource, kind, key)
            v.check_tags(tags, len(set(row.tags) - set(tags)))
            row.tags = {**row.tags, **tags}

    def untag_resource(self, resource: str, keys: list[str]) -> None:
        kind, key = self._tag_target(resource)
        with self._tag_write(kind, key) as s:
            row = self._tag_row(s, resource, kind, key)
            row.tags = {k: x for k, x in row.tags.items() if k not in set(keys)}

    def list_tags(self, resource: str) -> dict[str, str]:
        kind, key = self._tag_target(resource)
        with Session(self.engine) as s:
            return dict(self._tag_row(s, resource, kind, key).tags)

    # ---------------------------------------------------------------- concurrency

    def put_concurrency(self, function_name: str, reserved: int) -> dict[str, int]:
        loc = self.locate(function_name)
        if loc.qualifier is not None:  # AWS's text (LocalStack snapshot test_function_concurrency_exceptions)
            raise InvalidParameterValue(
                "This operation is permitted on Lambda functions only. Aliases and versions do not support this "
                "operation. Please specify either a function name or an unqualified function ARN."
            )
        name = loc.name
        v.check_range(reserved, "reservedConcurrentExecutions", 0, 2**31 - 1)
        with self._write(name) as s:
            fn = self._function(s, name, "$LATEST")  # AWS names `:$LATEST` when the function is missing
            others = s.scalar(select(func.coalesce(func.sum(FunctionRow.reserved_concurrency), 0))
                              .where(FunctionRow.name != name)) or 0
            minimum = self.settings.min_unreserved_concurrency
            if self.settings.account_concurrency - (int(others) + reserved) < minimum:
                raise InvalidParameterValue(
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    f"UnreservedConcurrentExecution below its minimum value of [{minimum}]."
                )
            fn.reserved_concurrency = reserved
        return {"ReservedConcurrentExecutions": reserved}

    def get_concurrency(self, function_name: str) -> dict[str, int]:
        name = self._unqualified(function_name)
        with Session(self.engine) as s:
            fn = self._function(s, name)
            return {} if fn.reserved_concurrency is None else {"ReservedConcurrentExecutions": fn.reserved_concurrency}

    def delete_concurrency(self, function_name: str) -> None:
        name = self._unqualified(function_name)
        with self._write(name) as s:
            self._function(s, name).reserved_concurrency = None

    # ---------------------------------------------------------------- account

    def account_settings(self) -> dict[str, Any]:
        with Session(self.engine) as s:
            count = s.scalar(select(func.count()).select_from(FunctionRow)) or 0
            sizes = [int(c.get("CodeSize", 0)) for c in s.scalars(select(VersionRow.config)).all()]
        reserved = self.reserved_total()
        return {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_SIZE_LIMIT,
                "CodeSizeUnzipped": self.settings.unzipped_max_bytes,
                "CodeSizeZipped": self.settings.zip_max_bytes,
                "ConcurrentExecutions": self.settings.account_concurrency,
                "UnreservedConcurrentExecutions": self.settings.account_concurrency - reserved,
            },
            "AccountUsage": {"TotalCodeSize": sum(sizes), "FunctionCount": int(count)},
        }
