"""Layers in the registry: publishing, numbering, lookups, what functions store and get from their layers,
the size limit, and the merged /opt tree."""

from __future__ import annotations

import base64
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from nimbus.control.layertree import merged_tree
from nimbus.control.registry import Registry
from nimbus.errors import InvalidParameterValue, ResourceNotFound, ValidationError
from tests.conftest import RUNTIME

from .conftest import ROLE, open_registry


def zip_of(files: dict[str, str | bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


def publish(reg: Registry, name: str, files: dict[str, str | bytes], **extra: Any) -> dict[str, Any]:
    return reg.publish_layer_version(name, {"Content": {"ZipFile": base64.b64encode(zip_of(files)).decode()}, **extra})


def create(reg: Registry, name: str, layers: list[str], code: dict[str, str | bytes] | None = None) -> dict[str, Any]:
    req = {"FunctionName": name, "Role": ROLE, "Runtime": RUNTIME, "Handler": "app.handler", "Layers": layers}
    return reg.create_function(req, zip_of(code or {"app.py": "def handler(e, c):\n    return e\n"}))


def test_publish_numbers_versions_and_never_reuses_them(registry: Registry) -> None:
    v1 = publish(registry, "lib", {"a.txt": "1"}, Description="d", CompatibleRuntimes=["python3.12"])
    assert v1["Version"] == 1 and v1["Description"] == "d"
    assert v1["LayerVersionArn"] == "arn:aws:lambda:us-east-1:000000000000:layer:lib:1"
    assert v1["Content"]["CodeSize"] == len(zip_of({"a.txt": "1"}))
    assert publish(registry, "lib", {"a.txt": "2"})["Version"] == 2
    registry.delete_layer_version("lib", 2)
    assert publish(registry, "lib", {"a.txt": "3"})["Version"] == 3
    listed = registry.list_layer_versions("lib", None, None, None, None)["LayerVersions"]
    assert [v["Version"] for v in listed] == [3, 1]


def test_lookups_by_name_arn_and_errors(registry: Registry) -> None:
    arn = publish(registry, "lib", {"a.txt": "1"})["LayerVersionArn"]
    assert registry.get_layer_version_by_arn(arn)["Version"] == 1
    assert registry.get_layer_version("arn:aws:lambda:us-east-1:000000000000:layer:lib", "1")["Version"] == 1
    with pytest.raises(ResourceNotFound, match="does not exist"):
        registry.get_layer_version("lib", 9)
    with pytest.raises(ResourceNotFound):
        registry.get_layer_version("arn:aws:lambda:us-east-1:111111111111:layer:lib", 1)
    with pytest.raises(ValidationError):
        registry.get_layer_version("bad name!", 1)
    with pytest.raises(ValidationError):
        registry.get_layer_version_by_arn("arn:aws:lambda:us-east-1:000000000000:function:f")
    assert registry.list_layer_versions("nothing-here", None, None, None, None) == {"LayerVersions": []}


def test_publish_validation(registry: Registry) -> None:
    with pytest.raises(InvalidParameterValue, match="S3"):
        registry.publish_layer_version("x", {"Content": {"S3Bucket": "b", "S3Key": "k"}})
    with pytest.raises(InvalidParameterValue, match="base64"):
        registry.publish_layer_version("x", {"Content": {"ZipFile": "%%%"}})
    with pytest.raises(ValidationError, match="compatibleArchitectures"):
        publish(registry, "x", {"a": "1"}, CompatibleArchitectures=["sparc"])
    with pytest.raises(ValidationError, match="licenseInfo"):
        publish(registry, "x", {"a": "1"}, LicenseInfo="x" * 513)


def test_function_stores_layer_content_and_spec_gets_opt(registry: Registry) -> None:
    a = publish(registry, "a", {"python/m.py": "X = 'a'\n", "python/only_a.py": ""})
    b = publish(registry, "b", {"python/m.py": "X = 'b'\n"})
    conf = create(registry, "fn", [a["LayerVersionArn"], b["LayerVersionArn"]])
    assert conf["Layers"] == [
        {"Arn": a["LayerVersionArn"], "CodeSize": a["Content"]["CodeSize"]},
        {"Arn": b["LayerVersionArn"], "CodeSize": b["Content"]["CodeSize"]},
    ]
    spec = registry.snapshot("fn").versions["$LATEST"]
    assert spec.layers == (a["LayerVersionArn"], b["LayerVersionArn"])
    assert spec.opt_dir is not None
    assert (spec.opt_dir / "python/m.py").read_text() == "X = 'b'\n"
    assert (spec.opt_dir / "python/only_a.py").exists()
    # Deleting the layer versions changes nothing for the function.
    registry.delete_layer_version("a", 1)
    registry.delete_layer_version("b", 1)
    registry.update_function_configuration("fn", {"Description": "touch"})
    again = registry.snapshot("fn").versions["$LATEST"]
    assert again.opt_dir == spec.opt_dir and (again.opt_dir / "python/m.py").exists()
    assert registry.get_function_configuration("fn", None)["Layers"][0]["CodeSize"] == a["Content"]["CodeSize"]
    # ... but they cannot be added any more.
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        registry.update_function_configuration("fn", {"Layers": [a["LayerVersionArn"]]})


def test_function_without_layers_has_no_opt(registry: Registry) -> None:
    create(registry, "plain", [])
    assert registry.snapshot("plain").versions["$LATEST"].opt_dir is None


def test_code_plus_layers_size_limit(tmp_path: Path) -> None:
    reg = open_registry(tmp_path / "data", unzipped_max_bytes=1000)
    try:
        big = publish(reg, "big", {"blob.bin": b"x" * 700})["LayerVersionArn"]
        with pytest.raises(InvalidParameterValue) as err:
            create(reg, "fn", [big], {"app.py": "#" * 400})
        assert str(err.value) == (
            "Function code combined with layers exceeds the maximum allowed size of 1000 bytes. "
            "The actual size is 1100 bytes."
        )
        create(reg, "fn", [], {"app.py": "#" * 400})
        with pytest.raises(InvalidParameterValue, match="combined with layers"):
            reg.update_function_configuration("fn", {"Layers": [big]})
        create(reg, "small", [big], {"app.py": "#" * 10})
        with pytest.raises(InvalidParameterValue, match="combined with layers"):
            reg.update_function_code("small", {}, zip_of({"app.py": "#" * 400}))
    finally:
        reg.close()


def test_list_layers_filters_and_pages(registry: Registry) -> None:
    for name in ("l1", "l2", "l3"):
        publish(registry, name, {"a": "1"}, CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["arm64"])
    publish(registry, "l2", {"a": "2"}, CompatibleRuntimes=["nodejs20.x"])
    page = registry.list_layers(None, None, None, 2)
    assert [entry["LayerName"] for entry in page["Layers"]] == ["l1", "l2"]
    rest = registry.list_layers(None, None, page["NextMarker"], 2)
    assert [entry["LayerName"] for entry in rest["Layers"]] == ["l3"] and "NextMarker" not in rest
    latest = {e["LayerName"]: e["LatestMatchingVersion"]["Version"] for e in registry.list_layers(
        "python3.12", "arm64", None, None)["Layers"]}
    assert latest == {"l1": 1, "l2": 1, "l3": 1}
    assert registry.list_layers(None, None, None, None)["Layers"][1]["LatestMatchingVersion"]["Version"] == 2
    with pytest.raises(ValidationError):
        registry.list_layers("cobol", None, None, None)
    with pytest.raises(ValidationError):
        registry.list_layers(None, None, None, 51)


def test_merged_tree_overlays_in_order_and_is_built_once(registry: Registry) -> None:
    store = registry.codestore
    first = store.put(zip_of({"bin/tool": "1", "lib/x/a": "a", "conflict/inner": "dir", "same": "1"}))
    second = store.put(zip_of({"bin/tool": "2", "lib/x/b": "b", "conflict": "now a file"}, {"link": "bin/tool"}))
    tree = merged_tree(store, [first.sha256_hex, second.sha256_hex])
    assert (tree / "bin/tool").read_text() == "2"
    assert sorted(os.listdir(tree / "lib/x")) == ["a", "b"]
    assert (tree / "conflict").read_text() == "now a file"
    assert os.readlink(tree / "link") == "bin/tool" and (tree / "link").read_text() == "2"
    assert (tree / "same").read_text() == "1"
    assert merged_tree(store, [first.sha256_hex, second.sha256_hex]) == tree
    other = merged_tree(store, [second.sha256_hex, first.sha256_hex])
    assert other != tree and (other / "bin/tool").read_text() == "1" and (other / "conflict").is_dir()
    # The layers' own trees are untouched by merges.
    assert (store.unpacked(first.sha256_hex) / "bin/tool").read_text() == "1"
    assert merged_tree(store, [first.sha256_hex]) == store.unpacked(first.sha256_hex)


def test_layer_policies(registry: Registry) -> None:
    publish(registry, "lib", {"a": "1"})
    out = registry.add_layer_version_permission(
        "lib", 1, {"StatementId": "s1", "Action": "lambda:GetLayerVersion", "Principal": "*"}, None)
    policy = registry.get_layer_version_policy("lib", 1)
    assert policy["RevisionId"] == out["RevisionId"]
    with pytest.raises(ValidationError):
        registry.add_layer_version_permission(
            "lib", 1, {"StatementId": "s2", "Action": "lambda:GetLayerVersion", "Principal": "someone"}, None)
    registry.remove_layer_version_permission("lib", 1, "s1", out["RevisionId"])
    with pytest.raises(ResourceNotFound, match="No policy"):
        registry.get_layer_version_policy("lib", 1)
    with pytest.raises(ResourceNotFound):
        registry.add_layer_version_permission(
            "lib", 7, {"StatementId": "s1", "Action": "lambda:GetLayerVersion", "Principal": "*"}, None)
