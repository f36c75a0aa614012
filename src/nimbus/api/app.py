"""The ASGI application: every HTTP surface of one nimbus server on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.api import errors, functions, logs
from nimbus.api.invoke import InvokeApp
from nimbus.errors import LambdaError, UnknownOperation
from nimbus.platform import Platform


async def health(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    return JSONResponse(
        {
            "status": "ok",
            "isolation": platform.sandbox.backend_name,
            "environments": platform.sandbox.environment_count(),
        }
    )


async def json_protocol(request: Request) -> Response:
    """`POST /` with `X-Amz-Target`: AWS's JSON protocol, used by the CloudWatch Logs API."""
    target = request.headers.get("x-amz-target", "")
    if target.startswith("Logs_20140328."):
        return await logs.handle(request, target.removeprefix("Logs_20140328."))
    raise UnknownOperation(f"Unknown operation {target or '(no X-Amz-Target)'}")


def create_app(platform: Platform) -> InvokeApp:
    """Build the app; the platform is started and stopped with it."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        try:
            yield
        finally:
            await platform.stop()

    routes = [
        *functions.routes,
        Route("/", json_protocol, methods=["POST"]),
        Route("/nimbus/v1/health", health, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LambdaError: errors.on_lambda_error,
            HTTPException: errors.on_http_error,
            Exception: errors.on_unexpected,
        },
    )
    # AWS has no trailing-slash redirects: a wrong path is an unknown operation, not a 307.
    app.router.redirect_slashes = False
    app.state.platform = platform
    return InvokeApp(app, platform)
