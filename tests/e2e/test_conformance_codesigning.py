"""Issue 21: code signing configs, a function's code signing config, recursion configs and TagResource on a
code signing config, through boto3, with AWS's documents and errors.

Expected answers: LocalStack's AWS-validated `tests/aws/services/lambda_/test_lambda_api.snapshot.json`
(`localstack/localstack@8b9a79f`): `TestCodeSigningConfig::test_function_code_signing_config`,
`TestCodeSigningConfig::test_code_signing_not_found_excs`, `TestLambdaRecursion::*`; paths, status codes and
shapes from botocore's model (lambda 2015-03-31)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, make_zip

PROFILE = "arn:aws:signer:us-east-1:000000000000:/signing-profiles/test"
CODE = make_zip({"index.py": "def handler(event, context):\n    return event\n"})


def error(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as err:
        call()
    response: dict[str, Any] = err.value.response
    return response


@pytest.fixture
def function(lam: Any) -> str:
    name = f"csc-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Handler="index.handler", Code={"ZipFile": CODE}, Role=ROLE,
                        Runtime=RUNTIME)
    return name


def test_code_signing_config_lifecycle(lam: Any, function: str) -> None:
    """[LS test_function_code_signing_config]: Create (201) answers the whole config with an id
    `csc-` + 17 characters and its ARN; Update changes the policy; Get, List and ListFunctionsByCodeSigningConfig
    show it; Put/GetFunctionCodeSigningConfig answer {CodeSigningConfigArn, FunctionName}; the deletes 204."""
    created = lam.create_code_signing_config(
        Description="Testing CodeSigning Config", AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
        CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    config = created["CodeSigningConfig"]
    assert re.fullmatch(r"csc-[a-z0-9]{17}", config["CodeSigningConfigId"])
    arn = config["CodeSigningConfigArn"]
    assert arn == f"arn:aws:lambda:us-east-1:000000000000:code-signing-config:{config['CodeSigningConfigId']}"
    assert config["AllowedPublishers"] == {"SigningProfileVersionArns": [PROFILE]}
    assert config["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"}
    assert config["Description"] == "Testing CodeSigning Config"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", config["LastModified"])

    updated = lam.update_code_signing_config(CodeSigningConfigArn=arn,
                                             CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Warn"})
    assert updated["CodeSigningConfig"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}
    assert lam.get_code_signing_config(CodeSigningConfigArn=arn)["CodeSigningConfig"] == updated["CodeSigningConfig"]

    put = lam.put_function_code_signing_config(CodeSigningConfigArn=arn, FunctionName=function)
    assert (put["CodeSigningConfigArn"], put["FunctionName"]) == (arn, function)
    got = lam.get_function_code_signing_config(FunctionName=function)
    assert (got["CodeSigningConfigArn"], got["FunctionName"]) == (arn, function)
    listed = [c for page in lam.get_paginator("list_code_signing_configs").paginate()
              for c in page["CodeSigningConfigs"]]
    assert updated["CodeSigningConfig"] in listed
    fn_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function}"
    assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == [fn_arn]

    deleted = lam.delete_function_code_signing_config(FunctionName=function)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == []
    assert lam.delete_code_signing_config(CodeSigningConfigArn=arn)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_code_signing_not_found(lam: Any, function: str) -> None:
    """[LS test_code_signing_not_found_excs]: AWS's codes and texts for a missing config, a missing function
    and both; a function without a config answers an empty document; deleting none is 204."""
    arn = lam.create_code_signing_config(
        AllowedPublishers={"SigningProfileVersionArns": [PROFILE]})["CodeSigningConfig"]["CodeSigningConfigArn"]
    invalid = f"{arn[:-1]}{'x' if arn[-1] != 'x' else 'y'}"
    missing_config = f"The Lambda code signing configuration {invalid} can not be found."
    for call in (lambda: lam.delete_code_signing_config(CodeSigningConfigArn=invalid),
                 lambda: lam.update_code_signing_config(CodeSigningConfigArn=invalid, Description="new-description"),
                 lambda: lam.get_code_signing_config(CodeSigningConfigArn=invalid),
                 lambda: lam.list_functions_by_code_signing_config(CodeSigningConfigArn=invalid)):
        response = error(call)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert response["Error"] == {"Code": "ResourceNotFoundException", "Message": missing_config}
    assert lam.delete_function_code_signing_config(FunctionName=function)["ResponseMetadata"]["HTTPStatusCode"] == 204
    missing_fn = "Function not found: arn:aws:lambda:us-east-1:000000000000:function:csc-test-doesnotexist"
    for call in (lambda: lam.delete_function_code_signing_config(FunctionName="csc-test-doesnotexist"),
                 lambda: lam.put_function_code_signing_config(FunctionName="csc-test-doesnotexist",
                                                              CodeSigningConfigArn=arn),
                 lambda: lam.get_function_code_signing_config(FunctionName="csc-test-doesnotexist")):
        response = error(call)
        assert response["Error"] == {"Code": "ResourceNotFoundException", "Message": missing_fn}
    not_found = ("The code signing configuration cannot be found. Check that the provided configuration is not "
                 f"deleted: {invalid}.")
    for fn in (function, "csc-test-doesnotexist"):
        response = error(lambda fn=fn: lam.put_function_code_signing_config(  # type: ignore[misc]
            FunctionName=fn, CodeSigningConfigArn=invalid))
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert response["Error"] == {"Code": "CodeSigningConfigNotFoundException", "Message": not_found}
    unchanged = lam.update_code_signing_config(CodeSigningConfigArn=arn)
    assert unchanged["CodeSigningConfig"]["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}
    got = lam.get_function_code_signing_config(FunctionName=function)
    assert {k: v for k, v in got.items() if k != "ResponseMetadata"} == {}
    lam.delete_code_signing_config(CodeSigningConfigArn=arn)


def test_tags_on_a_code_signing_config(lam: Any) -> None:
    """TagResource/ListTags/UntagResource take a code signing config ARN (botocore's TaggableResource)."""
    arn = lam.create_code_signing_config(AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
                                         Tags={"a": "1"})["CodeSigningConfig"]["CodeSigningConfigArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1"}
    lam.tag_resource(Resource=arn, Tags={"b": "2"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2"}
    lam.untag_resource(Resource=arn, TagKeys=["a"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    lam.delete_code_signing_config(CodeSigningConfigArn=arn)


def test_recursion_config(lam: Any, function: str) -> None:
    """[LS TestLambdaRecursion::test_put_function_recursion_config_default_terminate / _allow /
    _invalid_value]: the default is Terminate; Put answers and keeps Allow; an invalid value is a
    ValidationException with AWS's enum text."""
    assert lam.get_function_recursion_config(FunctionName=function)["RecursiveLoop"] == "Terminate"
    assert lam.put_function_recursion_config(FunctionName=function, RecursiveLoop="Allow")["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=function)["RecursiveLoop"] == "Allow"
    response = error(lambda: lam.put_function_recursion_config(FunctionName=function, RecursiveLoop="InvalidValue"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"] == {
        "Code": "ValidationException",
        "Message": "1 validation error detected: Value 'InvalidValue' at 'recursiveLoop' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Terminate, Allow]",
    }
