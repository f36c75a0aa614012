"""Function URL configs: Create/Get/Update/Delete/ListFunctionUrlConfigs on `$LATEST` (no qualifier) or an
alias, persisted in `function_urls`, and the lookup the URL server does per request (url id -> target, with
whether the function's resource policy makes a NONE URL public), cached until the function changes."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.config import Settings
from nimbus.control import validation as v
from nimbus.control.core import page_of
from nimbus.control.documents import lambda_timestamp
from nimbus.control.models import FunctionRow, FunctionUrlRow
from nimbus.control.registry import Registry
from nimbus.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound

QUALIFIER_PATTERN = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)"
AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
CORS_LISTS = {"AllowHeaders": (100, 1024, 0), "AllowMethods": (6, 6, 0), "AllowOrigins": (100, 253, 1),
              "ExposeHeaders": (100, 1024, 0)}  # field: (max items, max item length, min item length)
URL_ACTIONS = ("lambda:InvokeFunctionUrl", "lambda:*", "*")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_MISSING_MAX = 10_000
_MISSING_TTL = 5.0  # seconds (front ends sharing a database see each other's new URLs after this)


def new_url_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(32))


@dataclass(frozen=True, slots=True)
class UrlTarget:
    """What a request to a function URL reaches."""

    url_id: str
    function_name: str
    qualifier: str | None  # None: $LATEST
    function_arn: str
    auth_type: str
    cors: dict[str, Any] | None
    invoke_mode: str
    public: bool  # a resource-policy statement lets anyone call this NONE URL


def url_template(settings: Settings) -> str:
    """The template of function URLs (`{url_id}` filled in per URL)."""
    if settings.function_url_template:
        return settings.function_url_template
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/lambda-url/{url_id}/"
    return "http://{url_id}.lambda-url.{region}.localhost:{port}/"


def host_suffix(settings: Settings) -> str | None:
    """The host name that follows `<url-id>` in the configured URL form, if URLs are told apart by host."""
    template = url_template(settings).format(url_id="\x00", region=settings.region, port=settings.port)
    host = urlsplit(template).hostname or ""
    return host[1:].lower() if host.startswith("\x00") else None


def allows_public_url(policy: list[dict[str, Any]], resource: str) -> bool:
    """Whether a statement lets principal `*` call the URL of `resource` with FunctionUrlAuthType NONE."""
    for st in policy:
        if st.get("Effect") != "Allow" or st.get("Resource") != resource:
            continue
        if st.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        actions = st.get("Action")
        if not any(a in URL_ACTIONS for a in (actions if isinstance(actions, list) else [actions])):
            continue
        equals = (st.get("Condition") or {}).get("StringEquals") or {}
        if equals.get("lambda:FunctionUrlAuthType") == "NONE":
            return True
    return False


class FunctionUrls:
    """The URL configs of all functions. Thread-safe; API handlers call it from worker threads."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.engine = registry.engine
        self._cache: dict[str, UrlTarget] = {}
        self._missing: dict[str, float] = {}  # url id -> when it was found not to exist (kept _MISSING_TTL s)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- API

    def url_of(self, url_id: str) -> str:
        return url_template(self.settings).format(url_id=url_id, region=self.settings.region, port=self.settings.port)

    def _locate(self, function_name: str, qualifier: str | None) -> tuple[str, str]:
        name, qualifier = self.registry._name_and_qualifier(function_name, qualifier)
        if qualifier is not None:
            v.check_pattern(qualifier, QUALIFIER_PATTERN, "qualifier", max_len=128, min_len=1)
        return name, qualifier or ""

    def _doc(self, row: FunctionUrlRow, with_modified: bool = True, with_mode: bool = True) -> dict[str, Any]:
        """A FunctionUrlConfig. Create and Update leave InvokeMode out unless the request set it (LocalStack
        snapshot test_url_config_lifecycle, recorded against AWS); Get and List always show it."""
        doc: dict[str, Any] = {
            "FunctionUrl": self.url_of(row.url_id),
            "FunctionArn": self.registry.arn(row.function_name, row.qualifier or None),
            "AuthType": row.auth_type,
        }
        if row.cors:
            doc["Cors"] = dict(row.cors)
        doc["CreationTime"] = row.creation_time
        if with_modified:
            doc["LastModifiedTime"] = row.last_modified_time
        if with_mode:
            doc["InvokeMode"] = row.invoke_mode
        return doc

    def create(self, function_name: str, qualifier: str | None, request: dict[str, Any]) -> dict[str, Any]:
        name, qual = self._locate(function_name, qualifier)
        auth_type = _auth_type(request.get("AuthType"))
        cors = _cors(request.get("Cors"))
        mode = _invoke_mode(request.get("InvokeMode"))
        with self.registry._write(name) as s:
            self.registry._resolve(s, name, qual or None)  # the function (and alias) must exist
            if s.get(FunctionUrlRow, (name, qual)) is not None:
                arn = self.registry.arn(name, qual or None)
                raise ResourceConflict(
                    f"Failed to create function url config for [functionArn = {arn}]. "
                    "Error message:  FunctionUrlConfig exists for this Lambda function"
                )
            now = lambda_timestamp()
            row = FunctionUrlRow(function_name=name, qualifier=qual, url_id=new_url_id(), auth_type=auth_type,
                                 cors=cors, invoke_mode=mode or "BUFFERED", creation_time=now, last_modified_time=now)
            s.add(row)
            return self._doc(row, with_modified=False, with_mode=mode is not None)

    def get(self, function_name: str, qualifier: str | None) -> dict[str, Any]:
        name, qual = self._locate(function_name, qualifier)
        with Session(self.engine) as s:
            return self._doc(self._row(s, name, qual))

    def update(self, function_name: str, qualifier: str | None, request: dict[str, Any]) -> dict[str, Any]:
        name, qual = self._locate(function_name, qualifier)
        auth_type = _auth_type(request["AuthType"]) if request.get("AuthType") is not None else None
        cors = _cors(request.get("Cors")) if "Cors" in request else None
        mode = _invoke_mode(request.get("InvokeMode"))
        with self.registry._write(name) as s:
            row = self._row(s, name, qual)
            if auth_type is not None:
                row.auth_type = auth_type
            if "Cors" in request:
                row.cors = cors
            if mode is not None:
                row.invoke_mode = mode
            row.last_modified_time = lambda_timestamp()
            return self._doc(row, with_mode=mode is not None)

    def delete(self, function_name: str, qualifier: str | None) -> None:
        name, qual = self._locate(function_name, qualifier)
        with self.registry._write(name) as s:
            s.delete(self._row(s, name, qual))

    def list(self, function_name: str, marker: str | None, max_items: int | None) -> dict[str, Any]:
        name = self.registry._unqualified(function_name)
        if max_items is not None:
            v.check_range(max_items, "maxItems", 1, 50)
        with Session(self.engine) as s:
            self.registry._function(s, name)
            rows = list(s.scalars(select(FunctionUrlRow).where(FunctionUrlRow.function_name == name)))
        rows.sort(key=lambda r: r.qualifier)
        page, nxt = page_of(rows, marker, max_items or 50, lambda r: r.qualifier or " ")
        out: dict[str, Any] = {"FunctionUrlConfigs": [self._doc(r) for r in page]}
        if nxt:
            out["NextMarker"] = nxt
        return out

    def _row(self, s: Session, name: str, qual: str) -> FunctionUrlRow:
        self.registry._function(s, name, qual or None)
        row = s.get(FunctionUrlRow, (name, qual))
        if row is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return row

    # ---------------------------------------------------------------- serving

    def target(self, url_id: str) -> UrlTarget | None:
        """The URL with this id (cached; a database read on a miss)."""
        found = self._cache.get(url_id)
        if found is not None:
            return found
        if len(url_id) != 32 or not url_id.isalnum():
            return None
        seen = self._missing.get(url_id)
        if seen is not None and time.monotonic() - seen < _MISSING_TTL:
            return None
        with Session(self.engine) as s:
            row = s.scalars(select(FunctionUrlRow).where(FunctionUrlRow.url_id == url_id)).first()
            if row is None:
                with self._lock:
                    if len(self._missing) >= _MISSING_MAX:
                        self._missing.clear()
                    self._missing[url_id] = time.monotonic()
                return None
            fn = s.get(FunctionRow, row.function_name)
            arn = self.registry.arn(row.function_name, row.qualifier or None)
            target = UrlTarget(url_id, row.function_name, row.qualifier or None, arn, row.auth_type,
                               dict(row.cors) if row.cors else None, row.invoke_mode,
                               fn is not None and allows_public_url(list(fn.policy or []), arn))
        with self._lock:
            self._cache[url_id] = target
        return target

    def forget_function(self, name: str) -> None:
        """A registry subscriber (platform.py): after every committed change to a function its URLs, policy
        or existence may have changed."""
        with self._lock:
            self._cache = {k: t for k, t in self._cache.items() if t.function_name != name}
            self._missing.clear()


def _auth_type(value: Any) -> str:
    if value not in AUTH_TYPES:
        raise v.constraint(value, "authType", "Member must satisfy enum value set: [NONE, AWS_IAM]")
    return str(value)


def _invoke_mode(value: Any) -> str | None:
    if value is None:
        return None
    if value not in INVOKE_MODES:
        raise v.constraint(value, "invokeMode", "Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]")
    return str(value)


def _cors(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidParameterValue("Cors must be an object")
    out: dict[str, Any] = {}
    for field, (max_items, max_len, min_len) in CORS_LISTS.items():
        items = value.get(field)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InvalidParameterValue(f"Cors.{field} must be a list of strings")
        if len(items) > max_items:
            raise v.constraint(items, f"cors.{field[0].lower()}{field[1:]}",
                               f"Member must have length less than or equal to {max_items}")
        for item in items:
            v.check_pattern(item, r".*", f"cors.{field[0].lower()}{field[1:]}.member", max_len=max_len,
                            min_len=min_len)
        out[field] = list(items)
    if value.get("AllowCredentials") is not None:
        if not isinstance(value["AllowCredentials"], bool):
            raise InvalidParameterValue("Cors.AllowCredentials must be a boolean")
        out["AllowCredentials"] = value["AllowCredentials"]
    if value.get("MaxAge") is not None:
        age = value["MaxAge"]
        if not isinstance(age, int) or isinstance(age, bool):
            raise InvalidParameterValue("Cors.MaxAge must be an integer")
        v.check_range(age, "cors.maxAge", 0, 86400)
        out["MaxAge"] = age
    return out
