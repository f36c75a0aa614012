"""Issue 21: function lifecycle states and revisions answered as AWS answers them, through boto3.

Expected answers come from AWS's responses recorded in LocalStack's AWS-validated snapshots,
`localstack/localstack@8b9a79f tests/aws/services/lambda_/test_lambda_api.snapshot.json` (cited per test as
[LS <test name>]), and from AWS's Lambda developer guide where it documents the answer."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

CODE = make_zip({"app.py": "def handler(event, context):\n    return {'ok': True}\n"})
FAST = {"Delay": 1, "MaxAttempts": 30}
RUNTIME_VERSION_ARN = re.compile(r"arn:aws:lambda:us-east-1::runtime:[0-9a-f]{64}")


def _name() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def bare(server: NimbusServer) -> Any:
    """A boto3 client that does not wait for functions to settle: it sees every state."""
    return server.client("lambda", wait=False)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    """A server whose functions stay Pending / InProgress for 1.5 s, about as long as AWS's do."""
    srv = NimbusServer(Path(tmp_path_factory.mktemp("slow")) / "data", env={"NIMBUS_LIFECYCLE_DELAY": "1.5"}).start()
    yield srv
    srv.stop()


def _create(client: Any, name: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.create_function(
        FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Code={"ZipFile": CODE}, **extra
    )
    return result


def test_create_answers_pending_then_active(bare: Any) -> None:
    """[LS TestLambdaFunction::test_function_lifecycle]: CreateFunction answers State Pending with
    StateReason "The function is being created." and StateReasonCode Creating and no LastUpdateStatus;
    GetFunction then shows State Active, LastUpdateStatus Successful, no reasons, a new RevisionId, a
    RuntimeVersionConfig, and the empty Environment that was sent."""
    name = _name()
    created = _create(bare, name, Environment={"Variables": {}})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["State"] == "Pending"
    assert created["StateReason"] == "The function is being created."
    assert created["StateReasonCode"] == "Creating"
    assert "LastUpdateStatus" not in created
    assert created["Environment"] == {"Variables": {}}
    assert RUNTIME_VERSION_ARN.fullmatch(created["RuntimeVersionConfig"]["RuntimeVersionArn"])
    bare.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    conf = bare.get_function(FunctionName=name)["Configuration"]
    assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful"
    assert not {"StateReason", "StateReasonCode", "LastUpdateStatusReason"} & conf.keys()
    assert conf["RevisionId"] != created["RevisionId"]
    assert conf["Environment"] == {"Variables": {}}
    assert conf["RuntimeVersionConfig"] == created["RuntimeVersionConfig"]  # stable per runtime
    other = _create(bare, _name())
    assert other["RuntimeVersionConfig"] == created["RuntimeVersionConfig"]
    assert "Environment" not in other  # none sent, none shown
    bare.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig=FAST)


def test_update_answers_in_progress_then_successful(bare: Any) -> None:
    """[LS test_function_lifecycle]: UpdateFunctionConfiguration and UpdateFunctionCode answer State Active,
    LastUpdateStatus InProgress, LastUpdateStatusReason "The function is being created.",
    LastUpdateStatusReasonCode Creating; `function_updated_v2` then sees Successful under a new RevisionId."""
    name = _name()
    _create(bare, name)
    bare.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    for update in (
        lambda: bare.update_function_configuration(FunctionName=name, Timeout=10),
        lambda: bare.update_function_code(FunctionName=name, ZipFile=CODE),
    ):
        answer = update()
        assert answer["State"] == "Active"
        assert answer["LastUpdateStatus"] == "InProgress"
        assert answer["LastUpdateStatusReason"] == "The function is being created."
        assert answer["LastUpdateStatusReasonCode"] == "Creating"
        bare.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST)
        conf = bare.get_function_configuration(FunctionName=name)
        assert conf["LastUpdateStatus"] == "Successful" and "LastUpdateStatusReason" not in conf
        assert conf["RevisionId"] != answer["RevisionId"]


def test_stale_revision_after_activation_is_refused(bare: Any) -> None:
    """RevisionId changes on Pending -> Active ([LS test_function_lifecycle]: <uuid:1> then <uuid:2>), so
    the RevisionId CreateFunction answered is stale for a conditional update: PreconditionFailedException
    412 with AWS's text ([LS test_publish_with_wrong_revisionid])."""
    name = _name()
    created = _create(bare, name)
    bare.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    with pytest.raises(ClientError) as err:
        bare.update_function_code(FunctionName=name, ZipFile=CODE, RevisionId=created["RevisionId"])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert err.value.response["Error"] == {
        "Code": "PreconditionFailedException",
        "Message": "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
    }
    current = bare.get_function(FunctionName=name)["Configuration"]["RevisionId"]
    updated = bare.update_function_code(FunctionName=name, ZipFile=CODE, RevisionId=current)
    assert updated["LastUpdateStatus"] == "InProgress"


def test_publish_on_create(bare: Any) -> None:
    """[LS TestLambdaVersions::test_publish_version_on_create]: CreateFunction with Publish answers version 1
    (Version "1", FunctionArn as recorded: unqualified), State Pending; version 1 and $LATEST then become
    Active (`published_version_active` waiter)."""
    name = _name()
    created = _create(bare, name, Publish=True)
    assert created["Version"] == "1"
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["State"] == "Pending" and created["StateReasonCode"] == "Creating"
    bare.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="1", WaiterConfig=FAST)
    version = bare.get_function(FunctionName=name, Qualifier="1")["Configuration"]
    assert version["State"] == "Active" and version["LastUpdateStatus"] == "Successful"
    assert version["FunctionArn"].endswith(f":{name}:1")


def test_pending_function_refuses_invoke_and_update_in_progress_refuses_update(slow_server: NimbusServer) -> None:
    """Invoking a Pending function: ResourceConflictException 409 "The operation cannot be performed at this
    time. The function is currently in the following state: Pending" (AWS Lambda developer guide,
    troubleshooting-invocation). A second update while one is InProgress: ResourceConflictException 409
    "The operation cannot be performed at this time. An update is in progress for resource: <function arn>"
    ([LS test_lambda_concurrent_code_updates], [LS test_lambda_concurrent_config_updates])."""
    bare = slow_server.client("lambda", wait=False)
    name = _name()
    _create(bare, name)
    with pytest.raises(ClientError) as err:
        bare.invoke(FunctionName=name, Payload=b"{}")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert err.value.response["Error"] == {
        "Code": "ResourceConflictException",
        "Message": "The operation cannot be performed at this time. "
        "The function is currently in the following state: Pending",
    }
    bare.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST)
    assert bare.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    for first, second in (
        (lambda: bare.update_function_code(FunctionName=name, ZipFile=CODE),
         lambda: bare.update_function_code(FunctionName=name, ZipFile=CODE)),
        (lambda: bare.update_function_configuration(FunctionName=name, Environment={"Variables": {"TEST": "TEST1"}}),
         lambda: bare.update_function_configuration(FunctionName=name, Environment={"Variables": {"TEST": "TEST2"}})),
    ):
        first()
        with pytest.raises(ClientError) as err:
            second()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
        assert err.value.response["Error"] == {
            "Code": "ResourceConflictException",
            "Message": f"The operation cannot be performed at this time. An update is in progress for resource: {arn}",
        }
        # while the update is in progress the function keeps answering invocations, as on AWS
        assert bare.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
        bare.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST)


def test_empty_layer_compatibilities_are_echoed(bare: Any) -> None:
    """[LS TestLambdaLayer::test_layer_lifecycle, publish_empty_result]: PublishLayerVersion with
    CompatibleRuntimes=[] and CompatibleArchitectures=[] answers both as empty lists."""
    layer = f"conf-layer-{uuid.uuid4().hex[:8]}"
    published = bare.publish_layer_version(LayerName=layer, Content={"ZipFile": CODE},
                                           CompatibleRuntimes=[], CompatibleArchitectures=[])
    assert published["CompatibleRuntimes"] == [] and published["CompatibleArchitectures"] == []
    plain = bare.publish_layer_version(LayerName=layer, Content={"ZipFile": CODE})
    assert "CompatibleRuntimes" not in plain and "CompatibleArchitectures" not in plain


def test_url_config_leaves_out_invoke_mode_unless_given(bare: Any) -> None:
    """[LS TestLambdaUrl::test_url_config_lifecycle]: CreateFunctionUrlConfig and UpdateFunctionUrlConfig
    without InvokeMode answer without it; GetFunctionUrlConfig shows InvokeMode BUFFERED."""
    name = _name()
    _create(bare, name)
    made = bare.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert "InvokeMode" not in made and "LastModifiedTime" not in made
    assert bare.get_function_url_config(FunctionName=name)["InvokeMode"] == "BUFFERED"
    updated = bare.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert "InvokeMode" not in updated and updated["AuthType"] == "AWS_IAM"
    given = bare.update_function_url_config(FunctionName=name, InvokeMode="BUFFERED")
    assert given["InvokeMode"] == "BUFFERED"
