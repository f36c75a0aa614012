"""`nimbus dev` picks up an edit: a file write, then polling the HTTP API route until it answers with the new
code; the logs of the function stream to the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import NimbusServer

RUNTIME = f"python3.{sys.version_info.minor}"


def wait_for(path: Path, text: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = path.read_text() if path.exists() else ""
        if text in found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}:\n{path.read_text() if path.exists() else ''}")


def test_dev_redeploys_an_edit_and_streams_logs(server: NimbusServer, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    done = subprocess.run([sys.executable, "-m", "nimbus", "init", str(root), "-t", "python-http-api", "--name",
                           "devloop", "--runtime", RUNTIME], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stdout, stderr = tmp_path / "dev.out", tmp_path / "dev.err"  # outside the watched directory
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nimbus", "dev", str(root)], stdout=out, stderr=err,
                                env={**os.environ, **server.cli_env(), "COLUMNS": "200"})
    try:
        wait_for(stderr, "watching")
        endpoint = wait_for(stdout, "path form): ").split("path form): ", 1)[1].split()[0]
        assert httpx.get(f"{endpoint}/hello/dev", timeout=60).json() == {"message": "Hello, dev!"}
        handler = root / "handler.py"
        handler.write_text(handler.read_text().replace("Hello,", "Howdy,"))
        deadline = time.monotonic() + 60
        while httpx.get(f"{endpoint}/hello/dev", timeout=60).json()["message"] != "Howdy, dev!":
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        assert "updated devloop-dev-hello" in stderr.read_text()
        wait_for(stdout, "hello │ REPORT RequestId:")  # the function's log lines, prefixed with its name

        broken = (root / "serverless.yml").read_text().replace("timeout: 10", "timeout: [10]")
        (root / "serverless.yml").write_text(broken)
        wait_for(stderr, "serverless.yml:9: provider.timeout: expected an integer")
        assert proc.poll() is None  # a bad project file is reported; the loop keeps going
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    subprocess.run([sys.executable, "-m", "nimbus", "remove", str(root)], env={**os.environ, **server.cli_env()},
                   capture_output=True, timeout=120)
