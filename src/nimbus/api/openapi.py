"""The published OpenAPI description of nimbus's Lambda REST API (`GET /nimbus/v1/openapi.json`): the file
scripts/openapi.py generates from botocore's Lambda model, which API fuzzers and client generators read."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DESCRIPTION = Path(__file__).with_name("openapi.json")


@cache
def _document() -> bytes:
    return DESCRIPTION.read_bytes()


async def openapi(request: Request) -> Response:
    """The OpenAPI 3 document, as generated."""
    return Response(_document(), media_type="application/json")


routes = [Route("/nimbus/v1/openapi.json", openapi, methods=["GET"])]
