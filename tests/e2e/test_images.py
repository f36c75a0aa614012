"""Container-image functions end to end (issue 19): a real registry (CNCF distribution, Debian's
`docker-registry`) on loopback, images built without Docker (tests/e2e/ocibuild.py) and pushed with skopeo,
deployed and invoked through boto3: AWS's base-image layout (`/lambda-entrypoint.sh`, `/var/runtime/bootstrap`,
an extension in `/opt/extensions`, a whiteout), an image starting awslambdaric itself, ImageConfig overrides,
environment, a tag moved after publishing, a missing image and a registry that is down."""

from __future__ import annotations

import base64
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE, NimbusServer
from tests.e2e import ocibuild
from tests.e2e.ocibuild import Layer, Registry, host_files, push, write_layout

pytestmark = pytest.mark.skipif(
    ocibuild.REGISTRY is None or ocibuild.SKOPEO is None or not sys.platform.startswith("linux"),
    reason="needs skopeo and docker-registry (scripts/install-system-deps.sh)",
)

ENTRYPOINT_SH = """#!/bin/sh
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
exec /var/runtime/bootstrap
"""

# AWS's base images: /lambda-entrypoint.sh execs /var/runtime/bootstrap, the runtime loop.
RUNTIME_BOOTSTRAP = r"""#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS="$(mktemp)"
while true; do
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  ID=$(grep -Fi "Lambda-Runtime-Aws-Request-Id:" "$HEADERS" | head -1 | cut -d' ' -f2- | tr -d '\r\n')
  REMOVED=no; [ -e /etc/removed ] && REMOVED=yes
  WRITABLE=no; touch /var/task/probe 2>/dev/null && WRITABLE=yes
  EXT=$(cat /tmp/ext-registered 2>/dev/null || echo none)
  BODY="{\"event\":$EVENT,\"handler\":\"$_HANDLER\",\"cwd\":\"$PWD\",\"uid\":\"$(id -u)\","
  BODY+="\"greeting\":\"${GREETING:-}\",\"image_var\":\"${IMAGE_VAR:-}\",\"task_root\":\"$LAMBDA_TASK_ROOT\","
  BODY+="\"removed\":\"$REMOVED\",\"writable\":\"$WRITABLE\",\"ext\":\"$EXT\",\"fn\":\"$AWS_LAMBDA_FUNCTION_NAME\"}"
  curl -sS -X POST "$API/invocation/$ID/response" -d "$BODY" >/dev/null
done
"""

EXTENSION = r"""#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
H="$(mktemp)"
curl -sS -D "$H" -o /dev/null -X POST "$API/register" -H "Lambda-Extension-Name: marker" -d '{"events":["INVOKE"]}'
ID=$(grep -Fi "Lambda-Extension-Identifier:" "$H" | head -1 | cut -d' ' -f2- | tr -d '\r\n')
echo "registered" > /tmp/ext-registered
while true; do curl -sS "$API/event/next" -H "Lambda-Extension-Identifier: $ID" >/dev/null; done
"""

PY_HANDLER = """import os, sys
def handler(event, context):
    return {"event": event, "python": sys.version.split()[0], "cwd": os.getcwd(),
            "function": context.function_name, "request_id": context.aws_request_id}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def base_layer() -> bytes:
    """bash, curl and a few tools with their libraries, and /etc/removed (a later layer whites it out)."""
    layer = Layer()
    for inside, host in sorted(host_files(ocibuild.BASH_TOOLS).items()):
        layer.add_host_file(inside, host)
    layer.add_bytes("etc/removed", b"lower layer\n")
    layer.add_bytes("etc/passwd", b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    return layer.finish()


def base_image_layer(variant: str) -> bytes:
    layer = Layer()
    layer.add_bytes("lambda-entrypoint.sh", ENTRYPOINT_SH.encode(), 0o755)
    layer.add_bytes("var/runtime/bootstrap", RUNTIME_BOOTSTRAP.encode(), 0o755)
    layer.add_bytes("var/task/app.txt", variant.encode())
    layer.add_bytes("opt/extensions/marker", EXTENSION.encode(), 0o755)
    layer.add_bytes("etc/.wh.removed", b"")
    return layer.finish()


def base_image_config(variant: str) -> dict[str, Any]:
    return {"Entrypoint": ["/lambda-entrypoint.sh"], "Cmd": ["app.handler"], "WorkingDir": "/var/task",
            "User": "1000",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LAMBDA_TASK_ROOT=/var/task", f"IMAGE_VAR={variant}",
                    "GREETING=image-default"]}


def publish(registry: Registry, tmp: Path, repository: str, tag: str, layers: list[bytes],
            config: dict[str, Any]) -> str:
    layout = tmp / f"{repository.replace('/', '-')}-{tag}-{uuid.uuid4().hex[:6]}"
    write_layout(layout, layers, config)
    reference = f"{registry.host}/{repository}:{tag}"
    push(layout, reference)
    return reference


@pytest.fixture(scope="module")
def images_server(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[NimbusServer]:
    srv = NimbusServer(tmp_path_factory.mktemp("nimbus-images") / "data",
                       env={"NIMBUS_REGISTRY_INSECURE": registry.host}).start()
    with srv.http() as http:
        isolation = http.get("/nimbus/v1/health").json()["isolation"]
    if isolation != "namespaces":
        srv.stop()
        pytest.skip("container images run with the namespaces backend (root + bubblewrap)")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lam(images_server: NimbusServer) -> Any:
    return images_server.client("lambda")


@pytest.fixture(scope="module")
def base_image(registry: Registry, base_layer: bytes, tmp_path_factory: pytest.TempPathFactory) -> str:
    return publish(registry, tmp_path_factory.mktemp("oci"), "lambda/base", "v1",
                   [base_layer, base_image_layer("one")], base_image_config("one"))


def create(lam: Any, image: str, **config: Any) -> str:
    name = f"img-{uuid.uuid4().hex[:10]}"
    created = lam.create_function(FunctionName=name, Role=ROLE, PackageType="Image", Code={"ImageUri": image},
                                  Timeout=config.pop("Timeout", 30), MemorySize=config.pop("MemorySize", 256),
                                  **config)
    assert created["PackageType"] == "Image" and "Runtime" not in created and "Handler" not in created
    assert created["State"] in ("Pending", "Active")
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return name


def invoke(lam: Any, name: str, event: Any, **kw: Any) -> dict[str, Any]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail", **kw)
    body = json.loads(r["Payload"].read())
    if "FunctionError" in r:
        print("LOG-TAIL", base64.b64decode(r.get("LogResult", "")).decode())
    assert "FunctionError" not in r, body
    return body  # type: ignore[no-any-return]


def test_base_image_layout_runs_with_its_environment_extension_and_whiteouts(lam: Any, base_image: str) -> None:
    name = create(lam, base_image, Environment={"Variables": {"GREETING": "from-function"}})
    body = invoke(lam, name, {"hello": "image"})
    assert body["event"] == {"hello": "image"}
    assert body["handler"] == "app.handler" and body["cwd"] == "/var/task" and body["task_root"] == "/var/task"
    assert body["greeting"] == "from-function" and body["image_var"] == "one"  # function env over image ENV
    assert body["removed"] == "no"  # the upper layer's whiteout hides the lower layer's file
    assert body["writable"] == "no"  # the image is the read-only root
    assert body["ext"] == "registered"  # /opt/extensions of the image ran (before INIT ended)
    assert body["uid"] != "0" and body["fn"] == name
    fn = lam.get_function(FunctionName=name)
    code, conf = fn["Code"], fn["Configuration"]
    assert code["RepositoryType"] == "ECR" and code["ImageUri"] == base_image
    assert code["ResolvedImageUri"] == f"{base_image.rsplit(':', 1)[0]}@sha256:{conf['CodeSha256']}"
    assert conf["State"] == "Active" and conf["PackageType"] == "Image" and "ImageConfigResponse" not in conf


def test_image_config_overrides_command_and_working_directory(lam: Any, base_image: str) -> None:
    name = create(lam, base_image, ImageConfig={"Command": ["other.handler"], "WorkingDirectory": "/tmp"})
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["ImageConfigResponse"] == {"ImageConfig": {"Command": ["other.handler"], "WorkingDirectory": "/tmp"}}
    body = invoke(lam, name, {})
    assert body["handler"] == "other.handler" and body["cwd"] == "/tmp"
    lam.update_function_configuration(FunctionName=name, ImageConfig={
        "EntryPoint": ["/bin/sh", "/lambda-entrypoint.sh"], "Command": ["third.handler"]})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    body = invoke(lam, name, {})
    assert body["handler"] == "third.handler" and body["cwd"] == "/var/task"


def test_tag_moved_after_publishing_keeps_the_versions_digest(
    lam: Any, registry: Registry, base_layer: bytes, tmp_path: Path
) -> None:
    first = publish(registry, tmp_path, "lambda/moving", "live", [base_layer, base_image_layer("one")],
                    base_image_config("one"))
    name = create(lam, first, Publish=True)
    v1 = lam.get_function(FunctionName=name, Qualifier="1")
    publish(registry, tmp_path, "lambda/moving", "live", [base_layer, base_image_layer("two")],
            base_image_config("two"))
    assert invoke(lam, name, {}, Qualifier="1")["image_var"] == "one"
    updated = lam.update_function_code(FunctionName=name, ImageUri=first, Publish=True)
    assert updated["CodeSha256"] != v1["Configuration"]["CodeSha256"] and updated["Version"] == "2"
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    assert invoke(lam, name, {})["image_var"] == "two"
    assert invoke(lam, name, {}, Qualifier="1")["image_var"] == "one"  # the published version kept its digest
    again = lam.get_function(FunctionName=name, Qualifier="1")
    assert again["Code"]["ResolvedImageUri"] == v1["Code"]["ResolvedImageUri"]


def test_image_that_starts_awslambdaric_itself(lam: Any, registry: Registry, tmp_path: Path) -> None:
    python = "/usr/bin/python3.11"
    if not Path(python).exists():
        pytest.skip("Debian's python3.11 is needed to assemble the image")
    from tests.e2e.test_custom_runtime import vendored_awslambdaric

    layer = Layer()
    ric = vendored_awslambdaric()
    extension_modules = [name for name in ric if name.endswith(".so")]
    import awslambdaric

    site = Path(awslambdaric.__file__ or "").parent.parent
    for inside, host in sorted(host_files([python, *(str(site / m) for m in extension_modules)]).items()):
        if inside.startswith(str(site).lstrip("/")):
            continue
        layer.add_host_file(inside, host)
    layer.add_tree("usr/lib/python3.11", "/usr/lib/python3.11",
                   skip=("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "dist-packages",
                         "__pycache__", "config-3.11-x86_64-linux-gnu", "pydoc_data"))
    for inside, content in sorted(ric.items()):
        layer.add_bytes(f"var/task/{inside}", content, 0o755 if inside.endswith(".so") else 0o644)
    layer.add_bytes("var/task/app.py", PY_HANDLER.encode())
    reference = publish(registry, tmp_path, "lambda/python", "latest", [layer.finish()], {
        "Entrypoint": [python, "-m", "awslambdaric"], "Cmd": ["app.handler"], "WorkingDir": "/var/task",
        "Env": ["PATH=/usr/bin:/bin"], "User": "1000"})
    name = create(lam, reference)
    body = invoke(lam, name, {"n": 1})
    assert body["event"] == {"n": 1} and body["function"] == name and body["cwd"] == "/var/task"
    assert body["python"].startswith("3.11")


def test_missing_image_registry_down_and_layers_are_refused_with_nothing_stored(
    lam: Any, registry: Registry, base_image: str
) -> None:
    cases = [
        (f"{registry.host}/lambda/nothing-here:v1", "does not exist"),
        (f"127.0.0.1:{ocibuild.free_port()}/lambda/base:v1", "does not exist"),  # nothing listens there
        ("not a uri", "is not valid"),
    ]
    for uri, message in cases:
        name = f"img-bad-{uuid.uuid4().hex[:8]}"
        with pytest.raises(ClientError) as err:
            lam.create_function(FunctionName=name, Role=ROLE, PackageType="Image", Code={"ImageUri": uri})
        assert err.value.response["Error"]["Code"] == "InvalidParameterValueException", uri
        assert message in err.value.response["Error"]["Message"], err.value.response
        with pytest.raises(ClientError) as gone:
            lam.get_function(FunctionName=name)
        assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName=f"img-{uuid.uuid4().hex[:8]}", Role=ROLE, PackageType="Image",
                            Code={"ImageUri": base_image},
                            Layers=["arn:aws:lambda:us-east-1:000000000000:layer:x:1"])
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "Layers are not supported" in err.value.response["Error"]["Message"]


def test_unpacked_images_are_shared_between_functions(lam: Any, base_image: str, images_server: NimbusServer) -> None:
    first = create(lam, base_image)
    second = create(lam, base_image)
    sha = lam.get_function_configuration(FunctionName=first)["CodeSha256"]
    assert lam.get_function_configuration(FunctionName=second)["CodeSha256"] == sha
    trees = [p for p in os.listdir(images_server.data_dir / "images" / "rootfs") if p == sha]
    assert trees == [sha]


def test_image_that_cannot_be_unpacked_leaves_the_function_failed_and_nothing_half_stored(
    lam: Any, registry: Registry, base_layer: bytes, tmp_path: Path, images_server: NimbusServer
) -> None:
    evil = Layer()
    evil.add_bytes("../escape", b"outside the image\n")
    reference = publish(registry, tmp_path, "lambda/evil", "v1", [base_layer, evil.finish()],
                        base_image_config("evil"))
    name = f"img-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Role=ROLE, PackageType="Image", Code={"ImageUri": reference})
    with pytest.raises(Exception):  # noqa: B017 - the waiter gives up on State Failed
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["State"] == "Failed" and conf["StateReasonCode"] == "InvalidImage", conf
    assert "leaves the image" in conf["StateReason"] and conf["LastUpdateStatus"] == "Failed"
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ResourceNotReadyException"
    images = images_server.data_dir / "images"
    assert not (images / "rootfs" / conf["CodeSha256"]).exists()
    assert not [p for p in os.listdir(images) if p.startswith(".pull-")]  # the staging area is gone


def test_cli_deploys_an_image_and_waits_until_it_is_active(images_server: NimbusServer, base_image: str,
                                                           lam: Any) -> None:
    import subprocess

    name = f"img-cli-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "nimbus", "deploy", "--name", name, "--image", base_image, "--env", "GREETING=cli"],
        env={**os.environ, **images_server.cli_env(), "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"function:{name}" in out.stdout and "sha256:" in out.stderr
    assert lam.get_function_configuration(FunctionName=name)["State"] == "Active"
    assert invoke(lam, name, {})["greeting"] == "cli"


def test_cli_uploads_an_oci_layout_tarball(images_server: NimbusServer, base_layer: bytes, lam: Any,
                                           tmp_path: Path) -> None:
    import subprocess
    import tarfile

    layout = tmp_path / "layout"
    write_layout(layout, [base_layer, base_image_layer("tarball")], base_image_config("tarball"))
    archive = tmp_path / "app.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(layout.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(layout)), recursive=False)
    name = f"img-tar-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-m", "nimbus", "deploy", "--name", name, "--image", str(archive)],
        env={**os.environ, **images_server.cli_env(), "COLUMNS": "200"}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    conf = lam.get_function(FunctionName=name)
    assert conf["Code"]["ImageUri"].startswith("nimbus.local/uploads@sha256:")
    assert invoke(lam, name, {})["image_var"] == "tarball"
    with pytest.raises(ClientError) as err:  # a digest nobody uploaded
        lam.create_function(FunctionName=f"{name}-x", Role=ROLE, PackageType="Image",
                            Code={"ImageUri": "nimbus.local/uploads@sha256:" + "0" * 64})
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_a_pull_interrupted_by_a_kill_resumes_after_restart(
    registry: Registry, base_layer: bytes, tmp_path: Path
) -> None:
    import signal

    filler = Layer()
    filler.add_bytes("data/filler", os.urandom(96 << 20))  # long enough a pull to kill the server during it
    reference = publish(registry, tmp_path, "lambda/resume", "v1",
                        [base_layer, filler.finish(), base_image_layer("resumed")], base_image_config("resumed"))
    data = tmp_path / "data"
    env = {"NIMBUS_REGISTRY_INSECURE": registry.host}
    first = NimbusServer(data, env=env).start()
    name = f"img-{uuid.uuid4().hex[:8]}"
    created = first.client("lambda").create_function(FunctionName=name, Role=ROLE, PackageType="Image",
                                                     Code={"ImageUri": reference})
    first.stop(signal.SIGKILL)
    second = NimbusServer(data, env=env).start()
    try:
        lam2 = second.client("lambda")
        lam2.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        assert lam2.get_function_configuration(FunctionName=name)["CodeSha256"] == created["CodeSha256"]
        assert invoke(lam2, name, {})["image_var"] == "resumed"
        assert not [p for p in os.listdir(data / "images") if p.startswith(".pull-")]
    finally:
        second.stop()


def test_docker_archive_upload(images_server: NimbusServer, base_layer: bytes, lam: Any, tmp_path: Path) -> None:
    import subprocess

    layout = tmp_path / "layout"
    write_layout(layout, [base_layer, base_image_layer("docker-save")], base_image_config("docker-save"))
    archive = tmp_path / "saved.tar"  # what `docker save` writes
    subprocess.run([str(ocibuild.SKOPEO), "copy", "--quiet", f"oci:{layout}", f"docker-archive:{archive}:app:v1"],
                   check=True, capture_output=True, timeout=120)
    with images_server.http() as http:
        r = http.post("/nimbus/v1/images", content=archive.read_bytes(), headers={"Content-Type": "application/x-tar"})
        assert r.status_code == 201, r.text
        bad = http.post("/nimbus/v1/images", content=b"not a tarball at all")
    assert bad.status_code == 400 and bad.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    name = create(lam, r.json()["ImageUri"])
    assert invoke(lam, name, {})["image_var"] == "docker-save"


def test_package_types_do_not_mix_on_update(lam: Any, base_image: str) -> None:
    from tests.conftest import make_zip

    name = create(lam, base_image)
    with pytest.raises(ClientError) as err:
        lam.update_function_code(FunctionName=name, ZipFile=make_zip({"bootstrap": "#!/bin/sh\n"}))
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "provide ImageUri" in err.value.response["Error"]["Message"]
    assert lam.get_function_configuration(FunctionName=name)["PackageType"] == "Image"
