"""Outbound network of environments (issue 14): what a request from inside an environment's network namespace
costs over the same request made from the host, and what `prepare()` costs from the pool vs made inline.

    sudo .venv/bin/python bench/network.py [--requests 2000] [--gigabytes 2]

Needs root, ip and nft (the rootful `veth` provider). The server is on a host address that is not loopback
(198.18.255.x/32 the benchmark adds to lo; removed at the end). The same client script runs on the
host and inside a namespace the provider prepared (default policy, its nftables rules loaded, NAT on the host):
- HTTP: one request per new TCP connection (http.client, HTTP/1.1, 64-byte body), p50/p99 per request;
- bulk: one TCP download of N GB (recv_into a 1 MiB buffer), GB/s;
- prepare(): a namespace from the pool (what a cold start pays) vs one made inline (what the pool saves).
Goals (issue 14): added p50 <= 0.3 ms, bulk >= 1 GB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from nimbus.config import Settings
from nimbus.sandbox.network import NetworkPolicy
from nimbus.sandbox.network.veth import VethNetwork
from nimbus.sandbox.runtimes import available_runtimes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server  # noqa: E402

SERVER = r"""
import socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
addr = sys.argv[1]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "64"); self.end_headers()
        self.wfile.write(b"x" * 64)
    def log_message(self, *a): pass
http = ThreadingHTTPServer((addr, 8080), H)
threading.Thread(target=http.serve_forever, daemon=True).start()
bulk = socket.create_server((addr, 8081))
chunk = b"\0" * (1 << 20)
print("ready", flush=True)
while True:
    c = bulk.accept()[0]
    n = int(c.recv(64))
    while n > 0:
        c.sendall(chunk if n >= len(chunk) else chunk[:n]); n -= len(chunk)
    c.close()
"""

MEASURE = r"""
import http.client, json, socket, sys, time

def measure(addr, requests, size):
    times = []
    for i in range(requests + 50):
        t = time.perf_counter()
        c = http.client.HTTPConnection(addr, 8080)
        c.request("GET", "/")
        c.getresponse().read()
        c.close()
        if i >= 50:
            times.append(time.perf_counter() - t)
    times.sort()
    s = socket.create_connection((addr, 8081))
    s.sendall(str(size).encode().ljust(64))
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got, t = 0, time.perf_counter()
    while True:
        n = s.recv_into(view)
        if not n:
            break
        got += n
    bulk = time.perf_counter() - t
    return {"p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)], "gbps": got / bulk / 1e9,
            "bytes": got}

def handler(event, context):  # the same measurement from inside a function
    return measure(event["addr"], event["requests"], event["size"])
"""
CLIENT = MEASURE + r"""
print(json.dumps(measure(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
"""


def run_client(prefix: list[str], addr: str, requests: int, size: int, python: str = sys.executable
               ) -> dict[str, float]:
    out = subprocess.run([*prefix, python, "-c", CLIENT, addr, str(requests), str(size)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def through_function(addr: str, requests: int, size: int, rounds: int) -> tuple[list[dict[str, float]],
                                                                            list[dict[str, float]]]:
    """The same measurement in a Python function on a real server (veth provider, namespaces isolation,
    MemorySize 3538 = two vCPUs) and on the host with the function's interpreter, interleaved."""
    runtimes = available_runtimes()
    runtime = "python3.12" if "python3.12" in runtimes else sorted(r for r in runtimes if r.startswith("python"))[-1]
    host_runs, fn_runs = [], []
    with nimbus_server({"NIMBUS_NETWORK": "veth", "NIMBUS_ISOLATION": "namespaces"}) as server:
        create_function(server.url, "netbench", MEASURE,
                        Runtime=runtime, MemorySize=3538, Timeout=300)
        event = {"addr": addr, "requests": requests, "size": size}
        for _ in range(rounds):
            host_runs.append(run_client([], addr, requests, size, str(runtimes[runtime])))
            r = httpx.post(f"{server.url}/2015-03-31/functions/netbench/invocations", json=event, timeout=600)
            if r.headers.get("x-amz-function-error"):
                raise RuntimeError(f"function failed: {r.text}")
            fn_runs.append(r.json())
    return host_runs, fn_runs


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--gigabytes", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/network.py needs root (the veth provider)")
    pid = os.getpid()
    # A host address that is not loopback (this kernel has no dummy interfaces: a /32 on lo, removed below).
    addr = f"198.18.255.{pid % 250 + 1}"
    subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
    server = subprocess.Popen([sys.executable, "-c", SERVER, addr], stdout=subprocess.PIPE)
    settings = Settings(port=1, network_spares=1)
    provider = VethNetwork(settings, "bench")
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        await provider.start()
        policy = NetworkPolicy.from_tags({}, settings)
        size = int(args.gigabytes * 1e9)

        # prepare(): from the pool vs inline (the pool refills in the background between calls).
        pooled, inline = [], []
        for _ in range(10):
            await asyncio.sleep(0.3)
            t = time.perf_counter()
            net = await provider.prepare("bench", policy)
            pooled.append(time.perf_counter() - t)
            provider.release(net)
        for _ in range(10):
            t = time.perf_counter()
            made = await asyncio.to_thread(provider._create, policy, None)
            inline.append(time.perf_counter() - t)
            provider._live[made.name] = made
            provider.release(made)
        await asyncio.sleep(0.5)

        net = await provider.prepare("bench", policy)
        host_runs, ns_runs = [], []
        for _ in range(args.rounds):  # interleaved, so drift hits both sides alike
            host_runs.append(run_client([], addr, args.requests, size))
            ns_runs.append(run_client(["ip", "netns", "exec", net.name], addr, args.requests, size))
        provider.release(net)

        def best(runs: list[dict[str, float]], key: str, low: bool = True) -> float:
            values = [r[key] for r in runs]
            return min(values) if low else max(values)

        hp50, np50 = best(host_runs, "p50"), best(ns_runs, "p50")
        hp99, np99 = best(host_runs, "p99"), best(ns_runs, "p99")
        hbulk, nbulk = best(host_runs, "gbps", False), best(ns_runs, "gbps", False)
        print(f"HTTP request, new connection each ({args.requests} requests x {args.rounds} rounds, best round):")
        print(f"  host        p50 {hp50 * 1e3:.3f} ms  p99 {hp99 * 1e3:.3f} ms")
        print(f"  namespace   p50 {np50 * 1e3:.3f} ms  p99 {np99 * 1e3:.3f} ms")
        print(f"  added p50 {(np50 - hp50) * 1e3:.3f} ms (goal <= 0.3)  ratio p50 {np50 / hp50:.2f}  "
              f"p99 {np99 / hp99:.2f}")
        print(f"bulk download of {args.gigabytes:g} GB:")
        print(f"  host {hbulk:.2f} GB/s  namespace {nbulk:.2f} GB/s (goal >= 1)  ratio {nbulk / hbulk:.2f}")
        await provider.stop()
        fh, ff = through_function(addr, args.requests, size, args.rounds)
        fhp50, ffp50 = best(fh, "p50"), best(ff, "p50")
        print("through a function (Invoke of a Python function, same client code, host run with its interpreter):")
        print(f"  host        p50 {fhp50 * 1e3:.3f} ms  p99 {best(fh, 'p99') * 1e3:.3f} ms  bulk "
              f"{best(fh, 'gbps', False):.2f} GB/s")
        print(f"  function    p50 {ffp50 * 1e3:.3f} ms  p99 {best(ff, 'p99') * 1e3:.3f} ms  bulk "
              f"{best(ff, 'gbps', False):.2f} GB/s")
        print(f"  added p50 {(ffp50 - fhp50) * 1e3:.3f} ms (goal <= 0.3)  ratio p50 {ffp50 / fhp50:.2f}  bulk ratio "
              f"{best(ff, 'gbps', False) / best(fh, 'gbps', False):.2f}")
        print("prepare() of a namespace (10 each):")
        pool_p50, inline_p50 = statistics.median(pooled), statistics.median(inline)
        print(f"  from the pool p50 {pool_p50 * 1e3:.3f} ms   made inline p50 {inline_p50 * 1e3:.1f} ms   "
              f"ratio {inline_p50 / pool_p50:.0f}x")
    finally:
        await provider.stop()
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
        subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", "lo"], check=False)


if __name__ == "__main__":
    asyncio.run(main())
