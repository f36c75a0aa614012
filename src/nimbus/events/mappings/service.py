"""Event source mappings for nimbus SQS queues: the Lambda API's Create/Get/Update/Delete/List with AWS's
validation, defaults and states, persisted in `esm_mappings`. Starting and stopping pollers is the
`PollerManager`'s job; this class tells it about every change through `on_change`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, delete, insert, select, update

from nimbus.config import Settings
from nimbus.control.core import page_of
from nimbus.control.registry import Registry
from nimbus.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from nimbus.events.pattern import InvalidPattern, compile_pattern
from nimbus.events.tables import MAPPINGS

# States as AWS reports them (botocore's lambda model).
CREATING, ENABLING, ENABLED = "Creating", "Enabling", "Enabled"
DISABLING, DISABLED, UPDATING, DELETING = "Disabling", "Disabled", "Updating", "Deleting"

MAX_FILTERS = 5  # AWS's default quota of filters per mapping
_FIELDS = {
    "EventSourceArn", "FunctionName", "Enabled", "BatchSize", "MaximumBatchingWindowInSeconds",
    "FunctionResponseTypes", "ScalingConfig", "FilterCriteria", "DestinationConfig", "StartingPosition",
    "StartingPositionTimestamp", "Tags", "KMSKeyArn", "MetricsConfig", "ProvisionedPollerConfig",
    "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError", "MaximumRetryAttempts", "ParallelizationFactor",
    "TumblingWindowInSeconds", "Topics", "Queues", "SourceAccessConfigurations", "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig", "DocumentDBEventSourceConfig",
    "LoggingConfig",
}


class FunctionNotFound(ResourceNotFound):
    """CreateEventSourceMapping names a function that does not exist: AWS answers 400 here, not 404."""

    status = 400


class QueueLookup(Protocol):
    """What the mappings need from the queue service: a queue's type and visibility timeout."""

    def get_queue_by_arn(self, queue_arn: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Mapping:
    """One mapping as the pollers see it."""

    uuid: str
    function_name: str
    qualifier: str | None
    queue_arn: str
    state: str
    batch_size: int
    window: int  # MaximumBatchingWindowInSeconds
    report_failures: bool
    max_concurrency: int | None
    filters: tuple[str, ...]
    enabled: bool = True

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Mapping:
        return cls(
            uuid=doc["UUID"], function_name=doc["_function"], qualifier=doc.get("_qualifier"),
            queue_arn=doc["EventSourceArn"], state=doc["State"], batch_size=doc["BatchSize"],
            window=doc["MaximumBatchingWindowInSeconds"],
            report_failures="ReportBatchItemFailures" in doc.get("FunctionResponseTypes", []),
            max_concurrency=(doc.get("ScalingConfig") or {}).get("MaximumConcurrency"),
            filters=tuple(f["Pattern"] for f in (doc.get("FilterCriteria") or {}).get("Filters", [])),
            enabled=bool(doc.get("_enabled", True)),
        )


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class Mappings:
    """The mapping API's logic. Methods are coroutines; database work runs in a worker thread."""

    def __init__(self, settings: Settings, engine: Engine, registry: Registry, queues: QueueLookup) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = registry
        self.queues = queues
        self.on_change: list[Callable[[str], Awaitable[None]]] = []

    # --------------------------------------------------------------------------------------- reads

    def _load(self, mapping_uuid: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            doc = conn.execute(select(MAPPINGS.c.doc).where(MAPPINGS.c.uuid == mapping_uuid)).scalar()
        if doc is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return dict(doc)

    def all(self) -> list[Mapping]:
        """Every mapping (for the poller manager at start-up)."""
        with self.engine.connect() as conn:
            return [Mapping.from_doc(d) for d in conn.execute(select(MAPPINGS.c.doc)).scalars()]

    def mapping(self, mapping_uuid: str) -> Mapping | None:
        try:
            return Mapping.from_doc(self._load(mapping_uuid))
        except ResourceNotFound:
            return None

    async def get(self, mapping_uuid: str) -> dict[str, Any]:
        return _public(await asyncio.to_thread(self._load, mapping_uuid))

    async def list_mappings(self, source_arn: str | None, function: str | None, marker: str | None,
                   max_items: int | None) -> dict[str, Any]:
        if max_items is not None and not 1 <= max_items <= 10000:
            raise InvalidParameterValue(f"1 validation error detected: Value '{max_items}' at 'maxItems' failed "
                                        "to satisfy constraint: Member must have value between 1 and 10000")
        name = self.registry.split_qualifier(function)[0] if function else None

        def read() -> list[dict[str, Any]]:
            query = select(MAPPINGS.c.doc)
            if source_arn:
                query = query.where(MAPPINGS.c.event_source_arn == source_arn)
            if name:
                query = query.where(MAPPINGS.c.function_name == name)
            with self.engine.connect() as conn:
                return [dict(d) for d in conn.execute(query).scalars()]

        docs = await asyncio.to_thread(read)
        page, next_marker = page_of(docs, marker, max_items or 100, key=lambda d: d["UUID"])
        out: dict[str, Any] = {"EventSourceMappings": [_public(d) for d in page]}
        if next_marker:
            out["NextMarker"] = next_marker
        return out

    # -------------------------------------------------------------------------------------- writes

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        _check_known(request)
        source = request.get("EventSourceArn")
        if not isinstance(source, str) or not source:
            raise InvalidParameterValue("Unrecognized event source.")
        if not source.startswith("arn:aws:sqs:"):
            raise InvalidParameterValue(f"Unrecognized event source, must be SQS: {source}")
        queue = self.queues.get_queue_by_arn(source)
        if queue is None:
            raise InvalidParameterValue(
                "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. "
                "SQS Error Message: The specified queue does not exist.")
        function = request.get("FunctionName")
        if not isinstance(function, str) or not function:
            raise InvalidParameterValue("FunctionName is required.")
        name, qualifier = self._function(function)
        if request.get("DestinationConfig"):
            raise InvalidParameterValue("Unsupported DestinationConfig parameter for given event source mapping type.")
        doc: dict[str, Any] = {
            "UUID": str(uuid.uuid4()),
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 0,
            "EventSourceArn": source,
            "FunctionArn": self.registry.arn(name, qualifier),
            "FunctionResponseTypes": [],
            "_function": name,
            "_qualifier": qualifier,
        }
        doc["EventSourceMappingArn"] = (
            f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:event-source-mapping:{doc['UUID']}")
        self._apply(doc, request, queue)
        self._check_visibility(queue, name, qualifier)
        enabled = request.get("Enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidParameterValue("Enabled must be a boolean.")
        doc["State"] = CREATING if enabled else DISABLED
        doc["StateTransitionReason"] = "USER_INITIATED"
        doc["LastModified"] = time.time()
        doc["_enabled"] = enabled

        def write() -> None:
            with self.engine.begin() as conn:
                existing = conn.execute(select(MAPPINGS.c.uuid).where(
                    MAPPINGS.c.event_source_arn == source, MAPPINGS.c.function_name == name)).scalar()
                if existing is not None:
                    raise ResourceConflict(
                        f'An event source mapping with SQS arn (" {source} ") and function (" {name} ") already '
                        f"exists. Please update or delete the existing mapping with UUID {existing}")
                conn.execute(insert(MAPPINGS).values(uuid=doc["UUID"], function_name=name, event_source_arn=source,
                                                     state=doc["State"], doc=doc))

        await asyncio.to_thread(write)
        await self._changed(doc["UUID"])
        return _public(doc)

    async def update(self, mapping_uuid: str, request: dict[str, Any]) -> dict[str, Any]:
        _check_known(request)
        if "EventSourceArn" in request:
            raise InvalidParameterValue("EventSourceArn cannot be updated.")
        doc = await asyncio.to_thread(self._load, mapping_uuid)
        if doc["State"] in (CREATING, UPDATING, DELETING, ENABLING, DISABLING):
            raise ResourceInUseError(
                f"Cannot update the event source mapping because it is in use. State: {doc['State']}")
        queue = self.queues.get_queue_by_arn(doc["EventSourceArn"])
        if "FunctionName" in request:
            name, qualifier = self._function(str(request["FunctionName"]))
            doc.update(_function=name, _qualifier=qualifier, FunctionArn=self.registry.arn(name, qualifier))
        if request.get("DestinationConfig"):
            raise InvalidParameterValue("Unsupported DestinationConfig parameter for given event source mapping type.")
        if queue is not None:
            self._apply(doc, request, queue)
        was = bool(doc.get("_enabled", True))
        enabled = request.get("Enabled", was)
        if not isinstance(enabled, bool):
            raise InvalidParameterValue("Enabled must be a boolean.")
        doc["_enabled"] = enabled
        if enabled and not was:
            doc["State"] = ENABLING
        elif was and not enabled:
            doc["State"] = DISABLING
        elif enabled:
            doc["State"] = UPDATING
        doc["LastModified"] = time.time()

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(update(MAPPINGS).where(MAPPINGS.c.uuid == mapping_uuid).values(
                    function_name=doc["_function"], state=doc["State"], doc=doc))

        await asyncio.to_thread(write)
        await self._changed(mapping_uuid)
        return _public(doc)

    async def delete(self, mapping_uuid: str) -> dict[str, Any]:
        doc = await asyncio.to_thread(self._load, mapping_uuid)
        doc["State"] = DELETING
        await asyncio.to_thread(self._store_state, mapping_uuid, DELETING)
        await self._changed(mapping_uuid)
        return _public(doc)

    # ------------------------------------------------------------------------- used by the manager

    def _store_state(self, mapping_uuid: str, state: str) -> None:
        with self.engine.begin() as conn:
            doc = conn.execute(select(MAPPINGS.c.doc).where(MAPPINGS.c.uuid == mapping_uuid)).scalar()
            if doc is None:
                return
            doc = {**doc, "State": state}
            conn.execute(update(MAPPINGS).where(MAPPINGS.c.uuid == mapping_uuid).values(state=state, doc=doc))

    async def settle(self, mapping_uuid: str, state: str) -> None:
        """Record the state a transition ended in (Enabled, Disabled)."""
        await asyncio.to_thread(self._store_state, mapping_uuid, state)

    async def remove(self, mapping_uuid: str) -> None:
        """Delete the row once its poller has stopped."""

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(MAPPINGS).where(MAPPINGS.c.uuid == mapping_uuid))

        await asyncio.to_thread(write)

    async def _changed(self, mapping_uuid: str) -> None:
        for callback in self.on_change:
            await callback(mapping_uuid)

    # ---------------------------------------------------------------------------------- validation

    def _function(self, function: str) -> tuple[str, str | None]:
        try:
            name, qualifier = self.registry.split_qualifier(function)
            snapshot = self.registry.snapshot(name)
        except (ResourceNotFound, InvalidParameterValue):
            raise FunctionNotFound("Function does not exist") from None
        if qualifier and qualifier not in snapshot.versions and qualifier not in snapshot.aliases:
            raise FunctionNotFound("Function does not exist")
        return name, qualifier

    def _check_visibility(self, queue: Any, name: str, qualifier: str | None) -> None:
        snapshot = self.registry.snapshot(name)
        version = snapshot.versions.get(qualifier or "$LATEST") or snapshot.versions["$LATEST"]
        visibility = int(getattr(queue, "visibility_timeout", 30))
        if visibility < version.timeout:
            raise InvalidParameterValue(
                f"Queue visibility timeout: {visibility} seconds is less than Function timeout: "
                f"{version.timeout} seconds")

    def _apply(self, doc: dict[str, Any], request: dict[str, Any], queue: Any) -> None:
        """Validate the settable fields of `request` and write them into `doc`."""
        fifo = bool(getattr(queue, "fifo", False))
        batch = request.get("BatchSize", doc["BatchSize"])
        window = request.get("MaximumBatchingWindowInSeconds", doc["MaximumBatchingWindowInSeconds"])
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 10000:
            raise InvalidParameterValue(f"1 validation error detected: Value '{batch}' at 'batchSize' failed to "
                                        "satisfy constraint: Member must have value between 1 and 10000")
        if not isinstance(window, int) or isinstance(window, bool) or not 0 <= window <= 300:
            raise InvalidParameterValue(f"1 validation error detected: Value '{window}' at "
                                        "'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member "
                                        "must have value between 0 and 300")
        if fifo and batch > 10:
            raise InvalidParameterValue("Batch size must be between 1 and 10 for FIFO queues.")
        if batch > 10 and window < 1:
            raise InvalidParameterValue(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
        doc["BatchSize"], doc["MaximumBatchingWindowInSeconds"] = batch, window
        if "FunctionResponseTypes" in request:
            types = request["FunctionResponseTypes"]
            if not isinstance(types, list) or any(t != "ReportBatchItemFailures" for t in types):
                raise InvalidParameterValue(
                    f"1 validation error detected: Value '{types}' at 'functionResponseTypes' failed to satisfy "
                    "constraint: Member must satisfy enum value set: [ReportBatchItemFailures]")
            doc["FunctionResponseTypes"] = sorted(set(types))
        if "ScalingConfig" in request:
            scaling = request["ScalingConfig"] or {}
            maximum = scaling.get("MaximumConcurrency") if isinstance(scaling, dict) else None
            if maximum is None:
                doc.pop("ScalingConfig", None)
            elif not isinstance(maximum, int) or isinstance(maximum, bool) or not 2 <= maximum <= 1000:
                raise InvalidParameterValue(
                    f"1 validation error detected: Value '{maximum}' at 'scalingConfig.maximumConcurrency' failed "
                    "to satisfy constraint: Member must have value between 2 and 1000")
            else:
                doc["ScalingConfig"] = {"MaximumConcurrency": maximum}
        if "FilterCriteria" in request:
            criteria = request["FilterCriteria"] or {}
            filters = criteria.get("Filters") if isinstance(criteria, dict) else None
            if not filters:
                doc.pop("FilterCriteria", None)
            else:
                if not isinstance(filters, list) or len(filters) > MAX_FILTERS:
                    raise InvalidParameterValue(f"A mapping takes at most {MAX_FILTERS} filters.")
                for f in filters:
                    text = f.get("Pattern") if isinstance(f, dict) else None
                    if not isinstance(text, str) or len(text) > 4096:
                        raise InvalidParameterValue("Invalid filter pattern definition.")
                    try:
                        compile_pattern(text)
                    except InvalidPattern:
                        raise InvalidParameterValue("Invalid filter pattern definition.") from None
                doc["FilterCriteria"] = {"Filters": [{"Pattern": f["Pattern"]} for f in filters]}


class ResourceInUseError(InvalidParameterValue):
    """A mapping in a transition cannot be changed (AWS: ResourceInUseException, 400)."""

    error_type = "ResourceInUseException"


def _check_known(request: dict[str, Any]) -> None:
    unknown = sorted(set(request) - _FIELDS)
    if unknown:
        raise InvalidParameterValue(f"Unknown parameter(s): {', '.join(unknown)}")
