"""Shared fixtures. End-to-end tests start a real `nimbus server` process and drive it over HTTP."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from nimbus.awscreds import read_credentials_file
from nimbus.sandbox.runtimes import available_runtimes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NimbusServer:
    """A `nimbus server` child process on a free port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "NIMBUS_IDLE_TIMEOUT": "60", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 90.0) -> NimbusServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nimbus", "server", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.endpoint}/nimbus/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not come up:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def credentials(self) -> tuple[str, str]:
        """The admin key the server made in its data dir on first start (access key id, secret)."""
        found = read_credentials_file(self.data_dir / "credentials")
        assert found is not None, f"no admin credentials in {self.data_dir}"
        return found

    def cli_env(self) -> dict[str, str]:
        """Environment for a CLI (nimbus or aws) talking to this server with the admin key."""
        akid, secret = self.credentials
        return {"NIMBUS_ENDPOINT": self.endpoint, "NIMBUS_ACCESS_KEY_ID": akid, "NIMBUS_SECRET_ACCESS_KEY": secret,
                "AWS_ACCESS_KEY_ID": akid, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}

    def http(self, **kw: object) -> httpx.Client:
        """A raw HTTP client for the server's API; every request is SigV4-signed with the admin key."""
        kw.setdefault("auth", BotoSigV4(*self.credentials))
        kw.setdefault("timeout", 120)
        return httpx.Client(base_url=self.endpoint, **kw)  # type: ignore[arg-type]

    def client(self, service: str = "lambda", wait: bool = True):  # type: ignore[no-untyped-def]
        """A boto3 client of this server. For Lambda, `wait` makes every successful create or update
        wait until the function settles (Pending -> Active, InProgress -> Successful), as deployment
        tools do against AWS (issue 21); `wait=False` gives the bare client."""
        akid, secret = self.credentials
        client = boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, read_timeout=120),
        )
        if service == "lambda" and wait:
            wait_until_settled(client)
        return client


def wait_until_settled(client) -> None:  # type: ignore[no-untyped-def]
    """Hook a boto3 Lambda client so CreateFunction / UpdateFunctionCode / UpdateFunctionConfiguration
    return only once the function is Active and its last update Successful (polling GetFunctionConfiguration
    like boto3's `function_active_v2` / `function_updated_v2` waiters, at a shorter interval)."""

    def settle(http_response, parsed, **_: object) -> None:  # type: ignore[no-untyped-def]
        if http_response.status_code >= 300 or "FunctionName" not in parsed:
            return
        deadline = time.monotonic() + 60
        for qualifier in {"$LATEST", parsed.get("Version", "$LATEST")}:
            while time.monotonic() < deadline:
                conf = client.get_function_configuration(FunctionName=parsed["FunctionName"], Qualifier=qualifier)
                if conf.get("State") != "Pending" and conf.get("LastUpdateStatus") != "InProgress":
                    break
                time.sleep(0.02)

    for operation in ("CreateFunction", "UpdateFunctionCode", "UpdateFunctionConfiguration"):
        client.meta.events.register(f"after-call.lambda.{operation}", settle)


class BotoSigV4(httpx.Auth):
    """Signs httpx requests with botocore's own SigV4 signer (service `logs` for the JSON protocol at `/`)."""

    requires_request_body = True

    def __init__(self, access_key_id: str, secret: str, token: str | None = None, region: str = "us-east-1") -> None:
        self.creds = Credentials(access_key_id, secret, token)
        self.region = region

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        raw_path = request.url.raw_path.partition(b"?")[0]
        service = "logs" if raw_path == b"/" else "lambda"
        signed = {k: v for k, v in request.headers.items()
                  if k.lower() == "content-type" or k.lower().startswith("x-amz-")}
        aws = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=signed)
        SigV4Auth(self.creds, service, self.region).add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws.headers:
                request.headers[name] = aws.headers[name]
        yield request


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusServer]:
    srv = NimbusServer(tmp_path_factory.mktemp("nimbus") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def lam(server: NimbusServer):  # type: ignore[no-untyped-def]
    return server.client("lambda")


def make_zip(files: dict[str, str | bytes]) -> bytes:
    """A zip archive holding `files` (name -> content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16 if name == "bootstrap" else 0o644 << 16
            zf.writestr(info, content)
    return buf.getvalue()


ROLE = "arn:aws:iam::000000000000:role/lambda-role"

# The Python runtime tests deploy: python3.12 where the host has it, else the newest one it has (as a
# non-root user, only the system's interpreter may be visible).
_available = sorted((r for r in available_runtimes() if r.startswith("python")), key=lambda r: int(r.split(".")[1]))
RUNTIME = "python3.12" if "python3.12" in _available else (_available[-1] if _available else "python3.12")
