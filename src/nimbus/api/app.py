"""The ASGI application: every HTTP surface of one nimbus server on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from nimbus.api import apigateway as apigateway_api
from nimbus.api import auth, dashboard, errors, functions, logs
from nimbus.api import codesigning as codesigning_api
from nimbus.api import durable as durable_api
from nimbus.api import eventbridge as eventbridge_api
from nimbus.api import eventconfigs as eventconfigs_api
from nimbus.api import images as images_api
from nimbus.api import keys as keys_api
from nimbus.api import layers as layers_api
from nimbus.api import mappings as mappings_api
from nimbus.api import metrics as metrics_api
from nimbus.api import openapi as openapi_api
from nimbus.api import provisioned as provisioned_api
from nimbus.api import scheduler as scheduler_api
from nimbus.api import sqs as sqs_api
from nimbus.api import streaming as streaming_api
from nimbus.api import urls as urls_api
from nimbus.api.actor import ActorApp
from nimbus.api.httpapi_routes import HttpApiApp
from nimbus.api.invoke import InvokeApp
from nimbus.errors import LambdaError, UnknownOperation
from nimbus.platform import Platform
from nimbus.runtimes import available_runtimes


async def health(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    return JSONResponse(
        {
            "status": "ok",
            "isolation": platform.sandbox.backend_name,
            "environments": platform.sandbox.environment_count(),
        }
    )


async def runtimes(request: Request) -> Response:
    """`GET /nimbus/v1/runtimes`: the runtime ids this server can run (the CLI's default runtime)."""
    return JSONResponse({"runtimes": sorted(available_runtimes())})


async def json_protocol(request: Request) -> Response:
    """`POST /` with `X-Amz-Target`: AWS's JSON protocol, used by the CloudWatch Logs API."""
    target = request.headers.get("x-amz-target", "")
    if target.startswith("Logs_20140328."):
        return await logs.handle(request, target.removeprefix("Logs_20140328."))
    if target.startswith(eventbridge_api.PREFIX):  # EventBridge rules, buses, PutEvents (issue 15)
        return await eventbridge_api.handle(request, target.removeprefix(eventbridge_api.PREFIX))
    if sqs_api.claims(request):  # SQS: JSON `AmazonSQS.*`, or a query-protocol form (issue 15)
        return await sqs_api.handle(request)
    raise UnknownOperation(f"Unknown operation {target or '(no X-Amz-Target)'}")


def create_app(platform: Platform, forwarded_allow_ips: str | list[str] = "127.0.0.1,::1") -> ASGIApp:
    """Build the app; the platform is started and stopped with it. `forwarded_allow_ips`: the proxies whose
    X-Forwarded-* headers are believed (uvicorn's `--forwarded-allow-ips`)."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await platform.start()
        try:
            yield
        finally:
            await platform.stop()

    routes = [
        *functions.routes,
        *eventconfigs_api.routes,  # event-invoke configs, async queue figures
        *streaming_api.routes,  # InvokeWithResponseStream
        *layers_api.routes,
        Route("/", json_protocol, methods=["POST"]),
        Route("/nimbus/v1/health", health, methods=["GET"]),
        Route("/nimbus/v1/runtimes", runtimes, methods=["GET"]),
        *openapi_api.routes,  # the published OpenAPI description
        *keys_api.routes,  # access keys
        *urls_api.routes,  # function URL configs
        *metrics_api.routes,  # /metrics, /nimbus/v1/cost
        *dashboard.routes,  # /dashboard
        *provisioned_api.routes,  # provisioned concurrency configs
        *codesigning_api.routes,  # code signing configs, recursion configs
        *apigateway_api.routes,  # apigatewayv2 HTTP APIs
        *mappings_api.routes,  # event source mappings
        *scheduler_api.routes,  # EventBridge Scheduler
        *sqs_api.routes,  # SQS requests posted to a queue URL /<account>/<queue>; keep last
        *durable_api.routes,  # durable executions: SDK data plane and control plane
        *images_api.routes,  # image tarball uploads
    ]
    router = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LambdaError: errors.on_lambda_error,
            HTTPException: errors.on_http_error,
            Exception: errors.on_unexpected,
        },
    )
    # AWS has no trailing-slash redirects: a wrong path is an unknown operation, not a 307.
    router.router.redirect_slashes = False
    router.state.platform = platform
    settings = platform.settings
    verifier = auth.Verifier(platform.keys, settings)
    check_auth = settings.auth != "none"
    # The whole ASGI chain, outermost first; each wraps the ones below it. Everything, the Invoke fast path
    # included, is behind SigV4 verification; function URLs authenticate on their own (AWS_IAM or NONE).
    chain: list[Callable[[ASGIApp], ASGIApp]] = [
        lambda inner: auth.AuthApp(
            inner, platform.keys, settings, verifier,
            # HTTP API routes are served ahead of function URLs, which get every other claimed request
            urls=HttpApiApp(platform, platform.http_apis, verifier, check_auth, urls_api.FunctionUrlApp(
                platform, platform.function_urls, platform.keys, verifier, check_auth)),
            policy_check=platform.credentials.can_invoke,
        ),
        lambda inner: InvokeApp(inner, platform),  # the hot path: no routing, no Request object
        # Behind the Invoke fast path, which has no use for the client's address.
        lambda inner: cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, inner), trusted_hosts=forwarded_allow_ips)),
        ActorApp,  # names the caller of control-plane requests for the deployment history
    ]
    app: ASGIApp = router
    for layer in reversed(chain):
        app = layer(app)
    # Environments reach this same chain (with their session keys) at 127.0.0.1:9001 inside them.
    platform.platform_api.bind(app)
    return app
