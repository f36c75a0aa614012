"""Container-image functions (issue 19), same server, same run:

1. cold start of an image function whose image is already unpacked against the same code (a bash + curl
   Runtime API loop) deployed as a zip with the `provided.al2023` custom runtime: goal <= 1.2x;
2. cold start of the same image with a large extra layer (unpacked size must not matter);
3. pull + unpack throughput of that large image from a local registry (goal: >= 200 MB/s), and the cost of a
   second function from the same image (no second copy).

Cold starts are forced by changing an environment variable before each invoke (a new revision: a fresh
environment), rounds interleaved. Needs root + bubblewrap (namespaces backend), skopeo and docker-registry.

Run: .venv/bin/python bench/images.py [--rounds 15] [--big-mb 512]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e import ocibuild  # noqa: E402
from tests.e2e.ocibuild import Layer, Registry, host_files, push, write_layout  # noqa: E402

from bench.harness import ROLE, nimbus_server  # noqa: E402

BOOTSTRAP = r"""#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
H="$(mktemp)"
while true; do
  EVENT=$(curl -sS -D "$H" "$API/invocation/next")
  ID=$(grep -Fi "Lambda-Runtime-Aws-Request-Id:" "$H" | head -1 | cut -d' ' -f2- | tr -d '\r\n')
  curl -sS -X POST "$API/invocation/$ID/response" -d "$EVENT" >/dev/null
done
"""


def wait_active(url: str, name: str, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        state = httpx.get(f"{url}/2015-03-31/functions/{name}/configuration", timeout=30).json()["State"]
        if state == "Active":
            return time.perf_counter() - t0
        if state == "Failed":
            raise SystemExit(f"{name} failed to become Active")
        time.sleep(0.02)
    raise SystemExit(f"{name} is not Active after {timeout} s")


def cold_invoke(url: str, name: str, n: int) -> float:
    r = httpx.put(f"{url}/2015-03-31/functions/{name}/configuration",
                  json={"Environment": {"Variables": {"ROUND": str(n)}}}, timeout=30)
    r.raise_for_status()
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/2015-03-31/functions/{name}/invocations", content=b'{"n":1}', timeout=60)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200 or "x-amz-function-error" in r.headers:
        raise SystemExit(f"{name}: {r.status_code} {r.text}")
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--big-mb", type=int, default=512)
    args = parser.parse_args()
    if ocibuild.REGISTRY is None or ocibuild.SKOPEO is None:
        raise SystemExit("needs skopeo and docker-registry (scripts/install-system-deps.sh)")
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-images-") as tmp:
        registry = Registry(Path(tmp, "registry"))
        try:
            run(registry, Path(tmp), args.rounds, args.big_mb)
        finally:
            registry.stop()


def run(registry: Registry, tmp: Path, rounds: int, big_mb: int) -> None:
    base = Layer()
    for inside, host in sorted(host_files(ocibuild.BASH_TOOLS).items()):
        base.add_host_file(inside, host)
    base.add_bytes("var/task/bootstrap", BOOTSTRAP.encode(), 0o755)
    base_tar = base.finish()
    config = {"Entrypoint": ["/var/task/bootstrap"], "WorkingDir": "/var/task", "Env": ["PATH=/usr/bin:/bin"]}
    write_layout(tmp / "small", [base_tar], config)
    push(tmp / "small", f"{registry.host}/bench/small:v1")
    layers = [base_tar]
    chunk = 64
    for i in range(max(1, big_mb // chunk)):  # many layers of incompressible data
        big = Layer()
        big.add_bytes(f"data/blob-{i}", os.urandom(chunk * 1024 * 1024))
        layers.append(big.finish())
    write_layout(tmp / "big", layers, config)
    push(tmp / "big", f"{registry.host}/bench/big:v1")
    unpacked_mb = sum(len(x) for x in layers) / 1e6

    with nimbus_server({"NIMBUS_REGISTRY_INSECURE": registry.host}) as server:
        url = server.url
        health = httpx.get(url + "/nimbus/v1/health").json()
        if health.get("isolation") != "namespaces":
            raise SystemExit("container images need the namespaces backend (root + bubblewrap)")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            zf.writestr(info, BOOTSTRAP)
        common = {"Role": ROLE, "MemorySize": 512, "Timeout": 30}
        httpx.post(f"{url}/2015-03-31/functions", timeout=60, json={
            "FunctionName": "zip", "Runtime": "provided.al2023", "Handler": "x",
            "Code": {"ZipFile": base64.b64encode(buf.getvalue()).decode()}, **common}).raise_for_status()
        for name, ref in (("small", "bench/small:v1"), ("big", "bench/big:v1")):
            httpx.post(f"{url}/2015-03-31/functions", timeout=120, json={
                "FunctionName": name, "PackageType": "Image", "Code": {"ImageUri": f"{registry.host}/{ref}"},
                **common}).raise_for_status()
            took = wait_active(url, name)
            if name == "big":
                big_pull = took
        httpx.post(f"{url}/2015-03-31/functions", timeout=120, json={
            "FunctionName": "big2", "PackageType": "Image", "Code": {"ImageUri": f"{registry.host}/bench/big:v1"},
            **common}).raise_for_status()
        second = wait_active(url, "big2")
        rootfs = Path(server.data_dir, "images", "rootfs")
        trees = [p for p in os.listdir(rootfs) if not p.endswith(".failed")]

        times: dict[str, list[float]] = {"zip": [], "small": [], "big": []}
        for name in times:  # warm-up: first environments, spare launchers, network namespaces
            cold_invoke(url, name, -1)
        for n in range(rounds):
            for name in times:
                times[name].append(cold_invoke(url, name, n))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(json.dumps({"cold_ms_median": {k: round(v, 1) for k, v in med.items()}}, indent=1))
        print(f"cold start, image (unpacked) / zip custom runtime: {med['small'] / med['zip']:.2f}x  (goal <= 1.2x)")
        print(f"cold start, {unpacked_mb:.0f} MB image / small image: {med['big'] / med['small']:.2f}x  (size must not"
              " matter)")
        print(f"pull + unpack of {unpacked_mb:.0f} MB in {len(layers)} layers: {big_pull:.1f} s = "
              f"{unpacked_mb / big_pull:.0f} MB/s  (goal >= 200 MB/s)")
        print(f"second function from the same image: Active in {second:.2f} s; unpacked trees: {len(trees)} "
              "(2 images)")


if __name__ == "__main__":
    main()
