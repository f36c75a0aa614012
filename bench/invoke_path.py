"""nimbus's own CPU cost per warm synchronous Invoke, in process: the whole ASGI chain (SigV4 layer with auth
off, the Invoke fast path), the Invoker (validation, routing, concurrency lease, request ids, tracing
decision), the observer (START/END/REPORT, metrics, metering) and the log store's append, with the sandbox
replaced by an in-memory echo. No HTTP parsing and no sandbox: what is left is the code a refactoring of the
data plane changes. CPU time (process_time), so other load on the machine matters less than in wrk runs.

Compares this tree against another source tree (e.g. the commit before a change), rounds interleaved, each
tree in a fresh interpreter:

Run: git worktree add /tmp/nimbus-base <commit>
     .venv/bin/python bench/invoke_path.py --other /tmp/nimbus-base/src [--rounds 5] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

HERE = str(Path(__file__).resolve().parent.parent / "src")
PAYLOAD = json.dumps({"hello": "world", "n": 42}).encode()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buf.getvalue()


async def _run(calls: int, target: str = "invoke") -> float:
    from nimbus.api.app import create_app
    from nimbus.config import Settings
    from nimbus.platform import build_platform
    from nimbus.sandbox import manager
    from nimbus.sandbox.types import InvokeResult

    async def echo(self: Any, spec: Any, request: Any) -> InvokeResult:
        return InvokeResult(request.payload, None, None, [], 0.05, 30, None, "2026/01/01/[$LATEST]0", "env")

    manager.SandboxManager.invoke = echo  # type: ignore[method-assign,assignment]
    manager.SandboxManager.idle_count = lambda self, key: 1  # type: ignore[method-assign,assignment,misc]
    data = tempfile.mkdtemp(prefix="nimbus-invoke-path-")
    settings = Settings(data_dir=Path(data), auth="none", isolation="process")
    platform = build_platform(settings)
    app: Any = create_app(platform)
    await platform.logstore.start()
    await platform.invoker.observer.start()
    runtime = next(r for r in sorted(_available()) if r.startswith("python"))
    platform.registry.create_function(
        {"FunctionName": "echo", "Role": "arn:aws:iam::000000000000:role/r", "Runtime": runtime,
         "Handler": "app.handler", "MemorySize": 1769}, _zip())
    path = "/2015-03-31/functions/echo/invocations"
    if target == "url":  # a public function URL (AuthType NONE) by path prefix: payload 2.0 in and out
        created = platform.function_urls.create("echo", None, {"AuthType": "NONE"})
        platform.registry.add_permission("echo", None, {
            "StatementId": "public", "Action": "lambda:InvokeFunctionUrl", "Principal": "*",
            "FunctionUrlAuthType": "NONE"})
        path = f"/lambda-url/{created['FunctionUrl'].split('//')[1].split('.')[0]}/"
    scope = {"type": "http", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(PAYLOAD)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 9000), "scheme": "http", "http_version": "1.1",
             "asgi": {"version": "3.0"}}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": PAYLOAD, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(500):  # warm-up
        await app(dict(scope), receive, send)
    assert set(statuses) == {200}, statuses[:3]
    statuses.clear()
    start = time.process_time()
    for _ in range(calls):
        await app(dict(scope), receive, send)
    spent = time.process_time() - start
    assert statuses == [200] * calls
    return spent / calls * 1e6


def _available() -> list[str]:
    try:
        from nimbus.runtimes import available_runtimes
    except ImportError:  # trees from before the catalogue moved
        from nimbus.sandbox.runtimes import available_runtimes
    return list(available_runtimes())


def _measure(src: str, calls: int, target: str = "invoke") -> float:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, __file__, "--worker", "--calls", str(calls), "--target", target], env=env,
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", help="the other tree's src/ directory")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--target", choices=["invoke", "url"], default="invoke",
                        help="the Invoke API, or a public function URL (payload 2.0) to the same function")
    args = parser.parse_args()
    if args.worker:
        async def worker() -> None:
            try:
                print(f"{await _run(args.calls, args.target):.3f}", flush=True)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)  # the platform's background tasks need not wind down for a figure

        asyncio.run(worker())
        return
    if not args.other:
        print(f"this tree: {_measure(HERE, args.calls, args.target):.1f} us CPU per {args.target}")
        return
    ratios = []
    for n in range(args.rounds):
        order = [("this", HERE), ("other", args.other)]
        if n % 2:
            order.reverse()
        got = {name: _measure(src, args.calls, args.target) for name, src in order}
        ratios.append(got["this"] / got["other"])
        print(f"round {n + 1}: this {got['this']:6.1f} us, other {got['other']:6.1f} us CPU per Invoke")
    print(f"CPU per Invoke, this/other, median of {args.rounds}: {statistics.median(ratios):.3f} "
          "(< 1: this tree is cheaper)")


if __name__ == "__main__":
    main()
