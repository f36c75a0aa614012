"""Provisioned concurrency through the public API: configs on versions and aliases, READY environments that
invocations use first (no Init Duration, AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, make_zip

SOURCE = """
import os
def handler(event, context):
    return os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]
"""


@pytest.fixture
def published(lam: Any) -> tuple[str, str]:
    name = f"pc-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": SOURCE})})
    version = lam.publish_version(FunctionName=name)["Version"]
    return name, version


def wait_ready(lam: Any, name: str, qualifier: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        doc = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if doc["Status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


def test_latest_is_refused(lam: Any, published: tuple[str, str]) -> None:
    name, _ = published
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert e.value.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException"


def test_ready_environments_are_used_first(lam: Any, published: tuple[str, str]) -> None:
    name, version = published
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version,
                                                 ProvisionedConcurrentExecutions=2)
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    doc = wait_ready(lam, name, version)
    assert doc["Status"] == "READY"
    assert doc["AllocatedProvisionedConcurrentExecutions"] == doc["AvailableProvisionedConcurrentExecutions"] == 2
    out = lam.invoke(FunctionName=name, Qualifier=version, LogType="Tail")
    assert json.loads(out["Payload"].read()) == "provisioned-concurrency"
    report = [ln for ln in base64.b64decode(out["LogResult"]).decode().splitlines() if ln.startswith("REPORT")]
    assert report and "Init Duration" not in report[0]
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == [version]
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    with pytest.raises(ClientError):
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)


def test_alias_config(lam: Any, published: tuple[str, str]) -> None:
    name, version = published
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    assert wait_ready(lam, name, "live")["Status"] == "READY"
    out = lam.invoke(FunctionName=name, Qualifier="live")
    assert json.loads(out["Payload"].read()) == "provisioned-concurrency"
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")  # frees the shared server


def test_limits_and_conflicts(lam: Any, published: tuple[str, str]) -> None:
    name, version = published
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=2)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "reservedConcurrentExecution" in e.value.response["Error"]["Message"]
    lam.delete_function_concurrency(FunctionName=name)
    with pytest.raises(ClientError) as e:  # 1000 - 100 unreserved at least
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version,
                                               ProvisionedConcurrentExecutions=901)
    assert "below its minimum value of [100]" in e.value.response["Error"]["Message"]
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1)
    lam.create_alias(FunctionName=name, Name="same", FunctionVersion=version)
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="same", ProvisionedConcurrentExecutions=1)
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)


def test_alias_moves_and_deletes_follow(lam: Any, published: tuple[str, str]) -> None:
    name, first = published
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": SOURCE + "\n# v2\n"}))
    second = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=first)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    assert wait_ready(lam, name, "live")["Status"] == "READY"
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second)  # environments follow the alias
    assert wait_ready(lam, name, "live")["Status"] == "READY"
    out = lam.invoke(FunctionName=name, Qualifier="live")
    assert out["ExecutedVersion"] == second
    assert json.loads(out["Payload"].read()) == "provisioned-concurrency"
    lam.delete_function(FunctionName=name)
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": SOURCE})})
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    lam.delete_function(FunctionName=name)
