"""Provisioned concurrency configs (Put/Get/Delete/ListProvisionedConcurrencyConfigs): what is stored, and
Lambda's rules for it. The sandbox keeps the environments (sandbox/provisioned.py); this module only knows
the requested numbers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from nimbus.control.documents import lambda_timestamp
from nimbus.control.models import ProvisionedConcurrencyRow
from nimbus.control.registry import Registry
from nimbus.control.specs import VersionSpec
from nimbus.errors import (
    InvalidParameterValue,
    ProvisionedConcurrencyConfigNotFound,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)


@dataclass(frozen=True)
class ProvisionedConfig:
    function_name: str
    qualifier: str
    requested: int
    last_modified: str


class ProvisionedConfigs:
    """The stored configs, validated against the function's versions, aliases and concurrency."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def resolve(self, function: str, qualifier: str | None) -> tuple[str, str, VersionSpec]:
        """(function name, qualifier, the version's spec) for a version or alias; Lambda's errors otherwise."""
        name, arn_qualifier = self.registry.split_qualifier(function)
        qualifier = qualifier or arn_qualifier
        snapshot = self.registry.snapshot(name)
        if not qualifier:
            raise InvalidParameterValue("Qualifier is required for provisioned concurrency configuration.")
        if qualifier == "$LATEST":
            raise InvalidParameterValue(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        version = qualifier
        if not qualifier.isdigit():
            alias = snapshot.aliases.get(qualifier)
            if alias is None:
                raise ResourceNotFound(f"Function not found: {snapshot.function_arn}:{qualifier}")
            version = alias.function_version
        spec = snapshot.versions.get(version)
        if spec is None:
            raise ResourceNotFound(f"Function not found: {snapshot.function_arn}:{qualifier}")
        return name, qualifier, spec

    def put(
        self, function: str, qualifier: str | None, requested: int, account_limit: int, min_unreserved: int
    ) -> ProvisionedConfig:
        """Store a config. Like Lambda: within the function's reserved concurrency if it has one, else leaving
        the account's unreserved pool at least `min_unreserved`; one config per version (directly or through
        an alias)."""
        if requested < 1:
            raise ValidationError(
                f"1 validation error detected: Value '{requested}' at 'provisionedConcurrentExecutions' failed "
                "to satisfy constraint: Member must have value greater than or equal to 1"
            )
        name, qualifier, spec = self.resolve(function, qualifier)
        snapshot = self.registry.snapshot(name)
        mine = self.list(name)
        others = sum(c.requested for c in mine if c.qualifier != qualifier)
        if snapshot.reserved_concurrency is not None:
            if others + requested > snapshot.reserved_concurrency:
                raise InvalidParameterValue(
                    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution "
                    "for function"
                )
        else:
            unreserved = account_limit - self.registry.reserved_total()
            elsewhere = sum(
                c.requested for c in self.list()
                if (c.function_name, c.qualifier) != (name, qualifier) and self._unreserved(c.function_name)
            )
            if unreserved - elsewhere - requested < min_unreserved:
                raise InvalidParameterValue(
                    "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
                    f"below its minimum value of [{min_unreserved}]."
                )
        for config in mine:
            if config.qualifier == qualifier:
                continue
            target = config.qualifier if config.qualifier.isdigit() else (
                snapshot.aliases[config.qualifier].function_version if config.qualifier in snapshot.aliases else "")
            if target == spec.version:
                if qualifier.isdigit():
                    raise ResourceConflict("Version is pointed by a Provisioned Concurrency alias")
                raise ResourceConflict(
                    "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
                )
        row = ProvisionedConcurrencyRow(
            function_name=name, qualifier=qualifier, requested=requested, last_modified=lambda_timestamp()
        )
        with Session(self.registry.engine) as s, s.begin():
            s.merge(row)
        return ProvisionedConfig(name, qualifier, requested, row.last_modified)

    def prune(self, function_name: str) -> None:
        """Drop configs whose function, version or alias no longer exists (Lambda deletes them with it)."""
        try:
            snapshot = self.registry.snapshot(function_name)
        except ResourceNotFound:
            snapshot = None
        with Session(self.registry.engine) as s, s.begin():
            rows = s.scalars(
                select(ProvisionedConcurrencyRow).where(ProvisionedConcurrencyRow.function_name == function_name)
            ).all()
            for row in rows:
                q = row.qualifier
                if snapshot is None or (q not in snapshot.versions if q.isdigit() else q not in snapshot.aliases):
                    s.delete(row)

    def targets_for(self, function_name: str) -> list[tuple[VersionSpec, int]]:
        """How many provisioned environments each version of `function_name` needs: Lambda counts the configs
        of the version plus those of every alias pointing at it. Empty when the function is gone."""
        try:
            snapshot = self.registry.snapshot(function_name)
        except ResourceNotFound:
            return []
        totals: dict[str, int] = {}
        for config in self.list(function_name):
            version = config.qualifier
            if not version.isdigit():
                alias = snapshot.aliases.get(version)
                if alias is None:
                    continue
                version = alias.function_version
            totals[version] = totals.get(version, 0) + config.requested
        return [(snapshot.versions[v], n) for v, n in totals.items() if v in snapshot.versions]

    def _unreserved(self, function_name: str) -> bool:
        try:
            return self.registry.snapshot(function_name).reserved_concurrency is None
        except ResourceNotFound:
            return False

    def get(self, function: str, qualifier: str | None) -> ProvisionedConfig:
        name, qualifier, _ = self.resolve(function, qualifier)
        with Session(self.registry.engine) as s:
            row = s.get(ProvisionedConcurrencyRow, (name, qualifier))
            if row is None:
                raise ProvisionedConcurrencyConfigNotFound("No Provisioned Concurrency Config found for this function")
            return ProvisionedConfig(row.function_name, row.qualifier, row.requested, row.last_modified)

    def delete(self, function: str, qualifier: str | None) -> ProvisionedConfig | None:
        name, qualifier, _ = self.resolve(function, qualifier)
        with Session(self.registry.engine) as s, s.begin():
            row = s.get(ProvisionedConcurrencyRow, (name, qualifier))
            if row is None:
                return None
            config = ProvisionedConfig(row.function_name, row.qualifier, row.requested, row.last_modified)
            s.delete(row)
            return config

    def list(self, function: str | None = None) -> list[ProvisionedConfig]:
        """Configs of `function` (name or ARN), or of every function."""
        query = select(ProvisionedConcurrencyRow).order_by(
            ProvisionedConcurrencyRow.function_name, ProvisionedConcurrencyRow.qualifier
        )
        if function is not None:
            name, _ = self.registry.split_qualifier(function)
            self.registry.snapshot(name)  # ResourceNotFound for an unknown function
            query = query.where(ProvisionedConcurrencyRow.function_name == name)
        with Session(self.registry.engine) as s:
            return [ProvisionedConfig(r.function_name, r.qualifier, r.requested, r.last_modified)
                    for r in s.scalars(query)]
