"""The async pipeline under load (issue "Async invocation pipeline").

1. Acceptance throughput: `Event` invokes at concurrency 16 (wrk), side by side with warm sync invokes of
   the same function in the same run. Goal: >= 3,000 accepted/s on a 2-core machine.
2. Burst with a crash: accept `--events` Event invocations (10,000) of a function that prints each request id,
   `kill -9` the server halfway through, restart it on the same data dir, send the rest, wait for the queue
   to drain, then read the function's logs (Logs API) and check that every accepted (202) request id was
   delivered at least once. Goal: 0 lost; duplicates are counted and reported.

Run: .venv/bin/python bench/async_burst.py [--seconds 8] [--events 10000] [--skip-throughput] [--skip-burst]
     [--no-intake-priority]   (deliveries at full speed during the burst, competing with acceptance)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, free_port, wait_http, wrk  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
RECORD = "def handler(event, context):\n    print('DONE ' + context.aws_request_id)\n    return None\n"
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()
# The benchmarks drive the API without signing requests.
ENV = {"NIMBUS_AUTH": "none", "NIMBUS_IDLE_TIMEOUT": "600"}


class Server:
    """A `nimbus server` child process on a data dir that outlives it (so it can be killed and restarted)."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data = data
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data.parent / f"server-{self.port}.log"

    def start(self) -> Server:
        out = open(self.log, "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nimbus", "server", "--port", str(self.port), "--data-dir", str(self.data)],
            env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/nimbus/v1/health", self.proc, timeout=60)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def queue(url: str) -> dict[str, object]:
    result: dict[str, object] = httpx.get(f"{url}/nimbus/v1/async-queue", timeout=30).json()
    return result


def wait_drained(url: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        doc = queue(url)
        if not doc["Functions"]:
            return time.monotonic() - start
        time.sleep(0.5)
    raise SystemExit(f"queue not drained after {timeout:.0f} s: {queue(url)}")


# ------------------------------------------------------------------------------------- throughput


def throughput(seconds: int, connections: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="nimbus-async-bench-")) / "data"
    server = Server(data, ENV).start()
    try:
        create_function(server.url, "echo", ECHO, MemorySize=1769)
        url = f"{server.url}/2015-03-31/functions/echo/invocations"
        assert httpx.post(url, content=PAYLOAD, timeout=30).json() == json.loads(PAYLOAD)
        wrk(url, connections, 3, PAYLOAD)  # warm-up: creates the environments
        sync = wrk(url, connections, seconds, PAYLOAD)
        event = wrk(url, connections, seconds, PAYLOAD, headers={"X-Amz-Invocation-Type": "Event"})
        backlog = queue(server.url)
        drain = wait_drained(server.url, 600)
    finally:
        server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)
    print(f"\n{'':34} {'req/s c' + str(connections):>11} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
    for name, r in (("sync warm invoke (echo)", sync), ("Event accepted (202, durable)", event)):
        print(f"{name:34} {r.rps:11.0f} {r.p50_ms:7.2f}ms {r.p99_ms:7.2f}ms {r.non2xx:8d}")
    print(f"Event acceptance / sync invoke: {event.rps / sync.rps:.2f}; "
          f"acceptance {event.rps:.0f}/s (goal >= 3000/s)")
    functions = backlog["Functions"]
    depth = functions[0]["Depth"] if isinstance(functions, list) and functions else 0
    print(f"backlog when wrk stopped: {depth} events, drained in {drain:.1f} s")


# ------------------------------------------------------------------------------------------ burst


async def send(url: str, count: int, accepted: list[str], concurrency: int, stop_at: int | None) -> int:
    """Send Event invokes over `concurrency` keep-alive connections until `count` were accepted; returns the
    requests that failed. With `stop_at`, a worker stops at its first failure (the server was killed).
    A minimal HTTP/1.1 client: httpx would be the bottleneck of this benchmark."""
    parsed = httpx.URL(url)
    host, port, path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
    failures = 0
    quota = [count - len(accepted)]

    async def worker(i: int) -> None:
        nonlocal failures
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        n = 0
        while quota[0] > 0:
            quota[0] -= 1
            n += 1
            body = json.dumps({"n": n, "worker": i}).encode()
            request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Amz-Invocation-Type: Event\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                await reader.readexactly(int(headers.get("content-length", "0")))
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                failures += 1
                quota[0] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                if stop_at is not None:
                    return
                await asyncio.sleep(0.05)
                continue
            if status == 202:
                accepted.append(headers["x-amzn-requestid"])
            else:
                failures += 1
                quota[0] += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return failures


def delivered_ids(url: str, name: str) -> Counter[str]:
    ids: Counter[str] = Counter()
    body: dict[str, object] = {"logGroupName": f"/aws/lambda/{name}", "filterPattern": "DONE", "limit": 10000}
    while True:
        r = httpx.post(url + "/", json=body, timeout=120,
                       headers={"X-Amz-Target": "Logs_20140328.FilterLogEvents",
                                "Content-Type": "application/x-amz-json-1.1"})
        r.raise_for_status()
        doc = r.json()
        for e in doc["events"]:
            message = e["message"].strip()
            if message.startswith("DONE "):
                ids[message.split()[1]] += 1
        token = doc.get("nextToken")
        if not token:
            return ids
        body["nextToken"] = token


def burst(events: int, concurrency: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="nimbus-async-burst-")) / "data"
    server = Server(data, ENV).start()
    accepted: list[str] = []
    try:
        create_function(server.url, "recorder", RECORD)
        url = f"{server.url}/2015-03-31/functions/recorder/invocations"
        half = events // 2
        t0 = time.monotonic()
        killer_fired = []

        async def first_half() -> None:
            # stop_at: the workers give up at the first refused connection (the kill), not retry forever.
            task = asyncio.create_task(send(url, events, accepted, concurrency, stop_at=events))
            while len(accepted) < half and not task.done():
                await asyncio.sleep(0.001)
            server.kill()  # kill -9 mid-burst, with requests in flight
            killer_fired.append(len(accepted))
            await task

        asyncio.run(first_half())
        at_kill = killer_fired[0]
        before = len(accepted)
        backlog_note = f"{before} accepted before kill -9 (kill fired at {at_kill})"
        server = Server(data, ENV)
        server.port = free_port()
        server.url = f"http://127.0.0.1:{server.port}"
        restart0 = time.monotonic()
        server.start()
        restart_s = time.monotonic() - restart0
        url = f"{server.url}/2015-03-31/functions/recorder/invocations"
        asyncio.run(send(url, events, accepted, concurrency, stop_at=None))
        accept_s = time.monotonic() - t0
        drain = wait_drained(server.url, 1800)
        ids = delivered_ids(server.url, "recorder")
    finally:
        server.stop()
    lost = [rid for rid in accepted if rid not in ids]
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    print(f"\nburst: {len(accepted)} Event invocations accepted (202) in {accept_s:.1f} s; {backlog_note}")
    print(f"restart on the same data dir took {restart_s:.1f} s; queue drained {drain:.1f} s later")
    print(f"delivered: {len(ids)} distinct request ids, {sum(ids.values())} deliveries")
    print(f"lost (202 but never delivered): {len(lost)} (goal 0)")
    print(f"duplicates (delivered more than once): {duplicates} "
          f"({len([1 for n in ids.values() if n > 1])} request ids)")
    extra = len(set(ids) - set(accepted))
    print(f"delivered but never answered 202 (in flight at the kill): {extra}")
    shutil.rmtree(data.parent, ignore_errors=True)
    if lost:
        print("first lost ids:", lost[:10])
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--no-intake-priority", action="store_true",
                        help="deliver at full speed while accepting (NIMBUS_ASYNC_BUSY_DELIVERY_RATE=0)")
    args = parser.parse_args()
    if args.no_intake_priority:
        ENV["NIMBUS_ASYNC_BUSY_DELIVERY_RATE"] = "0"
    if not args.skip_throughput:
        throughput(args.seconds, args.connections)
    if not args.skip_burst:
        burst(args.events, args.connections)


if __name__ == "__main__":
    main()
