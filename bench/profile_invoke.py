"""Where the server's CPU per warm invocation goes: py-spy samples a real `nimbus server` while wrk drives warm
Invokes of an echo function (bench/invoke.py's load) or a function URL, and writes a flame graph (SVG) plus a
table of the biggest items (share of the server's samples, inclusive) from the same samples.

Needs py-spy (`pip install py-spy`; it attaches with ptrace, so run as root) and wrk.

Run: .venv/bin/python bench/profile_invoke.py [--seconds 15] [--target invoke|url] [--out bench/profile-invoke.svg]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server, wrk  # noqa: E402

ECHO = "def handler(event, context):\n    return event\n"
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()

# Frames (function name + file) whose inclusive share is reported; the first match on a stack counts once.
ITEMS = [
    ("uvicorn: HTTP parsing and response writing (httptools protocol)", "httptools_impl.py"),
    ("auth.AuthApp (SigV4 layer; function-URL claim)", "auth.py"),
    ("function URL app (payload 2.0 build/parse)", "api/urls.py"),
    ("InvokeApp (Invoke fast path: headers, body)", "api/invoke.py"),
    ("Invoker.invoke (routing, validation, lease)", "invoke/service.py"),
    ("dispatcher (sandbox round trip: IPC framing)", "invoke/dispatcher.py"),
    ("cgroup reads (memory peak per invocation)", "sandbox/cgroups.py"),
    ("environment IPC (framing, write to the runtime)", "sandbox/environment.py"),
    ("sandbox manager, pool, protocol", "sandbox/"),
    ("response write to the client (one send)", "api/http.py"),
    ("observer (START/END/REPORT, metrics, metering)", "observe/observer.py"),
    ("log store (append, flush)", "observe/logstore.py"),
    ("metrics, metering, tracing", "observe/"),
    ("asyncio event loop (select, callbacks)", "asyncio/"),
    ("SQLAlchemy / sqlite (log and metering writes)", "sqlalchemy/"),
    ("threads (executor workers)", "concurrent/futures/"),
]


def table(collapsed: Path) -> list[tuple[str, float]]:
    """Each sample charged to the innermost of ITEMS on its stack (so the shares add up to 100%), plus the top
    self-time frames, from py-spy's collapsed stacks."""
    total = 0
    charged: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        label = "other"
        for frame in reversed(frames):
            hit = next((lbl for lbl, needle in ITEMS if needle in frame), None)
            if hit is not None:
                label = hit
                break
        charged[label] += count
        self_time[frames[-1]] += count
    rows = [(label, n / total) for label, n in charged.most_common()]
    rows += [(f"self: {frame}", n / total) for frame, n in self_time.most_common(15)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--target", choices=["invoke", "url"], default="invoke")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "profile-invoke.svg"))
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600"}) as server:
        create_function(server.url, "echo", ECHO, MemorySize=1769)
        url = f"{server.url}/2015-03-31/functions/echo/invocations"
        if args.target == "url":
            r = httpx.post(f"{server.url}/2021-10-31/functions/echo/url", json={"AuthType": "NONE"})
            r.raise_for_status()
            httpx.post(f"{server.url}/2015-03-31/functions/echo/policy", json={
                "StatementId": "public", "Action": "lambda:InvokeFunctionUrl", "Principal": "*",
                "FunctionUrlAuthType": "NONE"}).raise_for_status()
            url = f"{server.url}/lambda-url/{httpx.URL(r.json()['FunctionUrl']).host.split('.')[0]}/"
        assert httpx.post(url, content=PAYLOAD).status_code == 200
        wrk(url, args.connections, 3, PAYLOAD)  # warm-up: creates the environments
        raw = Path(tempfile.mkdtemp(prefix="nimbus-profile-")) / "stacks.txt"  # py-spy's collapsed stacks
        load = threading.Thread(target=wrk, args=(url, args.connections, args.seconds + 2, PAYLOAD))
        load.start()
        common = ["--pid", str(server.pid), "--rate", str(args.rate), "--duration", str(args.seconds),
                  "--nonblocking"]
        # Two samplers over the same load: one writes the SVG, the other the collapsed stacks for the table.
        spies = [subprocess.Popen([spy, "record", "-o", out, "--format", fmt, *common], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
                 for out, fmt in ((args.out, "flamegraph"), (str(raw), "raw"))]
        for proc in spies:
            proc.wait()
        load.join()
    print(f"flame graph: {args.out}")
    print(f"{'item (share of the server process samples, innermost item)':70} share")
    for label, share in table(raw):
        print(f"{label[:70]:70} {share * 100:5.1f}%")


if __name__ == "__main__":
    main()
