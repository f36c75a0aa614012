"""Regressions found by driving a real server the way a Lambda user does (boto3, the AWS CLI, curl, the
nimbus CLI) and comparing with AWS's documented behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

CODE = make_zip({"app.py": "def handler(event, context):\n    return event\n"})


def create(lam: Any, name: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = lam.create_function(
        FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE, Code={"ZipFile": CODE}, **extra
    )
    return result


def test_list_functions_paginator_keeps_names_that_extend_another(lam: Any) -> None:
    # "x" < "x-cli" as names, but the page marker of "x" used to compare greater than "x-cli", so a page
    # boundary right after "x" skipped "x-cli" (`aws lambda list-functions --page-size 1` lost functions).
    base = f"pg{uuid.uuid4().hex[:8]}"
    names = [base, f"{base}-cli", f"{base}_x"]
    for name in names:
        create(lam, name)
    try:
        paginator = lam.get_paginator("list_functions")
        seen = [f["FunctionName"] for page in paginator.paginate(PaginationConfig={"PageSize": 1})
                for f in page["Functions"]]
        assert [n for n in seen if n.startswith(base)] == names
        assert len(seen) == len(set(seen))
    finally:
        for name in names:
            lam.delete_function(FunctionName=name)


def test_control_plane_answers_carry_a_request_id(lam: Any) -> None:
    name = f"rid-{uuid.uuid4().hex[:8]}"
    created = create(lam, name)
    assert created["ResponseMetadata"].get("RequestId")
    assert lam.get_function(FunctionName=name)["ResponseMetadata"].get("RequestId")
    deleted = lam.delete_function(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204 and deleted["ResponseMetadata"].get("RequestId")
    with pytest.raises(ClientError) as err:
        lam.get_function(FunctionName=name)
    assert err.value.response["ResponseMetadata"].get("RequestId")


def test_code_location_points_where_the_client_reached_the_server(server: NimbusServer) -> None:
    client = boto3.client(
        "lambda", endpoint_url=f"http://localhost:{server.port}", region_name="us-east-1",
        aws_access_key_id=server.credentials[0], aws_secret_access_key=server.credentials[1],
        config=Config(retries={"max_attempts": 1}),
    )
    name = f"loc-{uuid.uuid4().hex[:8]}"
    create(client, name)
    try:
        location = client.get_function(FunctionName=name)["Code"]["Location"]
        assert location.startswith(f"http://localhost:{server.port}/")
        download = httpx.get(location)
        assert download.status_code == 200 and download.content == CODE
    finally:
        client.delete_function(FunctionName=name)


def test_alias_names_are_validated_on_every_alias_operation(lam: Any) -> None:
    name = f"aln-{uuid.uuid4().hex[:8]}"
    create(lam, name)
    try:
        for call, kwargs in (
            (lam.get_alias, {}),
            (lam.update_alias, {"Description": "d"}),
            (lam.delete_alias, {}),
        ):
            with pytest.raises(ClientError) as err:
                call(FunctionName=name, Name="123", **kwargs)  # all digits: a version, never an alias
            assert err.value.response["Error"]["Code"] == "ValidationException"
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        with pytest.raises(ClientError) as err:
            lam.list_aliases(FunctionName=name, FunctionVersion="nope")
        assert err.value.response["Error"]["Code"] == "ValidationException"
    finally:
        lam.delete_function(FunctionName=name)


def test_cli_missing_payload_file_is_a_usage_error(server: NimbusServer, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nimbus", "invoke", "anything", "--payload-file", str(tmp_path / "missing.json")],
        env={**os.environ, **server.cli_env(), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "missing.json" in out.stderr


def test_cli_functions_piped_lists_whole_names(server: NimbusServer, lam: Any) -> None:
    # Piped output used to be a table squeezed into 80 columns: long names were cut with an ellipsis and
    # `nimbus functions | grep NAME` found nothing.
    name = f"a-rather-long-function-name-{uuid.uuid4().hex}"
    create(lam, name)
    try:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        out = subprocess.run(
            [sys.executable, "-m", "nimbus", "functions"],
            env={**env, **server.cli_env()}, capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        line = next(line for line in out.stdout.splitlines() if line.startswith(name))
        assert line.split()[:3] == [name, RUNTIME, "app.handler"]
    finally:
        lam.delete_function(FunctionName=name)
