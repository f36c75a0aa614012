"""Layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions, DeleteLayerVersion and
layer version policies (Add/RemoveLayerVersionPermission, GetLayerVersionPolicy), plus what functions need
from layers: resolving the layer version ARNs of a configuration and the combined size limit.

A layer's zip goes into the content-addressed code store like function code. A function's stored
configuration keeps, beside the `Layers` ARNs, each layer's content (`LayerContents`: ARN, size, zip hash),
so deleting a layer version never breaks the functions that use it (AWS keeps a copy for them too); the code
store keeps every blob. The sandbox gets the merged `/opt` tree from `layertree`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.control import validation as v
from nimbus.control.arn import LAYER_VERSION_ARN_RE
from nimbus.control.core import RegistryCore, new_revision, page_of
from nimbus.control.documents import lambda_timestamp, policy_document, principal_of
from nimbus.control.layertree import LAYER_CONTENTS, unzipped_size
from nimbus.control.models import LayerRow, LayerVersionRow
from nimbus.errors import (
    InvalidParameterValue,
    PolicyLengthExceeded,
    ResourceConflict,
    ResourceNotFound,
)
from nimbus.runtimes import KNOWN_RUNTIMES

PAGE_MAX = 50
POLICY_MAX_BYTES = 20 * 1024
LAYER_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
    r"[a-zA-Z0-9-_]{1,140}|[a-zA-Z0-9-_]{1,140})"
)
_LAYER_ARN = re.compile(
    r"^arn:(aws[a-zA-Z-]*)?:lambda:(?P<region>(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d):"
    r"(?P<account>\d{12}):layer:(?P<name>[a-zA-Z0-9-_]{1,140})$"
)
PRINCIPAL_PATTERN = r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root"
ORGANIZATION_PATTERN = r"o-[a-z0-9]{10,32}"
NOT_FOUND = "The resource you requested does not exist."
POLICY_REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetLayerPolicy API to retrieve the latest Revision Id"
)


class LayerOps(RegistryCore):
    """The layer operations of the registry."""

    # ------------------------------------------------------------------ names

    def layer_arn(self, name: str, version: int | None = None) -> str:
        arn = f"arn:aws:lambda:{self.settings.region}:{self.settings.account_id}:layer:{name}"
        return arn if version is None else f"{arn}:{version}"

    def _layer_name(self, value: str) -> str:
        """The layer name a LayerName parameter (name or layer ARN) designates."""
        v.check_pattern(value, LAYER_NAME_PATTERN, "layerName", max_len=2048, min_len=1)
        m = _LAYER_ARN.match(value)
        if m is None:
            return value
        if m.group("region") != self.settings.region or m.group("account") != self.settings.account_id:
            raise ResourceNotFound(NOT_FOUND)
        return m.group("name")

    @staticmethod
    def _version_number(value: str | int) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise v.constraint(value, "versionNumber", "Member must be a number") from None
        return number

    def _row(self, s: Session, name: str, version: int) -> LayerVersionRow:
        row = s.get(LayerVersionRow, (name, version))
        if row is None:
            raise ResourceNotFound(NOT_FOUND)
        return row

    # ------------------------------------------------------------------ documents

    def _version_doc(self, row: LayerVersionRow, content: bool = True, base_url: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if content:
            doc["Content"] = {
                "Location": self._code(row.code_sha256, base_url)["Location"],
                "CodeSha256": base64.b64encode(bytes.fromhex(row.code_sha256)).decode(),
                "CodeSize": row.code_size,
            }
            doc["LayerArn"] = self.layer_arn(row.layer_name)
        doc["LayerVersionArn"] = self.layer_arn(row.layer_name, row.version)
        doc["Description"] = row.description
        doc["CreatedDate"] = row.created_date
        doc["Version"] = row.version
        if row.compatible_runtimes is not None:
            doc["CompatibleRuntimes"] = list(row.compatible_runtimes)
        if row.license_info is not None:
            doc["LicenseInfo"] = row.license_info
        if row.compatible_architectures is not None:
            doc["CompatibleArchitectures"] = list(row.compatible_architectures)
        return doc

    # ------------------------------------------------------------------ operations

    def publish_layer_version(self, layer_name: str, request: dict[str, Any],
                              base_url: str | None = None) -> dict[str, Any]:
        """PublishLayerVersion: store the zip (Content.ZipFile, base64 in the request) as the next version."""
        name = self._layer_name(layer_name)
        content = request.get("Content")
        if not isinstance(content, dict):
            raise InvalidParameterValue("Content is a required parameter: provide Content.ZipFile.")
        if content.get("ZipFile") is None:
            if any(k in content for k in ("S3Bucket", "S3Key", "S3ObjectVersion")):
                raise InvalidParameterValue(
                    "S3 sources for layer content are not supported by this server: upload the zip in "
                    "Content.ZipFile."
                )
            raise InvalidParameterValue("Please provide a source for the layer content: Content.ZipFile.")
        try:
            zip_bytes = base64.b64decode(str(content["ZipFile"]), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameterValue("Could not decode Content.ZipFile: it must be base64.") from None
        description = request.get("Description") or ""
        v.check_description(description)
        license_info = request.get("LicenseInfo")
        if license_info is not None and len(license_info) > 512:
            raise v.constraint(license_info, "licenseInfo", "Member must have length less than or equal to 512")
        given_runtimes, given_archs = request.get("CompatibleRuntimes"), request.get("CompatibleArchitectures")
        runtimes = None if given_runtimes is None else list(given_runtimes)  # AWS echoes [] when sent
        _check_runtimes(runtimes or [], "compatibleRuntimes")
        archs = None if given_archs is None else list(given_archs)
        _check_architectures(archs or [])
        blob = self.codestore.put(zip_bytes)
        size = unzipped_size(self.codestore, blob.sha256_hex)
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            layer = s.get(LayerRow, name)
            if layer is None:
                layer = LayerRow(name=name, last_version=0)
                s.add(layer)
            layer.last_version += 1
            row = LayerVersionRow(
                layer_name=name, version=layer.last_version, description=description, license_info=license_info,
                compatible_runtimes=runtimes, compatible_architectures=archs, code_sha256=blob.sha256_hex,
                code_size=blob.size, unzipped_size=size, created_date=lambda_timestamp(time.time()),
                policy=[], policy_revision=new_revision(),
            )
            s.add(row)
        return self._version_doc(row, base_url=base_url)

    def get_layer_version(self, layer_name: str, version: str | int, base_url: str | None = None) -> dict[str, Any]:
        name = self._layer_name(layer_name)
        number = self._version_number(version)
        with Session(self.engine) as s:
            return self._version_doc(self._row(s, name, number), base_url=base_url)

    def get_layer_version_by_arn(self, arn: str, base_url: str | None = None) -> dict[str, Any]:
        m = LAYER_VERSION_ARN_RE.match(arn) if len(arn) <= 2048 else None
        if m is None or m.group("name") is None:
            raise v.constraint(
                arn, "arn", "Member must satisfy regular expression pattern: "
                r"(arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
                r"[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)",
            )
        if m.group("region") != self.settings.region or m.group("account") != self.settings.account_id:
            raise ResourceNotFound(NOT_FOUND)
        return self.get_layer_version(m.group("name"), m.group("version"), base_url)

    def list_layer_versions(self, layer_name: str, runtime: str | None, architecture: str | None,
                            marker: str | None, max_items: int | None) -> dict[str, Any]:
        name = self._layer_name(layer_name)
        _check_filters(runtime, architecture, max_items)
        with Session(self.engine) as s:
            rows = list(s.scalars(select(LayerVersionRow).where(LayerVersionRow.layer_name == name)).all())
        rows = [r for r in rows if _matches(r, runtime, architecture)]
        rows.sort(key=lambda r: -r.version)  # newest first, as AWS lists them

        def key(r: LayerVersionRow) -> str:
            return f"{10**12 - r.version:013d}"

        page, nxt = page_of(rows, marker, min(max_items or PAGE_MAX, PAGE_MAX), key)
        out: dict[str, Any] = {"LayerVersions": [self._version_doc(r, content=False) for r in page]}
        if nxt:
            out["NextMarker"] = nxt
        return out

    def list_layers(self, runtime: str | None, architecture: str | None, marker: str | None,
                    max_items: int | None) -> dict[str, Any]:
        """Every layer with a version matching the filters, with its newest matching version."""
        _check_filters(runtime, architecture, max_items)
        with Session(self.engine) as s:
            rows = list(s.scalars(select(LayerVersionRow)).all())
        latest: dict[str, LayerVersionRow] = {}
        for r in rows:
            if _matches(r, runtime, architecture) and (
                r.layer_name not in latest or r.version > latest[r.layer_name].version
            ):
                latest[r.layer_name] = r
        names = sorted(latest)
        page, nxt = page_of(names, marker, min(max_items or PAGE_MAX, PAGE_MAX), lambda n: n)
        out: dict[str, Any] = {
            "Layers": [
                {
                    "LayerName": n,
                    "LayerArn": self.layer_arn(n),
                    "LatestMatchingVersion": self._version_doc(latest[n], content=False),
                }
                for n in page
            ]
        }
        if nxt:
            out["NextMarker"] = nxt
        return out

    def delete_layer_version(self, layer_name: str, version: str | int) -> None:
        """Delete one version (a missing one is not an error, as on AWS). Functions using it keep working."""
        name = self._layer_name(layer_name)
        number = self._version_number(version)
        with self._write_lock, Session(self.engine) as s, s.begin():
            row = s.get(LayerVersionRow, (name, number))
            if row is not None:
                s.delete(row)

    # ------------------------------------------------------------------ policies

    def add_layer_version_permission(self, layer_name: str, version: str | int, request: dict[str, Any],
                                     revision_id: str | None) -> dict[str, str]:
        name = self._layer_name(layer_name)
        number = self._version_number(version)
        sid = request.get("StatementId")
        action = request.get("Action")
        principal = request.get("Principal")
        for value, field in ((sid, "statementId"), (action, "action"), (principal, "principal")):
            if value is None:
                raise v.constraint(None, field, "Member must not be null")
        assert isinstance(sid, str) and isinstance(action, str) and isinstance(principal, str)
        v.check_pattern(sid, v.STATEMENT_ID_PATTERN, "statementId", max_len=100, min_len=1)
        v.check_pattern(action, "lambda:GetLayerVersion", "action", max_len=22)
        v.check_pattern(principal, PRINCIPAL_PATTERN, "principal")
        org = request.get("OrganizationId")
        if org is not None:
            v.check_pattern(org, ORGANIZATION_PATTERN, "organizationId", max_len=34)
        with self._write_lock, Session(self.engine, expire_on_commit=False) as s, s.begin():
            row = self._row(s, name, number)
            self._check_revision(row.policy_revision, revision_id, POLICY_REVISION_MISMATCH)
            if any(st.get("Sid") == sid for st in row.policy):
                raise ResourceConflict(
                    f"The statement id ({sid}) provided already exists. Please provide a new statement id, or "
                    "remove the existing statement."
                )
            stmt: dict[str, Any] = {
                "Sid": sid,
                "Effect": "Allow",
                "Principal": principal_of(principal),
                "Action": action,
                "Resource": self.layer_arn(name, number),
            }
            if org is not None:
                stmt["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": org}}
            size = len(policy_document([*row.policy, stmt]))
            if size > POLICY_MAX_BYTES:
                raise PolicyLengthExceeded(
                    f"The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                )
            row.policy = [*row.policy, stmt]
            row.policy_revision = new_revision()
            return {"Statement": json.dumps(stmt, separators=(",", ":")), "RevisionId": row.policy_revision}

    def remove_layer_version_permission(self, layer_name: str, version: str | int, statement_id: str,
                                        revision_id: str | None) -> None:
        name = self._layer_name(layer_name)
        number = self._version_number(version)
        with self._write_lock, Session(self.engine) as s, s.begin():
            row = self._row(s, name, number)
            self._check_revision(row.policy_revision, revision_id, POLICY_REVISION_MISMATCH)
            if not any(st.get("Sid") == statement_id for st in row.policy):
                raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
            row.policy = [st for st in row.policy if st.get("Sid") != statement_id]
            row.policy_revision = new_revision()

    def get_layer_version_policy(self, layer_name: str, version: str | int) -> dict[str, str]:
        name = self._layer_name(layer_name)
        number = self._version_number(version)
        with Session(self.engine) as s:
            row = self._row(s, name, number)
            if not row.policy:
                raise ResourceNotFound("No policy is associated with the given resource.")
            return {"Policy": policy_document(list(row.policy)), "RevisionId": row.policy_revision}

    # ------------------------------------------------------------------ functions' layers

    def resolve_layers(self, arns: list[str]) -> dict[str, dict[str, Any]]:
        """The content of each existing layer version among `arns` (ARN -> {Arn, CodeSize, Sha256,
        UnzippedSize}); unknown or malformed ARNs are left out (validation words the error)."""
        found: dict[str, dict[str, Any]] = {}
        with Session(self.engine) as s:
            for arn in arns:
                m = LAYER_VERSION_ARN_RE.match(arn) if len(arn) <= 2048 else None
                if m is None or m.group("name") is None:
                    continue
                if m.group("region") != self.settings.region or m.group("account") != self.settings.account_id:
                    continue
                row = s.get(LayerVersionRow, (m.group("name"), int(m.group("version"))))
                if row is not None:
                    found[arn] = {"Arn": arn, "CodeSize": row.code_size, "Sha256": row.code_sha256,
                                  "UnzippedSize": row.unzipped_size}
        return found

    def check_code_and_layers_size(self, config: dict[str, Any], code_hex: str) -> None:
        """Function code plus its layers must fit the unzipped limit (AWS: 250 MB)."""
        contents = config.get(LAYER_CONTENTS) or []
        if not contents:
            return
        total = unzipped_size(self.codestore, code_hex) + sum(int(c.get("UnzippedSize", 0)) for c in contents)
        limit = self.settings.unzipped_max_bytes
        if total > limit:
            raise InvalidParameterValue(
                f"Function code combined with layers exceeds the maximum allowed size of {limit} bytes. "
                f"The actual size is {total} bytes."
            )


def _check_runtimes(runtimes: list[str], field: str) -> None:
    if len(runtimes) > 15:
        raise v.constraint(
            "[" + ", ".join(runtimes) + "]", field, "Member must have length less than or equal to 15"
        )
    for runtime in runtimes:
        if runtime not in KNOWN_RUNTIMES:
            raise v.constraint(
                "[" + ", ".join(runtimes) + "]", field,
                "Member must satisfy constraint: [Member must satisfy enum value set: "
                f"[{', '.join(sorted(KNOWN_RUNTIMES))}]]",
            )


def _check_architectures(archs: list[str]) -> None:
    shown = "[" + ", ".join(archs) + "]"
    if len(archs) > 2:
        raise v.constraint(shown, "compatibleArchitectures", "Member must have length less than or equal to 2")
    if any(a not in v.ARCHITECTURES for a in archs):
        raise v.constraint(
            shown, "compatibleArchitectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        )


def _check_filters(runtime: str | None, architecture: str | None, max_items: int | None) -> None:
    if runtime is not None and runtime not in KNOWN_RUNTIMES:
        raise v.constraint(
            runtime, "compatibleRuntime",
            f"Member must satisfy enum value set: [{', '.join(sorted(KNOWN_RUNTIMES))}]",
        )
    if architecture is not None and architecture not in v.ARCHITECTURES:
        raise v.constraint(
            architecture, "compatibleArchitecture", "Member must satisfy enum value set: [x86_64, arm64]"
        )
    if max_items is not None:
        v.check_range(max_items, "maxItems", 1, PAGE_MAX)


def _matches(row: LayerVersionRow, runtime: str | None, architecture: str | None) -> bool:
    if runtime is not None and runtime not in (row.compatible_runtimes or []):
        return False
    return architecture is None or architecture in (row.compatible_architectures or [])
