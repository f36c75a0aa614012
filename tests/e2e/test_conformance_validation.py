"""Issue 21: names, ARNs and qualifiers validated in AWS's order with AWS's answers, driven through boto3.

`RECORDED` is transcribed from AWS's responses recorded in LocalStack's AWS-validated snapshots
(`localstack/localstack@8b9a79f tests/aws/services/lambda_/test_lambda_api.snapshot.json`,
`TestLambdaFunction::test_function_name_and_qualifier_validation[<case>-<operation>]`), with the snapshot's
placeholders put back: account 000000000000, region us-east-1, `{A<n>}` = n times "a", `{P170}`/`{P140}`/`{PQ}`
= the FunctionName patterns AWS prints for existing functions / CreateFunction and the qualifier pattern.
As in that suite, several validation errors are compared as a set (their order in AWS's text is not recorded)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from nimbus.control.arn import CREATE_NAME_PATTERN, FUNCTION_NAME_PATTERN, QUALIFIER_PATTERN
from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

CASES: dict[str, dict[str, str]] = {
    "invalid_characters_in_function_name": {"FunctionName": "my-function!"},
    "function_name_is_single_invalid": {"FunctionName": "*"},
    "invalid_characters_in_qualifier": {"FunctionName": "my-function", "Qualifier": "invalid!"},
    "qualifier_too_long": {"FunctionName": "my-function", "Qualifier": "a" * 129},
    "invalid_account_id_in_partial_arn": {"FunctionName": "invalid-account:function:my-function"},
    "invalid_region_in_arn": {"FunctionName": "arn:aws:lambda:invalid-region:000000000000:function:my-function"},
    "non_lambda_arn": {"FunctionName": "arn:aws:ec2:us-east-1:000000000000:instance:i-1234567890abcdef0"},
    "function_name_too_long": {"FunctionName": "a" * 65},
    "function_name_too_long_and_invalid_region": {
        "FunctionName": f"arn:aws:lambda:invalid-region:000000000000:function:my-function{'a' * 170}"},
    "full_arn_and_qualifier_too_long_and_invalid_region": {
        "FunctionName": f"arn:aws:lambda:invalid-region:000000000000:function:my-function-{'a' * 170}",
        "Qualifier": "a" * 129},
    "full_arn_with_multiple_qualifiers": {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:my-function:1:2"},  # noqa: E501
    "incomplete_arn": {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function"},
    "partial_arn_with_extra_qualifier": {"FunctionName": "function:my-function:$LATEST:extra"},
    "latest_version_with_additional_qualifier": {
        "FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATEST", "Qualifier": "1"},
    "lowercase_latest_qualifier": {
        "FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:my-function", "Qualifier": "$latest"},
    "missing_region_in_arn": {"FunctionName": "arn:aws:lambda::000000000000:function:my-function"},
    "missing_account_id_in_arn": {"FunctionName": "arn:aws:lambda:us-east-1::function:my-function"},
    "misspelled_latest_in_arn": {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATES"},
}

RECORDED = [
    ('invalid_characters_in_function_name', 'get_function', 'ValidationException', ("Value 'my-function!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_characters_in_function_name', 'delete_function', 'ValidationException', ("Value 'my-function!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_characters_in_function_name', 'invoke', 'ValidationException', ("Value 'my-function!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_characters_in_function_name', 'create_function', 'ValidationException', ("Value 'my-function!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('function_name_is_single_invalid', 'get_function', 'ValidationException', ("Value '*' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('function_name_is_single_invalid', 'delete_function', 'ValidationException', ("Value '*' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('function_name_is_single_invalid', 'invoke', 'ValidationException', ("Value '*' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('function_name_is_single_invalid', 'create_function', 'ValidationException', ("Value '*' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('invalid_characters_in_qualifier', 'get_function', 'ValidationException', ("Value 'invalid!' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {PQ}",)),  # noqa: E501
    ('invalid_characters_in_qualifier', 'delete_function', 'ValidationException', ("Value 'invalid!' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {PQ}",)),  # noqa: E501
    ('invalid_characters_in_qualifier', 'invoke', 'ValidationException', ("Value 'invalid!' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {PQ}",)),  # noqa: E501
    ('invalid_characters_in_qualifier', 'create_function', 'ValidationException', ("Value 'my-function:invalid!' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('qualifier_too_long', 'get_function', 'ValidationException', ("Value '{A129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128",)),  # noqa: E501
    ('qualifier_too_long', 'delete_function', 'ValidationException', ("Value '{A129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128",)),  # noqa: E501
    ('qualifier_too_long', 'invoke', 'ValidationException', ("Value '{A129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128",)),  # noqa: E501
    ('qualifier_too_long', 'create_function', 'ValidationException', ("Value 'my-function:{A129}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140",)),  # noqa: E501
    ('invalid_account_id_in_partial_arn', 'get_function', 'ValidationException', ("Value 'invalid-account:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_account_id_in_partial_arn', 'delete_function', 'ValidationException', ("Value 'invalid-account:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_account_id_in_partial_arn', 'invoke', 'ValidationException', ("Value 'invalid-account:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_account_id_in_partial_arn', 'create_function', 'ValidationException', ("Value 'invalid-account:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('invalid_region_in_arn', 'get_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_region_in_arn', 'delete_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_region_in_arn', 'invoke', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('invalid_region_in_arn', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('non_lambda_arn', 'get_function', 'ValidationException', ("Value 'arn:aws:ec2:us-east-1:000000000000:instance:i-1234567890abcdef0' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('non_lambda_arn', 'delete_function', 'ValidationException', ("Value 'arn:aws:ec2:us-east-1:000000000000:instance:i-1234567890abcdef0' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('non_lambda_arn', 'invoke', 'ValidationException', ("Value 'arn:aws:ec2:us-east-1:000000000000:instance:i-1234567890abcdef0' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('non_lambda_arn', 'create_function', 'ValidationException', ("Value 'arn:aws:ec2:us-east-1:000000000000:instance:i-1234567890abcdef0' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('function_name_too_long', 'get_function', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:{A65}'),  # noqa: E501
    ('function_name_too_long', 'delete_function', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:{A65}'),  # noqa: E501
    ('function_name_too_long', 'invoke', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:{A65}:$LATEST'),  # noqa: E501
    ('function_name_too_long', 'create_function', 'InvalidParameterValueException', ("Value '{A65}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64",)),  # noqa: E501
    ('function_name_too_long_and_invalid_region', 'get_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function{A170}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('function_name_too_long_and_invalid_region', 'delete_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function{A140}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('function_name_too_long_and_invalid_region', 'invoke', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function{A170}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('function_name_too_long_and_invalid_region', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function{A140}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140", "Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function{A140}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}")),  # noqa: E501
    ('full_arn_and_qualifier_too_long_and_invalid_region', 'get_function', 'ValidationException', ("Value '{A129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128", "Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function-{A170}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}")),  # noqa: E501
    ('full_arn_and_qualifier_too_long_and_invalid_region', 'delete_function', 'ValidationException', ("Value '{A129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128", "Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function-{A140}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}")),  # noqa: E501
    ('full_arn_and_qualifier_too_long_and_invalid_region', 'invoke', 'ValidationException', ("Value '{A129}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128", "Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function-{A170}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}")),  # noqa: E501
    ('full_arn_and_qualifier_too_long_and_invalid_region', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function-{A140}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:{A129}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140", "Value 'arn:aws:lambda:invalid-region:000000000000:function:my-function-{A140}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:{A129}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}")),  # noqa: E501
    ('full_arn_with_multiple_qualifiers', 'get_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:1:2' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('full_arn_with_multiple_qualifiers', 'delete_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:1:2' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('full_arn_with_multiple_qualifiers', 'invoke', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:1:2' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('full_arn_with_multiple_qualifiers', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:1:2' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('incomplete_arn', 'get_function', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:function'),  # noqa: E501
    ('incomplete_arn', 'delete_function', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:function'),  # noqa: E501
    ('incomplete_arn', 'invoke', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:function:$LATEST'),  # noqa: E501
    ('partial_arn_with_extra_qualifier', 'get_function', 'ValidationException', ("Value 'function:my-function:$LATEST:extra' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('partial_arn_with_extra_qualifier', 'delete_function', 'ValidationException', ("Value 'function:my-function:$LATEST:extra' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('partial_arn_with_extra_qualifier', 'invoke', 'ValidationException', ("Value 'function:my-function:$LATEST:extra' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('partial_arn_with_extra_qualifier', 'create_function', 'ValidationException', ("Value 'function:my-function:$LATEST:extra' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('latest_version_with_additional_qualifier', 'get_function', 'InvalidParameterValueException', 'The derived qualifier from the function name does not match the specified qualifier.'),  # noqa: E501
    ('latest_version_with_additional_qualifier', 'delete_function', 'InvalidParameterValueException', 'The derived qualifier from the function name does not match the specified qualifier.'),  # noqa: E501
    ('latest_version_with_additional_qualifier', 'invoke', 'InvalidParameterValueException', 'The derived qualifier from the function name does not match the specified qualifier.'),  # noqa: E501
    ('latest_version_with_additional_qualifier', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATEST:1' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('lowercase_latest_qualifier', 'get_function', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:my-function:$latest'),  # noqa: E501
    ('lowercase_latest_qualifier', 'delete_function', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:my-function'),  # noqa: E501
    ('lowercase_latest_qualifier', 'invoke', 'ResourceNotFoundException', 'Function not found: arn:aws:lambda:us-east-1:000000000000:function:my-function:$latest'),  # noqa: E501
    ('lowercase_latest_qualifier', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:$latest' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('missing_region_in_arn', 'get_function', 'ValidationException', ("Value 'arn:aws:lambda::000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('missing_region_in_arn', 'delete_function', 'ValidationException', ("Value 'arn:aws:lambda::000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('missing_region_in_arn', 'invoke', 'ValidationException', ("Value 'arn:aws:lambda::000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('missing_region_in_arn', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda::000000000000:function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('missing_account_id_in_arn', 'get_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1::function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('missing_account_id_in_arn', 'delete_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1::function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('missing_account_id_in_arn', 'invoke', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1::function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('missing_account_id_in_arn', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1::function:my-function' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
    ('misspelled_latest_in_arn', 'get_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATES' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('misspelled_latest_in_arn', 'delete_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATES' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('misspelled_latest_in_arn', 'invoke', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATES' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P170}",)),  # noqa: E501
    ('misspelled_latest_in_arn', 'create_function', 'ValidationException', ("Value 'arn:aws:lambda:us-east-1:000000000000:function:my-function:$LATES' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {P140}",)),  # noqa: E501
]


PLACEHOLDERS = {"P170": FUNCTION_NAME_PATTERN, "P140": CREATE_NAME_PATTERN, "PQ": QUALIFIER_PATTERN}
ERROR = re.compile(r"(Value '.*?' at '.*?' failed to satisfy constraint: .+?(?=; Value|$))")
CODE = make_zip({"index.py": "def handler(event, context):\n    return event\n"})


def expand(text: str) -> str:
    return re.sub(r"\{(A\d+|P170|P140|PQ)\}",
                  lambda m: "a" * int(m.group(1)[1:]) if m.group(1)[0] == "A" else PLACEHOLDERS[m.group(1)], text)


@pytest.fixture(scope="module")
def raw(server: NimbusServer) -> Any:
    """boto3 without its own parameter checks, so the server's are what answers."""
    akid, secret = server.credentials
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id=akid,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, parameter_validation=False))


def call(client: Any, operation: str, case: dict[str, str]) -> None:
    if operation == "create_function":
        name = f"{case['FunctionName']}:{case['Qualifier']}" if case.get("Qualifier") else case["FunctionName"]
        client.create_function(FunctionName=name, Handler="index.handler", Code={"ZipFile": CODE},
                               PackageType="Zip", Role=ROLE, Runtime=RUNTIME)
    else:
        getattr(client, operation)(**case)


@pytest.mark.parametrize(("case", "operation", "code", "expected"), RECORDED,
                         ids=[f"{c}-{o}" for c, o, _, _ in RECORDED])
def test_function_name_and_qualifier_validation(raw: Any, case: str, operation: str, code: str,
                                                expected: str | tuple[str, ...]) -> None:
    """AWS's code and message for every recorded case and operation (see the module docstring)."""
    with pytest.raises(ClientError) as err:
        call(raw, operation, CASES[case])
    error = err.value.response["Error"]
    assert error["Code"] == code
    if isinstance(expected, str):
        assert error["Message"] == expand(expected)
        return
    errors = [expand(e) for e in expected]
    prefix = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected: "
    assert error["Message"].startswith(prefix), error["Message"]
    assert sorted(ERROR.findall(error["Message"][len(prefix):])) == sorted(errors)


# ----------------------------------------------------------------------------------- other answers


def fails(call_: Any, status: int, code: str) -> Any:
    with pytest.raises(ClientError) as err:
        call_()
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    assert response["Error"]["Code"] == code, response
    return response["Error"]["Message"]


@pytest.fixture(scope="module")
def function(raw: Any, server: NimbusServer) -> str:
    name = f"val-{uuid.uuid4().hex[:10]}"
    server.client("lambda").create_function(FunctionName=name, Handler="index.handler", Code={"ZipFile": CODE},
                                            Role=ROLE, Runtime=RUNTIME)
    return name


def test_other_region_and_other_account(raw: Any, function: str) -> None:
    """[LS test_create_lambda_exceptions] function_arn_other_region_exc: 404 ResourceNotFoundException
    "Functions from 'ap-southeast-1' are not reachable in this region ('<region>')"; function_arn_other_account_exc:
    403 AccessDeniedException with a null message. [LS test_get_function_wrong_region[*]]: the same 404 from
    GetFunction, GetFunctionConfiguration, DeleteFunction, Invoke."""
    other_region = f"arn:aws:lambda:ap-southeast-1:000000000000:function:{function}"
    message = "Functions from 'ap-southeast-1' are not reachable in this region ('us-east-1')"
    assert fails(lambda: call(raw, "create_function", {"FunctionName": other_region}), 404,
                 "ResourceNotFoundException") == message
    for operation in ("get_function", "get_function_configuration", "delete_function", "invoke"):
        assert fails(lambda op=operation: getattr(raw, op)(FunctionName=other_region), 404,  # type: ignore[misc]
                     "ResourceNotFoundException") == message
    other_account = f"arn:aws:lambda:us-east-1:111111111111:function:{function}"
    assert fails(lambda: call(raw, "create_function", {"FunctionName": other_account}), 403,
                 "AccessDeniedException") is None
    assert fails(lambda: raw.get_function(FunctionName=other_account), 403, "AccessDeniedException") is None


def test_runtimes_refused_on_create(raw: Any) -> None:
    """[LS TestRuntimeValidation::test_create_deprecated_function_runtime_with_validation_enabled[provided]] and
    [LS test_create_lambda_exceptions] invalid_runtime_exc: both 400 InvalidParameterValueException."""
    name = f"val-{uuid.uuid4().hex[:10]}"
    message = fails(lambda: raw.create_function(FunctionName=name, Handler="index.handler", Code={"ZipFile": CODE},
                                                Role=ROLE, Runtime="provided"), 400, "InvalidParameterValueException")
    assert message == ("The runtime parameter of provided is no longer supported for creating or updating AWS Lambda "
                       "functions. We recommend you use a supported runtime while creating or updating functions.")
    message = fails(lambda: raw.create_function(FunctionName=name, Handler="index.handler", Code={"ZipFile": CODE},
                                                Role=ROLE, Runtime="non-existent-runtime"),
                    400, "InvalidParameterValueException")
    assert message == (
        "Value non-existent-runtime at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: "
        "[nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, "
        "python3.10, python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, nodejs16.x, "
        "dotnet10, dotnet8, java11, dotnet6, nodejs18.x, provided.al2, java8.al2] or be a valid ARN")


def test_layer_from_another_region(raw: Any, function: str) -> None:
    """[LS TestLambdaLayer::test_layer_function_exceptions] create_function_with_layer_in_different_region:
    400 InvalidParameterValueException "Layers are not in the same region as the function. Layers are expected
    to be in region <region>."."""
    layer = "arn:aws:lambda:eu-west-1:000000000000:layer:somewhere:1"
    message = fails(lambda: raw.update_function_configuration(FunctionName=function, Layers=[layer]), 400,
                    "InvalidParameterValueException")
    assert message == "Layers are not in the same region as the function. Layers are expected to be in region us-east-1."  # noqa: E501


def test_reserved_concurrency_limits(raw: Any, function: str) -> None:
    """[LS TestLambdaReservedConcurrency::test_function_concurrency_exceptions]/[test_function_concurrency]:
    reserving so much that less than the unreserved minimum (100) would remain is 400
    InvalidParameterValueException; a qualified ARN is refused with AWS's text; a missing function names
    `:$LATEST`. [LS TestLambdaProvisionedConcurrency::test_provisioned_concurrency_exceptions]: provisioned
    concurrency above the reserved concurrency is refused."""
    message = fails(lambda: raw.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=950),
                    400, "InvalidParameterValueException")
    assert message == ("Specified ReservedConcurrentExecutions for function decreases account's "
                       "UnreservedConcurrentExecution below its minimum value of [100].")
    message = fails(lambda: raw.put_function_concurrency(FunctionName=f"{function}:1", ReservedConcurrentExecutions=1),
                    400, "InvalidParameterValueException")
    assert message == ("This operation is permitted on Lambda functions only. Aliases and versions do not support "
                       "this operation. Please specify either a function name or an unqualified function ARN.")
    message = fails(lambda: raw.put_function_concurrency(FunctionName="doesnotexist", ReservedConcurrentExecutions=1),
                    404, "ResourceNotFoundException")
    assert message == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:doesnotexist:$LATEST"
    raw.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=1)
    version = raw.publish_version(FunctionName=function)["Version"]
    message = fails(lambda: raw.put_provisioned_concurrency_config(FunctionName=function, Qualifier=version,
                                                                   ProvisionedConcurrentExecutions=2),
                    400, "InvalidParameterValueException")
    assert message == ("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution "
                       "for function")
    raw.delete_function_concurrency(FunctionName=function)


def test_add_permission_validation(raw: Any, function: str) -> None:
    """[LS TestLambdaPermissions::test_permission_exceptions]: AWS's code and text for an invalid statement id,
    a qualifier that contradicts the ARN's, `$LATEST`, and a principal that is not one."""
    message = fails(lambda: raw.add_permission(FunctionName=function, Action="lambda:InvokeFunction",
                                               StatementId="example.com", Principal="s3.amazonaws.com"),
                    400, "ValidationException")
    assert message == ("1 validation error detected: Value 'example.com' at 'statementId' failed to satisfy "
                       "constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)")
    message = fails(lambda: raw.add_permission(FunctionName=f"{function}:alias-not-42", Action="lambda:InvokeFunction",
                                               StatementId="s3", Principal="s3.amazonaws.com", Qualifier="42"),
                    400, "InvalidParameterValueException")
    assert message == "The derived qualifier from the function name does not match the specified qualifier."
    message = fails(lambda: raw.add_permission(FunctionName=f"{function}:$LATEST", Action="lambda:InvokeFunction",
                                               StatementId="s3", Principal="s3.amazonaws.com", Qualifier="$LATEST"),
                    400, "InvalidParameterValueException")
    assert message == "We currently do not support adding policies for $LATEST."
    message = fails(lambda: raw.add_permission(FunctionName=function, Action="lambda:InvokeFunction",
                                               StatementId="lambda", Principal="invalid.nonaws.com"),
                    400, "InvalidParameterValueException")
    assert message == "The provided principal was invalid. Please check the principal and try again."
    message = fails(lambda: raw.add_permission(FunctionName="doesnotexist", Action="lambda:InvokeFunction",
                                               StatementId="s3", Principal="s3.amazonaws.com"),
                    404, "ResourceNotFoundException")
    assert message == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:doesnotexist"


TAG_RESOURCE_PATTERN = (
    r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|"  # noqa: E501
    r"event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|"
    r"capacity-provider:[a-zA-Z0-9-_]+)"
)


def test_tag_request_validation(raw: Any, function: str) -> None:
    """[LS TestLambdaTag::test_tag_exceptions[lambda_function]] and [LS test_tag_lifecycle]: a missing function,
    an alias ARN, an ARN of no taggable kind (AWS's pattern of taggable ARNs), more than 50 tags."""
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function}"
    missing = "arn:aws:lambda:us-east-1:000000000000:function:doesnotexist"
    assert fails(lambda: raw.tag_resource(Resource=missing, Tags={"A": "B"}), 404,
                 "ResourceNotFoundException") == f"Function not found: {missing}"
    assert fails(lambda: raw.list_tags(Resource=f"{arn}:alias"), 400, "InvalidParameterValueException") == (
        "Tags on function aliases and versions are not supported. Please specify a function ARN.")
    invalid = "arn:aws:lambda:us-east-1:000000000000:foobar:x"
    assert fails(lambda: raw.list_tags(Resource=invalid), 400, "ValidationException") == (
        f"1 validation error detected: Value '{invalid}' at 'resource' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {TAG_RESOURCE_PATTERN}")
    too_many = {f"key{n}": "v" for n in range(51)}
    assert fails(lambda: raw.tag_resource(Resource=arn, Tags=too_many), 400, "InvalidParameterValueException") == (
        "Number of tags exceeds resource tag limit.")


def test_oversized_request(raw: Any) -> None:
    """[LS TestLambdaSizeLimits::test_oversized_request_create_lambda]: 413 RequestEntityTooLargeException
    "Request must be smaller than 70167211 bytes for the CreateFunction operation"."""
    body = {"FunctionName": "big", "Role": ROLE, "Runtime": RUNTIME, "Handler": "index.handler",
            "Code": {"ZipFile": "A" * 70167212}}
    message = fails(lambda: raw.create_function(**body), 413, "RequestEntityTooLargeException")
    assert message == "Request must be smaller than 70167211 bytes for the CreateFunction operation"
