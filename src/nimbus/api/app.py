"""The ASGI application: every HTTP surface of one nimbus server on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus.api import auth, dashboard, errors, functions, logs
from nimbus.api import durable as durable_api
from nimbus.api import eventconfigs as eventconfigs_api
from nimbus.api import keys as keys_api
from nimbus.api import layers as layers_api
from nimbus.api import metrics as metrics_api
from nimbus.api import provisioned as provisioned_api
from nimbus.api import streaming as streaming_api
from nimbus.api import urls as urls_api
from nimbus.api.actor import ActorApp
from nimbus.api.invoke import InvokeApp
from nimbus.control.credentials import FunctionCredentials
from nimbus.control.keys import KeyStore
from nimbus.control.urls import FunctionUrls
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


def create_app(platform: Platform) -> auth.AuthApp:
    """Build the app; the platform is started and stopped with it."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        provisioned_api.restore_targets(platform)  # provisioned concurrency survives restarts (issue 5)
        provisioned_api.install_snapstart_state(platform)  # SnapStart versions: Pending until the snapshot
        try:
            yield
        finally:
            await platform.stop()

    routes = [
        *functions.routes,
        *eventconfigs_api.routes,  # event-invoke configs, async queue figures (issue 4)
        *streaming_api.routes,  # InvokeWithResponseStream (issue 6b)
        *layers_api.routes,  # layers (issue 6b)
        Route("/", json_protocol, methods=["POST"]),
        Route("/nimbus/v1/health", health, methods=["GET"]),
        *keys_api.routes,  # access keys (issue 7)
        *urls_api.routes,  # function URL configs (issue 7)
        *metrics_api.routes,  # /metrics, /nimbus/v1/cost (issue 8)
        *dashboard.routes,  # /dashboard (issue 8)
        *provisioned_api.routes,  # provisioned concurrency configs (issue 5)
        *durable_api.routes,  # durable executions: SDK data plane and control plane (issue 18)
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
    # Everything, the Invoke fast path included, is behind SigV4 verification (issue 7).
    app.state.keys = keystore = KeyStore(platform.settings, platform.registry.engine)
    app.state.function_urls = function_urls = FunctionUrls(platform.registry, platform.settings)
    app.state.credentials = credentials = FunctionCredentials(keystore, platform.registry)
    front = auth.AuthApp(InvokeApp(ActorApp(app), platform), keystore, platform.settings,
                         policy_check=credentials.can_invoke)
    front.urls = urls_api.FunctionUrlApp(platform, function_urls, keystore, front.verifier, front.enabled)
    auth.attach_function_credentials(platform, front, credentials)
    return front
