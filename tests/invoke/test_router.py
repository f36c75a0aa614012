import random
from pathlib import Path

import pytest

from nimbus.control.specs import AliasSpec, FunctionSnapshot, VersionSpec
from nimbus.errors import ResourceNotFound
from nimbus.invoke.router import resolve

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def spec(version: str) -> VersionSpec:
    return VersionSpec(
        function_name="f", version=version, function_arn=ARN, runtime="python3.12", handler="app.handler",
        memory_size=128, timeout=3, environment={}, ephemeral_storage=512, architectures=("x86_64",),
        layers=(), logging_config={}, code_sha256="0" * 64, code_dir=Path("/nonexistent"), revision_id=version,
    )


SNAP = FunctionSnapshot(
    name="f",
    function_arn=ARN,
    reserved_concurrency=None,
    versions={v: spec(v) for v in ("$LATEST", "1", "2")},
    aliases={"live": AliasSpec("live", "1"), "canary": AliasSpec("canary", "1", {"2": 0.25})},
)


def test_unqualified_runs_latest_with_unqualified_arn() -> None:
    target = resolve(SNAP, None)
    assert target.spec.version == "$LATEST"
    assert target.invoked_arn == ARN


def test_version_and_latest_qualifiers() -> None:
    assert resolve(SNAP, "2").spec.version == "2"
    assert resolve(SNAP, "2").invoked_arn == ARN + ":2"
    assert resolve(SNAP, "$LATEST").invoked_arn == ARN + ":$LATEST"


def test_alias_resolves_to_its_version_and_keeps_alias_arn() -> None:
    target = resolve(SNAP, "live")
    assert target.spec.version == "1"
    assert target.invoked_arn == ARN + ":live"


def test_weighted_alias_splits_by_weight() -> None:
    rng = random.Random(7)
    picks = [resolve(SNAP, "canary", rng).spec.version for _ in range(4000)]
    share = picks.count("2") / len(picks)
    assert 0.22 < share < 0.28


@pytest.mark.parametrize("qualifier", ["3", "nope"])
def test_missing_qualifier_is_not_found(qualifier: str) -> None:
    with pytest.raises(ResourceNotFound, match=f"function:f:{qualifier}"):
        resolve(SNAP, qualifier)
