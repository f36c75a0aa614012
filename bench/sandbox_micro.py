"""Micro-benchmark of the sandbox layer alone (no HTTP): cold start (spawn -> ready) for an echo function,
warm round trip through SandboxManager.invoke, and the idle environment's memory (USS of its processes).

    .venv/bin/python bench/sandbox_micro.py [--isolation auto|namespaces|process] [--runtime python3.12]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from nimbus.config import Settings
from nimbus.control.specs import VersionSpec
from nimbus.sandbox.manager import SandboxManager
from nimbus.sandbox.runtimes import available_runtimes
from nimbus.sandbox.types import InvokeRequest

ECHO = "def handler(event, context):\n    return event\n"


def make_spec(code_dir: Path, runtime: str, memory: int, name: str) -> VersionSpec:
    return VersionSpec(
        function_name=name,
        version="$LATEST",
        function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        runtime=runtime,
        handler="app.handler",
        memory_size=memory,
        timeout=30,
        environment={},
        ephemeral_storage=512,
        architectures=("x86_64",),
        layers=(),
        logging_config={},
        code_sha256="0" * 64,
        code_dir=code_dir,
        revision_id=uuid.uuid4().hex,
    )


def request(spec: VersionSpec) -> InvokeRequest:
    return InvokeRequest(
        request_id=str(uuid.uuid4()),
        payload=b'{"hello": "world"}',
        deadline_ms=int(time.time() * 1000) + 30_000,
        invoked_arn=spec.function_arn,
    )


def uss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def tree(pid: int) -> list[int]:
    pids = [pid]
    for p in pids:  # grows while iterating: breadth-first walk
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pids.extend(int(c) for c in children)
        except OSError:
            pass
    return pids


def interpreter_baseline(interpreter: str, runs: int) -> float:
    """p50 ms of a bare `python -I -S` importing what the bootstrap imports: the floor of any cold start."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([interpreter, "-I", "-S", "-c", "import json, struct, resource"], check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--isolation", default="auto")
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--memory", type=int, default=1769)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--warm", type=int, default=5000)
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between cold starts (sporadic load)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp)
        (code / "app.py").write_text(ECHO)
        code.chmod(0o755)
        (code / "app.py").chmod(0o644)
        manager = SandboxManager(Settings(isolation=args.isolation), lambda g, s, lines: None)
        await manager.start()
        print(f"backend: {manager.backend_name} ({manager.backend_reason})")
        try:
            colds, inits = [], []
            for i in range(args.cold):
                spec = make_spec(code, args.runtime, args.memory, f"bench-cold-{i}")
                t0 = time.perf_counter()
                result = await manager.invoke(spec, request(spec))
                colds.append((time.perf_counter() - t0) * 1000)
                assert result.function_error is None, result.payload
                inits.append(result.init_duration_ms or 0.0)
                manager.retire(spec.function_name, set())
                await asyncio.sleep(args.gap)
            base = interpreter_baseline(str(available_runtimes()[args.runtime]), args.cold)
            print(
                f"cold start (spawn -> ready, init_duration_ms): p50 {statistics.median(inits):.1f} ms, "
                f"min {min(inits):.1f} ms; whole first invoke p50 {statistics.median(colds):.1f} ms; "
                f"bare interpreter + bootstrap imports p50 {base:.1f} ms "
                f"=> platform overhead ~{statistics.median(inits) - base:.1f} ms"
            )

            spec = make_spec(code, args.runtime, args.memory, "bench-warm")
            await manager.invoke(spec, request(spec))
            for _ in range(200):
                await manager.invoke(spec, request(spec))
            times = []
            for _ in range(args.warm):
                req = request(spec)
                t0 = time.perf_counter_ns()
                result = await manager.invoke(spec, req)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            print(
                f"warm invoke via SandboxManager.invoke: p50 {percentile(times, 0.5) * 1000:.0f} us, "
                f"p99 {percentile(times, 0.99) * 1000:.0f} us, mean {statistics.mean(times) * 1000:.0f} us "
                f"({args.warm} sequential)"
            )
            pool = next(iter(manager._pools.values()))
            env = pool.idle[-1]
            assert env.handle is not None
            pids = tree(env.handle.pid)
            print(f"idle environment: {len(pids)} processes, USS {uss_kb(pids) / 1024:.1f} MB "
                  f"(runtime process alone {uss_kb(pids[-1:]) / 1024:.1f} MB)")
        finally:
            await manager.stop()


if __name__ == "__main__":
    asyncio.run(main())
