"""Warm sync invoke through the Runtime API (a `provided.al2023` custom runtime running AWS's own Python
client, awslambdaric, vendored in the zip) against the managed Python runtime (nimbus's own bootstrap), same
server, same run, same echo handler and memory. Goal (issue 6): Runtime API latency <= 1.5 x the managed path.
A third row, a minimal C bootstrap (when gcc is here), shows the Runtime API's own cost without awslambdaric's
per-invocation Python work.

Run: .venv/bin/python bench/runtime_api.py [--seconds 10]   (needs wrk, and awslambdaric installed: it is a
test dependency)
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import ROLE, nimbus_server, wrk  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the server's: on PATH in its sandboxes


def zip_b64(files: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name == "bootstrap" else 0o644) << 16
            zf.writestr(info, content)
    return base64.b64encode(buf.getvalue()).decode()


def vendored_awslambdaric() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for dist in ("awslambdaric", "simplejson", "snapshot-restore-py"):
        try:
            found = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            if dist == "awslambdaric":
                raise SystemExit("awslambdaric is needed: pip install awslambdaric") from None
            continue
        for path in found.files or []:
            if ".dist-info" in str(path) or "__pycache__" in str(path) or str(path).startswith(".."):
                continue
            files[str(path)] = Path(str(found.locate_file(path))).read_bytes()
    return files


def create(url: str, name: str, runtime: str, files: dict[str, bytes]) -> None:
    body = {"FunctionName": name, "Runtime": runtime, "Handler": "app.handler", "Role": ROLE,
            "MemorySize": 1769, "Code": {"ZipFile": zip_b64(files)}}
    httpx.post(f"{url}/2015-03-31/functions", json=body, timeout=60).raise_for_status()


def c_bootstrap() -> bytes | None:
    """The tests' minimal C bootstrap (raw HTTP/1.1 over one socket), compiled; None without gcc."""
    if shutil.which("gcc") is None:
        return None
    from tests.e2e.test_custom_runtime import C_BOOTSTRAP

    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp, "bootstrap.c"), Path(tmp, "bootstrap")
        source.write_text(C_BOOTSTRAP)
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
        return binary.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    ric = {**vendored_awslambdaric(), "app.py": ECHO.encode(),
           "bootstrap": f'#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec {PY} -m awslambdaric "$_HANDLER"\n'.encode()}
    results = {}
    native = c_bootstrap()
    names = ["managed", "runtimeapi", *(["c"] if native else [])]
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_AUTH": "none"}) as server:
        create(server.url, "managed", PY, {"app.py": ECHO.encode()})
        create(server.url, "runtimeapi", "provided.al2023", ric)
        if native:
            create(server.url, "c", "provided.al2023", {"bootstrap": native})
        for name in names:
            invoke_url = f"{server.url}/2015-03-31/functions/{name}/invocations"
            reply = httpx.post(invoke_url, content=PAYLOAD, timeout=60)
            assert reply.status_code == 200 and "X-Amz-Function-Error" not in reply.headers, reply.text
            wrk(invoke_url, args.connections, 2, PAYLOAD)  # warm-up: creates the environments
        for name in names:  # measured after all are warm, one after the other
            invoke_url = f"{server.url}/2015-03-31/functions/{name}/invocations"
            c1 = wrk(invoke_url, 1, args.seconds, PAYLOAD, threads=1)
            cn = wrk(invoke_url, args.connections, args.seconds, PAYLOAD)
            results[name] = (c1, cn)
    print(f"{'':38} {'p50 c1':>9} {'p99 c1':>9} {'req/s c1':>9} {f'req/s c{args.connections}':>10} {'non-2xx':>8}")
    labels = {"managed": f"managed {PY} (nimbus bootstrap)", "runtimeapi": "provided.al2023 + awslambdaric",
              "c": "provided.al2023 + C bootstrap (floor)"}
    for name, (c1, cn) in results.items():
        print(f"{labels[name]:38} {c1.p50_ms:8.3f}ms {c1.p99_ms:8.3f}ms {c1.rps:9.0f} {cn.rps:10.0f} "
              f"{c1.non2xx + cn.non2xx:8d}")
    (m1, mn), (r1, rn) = results["managed"], results["runtimeapi"]
    print(f"Runtime API / managed, p50 latency at c1: {r1.p50_ms / m1.p50_ms:.2f}x (goal <= 1.5)")
    print(f"managed / Runtime API, throughput at c{args.connections}: {mn.rps / rn.rps:.2f}x")
    if "c" in results:
        print(f"Runtime API with a C bootstrap / managed, p50 at c1: {results['c'][0].p50_ms / m1.p50_ms:.2f}x")


if __name__ == "__main__":
    main()
