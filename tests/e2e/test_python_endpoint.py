"""The endpoint of managed Python environments end to end: 127.0.0.1:9001 inside the sandbox serves the platform
API, so a Python function calls the Lambda API with its own short-lived credentials (AWS_ENDPOINT_URL_LAMBDA),
on its own function only; forked (zygote) and fresh environments alike, INIT included."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip

# The function signs by hand (stdlib only: boto3 need not be importable inside the sandbox).
HANDLER = r'''
import datetime, hashlib, hmac, json, os, urllib.error, urllib.parse, urllib.request


def signed_get(path):
    endpoint = os.environ["AWS_ENDPOINT_URL_LAMBDA"]
    host = urllib.parse.urlsplit(endpoint).netloc
    akid, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    region = os.environ["AWS_REGION"]
    headers = {"host": host, "x-amz-date": now, "x-amz-security-token": os.environ["AWS_SESSION_TOKEN"],
               "x-amz-content-sha256": hashlib.sha256(b"").hexdigest()}
    names = sorted(headers)
    canonical = "\n".join(["GET", path, "", "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names),
                           headers["x-amz-content-sha256"]])
    scope = f"{now[:8]}/{region}/lambda/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{now}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + secret).encode()
    for part in (now[:8], region, "lambda", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={';'.join(names)}, "
                                f"Signature={sig}")
    request = urllib.request.Request(endpoint + path, headers={k: v for k, v in headers.items() if k != "host"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return {"status": r.status, "name": json.loads(r.read())["Configuration"]["FunctionName"]}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "type": e.headers.get("x-amzn-ErrorType", "").split(":")[0]}


INIT = signed_get("/2015-03-31/functions/" + os.environ["AWS_LAMBDA_FUNCTION_NAME"])


def handler(event, context):
    return {"init": INIT, "endpoint": os.environ["AWS_ENDPOINT_URL_LAMBDA"],
            "key": os.environ["AWS_ACCESS_KEY_ID"],
            "own": signed_get("/2015-03-31/functions/" + context.function_name),
            "other": signed_get("/2015-03-31/functions/" + event["other"])}
'''


@pytest.fixture(scope="module", params=["fork", "fresh"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    """The shared server (zygotes on: forked environments) and one with zygotes off (fresh starts)."""
    if request.param == "fork":
        yield request.getfixturevalue("server")
        return
    srv = NimbusServer(tmp_path_factory.mktemp("fresh") / "data", env={"NIMBUS_ZYGOTES": "false"}).start()
    try:
        yield srv
    finally:
        srv.stop()


def _require_namespaces(srv: NimbusServer) -> None:
    with srv.http() as http:
        backend = http.get("/nimbus/v1/health").json()["isolation"]
    if backend != "namespaces":
        pytest.skip(f"the server runs the {backend!r} backend: no network namespace, no 127.0.0.1:9001")


def test_python_function_calls_the_platform_api_with_its_own_credentials(target: NimbusServer,
                                                                          tmp_path: Path) -> None:
    _require_namespaces(target)
    lam: Any = target.client("lambda")
    name, other = f"pyep-{uuid.uuid4().hex[:10]}", f"pyep-other-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler", Timeout=60,
                        Code={"ZipFile": make_zip({"app.py": HANDLER})})
    lam.create_function(FunctionName=other, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
    try:
        out = lam.invoke(FunctionName=name, Payload=json.dumps({"other": other}))
        payload = out["Payload"].read()
        assert "FunctionError" not in out, payload
        doc = json.loads(payload)
        assert doc["endpoint"] == "http://127.0.0.1:9001"
        assert doc["key"].startswith("NSIA")
        assert doc["own"] == {"status": 200, "name": name}
        assert doc["other"] == {"status": 403, "type": "AccessDeniedException"}
        assert doc["init"] == {"status": 200, "name": name}  # INIT has the endpoint too (the zygote's own)
        again = json.loads(lam.invoke(FunctionName=name, Payload=json.dumps({"other": other}))["Payload"].read())
        assert again["own"] == {"status": 200, "name": name}  # warm: same environment, same endpoint
        # A new environment (new configuration): fresh starts now go through the backend's spare launcher,
        # which must pass the endpoint's hand-over socket too; forks come from a new zygote.
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MARK": "2"}})
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        third = json.loads(lam.invoke(FunctionName=name, Payload=json.dumps({"other": other}))["Payload"].read())
        assert third["own"] == {"status": 200, "name": name} and third["key"] != doc["key"]
    finally:
        lam.delete_function(FunctionName=name)
        lam.delete_function(FunctionName=other)
