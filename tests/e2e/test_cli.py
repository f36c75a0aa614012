"""The `nimbus` CLI against a real server, the way the README's quickstart drives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import NimbusServer

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


def nimbus(server: NimbusServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nimbus", *args],
        env={**os.environ, **server.cli_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_invoke_list_delete(server: NimbusServer) -> None:
    name = f"hello-{uuid.uuid4().hex[:8]}"
    out = nimbus(server, "deploy", str(HELLO), "--name", name, "--handler", "app.handler", "--env", "AB=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"

    out = nimbus(server, "invoke", name, "--payload", '{"name": "cli"}', "--log")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["message"] == "Hello, cli!"
    assert "saying hello to cli" in out.stderr and "REPORT RequestId:" in out.stderr

    # deploying again updates the function in place
    out = nimbus(server, "deploy", str(HELLO), "--name", name, "--handler", "app.handler", "--memory", "256")
    assert out.returncode == 0, out.stderr
    assert json.loads(nimbus(server, "invoke", name).stdout)["memory_mb"] == 256

    out = nimbus(server, "invoke", name, "--async")
    assert out.returncode == 0 and "accepted" in out.stderr

    listing = nimbus(server, "functions")
    assert listing.returncode == 0 and name in listing.stdout

    assert nimbus(server, "delete", name).returncode == 0
    out = nimbus(server, "invoke", name)
    assert out.returncode == 1 and "ResourceNotFoundException" in out.stderr


def test_payload_file_and_function_error_exit_code(server: NimbusServer, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    raise ValueError(event['why'])\n")
    name = f"err-{uuid.uuid4().hex[:8]}"
    assert nimbus(server, "deploy", str(code), "--name", name, "--handler", "app.handler").returncode == 0
    event = tmp_path / "event.json"
    event.write_text('{"why": "because"}')
    out = nimbus(server, "invoke", name, "--payload-file", str(event))
    assert out.returncode == 1
    assert json.loads(out.stdout)["errorMessage"] == "because"


def test_unreachable_server_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nimbus", "functions", "--endpoint", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1
    assert "cannot reach a nimbus server" in out.stderr


def test_relative_data_dir_and_process_backend(tmp_path: Path) -> None:
    """`make run` starts the server with the default, relative ./data; code paths must still resolve."""
    import httpx

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimbus", "server", "--port", str(port), "--isolation", "process"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{endpoint}/nimbus/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        server = NimbusServer.__new__(NimbusServer)
        server.endpoint = endpoint
        server.data_dir = tmp_path / "data"
        assert nimbus(server, "deploy", str(HELLO), "--name", "rel", "--handler", "app.handler").returncode == 0
        out = nimbus(server, "invoke", "rel")
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["message"] == "Hello, world!"
        assert (tmp_path / "data" / "nimbus.db").exists()
    finally:
        proc.terminate()
        proc.wait(30)
