"""Every control-plane operation through a real server with boto3 (and a few with the AWS CLI): shapes,
AWS's error types and statuses for each validation rule."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

pytestmark = pytest.mark.e2e

CODE = make_zip({"lambda_function.py": "def handler(event, context):\n    return event\n"})
CODE2 = make_zip({"lambda_function.py": "def handler(event, context):\n    return {'v': 2}\n"})


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture(scope="module")
def raw(server: NimbusServer) -> Any:
    """A boto3 client that skips botocore's own parameter checks, so the server's are exercised."""
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.credentials[0],
        aws_secret_access_key=server.credentials[1],
        config=Config(retries={"max_attempts": 1}, parameter_validation=False),
    )


@pytest.fixture
def name() -> str:
    return f"ctl-{uuid.uuid4().hex[:12]}"


def create(client: Any, name: str, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"FunctionName": name, "Runtime": RUNTIME, "Role": ROLE,
                              "Handler": "lambda_function.handler", "Code": {"ZipFile": CODE}, **extra}
    result: dict[str, Any] = client.create_function(**params)
    return result


def fails(call: Callable[[], Any], status: int, error_type: str, message: str | None = None) -> str:
    with pytest.raises(ClientError) as err:
        call()
    resp = err.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == status, resp
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == error_type
    assert resp["Error"]["Code"] == error_type
    text = str(resp["Error"]["Message"])
    if message is not None:
        assert message in text, text
    return text


def strip(resp: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


# ----------------------------------------------------------------------------------------- happy paths


def test_create_function_returns_the_configuration(lam: Any, name: str) -> None:
    conf = create(lam, name, MemorySize=256, Timeout=30, Description="d", Environment={"Variables": {"KEY": "v"}},
                  EphemeralStorage={"Size": 1024}, Architectures=["arm64"], TracingConfig={"Mode": "Active"},
                  LoggingConfig={"LogFormat": "JSON"})
    assert conf["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert conf["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert conf["CodeSha256"] == b64sha(CODE) and conf["CodeSize"] == len(CODE)
    assert conf["Version"] == "$LATEST" and conf["State"] == "Pending"  # then Active, as on AWS (issue 21)
    assert "LastUpdateStatus" not in conf and conf["PackageType"] == "Zip"
    assert conf["MemorySize"] == 256 and conf["Timeout"] == 30 and conf["Description"] == "d"
    assert conf["Environment"] == {"Variables": {"KEY": "v"}}
    assert conf["EphemeralStorage"] == {"Size": 1024} and conf["Architectures"] == ["arm64"]
    assert conf["TracingConfig"] == {"Mode": "Active"}
    assert conf["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    assert conf["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                                     "LogGroup": f"/aws/lambda/{name}"}
    uuid.UUID(conf["RevisionId"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", conf["LastModified"])


def test_defaults(lam: Any, name: str) -> None:
    conf = create(lam, name)
    assert (conf["MemorySize"], conf["Timeout"], conf["EphemeralStorage"], conf["Architectures"]) == (
        128, 3, {"Size": 512}, ["x86_64"])
    assert conf["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    assert conf["TracingConfig"] == {"Mode": "PassThrough"}


def test_get_function_and_code_location(lam: Any, name: str) -> None:
    create(lam, name, Tags={"team": "a"})
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["FunctionName"] == name
    assert got["Tags"] == {"team": "a"}
    assert got["Code"]["RepositoryType"] == "S3"
    assert httpx.get(got["Code"]["Location"]).content == CODE
    assert "Concurrency" not in got
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 3}
    by_arn = lam.get_function_configuration(FunctionName=got["Configuration"]["FunctionArn"])
    assert by_arn["RevisionId"] == got["Configuration"]["RevisionId"]
    partial = lam.get_function_configuration(FunctionName=f"000000000000:function:{name}")
    assert partial["FunctionName"] == name


def test_list_functions_paginates(lam: Any) -> None:
    prefix = f"ls-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        create(lam, f"{prefix}-{n}")
    lam.publish_version(FunctionName=f"{prefix}-0")
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}) for f in page["Functions"]]
    assert [n for n in names if n.startswith(prefix)] == [f"{prefix}-{n}" for n in range(3)]
    every = [f["FunctionArn"] for page in lam.get_paginator("list_functions").paginate(FunctionVersion="ALL")
             for f in page["Functions"] if f["FunctionName"] == f"{prefix}-0"]
    assert [a.rsplit(":", 1)[1] for a in every] == ["$LATEST", "1"]


def test_update_code_and_configuration(lam: Any, name: str) -> None:
    create(lam, name)
    first = lam.get_function_configuration(FunctionName=name)  # Active: its RevisionId is the current one
    dry = lam.update_function_code(FunctionName=name, ZipFile=CODE2, DryRun=True)
    assert dry["CodeSha256"] == b64sha(CODE2)
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == b64sha(CODE)
    code = lam.update_function_code(FunctionName=name, ZipFile=CODE2, RevisionId=first["RevisionId"])
    assert code["CodeSha256"] == b64sha(CODE2) and code["RevisionId"] != first["RevisionId"]
    fails(lambda: lam.update_function_code(FunctionName=name, ZipFile=CODE, RevisionId=first["RevisionId"]),
          412, "PreconditionFailedException", "does not match the latest Revision Id")
    code = lam.get_function_configuration(FunctionName=name)  # Successful: a new RevisionId again
    conf = lam.update_function_configuration(FunctionName=name, MemorySize=512, Environment={"Variables": {"AB": "1"}},
                                             Description="new", RevisionId=code["RevisionId"])
    assert conf["MemorySize"] == 512 and conf["Environment"] == {"Variables": {"AB": "1"}}
    assert conf["CodeSha256"] == b64sha(CODE2)
    fails(lambda: lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId=code["RevisionId"]),
          412, "PreconditionFailedException")
    published = lam.update_function_code(FunctionName=name, ZipFile=CODE, Publish=True)
    assert published["Version"] == "1"


def test_versions_and_publish_semantics(lam: Any, name: str) -> None:
    create(lam, name, Publish=True)
    assert lam.publish_version(FunctionName=name)["Version"] == "1"  # nothing changed since
    lam.update_function_configuration(FunctionName=name, Timeout=9)
    latest = lam.get_function_configuration(FunctionName=name)
    fails(lambda: lam.publish_version(FunctionName=name, CodeSha256="bogus"), 400,
          "InvalidParameterValueException", "CodeSHA256")
    fails(lambda: lam.publish_version(FunctionName=name, RevisionId="stale"), 412, "PreconditionFailedException")
    v2 = lam.publish_version(FunctionName=name, Description="second", CodeSha256=latest["CodeSha256"],
                             RevisionId=latest["RevisionId"])
    assert v2["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v2["Version"] == "2" and v2["FunctionArn"].endswith(f":{name}:2") and v2["Timeout"] == 9
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[0]["FunctionArn"].endswith(":$LATEST")
    assert lam.get_function_configuration(FunctionName=name, Qualifier="1")["Timeout"] == 3
    lam.delete_function(FunctionName=name, Qualifier="1")
    fails(lambda: lam.get_function(FunctionName=name, Qualifier="1"), 404, "ResourceNotFoundException",
          f"Function not found: arn:aws:lambda:us-east-1:000000000000:function:{name}:1")
    fails(lambda: lam.delete_function(FunctionName=name, Qualifier="$LATEST"), 400,
          "InvalidParameterValueException", "$LATEST version cannot be deleted")


def test_aliases(lam: Any, name: str) -> None:
    create(lam, name, Publish=True)
    lam.update_function_configuration(FunctionName=name, Timeout=7)
    lam.publish_version(FunctionName=name)
    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert alias["AliasArn"].endswith(f":{name}:live")
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    assert strip(lam.get_alias(FunctionName=name, Name="live")) == strip(alias)
    via_alias = lam.get_function_configuration(FunctionName=name, Qualifier="live")
    assert via_alias["Version"] == "1" and via_alias["FunctionArn"].endswith(":live")
    fails(lambda: lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1"), 409,
          "ResourceConflictException", "Alias already exists")
    fails(lambda: lam.delete_function(FunctionName=name, Qualifier="2"), 409, "ResourceConflictException",
          "aliases reference it")
    fails(lambda: lam.update_alias(FunctionName=name, Name="live", RevisionId="stale"), 412,
          "PreconditionFailedException")
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RoutingConfig={},
                               RevisionId=alias["RevisionId"])
    assert updated["FunctionVersion"] == "2" and "RoutingConfig" not in updated
    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="$LATEST")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["beta", "live"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name, FunctionVersion="2")["Aliases"]] == ["live"]
    lam.delete_alias(FunctionName=name, Name="beta")
    fails(lambda: lam.get_alias(FunctionName=name, Name="beta"), 404, "ResourceNotFoundException",
          "Cannot find alias arn")


@pytest.mark.parametrize(
    ("routing", "status", "error_type"),
    [
        ({"AdditionalVersionWeights": {"2": 1.5}}, 400, "ValidationException"),
        ({"AdditionalVersionWeights": {"1": 0.5}}, 400, "InvalidParameterValueException"),  # the primary
        ({"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}, 400, "InvalidParameterValueException"),
        ({"AdditionalVersionWeights": {"9": 0.1}}, 404, "ResourceNotFoundException"),
        ({"AdditionalVersionWeights": {"$LATEST": 0.1}}, 400, "ValidationException"),
    ],
)
def test_alias_routing_rules(lam: Any, raw: Any, name: str, routing: dict[str, Any], status: int,
                             error_type: str) -> None:
    create(lam, name, Publish=True)
    lam.update_function_configuration(FunctionName=name, Timeout=7)
    lam.publish_version(FunctionName=name)
    lam.update_function_configuration(FunctionName=name, Timeout=8)
    lam.publish_version(FunctionName=name)
    fails(lambda: raw.create_alias(FunctionName=name, Name="a", FunctionVersion="1", RoutingConfig=routing),
          status, error_type)


def test_delete_function(lam: Any, name: str) -> None:
    create(lam, name)
    resp = lam.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    fails(lambda: lam.get_function(FunctionName=name), 404, "ResourceNotFoundException",
          f"Function not found: arn:aws:lambda:us-east-1:000000000000:function:{name}")
    fails(lambda: lam.delete_function(FunctionName=name), 404, "ResourceNotFoundException")


def test_tags(lam: Any, name: str) -> None:
    arn = create(lam, name, Tags={"a": "1"})["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"b": "2", "c": "3"})
    lam.untag_resource(Resource=arn, TagKeys=["a", "c"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    fails(lambda: lam.tag_resource(Resource=arn + ":1", Tags={"x": "y"}), 400, "InvalidParameterValueException")
    fails(lambda: lam.list_tags(Resource=arn + "-missing"), 404, "ResourceNotFoundException")


def test_concurrency(lam: Any, name: str) -> None:
    create(lam, name)
    assert strip(lam.get_function_concurrency(FunctionName=name)) == {}
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)[
        "ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    fails(lambda: lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=unreserved + 5 - 99),
          400, "InvalidParameterValueException",
          "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
          "below its minimum value of [100].")
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)


def test_permissions(lam: Any, name: str) -> None:
    arn = create(lam, name, Publish=True)["FunctionArn"]
    fails(lambda: lam.get_policy(FunctionName=name), 404, "ResourceNotFoundException")
    added = lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                               Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
                               SourceAccount="123456789012")
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {
        "Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction", "Resource": arn,
        "Condition": {"StringEquals": {"AWS:SourceAccount": "123456789012"},
                      "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}},
    }
    fails(lambda: lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                                     Principal="*"), 409, "ResourceConflictException")
    policy = lam.get_policy(FunctionName=name)
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17" and [s["Sid"] for s in doc["Statement"]] == ["s3"]
    lam.add_permission(FunctionName=name, StatementId="v1", Action="lambda:InvokeFunction", Principal="*",
                       Qualifier="1")
    assert json.loads(lam.get_policy(FunctionName=name, Qualifier="1")["Policy"])["Statement"][0]["Resource"] == (
        arn + ":1")
    fails(lambda: lam.remove_permission(FunctionName=name, StatementId="s3", RevisionId="stale"), 412,
          "PreconditionFailedException")
    lam.remove_permission(FunctionName=name, StatementId="s3", RevisionId=lam.get_policy(FunctionName=name)[
        "RevisionId"])
    fails(lambda: lam.get_policy(FunctionName=name), 404, "ResourceNotFoundException")


def test_account_settings(lam: Any, name: str) -> None:
    before = lam.get_account_settings()
    create(lam, name)
    after = lam.get_account_settings()
    assert after["AccountLimit"]["CodeSizeZipped"] == 50 * 1024 * 1024
    assert after["AccountLimit"]["CodeSizeUnzipped"] == 250 * 1024 * 1024
    assert after["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert after["AccountUsage"]["FunctionCount"] == before["AccountUsage"]["FunctionCount"] + 1
    assert after["AccountUsage"]["TotalCodeSize"] == before["AccountUsage"]["TotalCodeSize"] + len(CODE)


# ------------------------------------------------------------------------------------------ validation


BAD_CREATES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"MemorySize": 127}, 400, "ValidationException", "at 'memorySize'"),
    ({"MemorySize": 10241}, 400, "ValidationException", "less than or equal to 10240"),
    ({"Timeout": 0}, 400, "ValidationException", "at 'timeout'"),
    ({"Timeout": 901}, 400, "ValidationException", "less than or equal to 900"),
    ({"EphemeralStorage": {"Size": 511}}, 400, "ValidationException", "ephemeralStorage.size"),
    ({"EphemeralStorage": {"Size": 10241}}, 400, "ValidationException", "ephemeralStorage.size"),
    ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, 400, "InvalidParameterValueException",
     "Reserved keys used in this request: AWS_REGION"),
    ({"Environment": {"Variables": {"LAMBDA_TASK_ROOT": "x"}}}, 400, "InvalidParameterValueException", "reserved"),
    ({"Environment": {"Variables": {"_HANDLER": "x"}}}, 400, "InvalidParameterValueException", "reserved"),
    ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, 400, "InvalidParameterValueException", "4KB"),
    ({"Environment": {"Variables": {"1BAD": "x"}}}, 400, "ValidationException", "environment.variables"),
    ({"Runtime": "python2.9"}, 400, "InvalidParameterValueException", "Value python2.9 at 'runtime'"),
    ({"Runtime": "java21"}, 400, "InvalidParameterValueException", RUNTIME),
    ({"Handler": "nodot"}, 400, "InvalidParameterValueException", "module.function"),
    ({"Handler": "has space.x"}, 400, "ValidationException", "at 'handler'"),
    ({"Handler": "a." + "b" * 130}, 400, "ValidationException", "at 'handler'"),
    ({"Role": "not-a-role"}, 400, "ValidationException", "at 'role'"),
    ({"FunctionName": "bad name!"}, 400, "ValidationException", "functionName"),
    # AWS: InvalidParameterValueException for a 65-character name on create (LocalStack snapshot
    # test_function_name_and_qualifier_validation[function_name_too_long-create_function])
    ({"FunctionName": "x" * 65}, 400, "InvalidParameterValueException", "functionName"),
    ({"Architectures": ["mips"]}, 400, "ValidationException", "architectures"),
    ({"Architectures": ["x86_64", "arm64"]}, 400, "ValidationException", "architectures"),
    ({"Layers": ["arn:aws:lambda:us-east-1:000000000000:layer:lib:1"]}, 400, "InvalidParameterValueException",
     "does not exist"),
    ({"Layers": ["not-an-arn"]}, 400, "ValidationException", "layers"),
    ({"Layers": [f"arn:aws:lambda:us-east-1:000000000000:layer:l{i}:1" for i in range(6)]}, 400,
     "InvalidParameterValueException", "more than 5 layers"),
    ({"Description": "d" * 257}, 400, "ValidationException", "description"),
    ({"Code": {"ZipFile": b"not a zip"}}, 400, "InvalidParameterValueException", "Could not unzip uploaded file"),
    ({"Code": {"S3Bucket": "bucket", "S3Key": "k"}}, 400, "InvalidParameterValueException", "ZipFile"),
    ({"Runtime": None}, 400, "InvalidParameterValueException", "Runtime and Handler are mandatory"),
    ({"TracingConfig": {"Mode": "Sometimes"}}, 400, "ValidationException", "tracingConfig.mode"),
    ({"LoggingConfig": {"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"}}, 400,
     "InvalidParameterValueException", "JSON"),
    ({"MemorySize": "lots"}, 400, "InvalidParameterValueException", "MemorySize"),
    ({"Publish": "yes"}, 400, "InvalidParameterValueException", "Publish"),
]


@pytest.mark.parametrize(("extra", "status", "error_type", "message"), BAD_CREATES)
def test_create_validation(raw: Any, name: str, extra: dict[str, Any], status: int, error_type: str,
                           message: str) -> None:
    params: dict[str, Any] = {"FunctionName": name, "Runtime": RUNTIME, "Role": ROLE,
                              "Handler": "lambda_function.handler", "Code": {"ZipFile": CODE}, **extra}
    params = {k: v for k, v in params.items() if v is not None}
    fails(lambda: raw.create_function(**params), status, error_type, message)
    if "FunctionName" not in extra:
        fails(lambda: raw.get_function(FunctionName=name), 404, "ResourceNotFoundException")


def test_update_configuration_validation(raw: Any, lam: Any, name: str) -> None:
    create(lam, name)
    fails(lambda: raw.update_function_configuration(FunctionName=name, MemorySize=20000), 400, "ValidationException")
    fails(lambda: raw.update_function_configuration(FunctionName=name, Runtime="cobol"), 400,
          "InvalidParameterValueException")
    fails(lambda: raw.update_function_configuration(FunctionName=name, Environment={"Variables": {"AWS_REGION": "x"}}),
          400, "InvalidParameterValueException", "Reserved keys")
    fails(lambda: raw.update_function_configuration(FunctionName=name + ":1", Timeout=4), 400,
          "InvalidParameterValueException", "$LATEST")
    fails(lambda: raw.update_function_code(FunctionName=name, ZipFile=b"junk"), 400, "InvalidParameterValueException",
          "Could not unzip")
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 128


def test_create_existing_function_conflicts(lam: Any, name: str) -> None:
    create(lam, name)
    fails(lambda: create(lam, name), 409, "ResourceConflictException", f"Function already exist: {name}")


def test_missing_function_errors(lam: Any, name: str) -> None:
    missing = f"Function not found: arn:aws:lambda:us-east-1:000000000000:function:{name}"
    for call in (
        lambda: lam.get_function(FunctionName=name),
        lambda: lam.get_function_configuration(FunctionName=name),
        lambda: lam.update_function_configuration(FunctionName=name, Timeout=5),
        lambda: lam.update_function_code(FunctionName=name, ZipFile=CODE),
        lambda: lam.publish_version(FunctionName=name),
        lambda: lam.list_versions_by_function(FunctionName=name),
        lambda: lam.list_aliases(FunctionName=name),
        lambda: lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1),
        lambda: lam.get_policy(FunctionName=name),
    ):
        fails(call, 404, "ResourceNotFoundException", missing)


def test_oversized_zip_is_refused(raw: Any, name: str) -> None:
    """AWS: 413 RequestEntityTooLargeException "Zipped size must be smaller than 52428800 bytes" (LocalStack
    snapshot test_oversized_zipped_create_lambda, recorded against AWS)."""
    big = make_zip({"blob.bin": os.urandom(50 * 1024 * 1024 + 4096)})  # base64 of it fits a request
    text = fails(lambda: raw.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE,
                                             Handler="lambda_function.handler", Code={"ZipFile": big}),
                 413, "RequestEntityTooLargeException")
    assert text == "Zipped size must be smaller than 52428800 bytes"


# --------------------------------------------------------------------------------------------- AWS CLI


def aws(server: NimbusServer, *args: str) -> Any:
    env = {**os.environ, **server.cli_env(), "AWS_PAGER": ""}
    cli = Path(sys.executable).parent / "aws"
    out = subprocess.run([str(cli), "--endpoint-url", server.endpoint, "--output", "json", "lambda", *args],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_aws_cli(server: NimbusServer, tmp_path: Path, name: str) -> None:
    if not (Path(sys.executable).parent / "aws").exists():
        pytest.skip("awscli is not installed in this venv")
    zip_file = tmp_path / "code.zip"
    zip_file.write_bytes(CODE)
    created = aws(server, "create-function", "--function-name", name, "--runtime", RUNTIME, "--role", ROLE,
                  "--handler", "lambda_function.handler", "--zip-file", f"fileb://{zip_file}")
    assert created["CodeSha256"] == b64sha(CODE)
    listed = aws(server, "list-functions")
    assert name in [f["FunctionName"] for f in listed["Functions"]]
    assert aws(server, "get-function", "--function-name", name)["Configuration"]["Handler"] == "lambda_function.handler"
    assert aws(server, "publish-version", "--function-name", name)["Version"] == "1"
    assert aws(server, "create-alias", "--function-name", name, "--name", "live", "--function-version", "1")[
        "Name"] == "live"
    aws(server, "delete-function", "--function-name", name)


def test_alias_and_permission_validation(raw: Any, lam: Any, name: str) -> None:
    create(lam, name, Publish=True)
    fails(lambda: raw.create_alias(FunctionName=name, Name="123", FunctionVersion="1"), 400, "ValidationException",
          "at 'name'")
    fails(lambda: raw.create_alias(FunctionName=name, Name="ok", FunctionVersion="v1"), 400, "ValidationException",
          "functionVersion")
    fails(lambda: raw.create_alias(FunctionName=name, Name="ok", FunctionVersion="7"), 404,
          "ResourceNotFoundException", f"function:{name}:7")
    fails(lambda: raw.update_alias(FunctionName=name, Name="missing", Description="x"), 404,
          "ResourceNotFoundException", "Cannot find alias arn")
    perm = {"StatementId": "ok", "Action": "lambda:InvokeFunction", "Principal": "*"}
    for bad, field in (({"StatementId": "bad id!"}, "statementId"), ({"Action": "s3:GetObject"}, "action"),
                       ({"Principal": "has space"}, "principal"), ({"SourceAccount": "12"}, "sourceAccount")):
        fails(lambda bad=bad: raw.add_permission(FunctionName=name, **{**perm, **bad}), 400, "ValidationException",
              field)
    fails(lambda: raw.add_permission(FunctionName=name, Qualifier="nope", **perm), 404, "ResourceNotFoundException")
    fails(lambda: raw.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1), 400,
          "ValidationException")
