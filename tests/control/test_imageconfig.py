"""The configuration rules of PackageType Image functions (before any registry is asked)."""

from __future__ import annotations

import pytest

from nimbus.config import Settings
from nimbus.control.configs import apply_request
from nimbus.control.images import parse_uri
from nimbus.errors import InvalidParameterValue, ValidationError
from tests.conftest import RUNTIME

ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def image_request(**extra: object) -> dict[str, object]:
    return {"Role": ROLE, "PackageType": "Image", "Code": {"ImageUri": "r.example.com/a:b"}, **extra}


def test_image_functions_need_no_runtime_and_keep_image_config(tmp_path: object) -> None:
    conf = apply_request(image_request(ImageConfig={"Command": ["app.handler"], "WorkingDirectory": "/w"}),
                         Settings(), None)
    assert conf["PackageType"] == "Image" and "Runtime" not in conf
    assert conf["ImageConfig"] == {"Command": ["app.handler"], "WorkingDirectory": "/w"}
    updated = apply_request({"ImageConfig": {"EntryPoint": ["/bin/run"]}, "MemorySize": 1024}, Settings(), conf)
    assert updated["ImageConfig"] == {"EntryPoint": ["/bin/run"]} and updated["MemorySize"] == 1024


@pytest.mark.parametrize("extra, message", [
    ({"Runtime": RUNTIME}, "Runtime is not supported"),
    ({"Handler": "app.handler"}, "Handler is not supported"),
    ({"Layers": ["arn:aws:lambda:us-east-1:000000000000:layer:x:1"]}, "Layers are not supported"),
    ({"SnapStart": {"ApplyOn": "PublishedVersions"}}, "SnapStart is not supported"),
])
def test_image_functions_refuse_zip_only_fields(extra: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        apply_request(image_request(**extra), Settings(), None)


def test_zip_functions_refuse_image_config_and_unknown_package_types() -> None:
    zip_request = {"Role": ROLE, "Runtime": RUNTIME, "Handler": "app.handler"}
    with pytest.raises(InvalidParameterValue, match="only supported for functions with PackageType Image"):
        apply_request({**zip_request, "ImageConfig": {"Command": ["x"]}}, Settings(), None)
    with pytest.raises(ValidationError, match="Zip, Image"):
        apply_request({**zip_request, "PackageType": "Jar"}, Settings(), None)


@pytest.mark.parametrize("uri", ["r.example.com/team/app:v1", "127.0.0.1:5000/app",
                                 "localhost/app@sha256:" + "a" * 64, "nimbus.local/uploads@sha256:" + "b" * 64])
def test_image_uris(uri: str) -> None:
    assert parse_uri(uri)


@pytest.mark.parametrize("uri", ["app:v1", "r.example.com/App:v1", "r.example.com/app@sha256:short", ""])
def test_bad_image_uris(uri: str) -> None:
    with pytest.raises(InvalidParameterValue, match="is not valid"):
        parse_uri(uri)
