"""Layers end to end: the layers API through boto3, and functions running with their layers at /opt."""

from __future__ import annotations

import io
import json
import sys
import uuid
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

MINOR = RUNTIME.removeprefix("python")

PROBE = '''
import json, os, subprocess, sys

def handler(event, context):
    import shared, only_first, sitepkg
    out = {
        "shared": shared.WHO, "first": only_first.VALUE, "sitepkg": sitepkg.VALUE,
        "path": os.environ["PATH"], "ld": os.environ["LD_LIBRARY_PATH"],
        "opt_python": [p for p in sys.path if p.endswith("/python") or "site-packages" in p],
    }
    if event.get("tool"):
        out["tool"] = subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip()
    if event.get("write_opt"):
        try:
            open("/opt/python/new.txt", "w").write("x")
            out["write"] = "ok"
        except OSError as e:
            out["write"] = type(e).__name__
    return out
'''


def layer_zip(files: dict[str, str]) -> bytes:
    """A zip of `files`; those under bin/ are executable."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name.startswith("bin/") else 0o644) << 16
            zf.writestr(info, content)
    return buf.getvalue()


def publish(lam: Any, name: str, files: dict[str, str], **kw: Any) -> dict[str, Any]:
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": layer_zip(files)}, **kw)  # type: ignore[no-any-return]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_publish_get_list_delete(lam: Any) -> None:
    name = uniq("layer")
    v1 = publish(lam, name, {"python/a.py": "A = 1\n"}, Description="first", LicenseInfo="MIT",
                 CompatibleRuntimes=["python3.12", "python3.11"], CompatibleArchitectures=["x86_64"])
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == 1
    assert v1["LayerArn"] == f"arn:aws:lambda:us-east-1:000000000000:layer:{name}"
    assert v1["LayerVersionArn"] == v1["LayerArn"] + ":1"
    assert v1["Description"] == "first" and v1["LicenseInfo"] == "MIT"
    assert v1["CompatibleRuntimes"] == ["python3.12", "python3.11"]
    assert v1["CompatibleArchitectures"] == ["x86_64"]
    assert v1["Content"]["CodeSize"] > 0 and v1["Content"]["CodeSha256"] and v1["Content"]["Location"]
    v2 = publish(lam, name, {"python/a.py": "A = 2\n"}, CompatibleRuntimes=["nodejs20.x"])
    assert v2["Version"] == 2

    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["LayerVersionArn"] == v1["LayerVersionArn"]
    assert got["Content"]["CodeSha256"] == v1["Content"]["CodeSha256"]
    by_arn = lam.get_layer_version_by_arn(Arn=v2["LayerVersionArn"])
    assert by_arn["Version"] == 2
    # A layer ARN works as LayerName too.
    assert lam.get_layer_version(LayerName=v1["LayerArn"], VersionNumber=2)["Version"] == 2

    versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    assert "Content" not in versions[0]
    only_py = lam.list_layer_versions(LayerName=name, CompatibleRuntime="python3.12")["LayerVersions"]
    assert [v["Version"] for v in only_py] == [1]

    layers = {entry["LayerName"]: entry for entry in lam.list_layers()["Layers"]}
    assert layers[name]["LatestMatchingVersion"]["Version"] == 2
    layers = {e["LayerName"]: e for e in lam.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    assert layers[name]["LatestMatchingVersion"]["Version"] == 1
    assert name not in {e["LayerName"] for e in lam.list_layers(CompatibleArchitecture="arm64")["Layers"]}

    lam.delete_layer_version(LayerName=name, VersionNumber=2)
    lam.delete_layer_version(LayerName=name, VersionNumber=2)  # deleting again is not an error
    with pytest.raises(ClientError) as err:
        lam.get_layer_version(LayerName=name, VersionNumber=2)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert publish(lam, name, {"x.txt": "x"})["Version"] == 3  # numbers are never reused


def test_pagination(lam: Any) -> None:
    name = uniq("paged")
    for i in range(5):
        publish(lam, name, {"f.txt": str(i)})
    seen: list[int] = []
    kwargs: dict[str, Any] = {"LayerName": name, "MaxItems": 2}
    while True:
        page = lam.list_layer_versions(**kwargs)
        seen += [v["Version"] for v in page["LayerVersions"]]
        if "NextMarker" not in page:
            break
        kwargs["Marker"] = page["NextMarker"]
    assert seen == [5, 4, 3, 2, 1]
    names = [e["LayerName"] for e in lam.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 1})
             .build_full_result()["Layers"]]
    assert name in names and names == sorted(names)


def test_policies(lam: Any) -> None:
    name = uniq("shared")
    publish(lam, name, {"f.txt": "x"})
    with pytest.raises(ClientError) as err:
        lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    added = lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="everyone",
                                             Action="lambda:GetLayerVersion", Principal="*",
                                             OrganizationId="o-abcdefghij")
    stmt = json.loads(added["Statement"])
    assert stmt == {
        "Sid": "everyone", "Effect": "Allow", "Principal": "*", "Action": "lambda:GetLayerVersion",
        "Resource": f"arn:aws:lambda:us-east-1:000000000000:layer:{name}:1",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
    }
    lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="acct",
                                     Action="lambda:GetLayerVersion", Principal="123456789012")
    with pytest.raises(ClientError) as err:
        lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="acct",
                                         Action="lambda:GetLayerVersion", Principal="123456789012")
    assert err.value.response["Error"]["Code"] == "ResourceConflictException"
    policy = lam.get_layer_version_policy(LayerName=name, VersionNumber=1)
    doc = json.loads(policy["Policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["everyone", "acct"]
    assert doc["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    with pytest.raises(ClientError) as err:
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="acct", RevisionId="nope")
    assert err.value.response["Error"]["Code"] == "PreconditionFailedException"
    lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="acct",
                                        RevisionId=policy["RevisionId"])
    with pytest.raises(ClientError) as err:
        lam.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="acct")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        lam.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="bad",
                                         Action="lambda:InvokeFunction", Principal="*")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_validation_errors(lam: Any) -> None:
    with pytest.raises(ClientError) as err:
        lam.publish_layer_version(LayerName=uniq("s3"), Content={"S3Bucket": "bucket", "S3Key": "key.zip"})
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "S3" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        publish(lam, uniq("rt"), {"f": "x"}, CompatibleRuntimes=["cobol42"])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        lam.publish_layer_version(LayerName=uniq("zip"), Content={"ZipFile": b"not a zip"})
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"


@pytest.fixture(scope="module")
def two_layers(lam: Any) -> tuple[str, str]:
    first = publish(lam, uniq("first"), {
        "python/shared.py": "WHO = 'first'\n",
        "python/only_first.py": "VALUE = 'from first'\n",
    })["LayerVersionArn"]
    second = publish(lam, uniq("second"), {
        "python/shared.py": "WHO = 'second'\n",
        f"python/lib/python{MINOR}/site-packages/sitepkg/__init__.py": "VALUE = 'site'\n",
        "bin/layer-tool": "#!/bin/sh\necho tool-ran\n",
    })["LayerVersionArn"]
    return first, second


def _create(lam: Any, layers: list[str], **kw: Any) -> str:
    name = uniq("fn-layers")
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="app.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"app.py": PROBE})}, Layers=layers, **kw)
    return name


def _invoke(lam: Any, name: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}))
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body  # type: ignore[no-any-return]


def _backend(server: NimbusServer) -> str:
    with server.http() as http:
        return str(http.get("/nimbus/v1/health").json()["isolation"])


def test_function_sees_layers_merged_in_order(lam: Any, server: NimbusServer, two_layers: tuple[str, str]) -> None:
    first, second = two_layers
    name = _create(lam, [first, second])
    config = lam.get_function(FunctionName=name)["Configuration"]
    assert [layer["Arn"] for layer in config["Layers"]] == [first, second]
    assert all(layer["CodeSize"] > 0 for layer in config["Layers"])
    body = _invoke(lam, name, {"tool": True, "write_opt": True})
    assert body["shared"] == "second"  # the later layer wins
    assert body["first"] == "from first" and body["sitepkg"] == "site"
    assert body["tool"] == "tool-ran"  # /opt/bin is on PATH
    if _backend(server) == "namespaces":
        assert body["path"].endswith(":/opt/bin") and body["ld"].endswith(":/opt/lib")
        assert body["opt_python"] == [f"/opt/python/lib/python{MINOR}/site-packages", "/opt/python"]
        assert body["write"] in ("OSError", "PermissionError")  # read-only
    # Swapping the order swaps the winner (a new tree, new environments).
    lam.update_function_configuration(FunctionName=name, Layers=[second, first])
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert _invoke(lam, name)["shared"] == "first"


def test_deleting_a_layer_version_keeps_functions_working(lam: Any) -> None:
    arn = publish(lam, uniq("gone"), {"python/shared.py": "WHO = 'kept'\n", "python/only_first.py": "VALUE = 1\n",
                                      "python/sitepkg.py": "VALUE = 2\n"})["LayerVersionArn"]
    name = _create(lam, [arn])
    layer_name, version = arn.rsplit(":", 2)[-2:]
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=int(version))
    # A change of configuration starts new environments from the stored copy.
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"NEW": "1"}})
    assert _invoke(lam, name)["shared"] == "kept"
    assert lam.get_function(FunctionName=name)["Configuration"]["Layers"][0]["Arn"] == arn
    # But it can no longer be added to a function.
    with pytest.raises(ClientError) as err:
        _create(lam, [arn])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert err.value.response["Error"]["Message"] == f"Layer version {arn} does not exist."


def test_function_layer_errors(lam: Any, two_layers: tuple[str, str]) -> None:
    first, _ = two_layers
    base = first.rsplit(":", 1)[0]
    with pytest.raises(ClientError) as err:
        _create(lam, [base + ":999"])
    assert err.value.response["Error"]["Message"] == f"Layer version {base}:999 does not exist."
    with pytest.raises(ClientError) as err:
        _create(lam, [first, base + ":999"][:1] * 6)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "more than 5 layers" in err.value.response["Error"]["Message"]
    second_version = publish(lam, base.rsplit(":", 1)[1], {"f": "x"})["LayerVersionArn"]
    with pytest.raises(ClientError) as err:
        _create(lam, [first, second_version])
    assert "versions of the same layer" in err.value.response["Error"]["Message"]
    name = _create(lam, [first])
    lam.update_function_configuration(FunctionName=name, Layers=[])
    assert "Layers" not in lam.get_function_configuration(FunctionName=name)


@pytest.mark.skipif(sys.platform != "linux", reason="linux only")
def test_layers_on_a_published_version(lam: Any, two_layers: tuple[str, str]) -> None:
    first, second = two_layers
    name = _create(lam, [first, second])
    version = lam.publish_version(FunctionName=name)["Version"]
    assert [x["Arn"] for x in lam.get_function(FunctionName=name, Qualifier=version)["Configuration"]["Layers"]] == [
        first, second]
    out = lam.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
    assert json.loads(out["Payload"].read())["shared"] == "second"


def test_process_backend_points_the_runtime_at_the_merged_tree(tmp_path: Any) -> None:
    """The process backend cannot mount /opt: the environment's paths lead to the merged tree instead."""
    srv = NimbusServer(tmp_path / "data", env={"NIMBUS_ISOLATION": "process"}).start()
    try:
        lam = srv.client("lambda")
        first = publish(lam, "p-first", {"python/shared.py": "WHO = 'first'\n", "python/only_first.py": "VALUE = 1\n"})
        second = publish(lam, "p-second", {
            "python/shared.py": "WHO = 'second'\n",
            f"python/lib/python{MINOR}/site-packages/sitepkg.py": "VALUE = 'site'\n",
            "bin/layer-tool": "#!/bin/sh\necho tool-ran\n",
        })
        name = _create(lam, [first["LayerVersionArn"], second["LayerVersionArn"]])
        body = _invoke(lam, name, {"tool": True})
        assert (body["shared"], body["sitepkg"], body["tool"]) == ("second", "site", "tool-ran")
        opt = body["opt_python"][-1].removesuffix("/python")
        assert opt.startswith(str(tmp_path)) and body["path"].endswith(f":{opt}/bin")
    finally:
        srv.stop()
