"""Event-invoke configs: Put/Get/Update/Delete/ListFunctionEventInvokeConfigs per function, version or
alias (retry attempts, maximum event age, OnSuccess/OnFailure destinations), validated as AWS does, and
the effective settings the async dispatcher reads for each event (`lookup`, cached)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.config import Settings
from nimbus.control import validation as v
from nimbus.control.arn import is_version, parse_locator
from nimbus.control.core import LATEST, page_of
from nimbus.control.models import AliasRow, EventInvokeConfigRow, FunctionRow, VersionRow
from nimbus.control.registry import Registry
from nimbus.errors import InvalidParameterValue, LambdaError, ResourceNotFound

DEFAULT_RETRY_ATTEMPTS = 2
LIST_MAX = 50
# botocore's DestinationArn pattern (anchored by fullmatch).
DESTINATION_PATTERN = (
    r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:"
    r"((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)"
)
_QUEUE_OR_BUS_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:(sqs:[^:]+:\d{12}:[\w-]+|events:[^:]+:\d{12}:event-bus/.+)$")
_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:[^:]+:\d{12}:function:.+$")


@dataclass(frozen=True, slots=True)
class AsyncConfig:
    """What governs one event's delivery: the config of the qualifier it was invoked with, or defaults."""

    maximum_retry_attempts: int
    maximum_event_age: int  # seconds
    on_success: str | None = None
    on_failure: str | None = None


class EventConfigs:
    """Event-invoke configs in the registry's database. Thread-safe."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.engine = registry.engine
        self._cache: dict[str, dict[str, AsyncConfig]] = {}
        # Bumped by every invalidation, so a lookup that read the database before a change cannot cache
        # what it read after the change was committed.
        self._generation: dict[str, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ dispatcher side

    def defaults(self) -> AsyncConfig:
        return AsyncConfig(DEFAULT_RETRY_ATTEMPTS, self.settings.async_max_event_age)

    def lookup(self, function_name: str, qualifier: str | None) -> AsyncConfig:
        """The settings for an event invoked as `function_name[:qualifier]` (unqualified = `$LATEST`)."""
        configs = self._cache.get(function_name)
        if configs is None:
            generation = self._generation.get(function_name, 0)
            configs = self._load(function_name)
            with self._lock:
                if self._generation.get(function_name, 0) == generation:
                    self._cache[function_name] = configs
        return configs.get(qualifier or LATEST) or self.defaults()

    def shortest_age(self, function_name: str) -> int:
        """The smallest maximum event age (seconds) any event of the function can have."""
        self.lookup(function_name, None)  # loads the cache
        ages = [c.maximum_event_age for c in self._cache.get(function_name, {}).values()]
        return min([self.settings.async_max_event_age, *ages])

    def invalidate(self, function_name: str) -> None:
        with self._lock:
            self._generation[function_name] = self._generation.get(function_name, 0) + 1
            self._cache.pop(function_name, None)

    def _load(self, function_name: str) -> dict[str, AsyncConfig]:
        with Session(self.engine) as s:
            rows = s.scalars(select(EventInvokeConfigRow).where(EventInvokeConfigRow.function_name == function_name))
            return {
                r.qualifier: AsyncConfig(
                    DEFAULT_RETRY_ATTEMPTS if r.maximum_retry_attempts is None else r.maximum_retry_attempts,
                    self.settings.async_max_event_age if r.maximum_event_age is None else r.maximum_event_age,
                    r.on_success,
                    r.on_failure,
                )
                for r in rows
            }

    # ------------------------------------------------------------------------------------ API side

    def put(self, function_name: str, qualifier: str | None, request: dict[str, Any]) -> dict[str, Any]:
        """PutFunctionEventInvokeConfig: replace the qualifier's config with the request's fields."""
        name, q = self._target(function_name, qualifier)
        fields = self._checked(name, request)
        with Session(self.engine) as s, s.begin():
            self._check_exists(s, name, q)
            row = s.get(EventInvokeConfigRow, (name, q)) or EventInvokeConfigRow(function_name=name, qualifier=q)
            row.maximum_retry_attempts = fields.get("MaximumRetryAttempts")
            row.maximum_event_age = fields.get("MaximumEventAgeInSeconds")
            row.on_success, row.on_failure = fields.get("OnSuccess"), fields.get("OnFailure")
            row.last_modified = time.time()
            s.add(row)
            doc = self._document(row)
        self.invalidate(name)
        return doc

    def update(self, function_name: str, qualifier: str | None, request: dict[str, Any]) -> dict[str, Any]:
        """UpdateFunctionEventInvokeConfig: change only the fields the request names."""
        name, q = self._target(function_name, qualifier)
        fields = self._checked(name, request)
        with Session(self.engine) as s, s.begin():
            self._check_exists(s, name, q)
            row = s.get(EventInvokeConfigRow, (name, q))
            if row is None:
                raise ResourceNotFound(f"The function {self.registry.arn(name, q)} doesn't have an EventInvokeConfig")
            if "MaximumRetryAttempts" in request:
                row.maximum_retry_attempts = fields.get("MaximumRetryAttempts")
            if "MaximumEventAgeInSeconds" in request:
                row.maximum_event_age = fields.get("MaximumEventAgeInSeconds")
            if "DestinationConfig" in request:
                row.on_success, row.on_failure = fields.get("OnSuccess"), fields.get("OnFailure")
            row.last_modified = time.time()
            doc = self._document(row)
        self.invalidate(name)
        return doc

    def get(self, function_name: str, qualifier: str | None) -> dict[str, Any]:
        name, q = self._target(function_name, qualifier)
        with Session(self.engine) as s:
            row = s.get(EventInvokeConfigRow, (name, q))
            if row is None:
                raise ResourceNotFound(f"The function {self.registry.arn(name, q)} doesn't have an EventInvokeConfig")
            return self._document(row)

    def delete(self, function_name: str, qualifier: str | None) -> None:
        name, q = self._target(function_name, qualifier)
        with Session(self.engine) as s, s.begin():
            row = s.get(EventInvokeConfigRow, (name, q))
            if row is None:
                raise ResourceNotFound(f"The function {self.registry.arn(name, q)} doesn't have an EventInvokeConfig")
            s.delete(row)
        self.invalidate(name)

    def list(self, function_name: str, marker: str | None, max_items: int | None) -> dict[str, Any]:
        """ListFunctionEventInvokeConfigs: every qualifier's config, at most 50 a page."""
        loc = parse_locator(function_name, self.settings.region, self.settings.account_id)
        name = loc.name
        if max_items is not None:
            v.check_range(max_items, "maxItems", 1, LIST_MAX)
        with Session(self.engine) as s:
            if s.get(FunctionRow, name) is None:
                raise ResourceNotFound("The function doesn't exist.")
            rows = list(s.scalars(select(EventInvokeConfigRow).where(EventInvokeConfigRow.function_name == name)))

        def key(r: EventInvokeConfigRow) -> str:
            return "0" if r.qualifier == LATEST else ("1" + r.qualifier.zfill(12) if is_version(r.qualifier)
                                                       else "2" + r.qualifier)

        rows.sort(key=key)
        page, nxt = page_of(rows, marker, max_items or LIST_MAX, key)
        out: dict[str, Any] = {"FunctionEventInvokeConfigs": [self._document(r) for r in page]}
        if nxt:
            out["NextMarker"] = nxt
        return out

    # ------------------------------------------------------------------------------------- helpers

    def _target(self, function_name: str, qualifier: str | None) -> tuple[str, str]:
        loc = parse_locator(function_name, self.settings.region, self.settings.account_id)
        if qualifier is not None:
            v.check_pattern(qualifier, r"(|[a-zA-Z0-9$_-]+)", "qualifier", max_len=128, min_len=1)
            if loc.qualifier is not None and loc.qualifier != qualifier:
                raise InvalidParameterValue(
                    "The derived qualifier from the function name does not match the specified qualifier."
                )
        return loc.name, qualifier or loc.qualifier or LATEST

    @staticmethod
    def _check_exists(s: Session, name: str, qualifier: str) -> None:
        if s.get(FunctionRow, name) is None:
            raise ResourceNotFound("The function doesn't exist.")
        if qualifier == LATEST or is_version(qualifier):
            found = s.get(VersionRow, (name, qualifier)) is not None
        else:
            found = s.get(AliasRow, (name, qualifier)) is not None
        if not found:
            raise ResourceNotFound("The function doesn't exist.")

    def _checked(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """The request's settings, validated; destinations flattened to OnSuccess/OnFailure ARNs."""
        retries = request.get("MaximumRetryAttempts")
        age = request.get("MaximumEventAgeInSeconds")
        destinations = request.get("DestinationConfig")
        if retries is None and age is None and destinations is None:
            raise InvalidParameterValue("You must specify at least one of error handling or destination setting.")
        out: dict[str, Any] = {}
        if retries is not None:
            _check_int(retries, "maximumRetryAttempts")
            v.check_range(retries, "maximumRetryAttempts", 0, 2)
            out["MaximumRetryAttempts"] = retries
        if age is not None:
            _check_int(age, "maximumEventAgeInSeconds")
            v.check_range(age, "maximumEventAgeInSeconds", self.settings.async_event_age_min, 21600)
            out["MaximumEventAgeInSeconds"] = age
        if destinations is not None:
            if not isinstance(destinations, dict):
                raise InvalidParameterValue("DestinationConfig must be an object.")
            for key, field in (("OnSuccess", "onSuccess"), ("OnFailure", "onFailure")):
                part = destinations.get(key)
                if part is None:
                    continue
                if not isinstance(part, dict) or not isinstance(part.get("Destination", ""), str):
                    raise InvalidParameterValue(f"DestinationConfig.{key} must be an object with a Destination.")
                arn = part.get("Destination") or ""
                v.check_pattern(arn, DESTINATION_PATTERN, f"destinationConfig.{field}.destination", max_len=350)
                if arn:
                    out[key] = arn
            self._check_destinations(name, out.get("OnSuccess"), out.get("OnFailure"))
        return out

    def _check_destinations(self, name: str, on_success: str | None, on_failure: str | None) -> None:
        for arn in (on_success, on_failure):
            if arn is None:
                continue
            if _QUEUE_OR_BUS_ARN.match(arn):
                continue  # a nimbus SQS queue or event bus (issue 15): checked when a record is sent
            if not _FUNCTION_ARN.match(arn):
                success = f"OnSuccess(destination={on_success})" if on_success else "null"
                failure = f"OnFailure(destination={on_failure})" if on_failure else "null"
                raise InvalidParameterValue(
                    f"The provided destination config DestinationConfig(onSuccess={success}, onFailure={failure}) "
                    "is invalid. (nimbus delivers invocation records to Lambda functions, SQS queues and event buses.)"
                )
            try:
                target = parse_locator(arn, self.settings.region, self.settings.account_id)
                if target.name == name:
                    raise InvalidParameterValue("You can't specify the function as a destination for itself.")
                self.registry.snapshot(target.name)
            except ResourceNotFound:
                raise InvalidParameterValue(f"The destination ARN {arn} is invalid.") from None
            except InvalidParameterValue:
                raise
            except LambdaError:
                raise InvalidParameterValue(f"The destination ARN {arn} is invalid.") from None

    def _document(self, row: EventInvokeConfigRow) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "LastModified": row.last_modified,
            "FunctionArn": self.registry.arn(row.function_name, row.qualifier),
        }
        if row.maximum_retry_attempts is not None:
            doc["MaximumRetryAttempts"] = row.maximum_retry_attempts
        if row.maximum_event_age is not None:
            doc["MaximumEventAgeInSeconds"] = row.maximum_event_age
        doc["DestinationConfig"] = {
            "OnSuccess": {"Destination": row.on_success} if row.on_success else {},
            "OnFailure": {"Destination": row.on_failure} if row.on_failure else {},
        }
        return doc


def _check_int(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise v.constraint(value, field, "Member must be an integer")

