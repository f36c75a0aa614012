"""Durable functions (issue 18): three figures, each with a same-run baseline.

1. Memory of suspended executions: 10,000 executions each suspended in a one-hour wait, in one durable service
   on SQLite; Python-heap growth per execution (tracemalloc: everything but SQLite's own C allocations, i.e.
   beyond the database) and process RSS growth, against the 2 KB target. No process exists per execution.
2. wait() lateness: 1,000 executions whose waits come due in the same second; lateness = moment the scheduler
   re-invokes the function − the wait's ScheduledEndTimestamp. Baseline: 1,000 `loop.call_at` timers due in
   the same second, in the same process.
   (1. and 2. drive the real service, database and scheduler with an in-process stand-in for the function,
   which takes 2 ms, checkpoints its wait and answers PENDING as the SDK does; they measure the platform, not a
   sandbox.)
3. Checkpoint round trip on a warm environment, through a real server: a function calls
   CheckpointDurableExecution with boto3 (the SDK's client) 300 times, one STEP START+SUCCEED batch each.
   Baseline: the same function calling GetFunctionConfiguration on itself over the same path.

    .venv/bin/python bench/durable.py [--executions 10000] [--due 1000] [--checkpoints 300]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402
from tests.durable.test_service import FakeRegistry  # noqa: E402

from nimbus.config import Settings  # noqa: E402
from nimbus.control.db import make_engine, migrate  # noqa: E402
from nimbus.durable.service import DurableService  # noqa: E402
from nimbus.invoke.service import InvokeOutcome  # noqa: E402


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Observer:
    def __init__(self) -> None:
        self.metrics = type("M", (), {"registry": CollectorRegistry()})()


class WaitingFunction:
    """Stands in for a durable handler: first invocation checkpoints a WAIT and suspends, the next succeeds."""

    def __init__(self, wait_seconds: int) -> None:
        self.observer = _Observer()
        self.service: DurableService | None = None
        self.wait_seconds = wait_seconds
        self.resumed: list[float] = []  # lateness (s) of each resumption
        self.target: float | None = None  # make every wait come due in the second around this moment

    async def invoke(self, function: str, qualifier: str | None, payload: bytes, **_: Any) -> InvokeOutcome:
        assert self.service is not None
        event = json.loads(payload)
        ops = event["InitialExecutionState"]["Operations"]
        waits = [o for o in ops if o["Type"] == "WAIT"]
        if waits:
            due = waits[0]["WaitDetails"]["ScheduledEndTimestamp"] / 1000
            self.resumed.append(time.time() - due)
        await asyncio.sleep(0.002)  # the function runs elsewhere (a sandbox): the platform waits, it does not work
        if waits:
            return InvokeOutcome(200, json.dumps({"Status": "SUCCEEDED", "Result": "1"}).encode(), {})
        seconds = self.wait_seconds if self.target is None else max(1, round(self.target - time.time()))
        self.service.checkpoint(event["DurableExecutionArn"], event["CheckpointToken"], [
            {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": seconds}}], None)
        return InvokeOutcome(200, b'{"Status": "PENDING"}', {})


def make_service(tmp: Path, function: WaitingFunction) -> DurableService:
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    migrate(engine)
    service = DurableService(Settings(data_dir=tmp), engine, FakeRegistry(execution_timeout=86_400), function)  # type: ignore[arg-type]
    function.service = service
    return service


async def settle(service: DurableService, count: int, status: str | None = None, timeout: float = 600) -> None:
    """Until no execution has an invocation in flight or due, and `count` of them are in `status` (any)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with service._tx() as conn:
            from sqlalchemy import func, select

            from nimbus.durable import tables as t
            ex = t.executions.c
            pending = conn.execute(select(func.count()).select_from(t.executions).where(
                (ex.invoke_at_ms.is_not(None)) | (ex.in_flight.is_(True)))).scalar_one()
            q = select(func.count()).select_from(t.executions)
            done = conn.execute(q if status is None else q.where(ex.status == status)).scalar_one()
        if pending == 0 and done >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("executions did not settle")


async def memory(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        function = WaitingFunction(3600)
        service = make_service(Path(d), function)
        await service.start()
        try:
            for _ in range(200):  # warm-up: caches, connections, code paths
                service.start_execution("flow", None, b"{}", None)
            await settle(service, 200)
            gc.collect()
            tracemalloc.start()
            heap0, rss0 = tracemalloc.get_traced_memory()[0], rss_kb()
            t0 = time.perf_counter()
            for i in range(count):
                service.start_execution("flow", None, json.dumps({"i": i}).encode(), None)
                if i % 500 == 499:
                    await asyncio.sleep(0)
            await settle(service, 200 + count)
            elapsed = time.perf_counter() - t0
            gc.collect()
            heap1, rss1 = tracemalloc.get_traced_memory()[0], rss_kb()
            tracemalloc.stop()
            with service._tx() as conn:
                suspended = service._count_suspended(conn)
        finally:
            await service.stop()
        db = (Path(d) / "bench.db").stat().st_size + sum(p.stat().st_size for p in Path(d).glob("bench.db-*"))
    return {"heap_per_exec": (heap1 - heap0) / count, "rss_per_exec": (rss1 - rss0) * 1024 / count,
            "suspended": suspended, "db_per_exec": db / (200 + count), "seconds": elapsed}


async def lateness(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        function = WaitingFunction(2)
        service = make_service(Path(d), function)
        await service.start()
        try:
            # waits chosen so that all of them come due within the same second
            start = time.time()
            function.target = start + 3 + count / 80  # after all first invocations, even on a loaded machine
            for _ in range(count):
                service.start_execution("flow", None, b"{}", None)
            await settle(service, count)
            setup = time.time() - start
            await settle(service, count, status="SUCCEEDED", timeout=120)
        finally:
            await service.stop()
    nimbus = sorted(function.resumed)
    # baseline: the event loop's own timers, as many, due in the same second
    loop = asyncio.get_running_loop()
    late: list[float] = []
    due_at = time.time() + 1.0
    done = asyncio.Event()

    def fire(due: float) -> None:
        late.append(time.time() - due)
        if len(late) == count:
            done.set()

    for i in range(count):
        due = due_at + (i / count) * 0.5
        loop.call_at(loop.time() + (due - time.time()), fire, due)
    await done.wait()
    late.sort()
    return {"p50": _pct(nimbus, 50), "p99": _pct(nimbus, 99), "base_p50": _pct(late, 50),
            "base_p99": _pct(late, 99), "setup": setup, "n": len(nimbus)}


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100))]


ROUND_TRIP = r'''
import json, time
import boto3


def handler(event, context):
    client = boto3.client("lambda")
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    n = int(json.loads(event["InitialExecutionState"]["Operations"][0]["ExecutionDetails"]["InputPayload"])["n"])
    checkpoint, baseline = [], []
    for i in range(n):
        t0 = time.perf_counter()
        client.get_function_configuration(FunctionName=context.function_name)
        baseline.append(time.perf_counter() - t0)
        updates = [{"Id": f"s{i}", "Type": "STEP", "Action": "START", "Name": f"s{i}"},
                   {"Id": f"s{i}", "Type": "STEP", "Action": "SUCCEED", "Payload": str(i)}]
        t0 = time.perf_counter()
        token = client.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token,
                                                    Updates=updates)["CheckpointToken"]
        checkpoint.append(time.perf_counter() - t0)
    return {"Status": "SUCCEEDED", "Result": json.dumps({"checkpoint": checkpoint, "baseline": baseline})}
'''


def round_trip(n: int) -> dict[str, float]:
    from tests.conftest import ROLE, RUNTIME, NimbusServer, make_zip
    from tests.durable.sdk_layer import build_layer

    with tempfile.TemporaryDirectory() as d:
        srv = NimbusServer(Path(d) / "data").start()
        try:
            lam = srv.client("lambda")
            layer = lam.publish_layer_version(LayerName="sdk", Content={"ZipFile": build_layer(Path(d) / "layer")})
            name = f"rt-{uuid.uuid4().hex[:6]}"
            lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="index.handler", Timeout=300,
                                MemorySize=1769, Code={"ZipFile": make_zip({"index.py": ROUND_TRIP})},
                                Layers=[layer["LayerVersionArn"]], DurableConfig={"ExecutionTimeout": 600})
            lam.invoke(FunctionName=name, Payload=json.dumps({"n": 20}).encode())  # warm the environment
            r = lam.invoke(FunctionName=name, Payload=json.dumps({"n": n}).encode())
            doc = json.loads(r["Payload"].read())
        finally:
            srv.stop()
    cp, base = sorted(doc["checkpoint"][10:]), sorted(doc["baseline"][10:])
    return {"p50": statistics.median(cp), "p99": _pct(cp, 99), "base_p50": statistics.median(base),
            "base_p99": _pct(base, 99)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--checkpoints", type=int, default=300)
    parser.add_argument("--only", choices=["memory", "lateness", "checkpoint"])
    args = parser.parse_args()
    if args.only in (None, "memory"):
        await report_memory(args.executions)
    if args.only in (None, "lateness"):
        await report_lateness(args.due)
    if args.only in (None, "checkpoint"):
        report_round_trip(args.checkpoints)


async def report_memory(executions: int) -> None:
    m = await memory(executions)
    print(f"suspended executions: {executions:,} (suspended now: {m['suspended']:,}; set up in "
          f"{m['seconds']:.1f} s)")
    print(f"  Python heap growth beyond the database: {m['heap_per_exec']:.0f} B/execution "
          f"(target 2048 B: ratio {m['heap_per_exec'] / 2048:.3f})")
    print(f"  RSS growth incl. SQLite's page cache:   {m['rss_per_exec']:.0f} B/execution "
          f"(ratio to target {m['rss_per_exec'] / 2048:.3f}); database file {m['db_per_exec']:.0f} B/execution")



async def report_lateness(due: int) -> None:
    lt = await lateness(due)
    print(f"wait() lateness, {lt['n']:,} due in the same second (first invocations took {lt['setup']:.2f} s):")
    print(f"  nimbus   p50 {lt['p50'] * 1000:7.1f} ms  p99 {lt['p99'] * 1000:7.1f} ms  (targets 50 / 250 ms)")
    print(f"  baseline p50 {lt['base_p50'] * 1000:7.1f} ms  p99 {lt['base_p99'] * 1000:7.1f} ms  (loop.call_at)")
    print(f"  ratio nimbus/baseline p50 {lt['p50'] / max(lt['base_p50'], 1e-6):.1f}, "
          f"p99 {lt['p99'] / max(lt['base_p99'], 1e-6):.1f}")



def report_round_trip(checkpoints: int) -> None:
    rt = round_trip(checkpoints)
    print(f"checkpoint round trip (boto3 in a warm environment → nimbus → back), {checkpoints} calls:")
    print(f"  checkpoint             p50 {rt['p50'] * 1000:6.2f} ms  p99 {rt['p99'] * 1000:6.2f} ms  (target p50 2 ms)")
    print(f"  GetFunctionConfiguration p50 {rt['base_p50'] * 1000:6.2f} ms  p99 {rt['base_p99'] * 1000:6.2f} ms"
          " (baseline, same path)")
    print(f"  ratio checkpoint/baseline p50 {rt['p50'] / rt['base_p50']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
