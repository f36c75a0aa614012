"""Delivery to the targets of schedules, rules and destinations, by ARN: a Lambda function (an asynchronous
invocation put on invoke/'s durable queue, never a direct run), a nimbus SQS queue (through the queue
service), or an EventBridge bus (PutEvents on it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nimbus.config import Settings
from nimbus.control.registry import Registry
from nimbus.errors import InvalidParameterValue, RequestTooLarge, ResourceNotFound, ServiceError
from nimbus.invoke.destinations import bus_entry
from nimbus.invoke.queue import EventQueue, NewEvent
from nimbus.invoke.service import Invoker

PutEvents = Callable[[str, list[dict[str, Any]]], Awaitable[Any]]


class TargetError(Exception):
    """A delivery failed for a reason worth retrying or dead-lettering (`code` as Scheduler reports it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def service_of(arn: str) -> str:
    """`lambda`, `sqs`, `events` (or another service name) of an ARN."""
    parts = arn.split(":")
    return parts[2] if len(parts) > 5 and parts[0] == "arn" else ""


class Targets:
    def __init__(self, settings: Settings, registry: Registry, invoker: Invoker, queues: Any,
                 put_events: PutEvents) -> None:
        self.settings = settings
        self.registry = registry
        self.invoker = invoker
        self.queues = queues
        self.put_events = put_events

    def _events(self) -> EventQueue:
        if self.invoker.events is None:
            raise ServiceError("The asynchronous invocation queue is not running.")
        return self.invoker.events

    async def invoke_async(self, function_arn: str, payload: bytes, request_id: str | None = None) -> str:
        """Put an `Event` invocation on invoke/'s durable queue; returns its request id once committed."""
        try:
            name, qualifier = self.registry.split_qualifier(function_arn)
            snapshot = self.registry.snapshot(name)
        except (ResourceNotFound, InvalidParameterValue) as exc:
            raise TargetError("ResourceNotFoundException", f"Function not found: {function_arn}") from exc
        if qualifier and qualifier not in snapshot.versions and qualifier not in snapshot.aliases:
            raise TargetError("ResourceNotFoundException", f"Function not found: {function_arn}")
        if len(payload) > self.settings.async_payload_max_bytes:
            raise TargetError("RequestTooLargeException",
                              f"Request must be smaller than {self.settings.async_payload_max_bytes} bytes")
        rid = request_id or str(uuid.uuid4())
        await self._events().enqueue((NewEvent(rid, snapshot.name, qualifier, payload),))
        return rid

    async def send_queue(self, queue_arn: str, body: str, attributes: Mapping[str, Any] | None = None,
                         group_id: str | None = None, dedup_id: str | None = None) -> None:
        queue = self.queues.get_queue_by_arn(queue_arn)
        if queue is None:
            raise TargetError("AWS.SimpleQueueService.NonExistentQueue", f"Queue not found: {queue_arn}")
        if queue.fifo and group_id is None:
            group_id = "nimbus"
        if queue.fifo and dedup_id is None:
            dedup_id = str(uuid.uuid4())
        try:
            await self.queues.send(queue_arn, body, attributes, group_id=group_id if queue.fifo else None,
                                   dedup_id=dedup_id if queue.fifo else None)
        except (RequestTooLarge, ServiceError) as exc:
            raise TargetError(type(exc).__name__, exc.message) from exc
        except Exception as exc:  # the queue service's own errors (SqsError)
            raise TargetError(getattr(exc, "code", type(exc).__name__), str(exc)) from exc

    async def deliver(self, arn: str, payload: str, *, request_id: str | None = None,
                      group_id: str | None = None, entry: dict[str, Any] | None = None) -> None:
        """Deliver `payload` (a JSON or text document) to the target `arn`. For a bus, `entry` gives the
        PutEvents entry's Source and DetailType (the payload becomes its Detail)."""
        service = service_of(arn)
        if service == "lambda":
            await self.invoke_async(arn, payload.encode(), request_id)
        elif service == "sqs":
            await self.send_queue(arn, payload, group_id=group_id)
        elif service == "events":
            doc = {"Source": "nimbus", "DetailType": "Event", **(entry or {}), "Detail": payload,
                   "EventBusName": arn}
            await self.put_events(arn, [doc])
        else:
            raise TargetError("ValidationException", f"nimbus cannot deliver to {arn}")


    async def send_record(self, destination: str, record: dict[str, Any]) -> None:
        """An async invocation record to a queue (its JSON is the body) or a bus (invoke/destinations.py's
        entry); raises TargetError when it cannot be delivered (a FIFO queue, a missing queue or bus)."""
        service = service_of(destination)
        if service == "sqs":
            queue = self.queues.get_queue_by_arn(destination)
            if queue is not None and queue.fifo:
                raise TargetError("UnsupportedDestination", "FIFO queues are not supported as destinations.")
            await self.send_queue(destination, json.dumps(record, separators=(",", ":")))
        elif service == "events":
            entry = bus_entry(record, destination)
            result = await self.put_events(destination, [entry])
            if result.get("FailedEntryCount"):
                raise TargetError("EventBridgeError", str(result["Entries"][0].get("ErrorMessage")))
        else:
            raise TargetError("UnsupportedDestination", f"nimbus cannot deliver a record to {destination}")


    async def send_dead_letter(self, arn: str, body: bytes, attributes: dict[str, tuple[str, str]]) -> None:
        """An async event that failed, to the function's dead-letter queue (the original event as the body)."""
        from nimbus.events.sqs import MessageAttribute

        if service_of(arn) != "sqs":
            raise TargetError("UnsupportedDestination", f"nimbus sends dead letters to SQS queues only: {arn}")
        attrs = {name: MessageAttribute(kind, value) for name, (kind, value) in attributes.items()}
        await self.send_queue(arn, body.decode(errors="replace"), attrs)


def supported_target(arn: str) -> bool:
    return service_of(arn) in ("lambda", "sqs", "events")
