"""Field rules and limits, with AWS's error types and messages."""

from __future__ import annotations

import pytest

from nimbus.config import Settings
from nimbus.control import validation as v
from nimbus.errors import InvalidParameterValue, ValidationError

S = Settings()


@pytest.mark.parametrize("memory", [127, 10241, 0, -5])
def test_memory_out_of_range(memory: int) -> None:
    with pytest.raises(ValidationError) as err:
        v.check_memory(memory, S)
    assert f"Value '{memory}' at 'memorySize' failed to satisfy constraint" in err.value.message


def test_limits_follow_settings() -> None:
    small = Settings(memory_max=512, timeout_max=60, ephemeral_max=1024, layers_max=1)
    v.check_memory(512, small)
    with pytest.raises(ValidationError):
        v.check_memory(513, small)
    with pytest.raises(ValidationError, match="less than or equal to 60"):
        v.check_timeout(61, small)
    with pytest.raises(ValidationError):
        v.check_ephemeral(1025, small)
    with pytest.raises(InvalidParameterValue, match="more than 1 layers"):
        v.check_layers(["a", "b"], small)


def test_reserved_environment_keys() -> None:
    with pytest.raises(InvalidParameterValue) as err:
        v.check_environment({"AWS_REGION": "x", "OK": "1", "_HANDLER": "h"}, S)
    assert err.value.message.endswith("Reserved keys used in this request: AWS_REGION, _HANDLER")


def test_environment_key_pattern_and_size() -> None:
    with pytest.raises(ValidationError):
        v.check_environment({"1BAD": "x"}, S)
    with pytest.raises(ValidationError):
        v.check_environment({"A": "x"}, S)  # the pattern needs two characters at least
    v.check_environment({"K" + str(i): "v" * 10 for i in range(100)}, S)
    with pytest.raises(InvalidParameterValue, match="exceeded the 4KB limit"):
        v.check_environment({"BIG": "x" * 4100}, S)


def test_runtimes() -> None:
    with pytest.raises(InvalidParameterValue, match="Value python9.9 at 'runtime'"):
        v.check_runtime("python9.9")
    with pytest.raises(InvalidParameterValue, match="Runtimes available here"):
        v.check_runtime("java21")  # a real Lambda runtime this host cannot run


@pytest.mark.parametrize("handler", ["nodot", "mod.", ".func", "a b.c", "x" * 129, "pkg/.handler"])
def test_bad_python_handlers(handler: str) -> None:
    with pytest.raises((InvalidParameterValue, ValidationError)):
        v.check_handler(handler, "python3.12")


@pytest.mark.parametrize("handler", ["lambda_function.lambda_handler", "src/app/main.handler", "a.b"])
def test_good_python_handlers(handler: str) -> None:
    v.check_handler(handler, "python3.12")


def test_role_and_architectures() -> None:
    v.check_role("arn:aws:iam::123456789012:role/service-role/x")
    with pytest.raises(ValidationError, match="at 'role'"):
        v.check_role("not-a-role")
    v.check_architectures(["arm64"])
    with pytest.raises(ValidationError):
        v.check_architectures(["x86_64", "arm64"])
    with pytest.raises(ValidationError):
        v.check_architectures(["mips"])


def test_layers() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:layer:lib:3"
    with pytest.raises(InvalidParameterValue, match=f"Layer version {arn} does not exist"):
        v.check_layers([arn], S)
    with pytest.raises(ValidationError):
        v.check_layers(["arn:aws:lambda:us-east-1:123456789012:layer:lib"], S)
    with pytest.raises(InvalidParameterValue, match="Two different versions"):
        v.check_layers([arn, arn[:-1] + "4"], S, existing=[arn, arn[:-1] + "4"])
    v.check_layers([arn], S, existing=[arn])


def test_logging_levels_need_json() -> None:
    v.check_logging({"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"})
    with pytest.raises(InvalidParameterValue):
        v.check_logging({"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"})
    with pytest.raises(ValidationError):
        v.check_logging({"LogFormat": "XML"})
