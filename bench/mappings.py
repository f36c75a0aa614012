"""Queue -> function through an event source mapping (issue 15).

1. Throughput: `--messages` (20,000) messages are put on a queue while its mapping is disabled, then the
   mapping (BatchSize 10, an echo function) is enabled and the drain is timed from the mapping's own counters
   (`/nimbus/v1/event-source-mappings/{uuid}/stats`). Baseline in the same run: direct synchronous Invoke of
   the same function with a 10-record SQS event, from `--clients` threads, for the same number of batches:
   the mapping's batches/s divided by the direct invokes/s is the ratio (1.0 = the poller costs nothing).
   Goal: >= 2,000 messages/s.
2. Latency: with the queue empty and the poller warm (long-polling), one message at a time is sent with the
   client's clock in its body; the handler prints `now - sent` when it starts. p50 and p99 over `--samples`.
   Goal: p50 <= 20 ms.

Run: .venv/bin/python bench/mappings.py [--messages 20000] [--samples 200] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server  # noqa: E402

ECHO = "def handler(event, context):\n    return {'n': len(event['Records'])}\n"
LATENCY = """
import json, time
def handler(event, context):
    now = time.time() * 1000
    for r in event["Records"]:
        print("LAT %.3f" % (now - json.loads(r["body"])["t"]))
"""


def clients(url: str) -> tuple[Any, Any, Any]:
    cfg = Config(retries={"max_attempts": 2}, max_pool_connections=32, read_timeout=120)
    kw: dict[str, Any] = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "x",
                          "aws_secret_access_key": "x", "config": cfg}
    return boto3.client("lambda", **kw), boto3.client("sqs", **kw), boto3.client("logs", **kw)


def queue(sqs: Any, name: str, visibility: str = "60") -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": visibility})["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def fill(sqs: Any, url: str, count: int) -> None:
    def batch(start: int) -> None:
        entries = [{"Id": str(i), "MessageBody": json.dumps({"i": start + i})} for i in range(min(10, count - start))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, count, 10)))


def stats(url: str, mapping_uuid: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{url}/nimbus/v1/event-source-mappings/{mapping_uuid}/stats", timeout=10).json()
    return doc


def direct_invokes(url: str, function: str, batches: int, threads: int) -> float:
    """Invokes/s of the echo function with a 10-record event, `threads` clients, `batches` invocations."""
    record = {"messageId": "m", "receiptHandle": "r", "body": json.dumps({"i": 1}), "attributes": {},
              "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
              "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"}
    payload = json.dumps({"Records": [record] * 10}).encode()
    left = [batches]
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                r = http.post(f"{url}/2015-03-31/functions/{function}/invocations", content=payload)
                r.raise_for_status()

    start = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600"}) as srv:
        lam, sqs, logs = clients(srv.url)
        create_function(srv.url, "echo", ECHO, MemorySize=1769)
        create_function(srv.url, "latency", LATENCY, MemorySize=1769)

        # Warm the echo function's environments, then the baseline.
        direct_invokes(srv.url, "echo", 200, args.clients)
        direct = direct_invokes(srv.url, "echo", args.messages // 10, args.clients)

        q_url, q_arn = queue(sqs, "bench-throughput")
        mapping = lam.create_event_source_mapping(EventSourceArn=q_arn, FunctionName="echo", BatchSize=10,
                                                  Enabled=False)["UUID"]
        fill(sqs, q_url, args.messages)
        lam.update_event_source_mapping(UUID=mapping, Enabled=True)
        start = time.perf_counter()
        done = 0
        while done < args.messages:
            time.sleep(0.05)
            done = stats(srv.url, mapping)["Messages"]
            if time.perf_counter() - start > 300:
                raise SystemExit(f"drain did not finish: {done} of {args.messages}")
        elapsed = time.perf_counter() - start
        figures = stats(srv.url, mapping)
        rate = args.messages / elapsed
        batches_rate = figures["Batches"] / elapsed

        # Latency: warm poller, empty queue, one message at a time.
        l_url, l_arn = queue(sqs, "bench-latency")
        lam.create_event_source_mapping(EventSourceArn=l_arn, FunctionName="latency", BatchSize=10)
        time.sleep(1.0)
        for _ in range(5):  # warm the function
            sqs.send_message(QueueUrl=l_url, MessageBody=json.dumps({"t": time.time() * 1000}))
            time.sleep(0.1)
        time.sleep(1.0)
        for _ in range(args.samples):
            sqs.send_message(QueueUrl=l_url, MessageBody=json.dumps({"t": time.time() * 1000}))
            time.sleep(0.05)
        time.sleep(2.0)
        lines = [e["message"] for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName="/aws/lambda/latency") for e in page["events"] if e["message"].startswith("LAT ")]
        lat = sorted(float(m.split()[1]) for m in lines[5:])

    print(f"direct Invoke (10-record event, {args.clients} clients): {direct:,.0f} invokes/s "
          f"= {direct * 10:,.0f} records/s")
    print(f"mapping drain of {args.messages:,} messages: {rate:,.0f} messages/s ({batches_rate:,.0f} batches/s, "
          f"peak {figures['PeakConcurrentBatches']} concurrent batches) — goal >= 2,000")
    print(f"ratio mapping batches/s / direct invokes/s: {batches_rate / direct:.2f}")
    if lat:
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"send -> handler start over {len(lat)} messages: p50 {p50:.1f} ms, p99 {p99:.1f} ms — goal p50 <= 20")


if __name__ == "__main__":
    main()
