"""Names the caller of each control-plane request for the deployment history: an ASGI wrapper that sets
`nimbus.control.deployments.current_actor` from the access key the SigV4 layer authenticated (or "anonymous"
when the API runs without authentication)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from nimbus.control.deployments import current_actor


class ActorApp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = (scope.get("state") or {}).get("principal")
        if principal is None:
            await self.app(scope, receive, send)
            return
        actor = getattr(principal, "access_key_id", None) or str(principal)
        if getattr(principal, "description", ""):
            actor = f"{actor} · {principal.description}"  # e.g. "NKIA… · admin (data dir)"
        token = current_actor.set(actor)
        try:
            await self.app(scope, receive, send)
        finally:
            current_actor.reset(token)
