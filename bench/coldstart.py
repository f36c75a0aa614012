"""First-invoke latency of a new execution environment (the fresh start path), for an echo function and
for a function whose INIT takes 300 ms, and the idle memory (USS) of a warm echo environment. The baseline,
run in the same process: starting a bare interpreter that imports json (what any cold start must pay).
Goals (issue "Execution engine"): platform overhead (latency - INIT time) <= 25 ms; idle USS <= 15 MB.

Snapshot path (issue 5, `--snapshot`, on by default): a new environment of the SAME revision (the warm one
was reaped: NIMBUS_IDLE_TIMEOUT small, the zygote kept), forked from the version's zygote, against the same
on a server with NIMBUS_ZYGOTES=false (fresh start), in the same run; goals p50 <= 5 ms, p99 <= 15 ms, >= 10x
faster. Then a burst of concurrent first invocations of a cold function (one INIT, many forks; goal p99 <= 100
ms) and the USS of each idle forked environment (goal <= 5 MB), with how many fit in 4 GB.

Issue 14 (one INIT per environment): "fork" is now the default runtime zygote (no user code; the new
environment runs INIT itself), "snapshot" the opt-in post-INIT zygote (NIMBUS_ZYGOTE_SNAPSHOTS=true); goals
for a new environment excluding the user's INIT p50 <= 10 ms, p99 <= 25 ms, 300 ms INIT p50 <= 310 ms. Then a
SnapStart version (`--snapstart`, on by default): 20 concurrent first invocations (goal: add p50 <= 30 ms,
p99 <= 60 ms over a warm invoke), a burst of 100 (goal p99 <= 150 ms, <= 2.5 ms of CPU per new environment,
all processes of the server counted) and the USS of its idle environments (goal <= 5 MB).

Run: .venv/bin/python bench/coldstart.py [--runs 20] [--burst 200] [--no-snapshot] [--no-snapstart]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server  # noqa: E402
from nimbus.sandbox.runtimes import available_runtimes  # noqa: E402

RUNTIME = "python3.12"
ECHO = "def handler(event, context):\n    return event\n"
SLOW_INIT = "import time\ntime.sleep(0.3)\n\ndef handler(event, context):\n    return event\n"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def bare_interpreter(runs: int) -> list[float]:
    exe = str(available_runtimes()[RUNTIME])
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([exe, "-I", "-S", "-c", "import json"], check=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cold_invokes(url: str, name: str, runs: int, gap: float) -> tuple[list[float], list[float]]:
    """Latency of `runs` cold invokes; each follows a configuration change that retires warm environments."""
    client = httpx.Client(base_url=url, timeout=60)
    latencies, inits = [], []
    for i in range(runs):
        r = client.put(f"/2015-03-31/functions/{name}/configuration", json={"Description": f"run {i}"})
        r.raise_for_status()
        time.sleep(gap)  # let retired environments die; cold starts rarely come back to back
        t0 = time.perf_counter()
        r = client.post(f"/2015-03-31/functions/{name}/invocations", content=b"{}",
                        headers={"X-Amz-Log-Type": "Tail"})
        latencies.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        tail = base64.b64decode(r.headers["x-amz-log-result"]).decode()
        m = re.search(r"Init Duration: ([\d.]+) ms", tail)
        inits.append(float(m.group(1)) if m else float("nan"))
    return latencies, inits


def uss_kb(pid: int) -> int:
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def descendants(pid: int) -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every descendant of `pid`."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                procs[int(d.name)] = (ppid, comm)
            except (OSError, ValueError):
                pass
    out, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, comm) in procs.items():
            if ppid == parent:
                out[child] = (ppid, comm)
                frontier.append(child)
    return out


REAP = 0.2  # NIMBUS_IDLE_TIMEOUT of the snapshot-path servers: warm environments go quickly


def new_environment_invokes(url: str, name: str, runs: int, gap: float) -> tuple[list[float], list[float]]:
    """Latency of `runs` invokes that each need a new environment of the same revision (the last one was
    reaped during the gap)."""
    client = httpx.Client(base_url=url, timeout=60)
    client.post(f"/2015-03-31/functions/{name}/invocations", content=b"{}").raise_for_status()  # INIT once
    latencies, inits = [], []
    for _ in range(runs):
        time.sleep(gap)
        t0 = time.perf_counter()
        r = client.post(f"/2015-03-31/functions/{name}/invocations", content=b"{}",
                        headers={"X-Amz-Log-Type": "Tail"})
        latencies.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        tail = base64.b64decode(r.headers["x-amz-log-result"]).decode()
        m = re.search(r"Init Duration: ([\d.]+) ms", tail)
        inits.append(float(m.group(1)) if m else float("nan"))
    return latencies, inits


async def burst(url: str, name: str, n: int) -> list[float]:
    """`n` concurrent first invocations of a function nothing has run yet."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one() -> float:
            t0 = time.perf_counter()
            r = await client.post(f"/2015-03-31/functions/{name}/invocations", content=b"{}")
            r.raise_for_status()
            return (time.perf_counter() - t0) * 1000

        return list(await asyncio.gather(*(one() for _ in range(n))))


def forked_env_uss(server_pid: int) -> list[float]:
    """USS (MB) of each forked environment: every process in its cgroup (the runtime, its pid-1 reaper, and
    for a snapshot zygote's fork the process that waits for it). A group with a bwrap in it is a zygote's or
    a fresh environment's, not counted."""
    groups: dict[str, list[int]] = {}
    comms: dict[str, set[str]] = {}
    for pid, (_, comm) in descendants(server_pid).items():
        try:
            cgroup = next(
                (ln.split(":", 2)[2] for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                 if ":memory:" in ln or ln.startswith("0::")), "")
        except OSError:
            continue
        groups.setdefault(cgroup, []).append(pid)
        comms.setdefault(cgroup, set()).add(comm)
    out = []
    for cgroup, pids in groups.items():
        if not cgroup or any(not c.startswith("python") for c in comms[cgroup]):
            continue
        with contextlib.suppress(OSError):
            out.append(sum(uss_kb(p) for p in pids) / 1024)
    return out


def snapshot_path(runs: int, burst_n: int) -> None:
    env = {"NIMBUS_IDLE_TIMEOUT": str(REAP), "NIMBUS_ZYGOTE_IDLE_TIMEOUT": "600"}
    results: dict[str, dict[str, list[float]]] = {}
    paths = (("fresh", {"NIMBUS_ZYGOTES": "false"}), ("fork", {}), ("snapshot", {"NIMBUS_ZYGOTE_SNAPSHOTS": "true"}))
    for path, extra in paths:
        with nimbus_server({**env, **extra}) as server:
            create_function(server.url, "echo", ECHO, Runtime=RUNTIME)
            create_function(server.url, "slowinit", SLOW_INIT, Runtime=RUNTIME)
            results[path] = {
                "echo": new_environment_invokes(server.url, "echo", runs, 1.0)[0],
                "INIT 300 ms": new_environment_invokes(server.url, "slowinit", runs, 1.0)[0],
            }
            if path == "snapshot":
                with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_ZYGOTE_SNAPSHOTS": "true"}) as burst_server:
                    create_function(burst_server.url, "burst", ECHO, Runtime=RUNTIME, MemorySize=128)
                    lat = asyncio.run(burst(burst_server.url, "burst", burst_n))
                    time.sleep(1.0)
                    uss = forked_env_uss(burst_server.pid)
    for label, init_ms in (("echo", 0.0), ("INIT 300 ms", 300.0)):
        fresh, fork, snap = (results[p][label] for p in ("fresh", "fork", "snapshot"))
        print(f"new environment, {label:12}: fresh p50 {pct(fresh, .5):7.1f} ms p99 {pct(fresh, .99):7.1f} ms | "
              f"runtime zygote (INIT in the environment) p50 {pct(fork, .5):6.1f} ms p99 {pct(fork, .99):6.1f} ms, "
              f"excluding the user's INIT p50 {pct(fork, .5) - init_ms:5.1f} ms p99 {pct(fork, .99) - init_ms:5.1f} "
              f"(goals 10 / 25; 300 ms INIT p50 <= 310) | snapshot p50 {pct(snap, .5):6.1f} ms p99 "
              f"{pct(snap, .99):6.1f} ms | fresh/runtime-zygote p50 {pct(fresh, .5) / pct(fork, .5):5.1f}x")
    print(f"burst of {burst_n} concurrent first invocations (snapshot opt-in: one INIT, forks): p50 "
          f"{pct(lat, .5):.1f} ms p99 {pct(lat, .99):.1f} ms max {max(lat):.1f} ms")
    if uss:
        per = statistics.median(uss)
        print(f"idle forked environments: {len(uss)}, USS median {per:.2f} MB max {max(uss):.2f} MB "
              f"(goal <= 5) -> {int(4096 / per)} fit in 4 GB")


CLK_TCK = 100


def tree_cpu_ms(pid: int) -> float:
    """CPU (user + system) of `pid` and every live descendant, with what their exited children used."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total * 1000 / CLK_TCK


def publish_snapstart(url: str, name: str) -> str:
    """Publish a version of `name` (created with SnapStart) and wait until its snapshot is ready."""
    client = httpx.Client(base_url=url, timeout=60)
    version = client.post(f"/2015-03-31/functions/{name}/versions", json={}).json()["Version"]
    deadline = time.monotonic() + 60
    while client.get(f"/2015-03-31/functions/{name}/configuration?Qualifier={version}").json()["State"] == "Pending":
        if time.monotonic() > deadline:
            raise RuntimeError("the snapshot never became ready")
        time.sleep(0.05)
    return str(version)


async def concurrent_first(url: str, name: str, qualifier: str, n: int) -> list[float]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one() -> float:
            t0 = time.perf_counter()
            r = await client.post(f"/2015-03-31/functions/{name}/invocations?Qualifier={qualifier}", content=b"{}")
            r.raise_for_status()
            return (time.perf_counter() - t0) * 1000

        return list(await asyncio.gather(*(one() for _ in range(n))))


def snapstart_path(concurrent: int, burst_n: int) -> None:
    """SnapStart versions: concurrent first invocations, a burst with the CPU it costs, idle density."""
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600"}) as server:
        for name in ("snap20", "snapburst"):
            create_function(server.url, name, ECHO, Runtime=RUNTIME, MemorySize=128,
                            SnapStart={"ApplyOn": "PublishedVersions"})
        v20 = publish_snapstart(server.url, "snap20")
        vburst = publish_snapstart(server.url, "snapburst")
        time.sleep(1.0)  # the zygotes' spares are made
        first = asyncio.run(concurrent_first(server.url, "snap20", v20, concurrent))
        warm = [min(asyncio.run(concurrent_first(server.url, "snap20", v20, 1))) for _ in range(20)]
        time.sleep(0.5)
        cpu0 = tree_cpu_ms(server.pid)
        lat = asyncio.run(concurrent_first(server.url, "snapburst", vburst, burst_n))
        time.sleep(1.0)  # let what the burst started settle (spares, watchers) and count it too
        cpu = tree_cpu_ms(server.pid) - cpu0
        uss = forked_env_uss(server.pid)
    base = pct(warm, .5)
    print(f"SnapStart, {concurrent} concurrent first invocations: p50 {pct(first, .5):.1f} ms p99 "
          f"{pct(first, .99):.1f} ms; warm invoke p50 {base:.1f} ms (baseline) -> adds p50 {pct(first, .5) - base:.1f} "
          f"ms p99 {pct(first, .99) - base:.1f} ms (goals 30 / 60); ratio to warm p50 {pct(first, .5) / base:.1f}x")
    print(f"SnapStart burst of {burst_n} concurrent first invocations: p50 {pct(lat, .5):.1f} ms p99 "
          f"{pct(lat, .99):.1f} ms (goal p99 <= 150); CPU {cpu:.0f} ms in all = {cpu / burst_n:.2f} ms per new "
          f"environment, server and every sandbox process counted (goal <= 2.5)")
    if uss:
        per = statistics.median(uss)
        print(f"idle SnapStart environments: {len(uss)}, USS median {per:.2f} MB max {max(uss):.2f} MB "
              f"(goal <= 5) -> {int(4096 / per)} fit in 4 GB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between cold starts")
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--no-snapshot", action="store_true", help="skip the zygote paths")
    parser.add_argument("--no-snapstart", action="store_true", help="skip the SnapStart concurrency and burst")
    parser.add_argument("--snapstart-burst", type=int, default=100)
    parser.add_argument("--network", default=None, help="NIMBUS_NETWORK of the servers (default: theirs, auto)")
    args = parser.parse_args()
    if args.network:
        os.environ["NIMBUS_NETWORK"] = args.network  # (the harness passes the environment on to the servers)
    global CLK_TCK
    CLK_TCK = os.sysconf("SC_CLK_TCK")
    if not args.no_snapshot:
        snapshot_path(args.runs, args.burst)
    if not args.no_snapstart:
        snapstart_path(20, args.snapstart_burst)

    base = bare_interpreter(args.runs)
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_ZYGOTES": "false"}) as server:
        create_function(server.url, "echo", ECHO, Runtime=RUNTIME)
        create_function(server.url, "slowinit", SLOW_INIT, Runtime=RUNTIME)
        echo_lat, echo_init = cold_invokes(server.url, "echo", args.runs, args.gap)
        slow_lat, slow_init = cold_invokes(server.url, "slowinit", args.runs, args.gap)

        # Idle memory of one warm echo environment: retire everything, then start exactly one.
        httpx.put(f"{server.url}/2015-03-31/functions/slowinit/configuration", json={"Description": "x"})
        httpx.post(f"{server.url}/2015-03-31/functions/echo/invocations", content=b"{}")
        time.sleep(0.5)
        procs = descendants(server.pid)
        env_uss = sum(uss_kb(p) for p in procs) / 1024
        python_uss = [uss_kb(p) / 1024 for p, (_, comm) in procs.items() if comm.startswith("python")]

    print(f"bare interpreter start (python -I -S -c 'import json'): p50 {pct(base, .5):.1f} ms  "
          f"p99 {pct(base, .99):.1f} ms")
    for label, lat, init, init_time in (("echo", echo_lat, echo_init, 0.0),
                                          ("INIT 300 ms", slow_lat, slow_init, 300.0)):
        overhead = [x - init_time for x in lat]
        print(f"cold invoke {label:12}: p50 {pct(lat, .5):7.1f} ms  p99 {pct(lat, .99):7.1f} ms  "
              f"REPORT Init Duration p50 {statistics.median(init):7.1f} ms  "
              f"platform overhead p50 {pct(overhead, .5):.1f} ms (goal <= 25)  "
              f"ratio to bare interpreter {pct(overhead, .5) / pct(base, .5):.2f}")
    print(f"idle warm echo environment: USS {env_uss:.1f} MB for all its processes "
          f"({len(procs)}: {sorted(c for _, c in procs.values())}); python runtime alone "
          f"{', '.join(f'{u:.1f}' for u in python_uss)} MB (goal <= 15)")


if __name__ == "__main__":
    main()
