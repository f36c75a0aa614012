"""1,000 `rate(1 minute)` schedules (issue 15): how late their ticks reach the function.

The schedules (Lambda target, Input carrying `<aws.scheduler.scheduled-time>`) are created in a burst; the
first tick of each is immediate (as on AWS without a StartDate) and not measured; the second, one minute
later, is: the handler prints `start - scheduled time`. This runs on the real clock (about 2 minutes).
The server's own figure (tick due -> fired, `nimbus_schedule_lateness_seconds_p99` on /metrics) is shown
too. Baseline in the same run: 1,000 asyncio timers in this process, due at the same instants as the
second ticks, measured the same way (the machine's own timer jitter under the same load).
Goal: lateness p99 <= 1 s.

Run: .venv/bin/python bench/schedules.py [--schedules 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server  # noqa: E402

HANDLER = """
import calendar, json, time
def handler(event, context):
    now = time.time()
    due = calendar.timegm(time.strptime(event["t"], "%Y-%m-%dT%H:%M:%SZ"))
    print("LATE %s %s %.4f" % (event["n"], event["t"], now - due))
"""


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


async def baseline(dues: list[float]) -> list[float]:
    late: list[float] = []
    loop = asyncio.get_running_loop()

    def fire(due: float) -> None:
        late.append(time.time() - due)

    for due in dues:
        loop.call_later(max(0.0, due - time.time()), fire, due)
    await asyncio.sleep(max(dues) - time.time() + 1.0)
    return late


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.0,
                        help="create the schedules evenly over this many seconds (0: as fast as possible)")
    args = parser.parse_args()
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_ASYNC_MAX_CONCURRENCY": "64"}) as srv:
        create_function(srv.url, "tick", HANDLER, MemorySize=512)
        cfg = Config(retries={"max_attempts": 3}, max_pool_connections=16)
        kw: dict[str, Any] = {"endpoint_url": srv.url, "region_name": "us-east-1", "aws_access_key_id": "x",
                              "aws_secret_access_key": "x", "config": cfg}
        sch, logs = boto3.client("scheduler", **kw), boto3.client("logs", **kw)
        target = {"Arn": "arn:aws:lambda:us-east-1:000000000000:function:tick",
                  "RoleArn": "arn:aws:iam::000000000000:role/bench"}
        created: dict[int, float] = {}

        t0 = time.time()

        def create(n: int) -> None:
            if args.spread:
                time.sleep(max(0.0, t0 + n * args.spread / args.schedules - time.time()))
            created[n] = time.time()
            sch.create_schedule(Name=f"s{n}", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                                Target={**target, "Input": json.dumps({"n": n, "t": "<aws.scheduler.scheduled-time>"})})

        with ThreadPoolExecutor(1 if args.spread else 8) as pool:
            list(pool.map(create, range(args.schedules)))
        print(f"created {args.schedules} schedules in {time.time() - t0:.1f} s")
        # Second ticks: one minute after each creation (whole seconds), measured against the same instants.
        dues = [int(c) + 60.0 for c in created.values()]
        base = asyncio.run(baseline(dues))
        time.sleep(5)
        lines: list[str] = []
        deadline = time.time() + 60
        while time.time() < deadline:
            lines = [e["message"] for page in logs.get_paginator("filter_log_events").paginate(
                logGroupName="/aws/lambda/tick") for e in page["events"] if e["message"].startswith("LATE ")]
            if len(lines) >= 2 * args.schedules:
                break
            time.sleep(2)
        per: dict[str, list[tuple[str, float]]] = {}
        for m in lines:
            _, n, t, late = m.split()
            per.setdefault(n, []).append((t, float(late)))
        # The later tick of each schedule (by scheduled time): the second one. The first, immediate tick is
        # not measured: its scheduled time is the creation time truncated to the second.
        second = [max(v)[1] for v in per.values() if len(v) >= 2]
        metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
        server_p99 = float(re.search(r"^nimbus_schedule_lateness_seconds_p99 (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    print(f"ticks observed: {len(lines)} (second ticks: {len(second)} of {args.schedules})")
    print(f"baseline asyncio timers: p50 {p(base, 0.5) * 1000:.1f} ms, p99 {p(base, 0.99) * 1000:.1f} ms")
    print(f"schedule -> handler start: p50 {p(second, 0.5) * 1000:.1f} ms, p99 {p(second, 0.99) * 1000:.1f} ms, "
          f"max {max(second, default=float('nan')) * 1000:.1f} ms")
    print(f"schedule lateness (tick due -> target accepted it), server figure, p99: {server_p99 * 1000:.1f} ms "
          "— goal p99 <= 1000 ms")
    ages = re.findall(r'^nimbus_async_event_age_seconds_bucket\{function="tick",le="([^"]+)"\} (\S+)$', metrics, re.M)
    if ages:
        total = float(ages[-1][1])
        p99_bucket = next((le for le, n in ages if float(n) >= 0.99 * total), "+Inf")
        print(f"async queue: event age (accepted -> invoked) p99 <= {p99_bucket} s over {total:.0f} events")
    print(f"ratio p99 schedule lateness / baseline timers: {server_p99 / max(p(base, 0.99), 1e-6):.1f}")


if __name__ == "__main__":
    main()
