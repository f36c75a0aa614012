"""API authentication end to end: nothing without a valid signature, AWS's errors, keys managed with
`nimbus keys`, presigned URLs, code download links, the CLI finding the admin key, and --auth none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from nimbus import sigv4
from nimbus.config import Settings
from nimbus.control.db import make_engine, migrate
from nimbus.control.keys import KeyStore
from nimbus.sandbox.runtimes import available_runtimes
from tests.conftest import ROLE, RUNTIME, BotoSigV4, NimbusServer, free_port, make_zip

CODE = make_zip({"app.py": "def handler(event, context):\n    return event\n"})


def client_with(server: NimbusServer, akid: str, secret: str) -> Any:
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def create(lam: Any) -> str:
    name = f"auth-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": CODE})
    return name


def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return str(err.value.response["Error"]["Code"])


def test_without_credentials_nothing_happens(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    body = {"FunctionName": f"x-{uuid.uuid4().hex[:8]}", "Runtime": RUNTIME, "Role": ROLE, "Handler": "app.handler",
            "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}
    calls = [
        ("POST", "/2015-03-31/functions", {"json": body}),
        ("GET", "/2015-03-31/functions/", {}),
        ("GET", f"/2015-03-31/functions/{name}", {}),
        ("POST", f"/2015-03-31/functions/{name}/invocations", {"content": b"{}"}),
        ("PUT", f"/2015-03-31/functions/{name}/code", {"json": {"ZipFile": "x"}}),
        ("DELETE", f"/2015-03-31/functions/{name}", {}),
        ("POST", f"/2021-11-15/functions/{name}/response-streaming-invocations", {"content": b"{}"}),
        ("POST", f"/2021-10-31/functions/{name}/url", {"json": {"AuthType": "NONE"}}),
        ("GET", "/nimbus/v1/keys", {}),
        ("POST", "/nimbus/v1/keys", {"json": {}}),
        ("POST", "/nimbus/v1/keys/session", {"json": {"FunctionName": name}}),
        ("POST", "/", {"content": b"{}", "headers": {"X-Amz-Target": "Logs_20140328.DescribeLogGroups"}}),
    ]
    with server.http(auth=None) as http:
        for method, path, kw in calls:
            r = http.request(method, path, **kw)
            assert r.status_code == 403, (method, path, r.text)
            assert r.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
            assert r.json()["message"] == "Missing Authentication Token"
        assert http.get("/nimbus/v1/health").status_code == 200  # readiness probes need no key
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name  # still there
    lam.delete_function(FunctionName=name)


def test_tampered_replayed_and_foreign_requests_are_refused(server: NimbusServer, tmp_path: Path) -> None:
    akid, secret = server.credentials
    creds = sigv4.Credentials(akid, secret)
    host = f"127.0.0.1:{server.port}"

    def signed(now: datetime | None = None, path: str = "/2015-03-31/functions/") -> dict[str, str]:
        return sigv4.sign(creds, "GET", host, path, "", {}, b"", "us-east-1", "lambda", now=now)

    with server.http(auth=None) as http:
        assert http.get("/2015-03-31/functions/", headers=signed()).status_code == 200
        tampered = signed()
        sig = tampered["authorization"][-64:]
        tampered["authorization"] = tampered["authorization"][:-64] + sig[::-1]
        r = http.get("/2015-03-31/functions/", headers=tampered)
        assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "InvalidSignatureException"
        # a request signed for another path cannot be replayed on this one
        r = http.get("/2015-03-31/functions/", headers=signed(path="/2016-08-19/account-settings/"))
        assert r.status_code == 403 and r.headers["x-amzn-errortype"] == "InvalidSignatureException"
        old = signed(now=datetime.now(UTC) - timedelta(minutes=20))
        r = http.get("/2015-03-31/functions/", headers=old)
        assert r.status_code == 403 and "Signature expired" in r.json()["message"]

    # the admin key of another server (its own data dir) is unknown here (UnrecognizedClientException, as AWS
    # answers an unknown access key id); a known key with a wrong secret is a bad signature
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    migrate(engine)
    other = KeyStore(Settings(data_dir=tmp_path), engine)
    codes = [error_code(lambda k=k, s=s: client_with(server, k, s).list_functions())
             for k, s in [(other.admin.access_key_id, other.admin.secret), (akid, other.admin.secret)]]
    engine.dispose()
    assert codes == ["UnrecognizedClientException", "InvalidSignatureException"]


def test_keys_cli_create_list_delete(server: NimbusServer) -> None:
    env = {**os.environ, **server.cli_env()}

    def nimbus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nimbus", "keys", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    out = nimbus("create", "--description", "ci key", "--json")
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout)
    assert key["AccessKeyId"] and key["SecretAccessKey"]
    lam = client_with(server, key["AccessKeyId"], key["SecretAccessKey"])
    assert "Functions" in lam.list_functions()
    listed = nimbus("list")
    assert key["AccessKeyId"] in listed.stdout and "ci key" in listed.stdout
    assert key["SecretAccessKey"] not in listed.stdout
    assert nimbus("delete", key["AccessKeyId"]).returncode == 0
    assert error_code(lam.list_functions) == "UnrecognizedClientException"
    assert nimbus("delete", server.credentials[0]).returncode == 1  # the admin key is rotated via its file


def test_cli_finds_the_admin_key_in_the_data_dir(server: NimbusServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NIMBUS_"))}
    env.update({"NIMBUS_ENDPOINT": server.endpoint, "NIMBUS_DATA_DIR": str(server.data_dir),
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    out = subprocess.run([sys.executable, "-m", "nimbus", "functions"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    env["NIMBUS_DATA_DIR"] = "/nonexistent"
    out = subprocess.run([sys.executable, "-m", "nimbus", "functions"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "MissingAuthenticationTokenException" in out.stderr


def test_presigned_requests_and_code_links(server: NimbusServer, lam: Any) -> None:
    name = create(lam)
    try:
        url = lam.generate_presigned_url("get_function", Params={"FunctionName": name}, ExpiresIn=60)
        r = httpx.get(url)
        assert r.status_code == 200 and r.json()["Configuration"]["FunctionName"] == name
        location = r.json()["Code"]["Location"]
        assert httpx.get(location).content == CODE  # the link alone is enough, like AWS's presigned S3 URL
        forged = location.rsplit("=", 1)[0] + "=" + "0" * 64
        assert httpx.get(forged).status_code == 403
        assert httpx.get(location.split("?")[0]).status_code == 403
    finally:
        lam.delete_function(FunctionName=name)


def test_session_credentials_are_scoped(server: NimbusServer, lam: Any) -> None:
    """A function environment's credentials (made here through the server's own key store API)."""
    mine, other = create(lam), create(lam)
    try:
        with server.http() as http:
            r = http.post("/nimbus/v1/keys/session", json={"FunctionName": mine})
        assert r.status_code == 201, r.text
        creds = r.json()
        scoped = boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1",
                              aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                              aws_session_token=creds["SessionToken"], config=Config(retries={"max_attempts": 1}))
        assert scoped.get_function_configuration(FunctionName=mine)["FunctionName"] == mine
        assert json.loads(scoped.invoke(FunctionName=mine, Payload=b'{"a": 1}')["Payload"].read()) == {"a": 1}
        for call in (lambda: scoped.get_function(FunctionName=other),
                     lambda: scoped.update_function_code(FunctionName=other, ZipFile=CODE),
                     lambda: scoped.invoke(FunctionName=other, Payload=b"{}"),
                     scoped.list_functions,
                     lambda: scoped.delete_function(FunctionName=other)):
            assert error_code(call) == "AccessDeniedException"
        # the other function's policy can allow this one to invoke it (by the role it runs with)
        lam.add_permission(FunctionName=other, StatementId="from-mine", Action="lambda:InvokeFunction",
                           Principal=ROLE)
        assert json.loads(scoped.invoke(FunctionName=other, Payload=b'{"b": 2}')["Payload"].read()) == {"b": 2}
        assert error_code(lambda: scoped.get_function(FunctionName=other)) == "AccessDeniedException"
        with server.http() as http:
            assert http.delete(f"/nimbus/v1/keys/session/{creds['AccessKeyId']}").status_code == 204
        assert error_code(lambda: scoped.get_function_configuration(FunctionName=mine)) == \
            "UnrecognizedClientException"
    finally:
        lam.delete_function(FunctionName=mine)
        lam.delete_function(FunctionName=other)


def test_auth_none_warns_and_needs_insecure_off_loopback(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "nimbus", "server", "--auth", "none", "--host", "0.0.0.0",
                          "--port", str(free_port()), "--data-dir", str(tmp_path / "a")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--insecure" in out.stderr
    srv = NimbusServer(tmp_path / "data", env={"NIMBUS_AUTH": "none"}).start()
    try:
        with srv.http(auth=None) as http:
            assert http.get("/2015-03-31/functions/").status_code == 200
        assert "authentication is OFF" in srv.output()
    finally:
        srv.stop()


def test_first_start_prints_the_admin_key(server: NimbusServer) -> None:
    akid, secret = server.credentials
    text = server.output()
    assert f"export AWS_ACCESS_KEY_ID={akid}" in text and f"aws_secret_access_key = {secret}" in text
    assert "  [nimbus]\n" in text
    assert oct((server.data_dir / "credentials").stat().st_mode & 0o777) == "0o600"
    with httpx.Client(base_url=server.endpoint, auth=BotoSigV4(akid, secret)) as http:
        assert http.get("/nimbus/v1/keys").status_code == 200


# A custom runtime whose handler calls the platform API with the environment's own credentials, through the
# environment's endpoint (AWS_LAMBDA_RUNTIME_API's address also serves the platform API), signing by hand.
PROBE = r'''
import datetime, hashlib, hmac, http.client, json, os

API = os.environ["AWS_LAMBDA_RUNTIME_API"]


def signed_call(method, path, body=b""):
    akid, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    token = os.environ["AWS_SESSION_TOKEN"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": API, "x-amz-date": now, "x-amz-security-token": token,
               "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    names = sorted(headers)
    canonical = "\n".join([method, path, "", "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names),
                           headers["x-amz-content-sha256"]])
    scope = f"{now[:8]}/us-east-1/lambda/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{now}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + secret).encode()
    for part in (now[:8], "us-east-1", "lambda", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={';'.join(names)}, "
                                f"Signature={sig}")
    conn = http.client.HTTPConnection(API, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    return {"status": r.status, "type": r.getheader("x-amzn-ErrorType")}


runtime = http.client.HTTPConnection(API)
while True:
    runtime.request("GET", "/2018-06-01/runtime/invocation/next")
    r = runtime.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    fn = "/2015-03-31/functions/" + event["target"]
    if event["op"] == "config":
        out = signed_call("GET", fn + "/configuration")
    elif event["op"] == "code":
        out = signed_call("PUT", fn + "/code", json.dumps({"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}).encode())
    else:
        out = signed_call("POST", fn + "/invocations", b"{}")
    out["key"] = os.environ["AWS_ACCESS_KEY_ID"]
    runtime.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=json.dumps(out).encode())
    runtime.getresponse().read()
'''


@pytest.mark.skipif("provided.al2023" not in available_runtimes(), reason="custom runtimes need the launcher's "
                    "interpreter")
def test_function_credentials_act_on_their_own_function_only(lam: Any) -> None:
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    bootstrap = f'#!/bin/sh\nexec {py} "$LAMBDA_TASK_ROOT/probe.py"\n'
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=probe, Runtime="provided.al2023", Role=ROLE, Handler="x", Timeout=30,
                        Code={"ZipFile": make_zip({"bootstrap": bootstrap, "probe.py": PROBE})})
    other = create(lam)
    try:
        def ask(target: str, op: str) -> dict[str, Any]:
            out = lam.invoke(FunctionName=probe, Payload=json.dumps({"target": target, "op": op}))
            assert "FunctionError" not in out, out["Payload"].read()
            result: dict[str, Any] = json.loads(out["Payload"].read())
            return result

        own = ask(probe, "config")
        assert own["status"] == 200 and own["key"].startswith("NSIA")
        assert ask(other, "config") == {"status": 403, "type": "AccessDeniedException", "key": own["key"]}
        assert ask(other, "code")["status"] == 403
        assert ask(other, "invoke")["status"] == 403
        before = lam.get_function(FunctionName=other)["Configuration"]["CodeSha256"]
        assert lam.get_function(FunctionName=other)["Configuration"]["CodeSha256"] == before
    finally:
        lam.delete_function(FunctionName=probe)
        lam.delete_function(FunctionName=other)
