"""Warm sync invoke (bench/invoke.py's echo, through the HTTP API) of this tree against another source tree of
nimbus, e.g. the commit before a refactoring, in one run with the rounds interleaved so both see the same
machine load. Prints each round and the median throughput ratio this/other (issue 13: "not slower").

Run: git worktree add /tmp/nimbus-base <commit>
     .venv/bin/python bench/compare_trees.py --other /tmp/nimbus-base/src [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import WrkResult, create_function, nimbus_server, wrk  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()
HERE = str(Path(__file__).resolve().parent.parent / "src")


def measure(src: str, seconds: int, connections: int) -> tuple[WrkResult, WrkResult]:
    """(c`connections` throughput run, c1 latency run) of a server importing nimbus from `src`."""
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "PYTHONPATH": src}) as server:
        create_function(server.url, "echo", ECHO, MemorySize=1769)
        url = f"{server.url}/2015-03-31/functions/echo/invocations"
        assert httpx.post(url, content=PAYLOAD).json() == json.loads(PAYLOAD)
        wrk(url, connections, 2, PAYLOAD)  # warm-up: creates the environments
        return wrk(url, connections, seconds, PAYLOAD), wrk(url, 1, seconds, PAYLOAD, threads=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", required=True, help="the other tree's src/ directory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    ratios, p50s = [], []
    for n in range(args.rounds):
        order = [("this", HERE), ("other", args.other)]
        if n % 2:
            order.reverse()  # alternate who goes first
        got = {name: measure(src, args.seconds, args.connections) for name, src in order}
        (this16, this1), (other16, other1) = got["this"], got["other"]
        ratios.append(this16.rps / other16.rps)
        p50s.append(this1.p50_ms / other1.p50_ms)
        print(f"round {n + 1}: this {this16.rps:8.0f} req/s (p50 c1 {this1.p50_ms:.3f} ms), "
              f"other {other16.rps:8.0f} req/s (p50 c1 {other1.p50_ms:.3f} ms)")
    print(f"throughput ratio this/other at c{args.connections}, median of {args.rounds}: "
          f"{statistics.median(ratios):.3f}")
    print(f"p50 latency ratio this/other at c1, median of {args.rounds}: {statistics.median(p50s):.3f}")


if __name__ == "__main__":
    main()
