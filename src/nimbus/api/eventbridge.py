"""The EventBridge API (botocore's `events` model, AWS JSON 1.1, `X-Amz-Target: AWSEvents.<Operation>` posted
to `/`): rules, targets, buses and PutEvents, with EventBridge's error shape (`{"__type", "message"}`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from nimbus.api.body import read_body
from nimbus.events.bus.service import EventBus, EventsError, EventsValidation
from nimbus.events.sources import EventSources

PREFIX = "AWSEvents."


class UnknownEventsOperation(EventsError):
    code = "UnknownOperationException"


def _operations(bus: EventBus) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
    return {
        "PutRule": bus.put_rule,
        "DescribeRule": bus.describe_rule,
        "DeleteRule": bus.delete_rule,
        "ListRules": bus.list_rules,
        "EnableRule": lambda r: bus.set_state(r, "ENABLED"),
        "DisableRule": lambda r: bus.set_state(r, "DISABLED"),
        "PutTargets": bus.put_targets,
        "RemoveTargets": bus.remove_targets,
        "ListTargetsByRule": bus.list_targets,
        "CreateEventBus": bus.create_bus,
        "DescribeEventBus": bus.describe_bus,
        "DeleteEventBus": bus.delete_bus,
        "ListEventBuses": bus.list_buses,
        "PutEvents": bus.put_events,
    }


async def handle(request: Request, operation: str) -> Response:
    """Serve one `AWSEvents.<operation>` request."""
    sources: EventSources = request.app.state.platform.sources
    handler = _operations(sources.bus).get(operation)
    if handler is None:
        raise UnknownEventsOperation(f"Unknown operation AWSEvents.{operation}")
    raw = await read_body(request, request.app.state.platform.settings.request_body_max_bytes)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise EventsValidation("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise EventsValidation("The request body must be a JSON object.")
    result = await handler(body)
    return Response(json.dumps(result, separators=(",", ":")), media_type="application/x-amz-json-1.1",
                    headers={"x-amzn-RequestId": str(uuid.uuid4())})
