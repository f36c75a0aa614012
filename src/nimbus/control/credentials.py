"""Credentials inside functions: each execution environment gets a session key (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) that acts only on its own function, plus Invoke on the functions
whose resource policies allow the caller's role. A key stops working when its environment ends (checked when
the key is used) and after `function_credentials_ttl` in any case. What a session key may do is enforced by
`api/auth.py`; this module issues the keys, tracks their environments and answers the policy question."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from nimbus.control.keys import AccessKey, KeyStore
from nimbus.control.models import FunctionRow
from nimbus.control.registry import Registry
from nimbus.control.specs import VersionSpec

INVOKE_ACTIONS = ("lambda:InvokeFunction", "lambda:*", "*")
STARTING_GRACE = 120.0  # seconds a new environment's key works before the environment is seen running
LIVE_CACHE = 1.0  # seconds the set of running environments is reused


class EnvironmentLiveness:
    """Whether a session key's environment still runs, from `live_ids()` (the sandbox's running
    environments, read at most every LIVE_CACHE seconds). Given to `KeyStore(session_alive=...)`."""

    def __init__(self, live_ids: Callable[[], Iterable[str]]) -> None:
        self._live_source = live_ids
        self._live_ids: frozenset[str] = frozenset()
        self._live_at = 0.0

    def __call__(self, key: AccessKey) -> bool:
        if key.environment_id is None:
            return True
        if time.time() - key.created_ms / 1000 < STARTING_GRACE:
            return True
        now = time.monotonic()
        if now - self._live_at > LIVE_CACHE:
            self._live_ids = frozenset(self._live_source())
            self._live_at = now
        return key.environment_id in self._live_ids


class FunctionCredentials:
    """Issues, tracks and revokes environment credentials; decides cross-function Invoke."""

    def __init__(self, keys: KeyStore, registry: Registry) -> None:
        self.keys = keys
        self.registry = registry
        self._roles: dict[str, str | None] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- issuing

    def issue(self, function_name: str, environment_id: str | None = None) -> AccessKey:
        """A session key for `function_name` (one environment of it, or a tool acting as it)."""
        return self.keys.issue_session(function_name, self._role(function_name), environment_id)

    def environ_hook(self, spec: VersionSpec, environment_id: str, endpoint: str | None) -> dict[str, str]:
        """The variables a new environment gets (SandboxManager.environ_hook)."""
        return env_vars(self.issue(spec.function_name, environment_id), endpoint)

    def _role(self, function_name: str) -> str | None:
        if function_name in self._roles:
            return self._roles[function_name]
        try:
            role = self.registry.get_function_configuration(function_name, None).get("Role")
        except Exception:  # deleted meanwhile: no role, the key can still act on nothing else
            role = None
        with self._lock:
            self._roles[function_name] = role
        return role

    def forget_role(self, function_name: str) -> None:
        """A registry subscriber (platform.py): the function's role may have changed; a deleted function's
        session keys are revoked."""
        with self._lock:
            self._roles.pop(function_name, None)
        if self._deleted(function_name):
            self.keys.revoke_function(function_name)

    def _deleted(self, function_name: str) -> bool:
        with Session(self.registry.engine) as s:
            return s.get(FunctionRow, function_name) is None

    # ---------------------------------------------------------------- policy

    async def can_invoke(self, caller: AccessKey, target: str) -> bool:
        """Whether `target`'s resource policy lets the caller's role (or anyone) invoke it."""
        return await asyncio.to_thread(self._can_invoke, caller, target)

    def _can_invoke(self, caller: AccessKey, target: str) -> bool:
        with Session(self.registry.engine) as s:
            fn = s.get(FunctionRow, target)
            policy = list(fn.policy or []) if fn is not None else []
        arn = self.registry.arn(target)
        caller_arn = self.registry.arn(caller.function_name) if caller.function_name else None
        return any(_allows(st, arn, caller.role, caller_arn) for st in policy)


def _allows(st: dict[str, Any], arn: str, role: str | None, caller_arn: str | None) -> bool:
    if st.get("Effect") != "Allow":
        return False
    resource = str(st.get("Resource", ""))
    if resource != arn and not resource.startswith(arn + ":"):
        return False
    actions = st.get("Action")
    if not any(a in INVOKE_ACTIONS for a in (actions if isinstance(actions, list) else [actions])):
        return False
    if "lambda:FunctionUrlAuthType" in ((st.get("Condition") or {}).get("StringEquals") or {}):
        return False  # a function URL permission, not an API one
    principal = st.get("Principal")
    if principal == "*":
        return True
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    return aws is not None and aws in (role, caller_arn, "*")


def env_vars(key: AccessKey, endpoint: str | None = None) -> dict[str, str]:
    """AWS's credential variables for a session key, and (when known) where the platform API is."""
    assert key.session_token is not None
    out = {
        "AWS_ACCESS_KEY_ID": key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": key.secret,
        "AWS_SESSION_TOKEN": key.session_token,
    }
    if endpoint:
        out["AWS_ENDPOINT_URL_LAMBDA"] = endpoint
    return out
