"""Warm sync invoke of an echo function through the HTTP API, against a bare uvicorn+Starlette hello-world
run in the same process run. Goal (issue "Execution engine"): throughput at concurrency 16 >= 0.5 x the
baseline; p50 <= 0.5 ms and p99 <= 3 ms (measured at concurrency 1, where latency is not queueing).

Run: .venv/bin/python bench/invoke.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import baseline_server, create_function, nimbus_server, wrk  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    with baseline_server() as url:
        wrk(url + "/", 16, 2, PAYLOAD)  # warm-up
        base_c16 = wrk(url + "/", args.connections, args.seconds, PAYLOAD)
        base_c1 = wrk(url + "/", 1, args.seconds, PAYLOAD, threads=1)

    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600"}) as server:
        url = server.url
        create_function(url, "echo", ECHO, MemorySize=1769)  # one full vCPU, as on AWS
        invoke_url = f"{url}/2015-03-31/functions/echo/invocations"
        assert httpx.post(invoke_url, content=PAYLOAD).json() == json.loads(PAYLOAD)
        wrk(invoke_url, args.connections, 3, PAYLOAD)  # warm-up: creates the environments
        nim_c16 = wrk(invoke_url, args.connections, args.seconds, PAYLOAD)
        nim_c1 = wrk(invoke_url, 1, args.seconds, PAYLOAD, threads=1)

    ratio = nim_c16.rps / base_c16.rps
    rows = [
        ("baseline uvicorn+starlette", base_c16, base_c1),
        ("nimbus warm invoke (echo)", nim_c16, nim_c1),
    ]
    print(f"{'':30} {'req/s c16':>10} {'p50 c1':>9} {'p99 c1':>9} {'non-2xx':>8}")
    for name, c16, c1 in rows:
        print(f"{name:30} {c16.rps:10.0f} {c1.p50_ms:8.3f}ms {c1.p99_ms:8.3f}ms {c16.non2xx + c1.non2xx:8d}")
    print(f"throughput ratio nimbus/baseline at c{args.connections}: {ratio:.2f} (goal >= 0.50)")
    print(f"nimbus p50 at c1: {nim_c1.p50_ms:.3f} ms (goal <= 0.5), p99: {nim_c1.p99_ms:.3f} ms (goal <= 3)")

    # Observability on vs off (NIMBUS_METRICS), same run, rounds interleaved (issue 8; bench/observability.py).
    from bench.observability import compare, report

    print()
    report(*compare(max(2, args.seconds // 2), 2, args.connections))


if __name__ == "__main__":
    main()
