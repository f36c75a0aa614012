"""Event-invoke configs in the registry's database: targets, defaults the dispatcher reads, caching and
invalidation, and what deleting a function does to its configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.control.eventconfigs import EventConfigs
from nimbus.control.registry import Registry
from nimbus.errors import InvalidParameterValue, ResourceNotFound, ValidationError

from .conftest import open_registry
from .test_registry import create

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


@pytest.fixture
def configs(registry: Registry) -> EventConfigs:
    return EventConfigs(registry.settings, registry)


def test_lookup_defaults_and_per_qualifier_configs(registry: Registry, configs: EventConfigs) -> None:
    create(registry, "fn")
    version = registry.publish_version("fn", {})["Version"]
    assert configs.lookup("fn", None) == configs.defaults()
    assert configs.defaults().maximum_retry_attempts == 2 and configs.defaults().maximum_event_age == 21600
    configs.put(f"{ARN}fn", None, {"MaximumRetryAttempts": 0})
    configs.put("fn", version, {"MaximumEventAgeInSeconds": 120})
    assert configs.lookup("fn", None).maximum_retry_attempts == 0
    assert configs.lookup("fn", "$LATEST").maximum_event_age == 21600
    assert configs.lookup("fn", version).maximum_event_age == 120
    assert configs.lookup("fn", version).maximum_retry_attempts == 2  # unset: the default
    assert configs.shortest_age("fn") == 120
    configs.delete("fn", version)
    assert configs.lookup("fn", version) == configs.defaults()  # the cache was invalidated


def test_qualifier_from_the_arn_must_agree(registry: Registry, configs: EventConfigs) -> None:
    create(registry, "fn")
    with pytest.raises(InvalidParameterValue, match="does not match"):
        configs.put("fn:$LATEST", "1", {"MaximumRetryAttempts": 1})
    doc = configs.put("fn:$LATEST", None, {"MaximumRetryAttempts": 1})
    assert doc["FunctionArn"] == f"{ARN}fn:$LATEST"


def test_validation(registry: Registry, configs: EventConfigs) -> None:
    create(registry, "fn")
    with pytest.raises(ValidationError, match="maximumRetryAttempts"):
        configs.put("fn", None, {"MaximumRetryAttempts": -1})
    with pytest.raises(ValidationError, match="greater than or equal to 60"):
        configs.put("fn", None, {"MaximumEventAgeInSeconds": 59})
    with pytest.raises(ValidationError, match="Member must be an integer"):
        configs.put("fn", None, {"MaximumRetryAttempts": "1"})


def test_event_age_minimum_is_a_setting(tmp_path: Path) -> None:
    reg = open_registry(tmp_path / "data", async_event_age_min=1)
    try:
        create(reg, "fn")
        assert EventConfigs(reg.settings, reg).put("fn", None, {"MaximumEventAgeInSeconds": 2})[
            "MaximumEventAgeInSeconds"] == 2
    finally:
        reg.close()


def test_deleting_the_function_deletes_its_configs(registry: Registry, configs: EventConfigs) -> None:
    create(registry, "fn")
    configs.put("fn", None, {"MaximumRetryAttempts": 1})
    registry.delete_function("fn", None)
    with pytest.raises(ResourceNotFound):
        configs.get("fn", None)
    create(registry, "fn")  # same name again: no config comes back from the old function
    with pytest.raises(ResourceNotFound):
        configs.get("fn", None)
    assert configs.lookup("fn", None) == configs.defaults()
