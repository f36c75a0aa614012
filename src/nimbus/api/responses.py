"""The answers of the Lambda REST API: every one carries `x-amzn-RequestId` (boto3 reports it as
ResponseMetadata.RequestId), minted here and nowhere else in `api/` (data-plane answers carry the
invocation's own id)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from nimbus.ids import new_request_id as new_request_id  # a random UUID, as AWS's request ids


def request_id_header() -> dict[str, str]:
    return {"x-amzn-RequestId": new_request_id()}


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON document answer."""
    return JSONResponse(data, status_code=status, headers=request_id_header())


def no_content() -> Response:
    """The empty 204 answer of Delete* operations."""
    return Response(status_code=204, headers=request_id_header())
