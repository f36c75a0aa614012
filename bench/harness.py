"""Shared pieces of the benchmarks: start servers as child processes, drive them with wrk, parse results."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::000000000000:role/bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def baseline_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port), "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@dataclass
class Server:
    url: str
    pid: int
    data_dir: str = ""  # holds the admin credentials when the bench runs with authentication


@contextmanager
def nimbus_server(env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    data = tempfile.mkdtemp(prefix="nimbus-bench-")
    log = open(Path(data).parent / f"nimbus-bench-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimbus", "server", "--port", str(port), "--data-dir", data],
        # Benchmarks drive the API with unsigned requests (wrk): authentication off unless a bench asks for it.
        env={**os.environ, "NIMBUS_AUTH": "none", **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/nimbus/v1/health", proc)
        yield Server(url, proc.pid, data)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def zip_source(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return base64.b64encode(buf.getvalue()).decode()


def create_function(url: str, name: str, source: str, **config: object) -> None:
    body = {
        "FunctionName": name,
        "Runtime": config.pop("Runtime", "python3.12"),
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": zip_source({"app.py": source})},
        **config,
    }
    r = httpx.post(f"{url}/2015-03-31/functions", json=body, timeout=60)
    r.raise_for_status()


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"unexpected wrk latency {value!r}")
    num, unit = match.groups()
    return float(num) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, connections: int, seconds: int, body: bytes | None = None, threads: int = 2,
        headers: dict[str, str] | None = None) -> WrkResult:
    """Run wrk (POST with `body` when given, with extra `headers`) and parse throughput and latency
    percentiles."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    args = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    script = None
    if body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        lua_body = body.decode().replace("\\", "\\\\").replace('"', '\\"')
        script.write(f'wrk.method = "POST"\nwrk.body = "{lua_body}"\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
        for name, value in (headers or {}).items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
        script.close()
        args += ["-s", script.name]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, p50, p99, int(m.group(1)) if m else 0)
