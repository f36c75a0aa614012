"""Aliases: Create/Get/Update/Delete/ListAliases, with Lambda's routing-config rules (one extra
published version, a weight in 0.0–1.0, never the primary version, never from `$LATEST`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.control import validation as v
from nimbus.control.arn import is_version
from nimbus.control.core import LATEST, RegistryCore, new_revision, page_of
from nimbus.control.documents import render_alias
from nimbus.control.models import AliasRow
from nimbus.errors import InvalidParameterValue, ResourceConflict


class AliasOps(RegistryCore):
    """Create/Get/Update/Delete/ListAliases."""

    def _alias_doc(self, row: AliasRow) -> dict[str, Any]:
        weights = (row.routing_config or {}).get("AdditionalVersionWeights")
        return render_alias(self.settings.region, self.settings.account_id, row.function_name, row.name,
                            row.function_version, row.description, weights, row.revision_id)

    def _routing(self, s: Session, name: str, version: str, routing: dict[str, Any] | None) -> dict[str, Any] | None:
        weights = dict((routing or {}).get("AdditionalVersionWeights") or {})
        if not weights:
            return None
        if len(weights) > 1:
            raise InvalidParameterValue("Number of items in AdditionalVersionWeights cannot be greater than 1")
        for key, weight in weights.items():
            if not (0.0 <= weight <= 1.0):
                raise v.constraint(
                    f"{{{key}={weight}}}", "routingConfig.additionalVersionWeights",
                    "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
                    "Member must have value greater than or equal to 0.0, Member must not be null]",
                )
            if key == version:
                raise InvalidParameterValue(
                    f"Invalid function version {version}. Function version {version} is already included in "
                    "routing configuration."
                )
            if version == LATEST:
                raise InvalidParameterValue("$LATEST is not supported for an alias pointing to more than 1 version")
            if not is_version(key):
                raise v.constraint(
                    f"{{{key}={weight}}}", "routingConfig.additionalVersionWeights",
                    "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, "
                    "Member must have length greater than or equal to 1, Member must satisfy regular "
                    "expression pattern: [0-9]+]",
                )
            self._version(s, name, key)
        return {"AdditionalVersionWeights": {k: float(w) for k, w in weights.items()}}

    def create_alias(self, function_name: str, request: dict[str, Any]) -> dict[str, Any]:
        name = self._unqualified(function_name)
        alias, version = request["Name"], request["FunctionVersion"]
        v.check_alias_name(alias)
        v.check_alias_version(version)
        v.check_description(request.get("Description") or "")
        with self._write(name) as s:
            self._function(s, name)
            self._version(s, name, version)
            if s.get(AliasRow, (name, alias)) is not None:
                raise ResourceConflict(f"Alias already exists: {self.arn(name, alias)}")
            row = AliasRow(function_name=name, name=alias, function_version=version,
                           description=request.get("Description") or "",
                           routing_config=self._routing(s, name, version, request.get("RoutingConfig")),
                           revision_id=new_revision())
            s.add(row)
            return self._alias_doc(row)

    def get_alias(self, function_name: str, alias: str) -> dict[str, Any]:
        name = self._unqualified(function_name)
        v.check_alias_name(alias)
        with Session(self.engine) as s:
            self._function(s, name)
            return self._alias_doc(self._alias(s, name, alias))

    def update_alias(self, function_name: str, alias: str, request: dict[str, Any]) -> dict[str, Any]:
        name = self._unqualified(function_name)
        v.check_alias_name(alias)
        if "FunctionVersion" in request:
            v.check_alias_version(request["FunctionVersion"])
        if "Description" in request:
            v.check_description(request["Description"] or "")
        with self._write(name) as s:
            self._function(s, name)
            row = self._alias(s, name, alias)
            self._check_revision(row.revision_id, request.get("RevisionId"))
            version = request.get("FunctionVersion") or row.function_version
            self._version(s, name, version)
            if "RoutingConfig" in request:
                row.routing_config = self._routing(s, name, version, request["RoutingConfig"])
            elif row.routing_config:
                row.routing_config = self._routing(s, name, version, row.routing_config)
            row.function_version = version
            if "Description" in request:
                row.description = request["Description"] or ""
            row.revision_id = new_revision()
            return self._alias_doc(row)

    def delete_alias(self, function_name: str, alias: str) -> None:
        name = self._unqualified(function_name)
        v.check_alias_name(alias)
        with self._write(name) as s:
            self._function(s, name)
            row = s.get(AliasRow, (name, alias))
            if row is not None:  # AWS answers 204 for an alias that does not exist
                s.delete(row)

    def list_aliases(self, function_name: str, version: str | None, marker: str | None,
                     max_items: int | None) -> dict[str, Any]:
        name = self._unqualified(function_name)
        if version is not None:
            v.check_alias_version(version)
        with Session(self.engine) as s:
            self._function(s, name)
            rows = [a for a in s.scalars(select(AliasRow).where(AliasRow.function_name == name)).all()
                    if version is None or a.function_version == version]
        rows.sort(key=lambda a: a.name)
        page, nxt = page_of(rows, marker, max_items, lambda a: a.name)
        out: dict[str, Any] = {"Aliases": [self._alias_doc(a) for a in page]}
        if nxt:
            out["NextMarker"] = nxt
        return out
