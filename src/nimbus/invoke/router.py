"""Qualifier routing: `$LATEST`, a version number, or an alias (with weighted routing between two
versions), resolved against an immutable function snapshot."""

from __future__ import annotations

import random
from dataclasses import dataclass

from nimbus.control.specs import FunctionSnapshot, VersionSpec
from nimbus.errors import ResourceNotFound

LATEST = "$LATEST"


@dataclass(frozen=True, slots=True)
class Target:
    spec: VersionSpec  # the version that runs
    invoked_arn: str  # the ARN as the caller named it (qualified when a qualifier was given)


def resolve(snapshot: FunctionSnapshot, qualifier: str | None, rng: random.Random | None = None) -> Target:
    """Pick the version an invocation runs. Weighted aliases draw per invocation, as on AWS."""
    if qualifier is None or qualifier == "":
        return Target(_version(snapshot, LATEST), snapshot.function_arn)
    invoked = f"{snapshot.function_arn}:{qualifier}"
    if qualifier == LATEST or qualifier.isdigit():
        return Target(_version(snapshot, qualifier), invoked)
    alias = snapshot.aliases.get(qualifier)
    if alias is None:
        raise ResourceNotFound(f"Function not found: {invoked}")
    version = alias.function_version
    if alias.additional_weights:
        draw = (rng or random).random()
        for extra_version, weight in alias.additional_weights.items():
            if draw < weight:
                version = extra_version
                break
            draw -= weight
    return Target(_version(snapshot, version, invoked), invoked)


def _version(snapshot: FunctionSnapshot, version: str, invoked: str | None = None) -> VersionSpec:
    spec = snapshot.versions.get(version)
    if spec is None:
        raise ResourceNotFound(f"Function not found: {invoked or snapshot.function_arn + ':' + version}")
    return spec
