"""The registry: every control-plane operation on functions, versions, aliases, tags, concurrency and
resource policies, persisted through SQLAlchemy (committed before the caller answers), plus the snapshot
cache the invoke path reads (see `core`). This module holds the function and version operations; the
others are mixins: `aliases`, `account` (tags, concurrency, account settings), `permissions`."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.control import deployments, lifecycle
from nimbus.control import validation as v
from nimbus.control.account import AccountOps
from nimbus.control.aliases import AliasOps
from nimbus.control.arn import create_name, is_version
from nimbus.control.codesigning import CodeSigningOps
from nimbus.control.codestore import CodeBlob
from nimbus.control.configs import apply_request
from nimbus.control.core import LATEST, ONLY_LATEST, new_revision, page_of, version_sort_key
from nimbus.control.documents import lambda_timestamp
from nimbus.control.imageops import ImageOps
from nimbus.control.layers import LayerOps
from nimbus.control.models import AliasRow, FunctionRow, FunctionSettingsRow, VersionRow
from nimbus.control.permissions import PolicyOps
from nimbus.control.recursion import RecursionOps
from nimbus.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound

__all__ = ["LATEST", "ONLY_LATEST", "Registry", "new_revision"]

# ListFunctions and ListVersionsByFunction return at most 50 items a page, "even if you set the number
# higher" (AWS API reference); clients follow NextMarker for the rest.
PAGE_MAX = 50


class Registry(ImageOps, AliasOps, AccountOps, PolicyOps, LayerOps, CodeSigningOps, RecursionOps):
    """All control-plane state and operations. Thread-safe; API handlers call it from worker threads."""

    def create_function(self, request: dict[str, Any], zip_bytes: bytes | None) -> dict[str, Any]:
        """CreateFunction: validate everything, store the code, commit `$LATEST` (and version 1 if Publish)."""
        name = create_name(request["FunctionName"], self.settings.region, self.settings.account_id)
        config = apply_request(request, self.settings, None, self.resolve_layers)
        tags = dict(request.get("Tags") or {})
        v.check_tags(tags)
        if config.get("PackageType") == "Image":
            return self.create_image_function(name, request, config, tags)
        if zip_bytes is None:
            raise InvalidParameterValue("Please provide a source for function code: Code.ZipFile "
                                        "(S3 and image sources are not supported by this server).")
        csc_arn = request.get("CodeSigningConfigArn")
        with Session(self.engine) as s:
            if s.get(FunctionRow, name) is not None:
                raise ResourceConflict(f"Function already exist: {name}")
            csc_id = self.existing_csc_id(s, csc_arn) if csc_arn is not None else None
        blob = self.codestore.put(zip_bytes)
        self.check_code_and_layers_size(config, blob.sha256_hex)
        now_ms = int(time.time() * 1000)
        with self._write(name) as s:
            if s.get(FunctionRow, name) is not None:
                raise ResourceConflict(f"Function already exist: {name}")
            fn = FunctionRow(name=name, created_ms=now_ms, last_version=0, reserved_concurrency=None,
                             tags=tags, policy=[], policy_revision=new_revision())
            s.add(fn)
            if csc_id is not None:
                s.add(FunctionSettingsRow(function_name=name, code_signing_config_id=csc_id))
            latest = VersionRow(function_name=name, version=LATEST, config=self._with_code(config, blob),
                                code_sha256=blob.sha256_hex, revision_id=new_revision(),
                                last_modified=lambda_timestamp(now_ms / 1000))
            self._begin(latest, lifecycle.CREATING)  # Pending until the settler makes it Active
            s.add(latest)
            s.flush()
            deployments.record(s, name, "CreateFunction", LATEST, blob.sha256_hex)
            result = latest
            if request.get("Publish"):
                result = self._publish(s, fn, latest, None)
            # As AWS answers it (LocalStack snapshot test_publish_version_on_create): with Publish the
            # document is version 1's, its FunctionArn unqualified.
            doc = self._config(result, None)
        self._settler.schedule(name)
        return doc

    @staticmethod
    def _with_code(config: dict[str, Any], blob: CodeBlob) -> dict[str, Any]:
        return {**config, "CodeSha256": blob.sha256_b64, "CodeSize": blob.size}

    def get_function(self, function_name: str, qualifier: str | None, base_url: str | None = None) -> dict[str, Any]:
        """GetFunction. `base_url` is where the client reached this server (Code.Location points there);
        None means the configured URL."""
        name, qualifier = self._name_and_qualifier(function_name, qualifier)
        with Session(self.engine) as s:
            row, arn_q = self._resolve(s, name, qualifier)
            fn = self._function(s, name)
            out: dict[str, Any] = {
                "Configuration": self._config(row, arn_q),
                "Code": self._code_for(row, base_url),
            }
            if fn.tags:
                out["Tags"] = dict(fn.tags)
            if fn.reserved_concurrency is not None:
                out["Concurrency"] = {"ReservedConcurrentExecutions": fn.reserved_concurrency}
            return out

    def get_function_configuration(self, function_name: str, qualifier: str | None) -> dict[str, Any]:
        name, qualifier = self._name_and_qualifier(function_name, qualifier)
        with Session(self.engine) as s:
            row, arn_q = self._resolve(s, name, qualifier)
            return self._config(row, arn_q)

    def list_functions(self, marker: str | None, max_items: int | None, all_versions: bool) -> dict[str, Any]:
        with Session(self.engine) as s:
            query = select(VersionRow)
            if not all_versions:
                query = query.where(VersionRow.version == LATEST)
            rows = list(s.scalars(query).all())
        # Pages are cut by comparing markers as strings, so rows are ordered by that same string: the
        # separator sorts before every name character ("hello" < "hello-cli" both ways).
        def key(r: VersionRow) -> str:
            return f"{r.function_name} {version_sort_key(r.version)}"

        rows.sort(key=key)
        page, nxt = page_of(rows, marker, min(max_items or PAGE_MAX, PAGE_MAX), key)
        out: dict[str, Any] = {
            "Functions": [self._config(r, r.version if all_versions else None) for r in page]
        }
        if nxt:
            out["NextMarker"] = nxt
        return out

    def update_function_code(self, function_name: str, request: dict[str, Any],
                             zip_bytes: bytes | None) -> dict[str, Any]:
        name = self._unqualified(function_name)
        if request.get("ImageUri") or self.is_image_function(name):
            if zip_bytes is not None and self.is_image_function(name):
                raise InvalidParameterValue("Please provide ImageUri when updating a function with packageType Image.")
            return self.update_image_code(name, request)
        if zip_bytes is None:
            raise InvalidParameterValue("Please provide a source for function code: ZipFile "
                                        "(S3 and image sources are not supported by this server).")
        if "Architectures" in request:
            v.check_architectures(list(request["Architectures"] or []))
        if request.get("DryRun"):
            blob = self.codestore.inspect(zip_bytes)
            with Session(self.engine) as s:
                self._function(s, name)
                row = self._version(s, name, LATEST)
                self._check_revision(row.revision_id, request.get("RevisionId"))
                preview = VersionRow(function_name=name, version=LATEST, config=self._with_code(row.config, blob),
                                     code_sha256=blob.sha256_hex, revision_id=row.revision_id,
                                     last_modified=row.last_modified)
                return self._config(preview, None)
        with Session(self.engine) as s:
            self._function(s, name)
        blob = self.codestore.put(zip_bytes)
        with self._write(name) as s:
            fn = self._function(s, name)
            latest = self._version(s, name, LATEST)
            self._refuse_if_busy(latest)
            self._check_revision(latest.revision_id, request.get("RevisionId"))
            config = self._with_code(latest.config, blob)
            self.check_code_and_layers_size(config, blob.sha256_hex)
            if "Architectures" in request:
                config["Architectures"] = list(request["Architectures"])
            self._touch(latest, config, blob.sha256_hex)
            self._begin(latest, lifecycle.UPDATING)
            deployments.record(s, name, "UpdateFunctionCode", LATEST, blob.sha256_hex)
            result = self._publish(s, fn, latest, None) if request.get("Publish") else latest
            doc = self._config(result, None)
        self._settler.schedule(name)
        return doc

    def update_function_configuration(self, function_name: str, request: dict[str, Any]) -> dict[str, Any]:
        name = self._unqualified(function_name)
        with self._write(name) as s:
            self._function(s, name)
            latest = self._version(s, name, LATEST)
            self._refuse_if_busy(latest)
            self._check_revision(latest.revision_id, request.get("RevisionId"))
            base = {k: x for k, x in latest.config.items() if k not in ("CodeSha256", "CodeSize")}
            config = apply_request(request, self.settings, base, self.resolve_layers)
            self.check_code_and_layers_size(config, latest.code_sha256)
            config.update({k: latest.config[k] for k in ("CodeSha256", "CodeSize") if k in latest.config})
            self._touch(latest, config, latest.code_sha256)
            self._begin(latest, lifecycle.UPDATING)
            doc = self._config(latest, None)
        self._settler.schedule(name)
        return doc

    @staticmethod
    def _touch(row: VersionRow, config: dict[str, Any], code_hex: str) -> None:
        row.config = config
        row.code_sha256 = code_hex
        row.revision_id = new_revision()
        row.last_modified = lambda_timestamp()

    def delete_function(self, function_name: str, qualifier: str | None) -> None:
        name, qualifier = self._name_and_qualifier(function_name, qualifier)
        if qualifier == LATEST:
            raise InvalidParameterValue("$LATEST version cannot be deleted without deleting the function.")
        if qualifier is not None and re.fullmatch(v.ALIAS_PATTERN, qualifier):
            # AWS's text, before it looks the function up (LocalStack snapshot
            # test_function_name_and_qualifier_validation, qualifier_too_long1-delete_function)
            raise InvalidParameterValue("Deletion of aliases is not currently supported.")
        with self._write(name) as s:
            fn = self._function(s, name)  # AWS names the unqualified function when it does not exist
            if qualifier is None:
                s.delete(fn)
                return
            if not is_version(qualifier):  # e.g. "$latest": names no version
                raise ResourceNotFound(f"Function not found: {self.arn(name)}")
            row = self._version(s, name, qualifier)
            users = [a.name for a in s.scalars(select(AliasRow).where(AliasRow.function_name == name))
                     if a.function_version == qualifier
                     or qualifier in ((a.routing_config or {}).get("AdditionalVersionWeights") or {})]
            if users:
                raise ResourceConflict(
                    f"Unable to delete version because the following aliases reference it: [{', '.join(users)}]"
                )
            s.delete(row)

    # ---------------------------------------------------------------- versions

    def publish_version(self, function_name: str, request: dict[str, Any]) -> dict[str, Any]:
        name = self._unqualified(function_name)
        with self._write(name) as s:
            fn = self._function(s, name)
            latest = self._version(s, name, LATEST)
            self._refuse_if_busy(latest)
            self._check_revision(latest.revision_id, request.get("RevisionId"))
            sha = request.get("CodeSha256")
            if sha is not None and sha != latest.config.get("CodeSha256"):
                raise InvalidParameterValue(
                    f"CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST "
                    f"({latest.config.get('CodeSha256')}). Please try again with the CodeSHA256 in $LATEST."
                )
            if "Description" in request:
                v.check_description(request["Description"])
            row = self._publish(s, fn, latest, request.get("Description"))
            return self._config(row, row.version)

    def _publish(self, s: Session, fn: FunctionRow, latest: VersionRow, description: str | None) -> VersionRow:
        """Publish `$LATEST` as the next version, unless nothing changed since the last one published."""
        settled = {k: x for k, x in latest.config.items() if k != lifecycle.KEY}  # a state is not a change
        fingerprint = hashlib.sha256(
            json.dumps([latest.code_sha256, settled], sort_keys=True).encode()
        ).hexdigest()
        if fn.last_version:
            previous = s.get(VersionRow, (fn.name, str(fn.last_version)))
            if previous is not None and previous.config.get("_fingerprint") == fingerprint:
                return previous
        fn.last_version += 1
        config = dict(latest.config)
        if description is not None:
            config["Description"] = description
        config["_fingerprint"] = fingerprint
        row = VersionRow(function_name=fn.name, version=str(fn.last_version), config=config,
                         code_sha256=latest.code_sha256, revision_id=new_revision(),
                         last_modified=latest.last_modified)
        s.add(row)
        deployments.record(s, fn.name, "PublishVersion", row.version, row.code_sha256)
        latest.revision_id = new_revision()  # as on AWS, publishing changes $LATEST's RevisionId
        s.flush()
        return row

    def list_versions(self, function_name: str, marker: str | None, max_items: int | None) -> dict[str, Any]:
        name = self._unqualified(function_name)
        with Session(self.engine) as s:
            self._function(s, name)
            rows = list(s.scalars(select(VersionRow).where(VersionRow.function_name == name)).all())
        rows.sort(key=lambda r: version_sort_key(r.version))
        page, nxt = page_of(rows, marker, min(max_items or PAGE_MAX, PAGE_MAX), lambda r: version_sort_key(r.version))
        out: dict[str, Any] = {"Versions": [self._config(r, r.version) for r in page]}
        if nxt:
            out["NextMarker"] = nxt
        return out
