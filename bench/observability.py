"""What observability costs the hot path: warm sync invoke throughput of an echo function with metrics,
metering and tracing hooks on (the default) against the same server build with `NIMBUS_METRICS=false`, in the
same run, rounds interleaved (A B A B ...) so machine noise hits both alike. Also a function with
`LoggingConfig` JSON (platform records instead of START/END/REPORT). Goal (issue 8): on/off >= 0.95.

Both servers run with `--auth none` (wrk cannot sign requests; SigV4 costs the same in both).

Run: .venv/bin/python bench/observability.py [--seconds 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server, wrk  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    report(*compare(args.seconds, args.rounds, args.connections))


def compare(seconds: int, rounds: int, connections: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Throughput (req/s) and server CPU per request (us) of each configuration, per round."""
    base = {"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_AUTH": "none"}
    with nimbus_server({**base, "NIMBUS_METRICS": "true"}) as on, \
            nimbus_server({**base, "NIMBUS_METRICS": "false"}) as off:
        urls = {}
        for label, server in (("on", on), ("off", off)):
            create_function(server.url, "echo", ECHO, MemorySize=1769)
            urls[label] = f"{server.url}/2015-03-31/functions/echo/invocations"
        create_function(on.url, "echojson", ECHO, MemorySize=1769, LoggingConfig={"LogFormat": "JSON"})
        urls["on+json"] = f"{on.url}/2015-03-31/functions/echojson/invocations"
        for url in urls.values():
            assert httpx.post(url, content=PAYLOAD).json() == json.loads(PAYLOAD)
            wrk(url, connections, 2, PAYLOAD)  # warm-up: creates the environments
        pids = {"on": on.pid, "off": off.pid, "on+json": on.pid}
        results: dict[str, list[float]] = {label: [] for label in urls}
        cpu: dict[str, list[float]] = {label: [] for label in urls}  # server CPU microseconds per request
        for _ in range(rounds):
            for label, url in urls.items():
                before = cpu_seconds(pids[label])
                rps = wrk(url, connections, seconds, PAYLOAD).rps
                cpu[label].append((cpu_seconds(pids[label]) - before) / max(1.0, rps * seconds) * 1e6)
                results[label].append(rps)
        metrics = httpx.get(f"{on.url}/metrics").text
        assert 'nimbus_invocations_total{function="echo",qualifier="$LATEST"}' in metrics
    return results, cpu


def report(results: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    med = {label: statistics.median(values) for label, values in results.items()}
    cpu_med = {label: statistics.median(values) for label, values in cpu.items()}
    print(f"{'configuration':34} {'median req/s':>12} {'server CPU/req':>15}   rounds (req/s)")
    names = {"on": "metrics+metering on (default)", "off": "NIMBUS_METRICS=false",
             "on+json": "on, LoggingConfig JSON"}
    for label, values in results.items():
        print(f"{names[label]:34} {med[label]:12.0f} {cpu_med[label]:12.1f} us   "
              + " ".join(f"{v:.0f}" for v in values))
    print(f"throughput ratio on/off: {med['on'] / med['off']:.3f} (goal >= 0.95); "
          f"JSON logs on/off: {med['on+json'] / med['off']:.3f}")
    # Server CPU per request is less sensitive than throughput to other load on the machine.
    print(f"server CPU per request, off/on: {cpu_med['off'] / cpu_med['on']:.3f} "
          f"(the throughput the hot path allows, if the server is the bottleneck); "
          f"JSON: {cpu_med['off'] / cpu_med['on+json']:.3f}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
