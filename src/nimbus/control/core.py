"""The registry's core: names, the database session helpers every operation uses, and the in-memory
snapshot cache the invoke path reads. Writes are serialized by one lock; each commit rebuilds the changed
function's snapshot and tells subscribers. Operations live in the mixins built on this class."""

from __future__ import annotations

import base64
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from nimbus.config import Settings
from nimbus.control import lifecycle
from nimbus.control.arn import NAME_RE, FunctionLocator, function_arn, is_version, parse_locator
from nimbus.control.codestore import CodeStore
from nimbus.control.configs import ENVIRONMENT_GIVEN
from nimbus.control.documents import VersionState, logging_config, render_config
from nimbus.control.images import ImageStore
from nimbus.control.layertree import opt_dir as layer_opt_dir
from nimbus.control.models import AliasRow, FunctionRow, VersionRow
from nimbus.control.specs import AliasSpec, FunctionSnapshot, VersionSpec
from nimbus.errors import InvalidParameterValue, PreconditionFailed, ResourceConflict, ResourceNotFound

log = logging.getLogger("nimbus.registry")

LATEST = "$LATEST"
REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)
ONLY_LATEST = (
    "Current operation does not support versions other than $LATEST. "
    "Please set version to $LATEST or do not set a version in your request."
)
TOTAL_CODE_SIZE_LIMIT = 75 * 1024**3  # AWS's 75 GB code storage per account and region
_NEGATIVE_CACHE_MAX = 10_000
_PLAIN_QUALIFIER = re.compile(r"^(\$LATEST|[a-zA-Z0-9-_]{1,128})$")


def new_revision() -> str:
    return str(uuid.uuid4())


def page_of(items: list[Any], marker: str | None, max_items: int | None, key: Callable[[Any], str]) -> tuple[
    list[Any], str | None
]:
    """One page of `items` (already ordered) after `marker`, and the marker of the next page."""
    start = 0
    if marker:
        try:
            after = base64.b64decode(marker.encode(), altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidParameterValue(f"Invalid marker: {marker}") from None
        keys = [key(i) for i in items]
        start = next((n for n, k in enumerate(keys) if k > after), len(items))
    size = max_items or 50
    page = items[start : start + size]
    more = start + size < len(items)
    next_marker = base64.urlsafe_b64encode(key(page[-1]).encode()).decode() if more and page else None
    return page, next_marker


def version_sort_key(version: str) -> str:
    # "$LATEST" first, then numbers in numeric order, as a string so markers compare the same way
    return "0" if version == LATEST else f"1{int(version):012d}"



class RegistryCore:
    """State and helpers shared by every control-plane operation. Thread-safe."""

    def __init__(self, settings: Settings, engine: Engine, codestore: CodeStore,
                 version_state: VersionState | None = None, images: ImageStore | None = None) -> None:
        self.settings = settings
        self.images = images  # container images of PackageType Image functions (control/imageops.py)
        self._version_state = version_state  # SnapStart versions: Pending/Failed until their snapshot is ready
        self.engine = engine
        self.codestore = codestore
        self._write_lock = threading.RLock()
        self._cache: dict[str, FunctionSnapshot] = {}
        self._missing: set[str] = set()
        # Bumped by every write to a function, so a reader that loaded before the write cannot put its
        # stale result in the cache after the writer refreshed it.
        self._generation: dict[str, int] = {}
        self._cache_lock = threading.Lock()
        self._subscribers: list[Callable[[str], None]] = []
        # Pending -> Active and InProgress -> Successful happen in the background (control/lifecycle.py);
        # whatever a previous run left unsettled is settled now.
        self._settler = lifecycle.Settler(self._settle, settings.lifecycle_delay)
        for name in self._unsettled():
            self._settler.schedule(name)

    # ---------------------------------------------------------------- names, cache, subscriptions

    def arn(self, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.settings.region, self.settings.account_id, name, qualifier)

    def locate(self, name_or_arn: str) -> FunctionLocator:
        """Parse a FunctionName parameter (name, partial or full ARN, maybe qualified)."""
        return parse_locator(name_or_arn, self.settings.region, self.settings.account_id)

    def split_qualifier(self, name_or_arn: str, qualifier: str | None = None,
                        default_qualifier: str | None = None) -> tuple[str, str | None]:
        """(function name, qualifier or None) of a FunctionName parameter; `qualifier`, the operation's
        Qualifier parameter if it has one, is validated with it (both problems reported at once, as AWS)."""
        if NAME_RE.match(name_or_arn) and (qualifier is None or _PLAIN_QUALIFIER.match(qualifier)):
            return name_or_arn, None
        loc = parse_locator(name_or_arn, self.settings.region, self.settings.account_id, qualifier=qualifier,
                            default_qualifier=default_qualifier)
        return loc.name, loc.qualifier

    def snapshot(self, name_or_arn: str) -> FunctionSnapshot:
        """The cached snapshot of a function (any qualifier in the ARN is ignored)."""
        name = name_or_arn if NAME_RE.match(name_or_arn) else self.split_qualifier(name_or_arn)[0]
        snap = self._cache.get(name)
        if snap is not None:
            return snap
        if name not in self._missing:
            generation = self._generation.get(name, 0)
            loaded = self._load(name)
            with self._cache_lock:
                if self._generation.get(name, 0) == generation:
                    if loaded is not None:
                        self._cache[name] = loaded
                    else:
                        if len(self._missing) >= _NEGATIVE_CACHE_MAX:
                            self._missing.clear()
                        self._missing.add(name)
            if loaded is not None:
                return loaded
        raise ResourceNotFound(f"Function not found: {self.arn(name)}")

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call `callback(function_name)` after every committed change to that function."""
        self._subscribers.append(callback)

    def reserved_total(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.coalesce(func.sum(FunctionRow.reserved_concurrency), 0))) or 0)

    def close(self) -> None:
        self._settler.close()
        self.engine.dispose()

    def _unsettled(self) -> list[str]:
        with Session(self.engine) as s:
            rows = s.execute(
                select(VersionRow.function_name).where(VersionRow.config[lifecycle.KEY].as_string().is_not(None))
            ).all()
        return sorted({r[0] for r in rows})

    def _settle(self, name: str) -> None:
        """The background step of a create or update: the code is ready (unpacked once, by the code store),
        so every unsettled version of the function becomes Active/Successful with a new RevisionId."""
        with Session(self.engine) as s:
            rows = s.scalars(select(VersionRow).where(VersionRow.function_name == name)).all()
            for row in rows:
                # (an image function's code is its image, pulled and unpacked by the image store)
                if row.config.get(lifecycle.KEY) and row.config.get("PackageType", "Zip") == "Zip":
                    self.codestore.unpacked(row.code_sha256)
        with self._write(name) as s:
            for row in s.scalars(select(VersionRow).where(VersionRow.function_name == name)).all():
                if row.config.get(lifecycle.KEY):
                    row.config = {k: x for k, x in row.config.items() if k != lifecycle.KEY}
                    row.revision_id = new_revision()

    def settle(self, name: str) -> None:
        """Finish a create or update of `name` now instead of in the background (in-process callers and
        tests that change a function twice in a row)."""
        self._settle(name)

    def _begin(self, row: VersionRow, state: str) -> None:
        """Mark a version as being created or updated; the settler finishes it after the commit."""
        row.config = {**row.config, lifecycle.KEY: state}

    def _refuse_if_busy(self, row: VersionRow) -> None:
        message = lifecycle.conflict(row.config, self.arn(row.function_name))
        if message is not None:
            raise ResourceConflict(message)

    def _load(self, name: str) -> FunctionSnapshot | None:
        with Session(self.engine) as s:
            fn = s.get(FunctionRow, name)
            if fn is None:
                return None
            versions = s.scalars(select(VersionRow).where(VersionRow.function_name == name)).all()
            aliases = s.scalars(select(AliasRow).where(AliasRow.function_name == name)).all()
            unqualified = self.arn(name)
            specs = {row.version: self._spec(name, unqualified, row, fn.tags) for row in versions}
            alias_specs = {
                a.name: AliasSpec(
                    a.name,
                    a.function_version,
                    {k: float(w) for k, w in ((a.routing_config or {}).get("AdditionalVersionWeights") or {}).items()},
                )
                for a in aliases
            }
            return FunctionSnapshot(name, unqualified, fn.reserved_concurrency, specs, alias_specs)

    def _spec(self, name: str, unqualified: str, row: VersionRow, tags: dict[str, str] | None = None) -> VersionSpec:
        c = row.config
        return VersionSpec(
            function_name=name,
            version=row.version,
            function_arn=unqualified,
            runtime=c["Runtime"],
            handler=c["Handler"],
            memory_size=c["MemorySize"],
            timeout=c["Timeout"],
            environment=dict(c.get("Environment") or {}),
            ephemeral_storage=c.get("EphemeralStorage", 512),
            architectures=tuple(c.get("Architectures") or ["x86_64"]),
            layers=tuple(c.get("Layers") or []),
            logging_config=self._logging(name, c),
            code_sha256=row.code_sha256,
            code_dir=self.codestore.unpacked(row.code_sha256),
            revision_id=row.revision_id,
            tracing_mode=c.get("TracingMode", "PassThrough"),
            opt_dir=layer_opt_dir(self.codestore, c),
            snap_start=row.version != "$LATEST" and c.get("SnapStartApplyOn") == "PublishedVersions",
            tags=dict(tags or {}),
            pending=c.get(lifecycle.KEY) == lifecycle.CREATING,
            durable_config=c.get("DurableConfig"),
        )

    @staticmethod
    def _logging(name: str, c: dict[str, Any]) -> dict[str, Any]:
        return logging_config(name, c.get("LoggingConfig"))

    @contextmanager
    def _write(self, name: str) -> Iterator[Session]:
        """A write transaction on one function: commit, then refresh its snapshot and notify."""
        with self._write_lock:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
            self._refresh(name)

    def _refresh(self, name: str) -> None:
        with self._cache_lock:
            self._generation[name] = self._generation.get(name, 0) + 1
        loaded = self._load(name)
        with self._cache_lock:
            self._generation[name] += 1
            if loaded is None:
                self._cache.pop(name, None)
                self._missing.add(name)
            else:
                self._cache[name] = loaded
                self._missing.discard(name)
        for callback in list(self._subscribers):
            try:
                callback(name)
            except Exception:  # a subscriber's bug must not fail the API call that already committed
                log.exception("registry subscriber failed for %s", name)

    # ---------------------------------------------------------------- lookups inside a session

    def _function(self, s: Session, name: str, qualifier: str | None = None) -> FunctionRow:
        fn = s.get(FunctionRow, name)
        if fn is None:
            raise ResourceNotFound(f"Function not found: {self.arn(name, qualifier)}")
        return fn

    def _version(self, s: Session, name: str, version: str) -> VersionRow:
        row = s.get(VersionRow, (name, version))
        if row is None:
            raise ResourceNotFound(f"Function not found: {self.arn(name, version)}")
        return row

    def _alias(self, s: Session, name: str, alias: str) -> AliasRow:
        row = s.get(AliasRow, (name, alias))
        if row is None:
            raise ResourceNotFound(f"Cannot find alias arn: {self.arn(name, alias)}")
        return row

    def _resolve(self, s: Session, name: str, qualifier: str | None) -> tuple[VersionRow, str | None]:
        """The version row a qualifier names, and the qualifier to put in FunctionArn."""
        self._function(s, name, qualifier)
        if qualifier is None:
            return self._version(s, name, LATEST), None
        if qualifier == LATEST or is_version(qualifier):
            return self._version(s, name, qualifier), qualifier
        alias = self._alias(s, name, qualifier)
        return self._version(s, name, alias.function_version), qualifier

    def _name_and_qualifier(self, function_name: str, qualifier: str | None) -> tuple[str, str | None]:
        loc = parse_locator(function_name, self.settings.region, self.settings.account_id, qualifier=qualifier)
        if qualifier is not None and loc.qualifier is not None and qualifier != loc.qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        return loc.name, qualifier if qualifier is not None else loc.qualifier

    def _unqualified(self, function_name: str) -> str:
        loc = self.locate(function_name)
        if loc.qualifier not in (None, LATEST):
            raise InvalidParameterValue(ONLY_LATEST)
        return loc.name

    def _config(self, row: VersionRow, arn_qualifier: str | None) -> dict[str, Any]:
        return render_config(
            self.settings.region, self.settings.account_id, row.function_name, row.version,
            {k: x for k, x in row.config.items() if not k.startswith("_")}, row.revision_id, row.last_modified,
            arn_qualifier, self._version_state, row.config.get(lifecycle.KEY),
            bool(row.config.get(ENVIRONMENT_GIVEN)),
        )

    def _code(self, hex_digest: str, base_url: str | None = None) -> dict[str, str]:
        base = (base_url or self.settings.base_url()).rstrip("/")
        return {"RepositoryType": "S3", "Location": f"{base}/nimbus/v1/code/{hex_digest}"}


    @staticmethod
    def _check_revision(current: str, expected: str | None, message: str = REVISION_MISMATCH) -> None:
        if expected is not None and expected != current:
            raise PreconditionFailed(message)
