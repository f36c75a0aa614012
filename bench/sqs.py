"""SQS queue API throughput: nimbus's queue service against moto's server, in the same run.

Each of `--workers` concurrent loops sends a batch of 10 messages (SendMessageBatch), receives up to 10
(ReceiveMessage) and deletes what it received (DeleteMessageBatch), on one shared standard queue, for
`--seconds` per server. The figure is messages deleted per second (each one sent, received and deleted).
Requests use the JSON protocol current boto3 speaks, SigV4-signed with botocore's own signer (nimbus checks
signatures, moto does not), sent by one asyncio httpx client process for both servers.

    .venv/bin/pip install -e '.[bench]'        # moto[server]: benchmark-only
    .venv/bin/python bench/sqs.py --seconds 10

ElasticMQ is not run: its jar comes from GitHub/Maven Central, which this machine cannot reach, and Debian
packages no ElasticMQ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import free_port, wait_http  # noqa: E402
from nimbus.awscreds import read_credentials_file  # noqa: E402

BODY = "x" * 256


@contextmanager
def nimbus(signed: bool) -> Iterator[tuple[str, Credentials]]:
    port = free_port()
    data = tempfile.mkdtemp(prefix="nimbus-bench-sqs-")
    log = open(Path(data).parent / f"nimbus-bench-sqs-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "nimbus", "server", "--port", str(port), "--data-dir", data],
                            env={**os.environ, "NIMBUS_AUTH": "sigv4" if signed else "none"},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/nimbus/v1/health", proc)
        found = read_credentials_file(Path(data) / "credentials") if signed else None
        yield url, Credentials(*(found or ("test", "test")))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def moto() -> Iterator[tuple[str, Credentials]]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SystemExit("moto_server is missing: pip install -e '.[bench]'")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/moto-api/", proc)
        yield url, Credentials("testing", "testing")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


class Sqs:
    """A minimal SQS JSON-protocol client: botocore's signer, httpx's async transport."""

    def __init__(self, url: str, creds: Credentials, connections: int) -> None:
        self.url = url
        self.signer = SigV4Auth(creds, "sqs", "us-east-1")
        self.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=60)

    async def call(self, op: str, params: dict[str, object]) -> dict[str, object]:
        body = json.dumps(params).encode()
        req = AWSRequest("POST", self.url + "/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{op}",
            "x-amzn-query-mode": "true"})
        self.signer.add_auth(req)
        resp = await self.http.post(self.url + "/", content=body, headers=dict(req.headers.items()))
        if resp.status_code != 200:
            raise RuntimeError(f"{op}: {resp.status_code} {resp.text}")
        result: dict[str, object] = resp.json()
        return result


async def run(url: str, creds: Credentials, workers: int, seconds: float) -> float:
    client = Sqs(url, creds, workers)
    queue = f"bench-{int(time.time() * 1000)}"
    queue_url = str((await client.call("CreateQueue", {"QueueName": queue}))["QueueUrl"])
    deleted = 0
    stop = time.monotonic() + seconds

    async def loop(n: int) -> None:
        nonlocal deleted
        while time.monotonic() < stop:
            await client.call("SendMessageBatch", {"QueueUrl": queue_url, "Entries": [
                {"Id": str(i), "MessageBody": BODY} for i in range(10)]})
            got = await client.call("ReceiveMessage", {"QueueUrl": queue_url, "MaxNumberOfMessages": 10})
            messages = got.get("Messages") or []
            assert isinstance(messages, list)
            if messages:
                await client.call("DeleteMessageBatch", {"QueueUrl": queue_url, "Entries": [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]})
                deleted += len(messages)

    started = time.monotonic()
    await asyncio.gather(*(loop(n) for n in range(workers)))
    elapsed = time.monotonic() - started
    await client.http.aclose()
    return deleted / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per server and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (the median counts)")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"moto server": [], "nimbus (SigV4 checked)": []}
    # Both servers run for the whole benchmark and take turns, so drifting load on a shared machine
    # weighs on both alike; the median of the rounds is reported.
    with moto() as moto_server, nimbus(signed=True) as nimbus_server:
        servers = {"moto server": moto_server, "nimbus (SigV4 checked)": nimbus_server}
        for url, creds in servers.values():
            asyncio.run(run(url, creds, args.workers, 1.0))  # warm-up
        for _ in range(args.rounds):
            for name, (url, creds) in servers.items():
                rates[name].append(asyncio.run(run(url, creds, args.workers, args.seconds)))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    base = medians["moto server"]
    print(f"SendMessageBatch + ReceiveMessage + DeleteMessageBatch, {args.workers} concurrent loops, "
          f"{args.rounds} alternating rounds of {args.seconds:g} s, messages/s (each sent, received, deleted):")
    for name, rate in medians.items():
        rounds = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(f"  {name:<24} median {rate:>8,.0f} msg/s  {rate / base:6.2f}x moto   (rounds: {rounds})")
    print("  ElasticMQ: not run (no Java artifact reachable from this machine; see the module docstring)")


if __name__ == "__main__":
    main()
