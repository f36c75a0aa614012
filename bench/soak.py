"""Soak: mixed load on one server for a long time, then a check that nothing leaked (issue 16).

Twenty functions take sync, async (Event), function-URL and streaming invocations from a pool of client
threads, while every `--period` seconds one function's code is updated, a version published and its `live`
alias shifted to it; a memory-hungry function (killed at its memory size) and a crashing one (exits
mid-invocation) are among them and must fail the way Lambda says, every time. Reported per window: requests,
expected failures, unexpected errors (must not grow), the server's RSS (flat within 10% after warm-up) and
its process count; after the server stops: no leftover processes, cgroups or mounts of it.

Run: .venv/bin/python bench/soak.py --minutes 30        (CI runs a 2-minute version: tests/e2e/test_soak.py)
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import nimbus_server  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/soak"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the server's own: always available

ECHO = "V = {v}\ndef handler(event, context):\n    return {{'v': V, 'echo': event}}\n"
RECORDER = "def handler(event, context):\n    print('EVENT', event.get('n'))\n"
STREAMER = "def handler(event, context):\n    for i in range(5):\n        yield ('chunk %d ' % i).encode()\n"
URL_FN = ("import json\ndef handler(event, context):\n"
          "    return {'statusCode': 200, 'body': json.dumps({'path': event['rawPath']})}\n")
HOG = "def handler(event, context):\n    blocks = []\n    while True:\n        blocks.append(bytearray(16 << 20))\n"
CRASHER = "import os\ndef handler(event, context):\n    print('about to die')\n    os._exit(3)\n"


def zipped(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


@dataclass
class Window:
    """What happened in one period of the soak."""

    requests: Counter[str] = field(default_factory=Counter)
    expected_failures: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    rss_mb: list[float] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    reconnects: int = 0  # idle keep-alive connections closed by the server as they were reused (retried)


@dataclass
class SoakReport:
    """The whole run: per-window figures and what was left behind."""

    windows: list[Window]
    warm_rss_mb: float
    max_rss_mb: float
    leftover_processes: list[str]
    leftover_cgroups: list[str]
    leftover_mounts: list[str]
    error_samples: list[str]

    @property
    def rss_growth(self) -> float:
        return self.max_rss_mb / self.warm_rss_mb - 1 if self.warm_rss_mb else 0.0

    def print(self) -> None:
        print(f"{'window':>6} {'requests':>9} {'expected-fail':>14} {'errors':>7} {'rss MB':>8} {'procs':>6} "
              f"{'reconnects':>10}")
        for i, w in enumerate(self.windows):
            rss = max(w.rss_mb) if w.rss_mb else 0.0
            procs = max(w.processes) if w.processes else 0
            print(f"{i:6d} {sum(w.requests.values()):9d} {sum(w.expected_failures.values()):14d} "
                  f"{sum(w.errors.values()):7d} {rss:8.1f} {procs:6d} {w.reconnects:10d}")
        print(f"server RSS after warm-up {self.warm_rss_mb:.1f} MB, max {self.max_rss_mb:.1f} MB: "
              f"growth {self.rss_growth * 100:+.1f}% (goal within 10%)")
        print(f"left behind: {len(self.leftover_processes)} processes, {len(self.leftover_cgroups)} cgroups, "
              f"{len(self.leftover_mounts)} mounts (goal 0 each)")
        for sample in self.error_samples[:10]:
            print("error:", sample)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _cgroups_of(server_pid: int) -> list[str]:
    found = []
    for root in Path("/sys/fs/cgroup").glob("**/nimbus-*"):
        if root.name == f"nimbus-{server_pid}" and root.is_dir():
            found.append(str(root))
    return found


def _mounts_mentioning(text: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]


def soak(seconds: float, period: float, threads: int = 6, warmup: float = 0.2, runtime: str = RUNTIME,
         server_env: dict[str, str] | None = None) -> SoakReport:
    """Run the soak against a fresh server for `seconds`; shift code and aliases every `period` seconds."""
    env = {"NIMBUS_IDLE_TIMEOUT": "30", **(server_env or {})}
    with nimbus_server(env) as server:
        lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="soak", aws_secret_access_key="soak",
                           config=Config(retries={"max_attempts": 0}, read_timeout=120,
                                         max_pool_connections=threads * 2))
        prefix = f"soak-{uuid.uuid4().hex[:6]}"

        def create(name: str, source: str, **config: Any) -> None:
            lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler="app.handler",
                                Code={"ZipFile": zipped(source)}, Timeout=config.pop("Timeout", 10), **config)
            lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})

        sync_fns = [f"{prefix}-echo{i}" for i in range(14)]
        for name in sync_fns:
            create(name, ECHO.format(v=0), MemorySize=128)
            version = lam.publish_version(FunctionName=name)["Version"]
            lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
        async_fns = [f"{prefix}-async{i}" for i in range(2)]
        for name in async_fns:
            create(name, RECORDER, MemorySize=128)
        streamer, url_fn, hog, crasher = (f"{prefix}-{kind}" for kind in ("stream", "url", "hog", "crash"))
        create(streamer, STREAMER)
        create(url_fn, URL_FN)
        create(hog, HOG, MemorySize=128, Timeout=30)
        create(crasher, CRASHER)
        lam.add_permission(FunctionName=url_fn, StatementId="public", Action="lambda:InvokeFunctionUrl",
                           Principal="*", FunctionUrlAuthType="NONE")
        url = lam.create_function_url_config(FunctionName=url_fn, AuthType="NONE")["FunctionUrl"]
        url_path = "/lambda-url/" + url.split("//", 1)[1].split(".", 1)[0] + "/"

        windows: list[Window] = [Window()]
        samples: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        versions = dict.fromkeys(sync_fns, 0)

        def record(kind: str, outcome: str, detail: str = "") -> None:
            with lock:
                window = windows[-1]
                window.requests[kind] += 1
                if outcome == "expected":
                    window.expected_failures[kind] += 1
                elif outcome == "error":
                    window.errors[kind] += 1
                    if len(samples) < 50:
                        samples.append(f"{kind}: {detail[:300]}")

        def sync_call() -> None:
            name = random.choice(sync_fns)
            out = lam.invoke(FunctionName=name, Qualifier="live", Payload=json.dumps({"n": 1}))
            body = json.loads(out["Payload"].read())
            ok = "FunctionError" not in out and body.get("echo") == {"n": 1}
            record("sync", "ok" if ok else "error", json.dumps(body))

        def async_call() -> None:
            out = lam.invoke(FunctionName=random.choice(async_fns), InvocationType="Event",
                             Payload=json.dumps({"n": random.randint(0, 10**6)}))
            record("async", "ok" if out["StatusCode"] == 202 else "error", str(out["StatusCode"]))

        def stream_call() -> None:
            out = lam.invoke_with_response_stream(FunctionName=streamer, Payload=b"{}")
            chunks = [e["PayloadChunk"]["Payload"] for e in out["EventStream"] if "PayloadChunk" in e]
            data = b"".join(chunks).decode()
            record("stream", "ok" if data == "".join(f"chunk {i} " for i in range(5)) else "error", data)

        def url_call() -> None:
            r = httpx.get(f"{server.url}{url_path}soak/path", timeout=60)
            ok = r.status_code == 200 and r.json() == {"path": "/soak/path"}
            record("url", "ok" if ok else "error", f"{r.status_code} {r.text[:200]}")

        def hog_call() -> None:
            out = lam.invoke(FunctionName=hog, Payload=b"{}")
            body = json.loads(out["Payload"].read())
            # killed at its memory size (nimbus reports it as AWS's runtimes long did: an ExitError "signal: killed")
            expected = (out.get("FunctionError") == "Unhandled"
                        and body.get("errorType") in ("Runtime.OutOfMemory", "Runtime.ExitError")
                        and "signal: killed" in body.get("errorMessage", ""))
            record("hog", "expected" if expected else "error", json.dumps(body))

        def crash_call() -> None:
            out = lam.invoke(FunctionName=crasher, Payload=b"{}")
            body = json.loads(out["Payload"].read())
            expected = out.get("FunctionError") == "Unhandled" and body.get("errorType") == "Runtime.ExitError"
            record("crash", "expected" if expected else "error", json.dumps(body))

        actions: list[tuple[Callable[[], None], int]] = [
            (sync_call, 60), (async_call, 15), (stream_call, 8), (url_call, 12), (hog_call, 1), (crash_call, 2)]
        population = [a for a, _ in actions]
        weights = [w for _, w in actions]

        def client() -> None:
            while not stop.is_set():
                action = random.choices(population, weights)[0]
                try:
                    try:
                        action()
                    except ConnectionClosedError:
                        # A pooled keep-alive connection the server closed as idle just as it was reused:
                        # every AWS SDK retries this once; so does the soak (and counts it), anything else is
                        # a finding.
                        with lock:
                            windows[-1].reconnects += 1
                        action()
                except Exception as exc:  # noqa: BLE001 - any failure of a call is the soak's finding
                    record(action.__name__.removesuffix("_call"), "error", repr(exc))

        def shift() -> None:
            name = random.choice(sync_fns)
            versions[name] += 1
            lam.update_function_code(FunctionName=name, ZipFile=zipped(ECHO.format(v=versions[name])))
            lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
            version = lam.publish_version(FunctionName=name)["Version"]
            lam.update_alias(FunctionName=name, Name="live", FunctionVersion=version)

        workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        started = time.monotonic()
        next_shift = started + period
        next_sample = started
        warm_rss = 0.0
        after_warmup: list[float] = []
        while (now := time.monotonic()) < started + seconds:
            if now >= next_sample:
                rss = _rss_mb(server.pid)
                if warm_rss:
                    after_warmup.append(rss)
                with lock:
                    windows[-1].rss_mb.append(rss)
                    windows[-1].processes.append(len(_processes_mentioning(server.data_dir)))
                next_sample = now + 2
            if not warm_rss and now - started >= warmup * seconds:
                warm_rss = _rss_mb(server.pid)
            if now >= next_shift:
                try:
                    shift()
                except ClientError as exc:
                    record("shift", "error", repr(exc))
                with lock:
                    windows.append(Window())
                next_shift = now + period
            time.sleep(0.2)
        stop.set()
        for worker in workers:
            worker.join(120)
        # The server's RSS after warm-up (caches filled, every function's environments made) against the
        # largest sample taken after it.
        max_rss = max(after_warmup, default=warm_rss)
        data_dir, server_pid = server.data_dir, server.pid
    time.sleep(1)
    return SoakReport(windows, warm_rss or max_rss, max_rss, _processes_mentioning(data_dir),
                      _cgroups_of(server_pid), _mounts_mentioning(data_dir), samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--period", type=float, default=60, help="seconds between code updates / alias shifts")
    parser.add_argument("--threads", type=int, default=6)
    args = parser.parse_args()
    report = soak(args.minutes * 60, args.period, args.threads)
    report.print()


if __name__ == "__main__":
    main()
