"""The dashboard: a web page served by the server (static HTML/JS/CSS under `api/dashboard/`, no build
step) and the JSON endpoints it polls under `/dashboard/api/`.

Authentication is "like the API": when the server requires SigV4 (`--auth sigv4`, the default) the page asks
for an access key id and secret, checks them with the key store (`KeyStore.verify_secret`), and answers
with an HMAC-signed session cookie that every data endpoint requires. With `--auth none` it is open.
The SigV4 layer exempts `/dashboard…` because a browser cannot sign requests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nimbus.control.deployments import history as deployment_history
from nimbus.errors import LambdaError, ResourceNotFound
from nimbus.observe.cost import cost_report
from nimbus.observe.metering import month_range
from nimbus.platform import Platform

log = logging.getLogger("nimbus.api.dashboard")

STATIC = Path(__file__).with_name("dashboard")
COOKIE = "nimbus_session"
RECENT_LOG_LIMIT = 200  # events on a first load
FOLLOW_LOG_LIMIT = 2000  # events per follow poll (the rest come in the next one)


# ------------------------------------------------------------------------------------------ sessions


def _secret(request: Request) -> bytes:
    state = request.app.state
    key: bytes | None = getattr(state, "dashboard_secret", None)
    if key is None:
        key = state.dashboard_secret = secrets.token_bytes(32)  # sessions end with the server process
    return key


def _auth_required(platform: Platform) -> bool:
    return platform.settings.auth != "none"


def make_session(key: bytes, user: str, lifetime: float, now: float | None = None) -> str:
    """`base64(user|expiry).hmac` — a session token for `user` valid for `lifetime` seconds."""
    expires = int((time.time() if now is None else now) + lifetime)
    payload = base64.urlsafe_b64encode(f"{user}|{expires}".encode()).decode().rstrip("=")
    tag = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{tag}"


def check_session(key: bytes, token: str | None, now: float | None = None) -> str | None:
    """The user of a valid, unexpired session token, else None."""
    if not token or "." not in token:
        return None
    payload, _, tag = token.rpartition(".")
    expected = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(tag, expected):
        return None
    try:
        user, _, expires = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().rpartition("|")
        if int(expires) < (time.time() if now is None else now):
            return None
    except (ValueError, UnicodeDecodeError):
        return None
    return user


def _user(request: Request) -> str | None:
    platform: Platform = request.app.state.platform
    if not _auth_required(platform):
        return "anonymous"
    user = check_session(_secret(request), request.cookies.get(COOKIE))
    if user is not None and platform.keys.lookup(user) is None:
        return None  # the key was deleted (`nimbus keys delete`): its sessions end with it, as its signatures do
    return user


def _unauthorized() -> Response:
    return JSONResponse({"message": "login required"}, status_code=401)


async def _verify(request: Request, key_id: str, secret: str) -> bool:
    verify = request.app.state.platform.keys.verify_secret
    return bool(await asyncio.to_thread(verify, key_id, secret))


# ------------------------------------------------------------------------------------------- pages


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def redirect(request: Request) -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


async def session(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    user = _user(request)
    return JSONResponse({"authenticated": user is not None, "user": user, "authRequired": _auth_required(platform)})


async def login(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    try:
        body = await request.json()
        key_id, secret = str(body["accessKeyId"]).strip(), str(body["secretAccessKey"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"message": "accessKeyId and secretAccessKey are required"}, status_code=400)
    if _auth_required(platform) and not await _verify(request, key_id, secret):
        await asyncio.sleep(0.2)  # slows down guessing
        return JSONResponse({"message": "The access key id or secret is not valid."}, status_code=401)
    lifetime = platform.settings.dashboard_session_hours * 3600
    response = JSONResponse({"authenticated": True, "user": key_id})
    response.set_cookie(COOKIE, make_session(_secret(request), key_id, lifetime), max_age=int(lifetime),
                        path="/dashboard", httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    response = JSONResponse({"authenticated": False})
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


# -------------------------------------------------------------------------------------------- data


async def overview(request: Request) -> Response:
    if _user(request) is None:
        return _unauthorized()
    platform: Platform = request.app.state.platform
    functions = await asyncio.to_thread(_all_functions, platform)
    metrics = platform.observer.metrics
    history = metrics.history()
    in_flight = platform.invoker.concurrency.snapshot().in_flight
    rows = []
    for conf in functions:
        name = conf["FunctionName"]
        rows.append(
            {
                "name": name,
                "runtime": conf.get("Runtime"),
                "memory": conf.get("MemorySize"),
                "architecture": (conf.get("Architectures") or ["x86_64"])[0],
                "lastModified": conf.get("LastModified"),
                "totals": metrics.totals(name),
                "concurrent": in_flight.get(name, 0),
                "series": history.get(name, []),
            }
        )
    start, end = month_range(None)
    cost = await cost_report(platform.observer.meter, None, None)  # flushes the meter first
    return JSONResponse(
        {
            "time": time.time(),
            "functions": rows,
            "server": {
                "isolation": platform.sandbox.backend_name,
                "environments": platform.sandbox.environment_count(),
                "concurrent": sum(in_flight.values()),
                "accountConcurrency": platform.settings.account_concurrency,
            },
            "cost": {"month": cost["month"], "total": cost["total"], "gross": cost["gross"],
                     "requests": cost["requests"], "gbSeconds": cost["gbSeconds"], "monthStart": start,
                     "monthEnd": end},
        }
    )


def _all_functions(platform: Platform) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    marker = None
    while True:
        page = platform.registry.list_functions(marker, 50, False)
        out.extend(page.get("Functions", []))
        marker = page.get("NextMarker")
        if not marker:
            return out


def _details(platform: Platform, name: str) -> dict[str, Any]:
    registry = platform.registry
    config = registry.get_function_configuration(name, None)
    versions = registry.list_versions(name, None, 50).get("Versions", [])
    aliases = registry.list_aliases(name, None, None, 50).get("Aliases", [])
    concurrency = registry.get_concurrency(name)
    deployments = deployment_history(registry.engine, name)
    return {"config": config, "versions": versions, "aliases": aliases, "concurrency": concurrency,
            "deployments": deployments}


async def function_detail(request: Request) -> Response:
    if _user(request) is None:
        return _unauthorized()
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    try:
        detail = await asyncio.to_thread(_details, platform, name)
    except LambdaError as exc:
        return JSONResponse({"message": exc.message}, status_code=exc.status)
    observer = platform.observer
    reserved = detail["concurrency"].get("ReservedConcurrentExecutions")
    counts = platform.invoker.concurrency.snapshot()
    in_flight = counts.in_flight
    detail["live"] = {
        "totals": observer.metrics.totals(name),
        "qualifiers": observer.metrics.qualifiers(name),
        "series": observer.metrics.history(name).get(name, []),
        "concurrent": in_flight.get(name, 0),
        "reserved": reserved,
        "accountConcurrency": platform.settings.account_concurrency,
        "accountConcurrent": sum(in_flight.values()),
        # What a function without reserved concurrency shares: the account limit minus every reservation.
        "unreservedPool": counts.account_limit - counts.reserved_total,
        "unreservedConcurrent": counts.unreserved_in_flight,
    }
    detail["cost"] = await cost_report(observer.meter, None, name, free_tier=False)
    start, end = month_range(None)
    detail["costHourly"] = await asyncio.to_thread(observer.meter.hourly, name, start, end)
    detail["asyncQueue"] = await async_queue_state(platform, name)
    detail["eventSources"] = await platform.sources.of_function(name)
    return JSONResponse(detail)


async def async_queue_state(platform: Platform, name: str) -> dict[str, Any] | None:
    try:
        stats = await platform.asyncs.queue.stats(name)
    except Exception:  # noqa: BLE001 (the page goes on without it)
        log.exception("reading the async queue for the dashboard failed")
        return None
    if not stats:
        return {"function_name": name, "depth": 0, "in_flight": 0, "delayed": 0, "oldest_enqueued_ms": None}
    return asdict(stats[0])


async def function_logs(request: Request) -> Response:
    """Recent log events of a function and its last invocations as the invoker recorded them. The first
    load (no `after`) gives the newest events and a `cursor`; follow polls pass `after=<cursor>` and get
    every event stored since, whatever its timestamp."""
    if _user(request) is None:
        return _unauthorized()
    platform: Platform = request.app.state.platform
    name = request.path_params["name"]
    try:
        snapshot = platform.registry.snapshot(name)
    except ResourceNotFound as exc:
        return JSONResponse({"message": exc.message}, status_code=404)
    group = snapshot.versions["$LATEST"].log_group
    after_param = request.query_params.get("after", "")
    after = int(after_param) if after_param.isdigit() else None
    logstore = platform.logstore
    invocations = platform.observer.recent(name)
    if after is not None:
        events, cursor = await logstore.run(logstore.follow, group, after, FOLLOW_LOG_LIMIT)
        return JSONResponse({"events": events, "cursor": cursor, "invocations": invocations})
    # The cursor is read before the events: a line stored in between comes again in the next poll (the page
    # drops repeats by id) rather than never.
    _, cursor = await logstore.run(logstore.follow, group, None, 0)
    try:
        page = await asyncio.to_thread(logstore.filter_log_events, group, None, None, None, None, None, None,
                                       RECENT_LOG_LIMIT, False)  # newest first
    except ResourceNotFound:
        return JSONResponse({"events": [], "cursor": cursor, "invocations": invocations})
    events = sorted(page.events, key=lambda e: (e["timestamp"], e["eventId"]))
    out = [{"timestamp": e["timestamp"], "stream": e["logStreamName"], "message": e["message"],
            "id": e["eventId"]} for e in events]
    return JSONResponse({"events": out, "cursor": cursor, "invocations": invocations})


def invocation_events(logstore: Any, group: str, request_id: str) -> list[dict[str, Any]]:
    """One invocation's log events: its stream from the first to the last line naming its request id
    (START…REPORT, or platform.start…platform.report). An environment runs one invocation at a time, so
    what its stream holds in between is that invocation's output."""
    named = logstore.filter_log_events(group, None, None, None, None, f'"{request_id}"', None, 100, True).events
    if not named:
        return []
    stream = named[0]["logStreamName"]
    ids = [e["eventId"] for e in named if e["logStreamName"] == stream]
    first, last = min(ids), max(ids)
    span = logstore.filter_log_events(group, [stream], None, int(first[:20]), int(last[:20]), None, None,
                                      RECENT_LOG_LIMIT * 5, True).events
    return [{"timestamp": e["timestamp"], "stream": stream, "message": e["message"], "id": e["eventId"]}
            for e in span if first <= e["eventId"] <= last]


async def function_invocation_logs(request: Request) -> Response:
    """The log lines of one recent invocation (the dashboard's click on a request id)."""
    if _user(request) is None:
        return _unauthorized()
    platform: Platform = request.app.state.platform
    name, request_id = request.path_params["name"], request.path_params["request_id"]
    if not all(c.isalnum() or c == "-" for c in request_id):
        return JSONResponse({"message": "not a request id"}, status_code=400)
    try:
        group = platform.registry.snapshot(name).versions["$LATEST"].log_group
    except ResourceNotFound as exc:
        return JSONResponse({"message": exc.message}, status_code=404)
    try:
        events = await platform.logstore.run(invocation_events, platform.logstore, group, request_id)
    except ResourceNotFound:
        events = []
    return JSONResponse({"requestId": request_id, "events": events})


routes = [
    Route("/dashboard", redirect, methods=["GET"]),
    Route("/dashboard/", index, methods=["GET"]),
    Route("/dashboard/api/session", session, methods=["GET"]),
    Route("/dashboard/api/login", login, methods=["POST"]),
    Route("/dashboard/api/logout", logout, methods=["POST"]),
    Route("/dashboard/api/overview", overview, methods=["GET"]),
    Route("/dashboard/api/functions/{name}", function_detail, methods=["GET"]),
    Route("/dashboard/api/functions/{name}/logs", function_logs, methods=["GET"]),
    Route("/dashboard/api/functions/{name}/invocations/{request_id}/logs", function_invocation_logs,
          methods=["GET"]),
    Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
]
