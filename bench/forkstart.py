"""Snapshot cold starts (issue 5), measured on the sandbox layer directly (no HTTP): first-invoke latency of
a new environment, fresh vs forked from the version's zygote, for an echo handler and a 300 ms INIT; a burst
of concurrent new environments of a version whose zygote is ready; USS of idle forked environments. Ratios
against the fresh path, measured in the same run.

Run: .venv/bin/python bench/forkstart.py [--runs 20] [--burst 200] [--isolation namespaces]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.sandbox.conftest import Sink, make_request, make_spec, started, write_code  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
SLOW_INIT = "import time\ntime.sleep(0.3)\n\ndef handler(event, context):\n    return event\n"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def cold_starts(isolation: str, zygotes: bool, source: str, runs: int, tmp: Path) -> list[float]:
    manager = await started(isolation, Sink(), zygotes=zygotes)
    try:
        spec = make_spec(write_code(tmp, source), memory_size=256)
        await manager.invoke(spec, make_request(spec))  # the zygote's INIT (fork path) is not a sample
        samples = []
        for _ in range(runs):
            pool = manager._pools[spec.pool_key]
            pool.retire()  # no warm environment: the next invoke is a cold start (the zygote stays)
            del manager._pools[spec.pool_key]
            await asyncio.sleep(0.4)  # cold starts rarely come back to back (both paths prepare the next one)
            t = time.perf_counter()
            result = await manager.invoke(spec, make_request(spec))
            samples.append((time.perf_counter() - t) * 1000)
            assert result.function_error is None, result.payload
        return samples
    finally:
        await manager.stop()


async def burst(isolation: str, n: int, tmp: Path) -> tuple[list[float], float]:
    manager = await started(isolation, Sink(), zygotes=True, pids_max=64)
    try:
        # hold environments busy so every call needs a new one: the function sleeps a little
        slow = make_spec(write_code(tmp, "import time\ndef handler(e, c):\n    time.sleep(0.5)\n    return 1\n"),
                         memory_size=128)
        await manager.invoke(slow, make_request(slow))

        async def one_slow() -> float:
            t = time.perf_counter()
            await manager.invoke(slow, make_request(slow))
            return (time.perf_counter() - t) * 1000 - 500
        lat = await asyncio.gather(*(one_slow() for _ in range(n)))
        uss = 0.0
        pids = [e.handle.pid for e in manager._envs if e.alive and e.handle is not None and e.spec is slow]
        for pid in pids:
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in text.splitlines()[1:])
            uss += sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty") if k in fields)
        return list(lat), (uss / 1024 / max(1, len(pids)))
    finally:
        await manager.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--isolation", default="namespaces")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nimbus-forkbench-"))
    for label, source in (("echo", ECHO), ("init 300 ms", SLOW_INIT)):
        fresh = await cold_starts(args.isolation, False, source, args.runs, tmp)
        fork = await cold_starts(args.isolation, True, source, args.runs, tmp)
        print(f"{label:12s} fresh p50 {pct(fresh, 50):7.2f} ms p99 {pct(fresh, 99):7.2f} | "
              f"fork p50 {pct(fork, 50):6.2f} ms p99 {pct(fork, 99):6.2f} | "
              f"p50 ratio {statistics.median(fresh) / statistics.median(fork):5.1f}x")
    lat, uss = await burst(args.isolation, args.burst, tmp)
    print(f"burst of {args.burst} concurrent new environments (zygote ready): p50 {pct(lat, 50):.1f} ms "
          f"p99 {pct(lat, 99):.1f} ms (handler time excluded)")
    print(f"USS per idle forked environment: {uss:.2f} MB -> {int(4096 / uss) if uss else 0} fit in 4 GB")


if __name__ == "__main__":
    asyncio.run(main())
