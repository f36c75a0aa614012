"""`nimbus deploy` of a 10-function serverless.yml service, and HTTP API route dispatch against a function URL
to the same function (issue 17), each measured in the same run.

1. Deploy: the `nimbus deploy` CLI (a fresh process each time, as a user runs it) against a real server, for a
   service of 10 Python functions with httpApi routes: from scratch, then unchanged (the plan finds nothing to
   do), then with one function's code changed. Baseline in the same run: `sls package` of the same
   serverless.yml (the Serverless Framework v3's package step, offline) when `serverless` is installed
   (`--sls PATH`, default `/tmp/sls17/node_modules/.bin/serverless`); otherwise the bare cost of a CLI process
   that only imports nimbus's CLI and exits (the fixed floor every `nimbus` command pays).
2. Dev loop: `nimbus dev` on a 2-function HTTP API project; p50 over 10 saves of the time from the file write
   to the first response with the new code (polling the route), against, in the same run, the same edit
   applied by `nimbus deploy` (CLI process + plan + publish + alias) followed by the first new response.
3. Dispatch: wrk at c16 on the HTTP API route `POST /echo` and on the function's public URL (path forms), the
   same function behind both; the ratio route/URL is the figure (goal >= 0.9).

Run: .venv/bin/python bench/deploy.py [--seconds 8] [--rounds 3] [--edits 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import nimbus_server, wrk  # noqa: E402

RUNTIME = f"python3.{sys.version_info.minor}"
HANDLER = "import json\n\ndef handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


def make_service(root: Path, functions: int = 10) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["service: bench", "frameworkVersion: '3'", "provider:", "  name: aws", f"  runtime: {RUNTIME}",
             "  memorySize: 256", "functions:"]
    for i in range(functions):
        (root / f"fn{i}.py").write_text(HANDLER + f"\n# function {i}\n")
        lines += [f"  fn{i}:", f"    handler: fn{i}.handler", "    events:", f"      - httpApi: 'GET /fn{i}'"]
    (root / "serverless.yml").write_text("\n".join(lines) + "\n")


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return elapsed


def deploy_figures(rounds: int, sls: str) -> None:
    nimbus = [sys.executable, "-m", "nimbus"]
    scratch: list[float] = []
    unchanged: list[float] = []
    one: list[float] = []
    baseline: list[float] = []
    use_sls = Path(sls).exists()
    with nimbus_server({"NIMBUS_AUTH": "sigv4", "NIMBUS_IDLE_TIMEOUT": "600"}) as server:
        env = {**os.environ, "NIMBUS_ENDPOINT": server.url, "NIMBUS_DATA_DIR": server.data_dir}
        for r in range(rounds):
            root = Path(tempfile.mkdtemp(prefix="nimbus-bench-svc-"))
            make_service(root)
            stage = f"r{r}"
            scratch.append(timed([*nimbus, "deploy", ".", "--stage", stage], env, root))
            unchanged.append(timed([*nimbus, "deploy", ".", "--stage", stage], env, root))
            (root / "fn3.py").write_text(HANDLER + "\n# changed\n")
            one.append(timed([*nimbus, "deploy", ".", "--stage", stage], env, root))
            if use_sls:
                baseline.append(timed([sls, "package", "--stage", stage], {**env, "SLS_TELEMETRY_DISABLED": "1",
                                                                           "AWS_ACCESS_KEY_ID": "x",
                                                                           "AWS_SECRET_ACCESS_KEY": "x"}, root))
            else:
                baseline.append(timed([sys.executable, "-c", "import nimbus.cli.main"], env, root))
            timed([*nimbus, "remove", ".", "--stage", stage], env, root)
            shutil.rmtree(root, ignore_errors=True)
    name = ("sls package (Serverless Framework v3)" if use_sls
            else "CLI start-up only (python -c 'import nimbus.cli.main')")
    base = statistics.median(baseline)
    print(f"10-function service, median of {rounds} rounds (seconds, ratio to the baseline):")
    print(f"  baseline: {name:<52} {base:6.2f} s")
    for label, values, goal in (("nimbus deploy from scratch", scratch, 5.0),
                                ("nimbus deploy unchanged", unchanged, 2.0),
                                ("nimbus deploy, one function changed", one, None)):
        med = statistics.median(values)
        verdict = "" if goal is None else (f"  goal <= {goal:.0f} s: " + ("met" if med <= goal else "NOT met"))
        print(f"  {label:<62} {med:6.2f} s  x{med / base:5.2f}{verdict}")


def _serve_new(url: str, marker: str, start: float) -> float:
    while marker not in httpx.get(url, timeout=60).text:
        time.sleep(0.002)
    return (time.perf_counter() - start) * 1000


def dev_figures(edits: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="nimbus-bench-dev-"))
    (root / "app.py").write_text("def handler(event, context):\n    return {'statusCode': 200, 'body': 'v0'}\n")
    (root / "other.py").write_text("def handler(event, context):\n    return 'other'\n")
    (root / "serverless.yml").write_text(
        f"service: devb\nprovider: {{name: aws, runtime: {RUNTIME}}}\nfunctions:\n"
        "  app:\n    handler: app.handler\n    events:\n      - httpApi: 'GET /app'\n"
        "  other:\n    handler: other.handler\n")
    logs = Path(tempfile.mkdtemp(prefix="nimbus-bench-devlog-"))
    dev_ms: list[float] = []
    deploy_ms: list[float] = []
    with nimbus_server({"NIMBUS_AUTH": "sigv4", "NIMBUS_IDLE_TIMEOUT": "600"}) as server:
        env = {**os.environ, "NIMBUS_ENDPOINT": server.url, "NIMBUS_DATA_DIR": server.data_dir}
        version = 0

        def edit() -> str:
            nonlocal version
            version += 1
            (root / "app.py").write_text(
                f"def handler(event, context):\n    return {{'statusCode': 200, 'body': 'v{version}'}}\n")
            return f"v{version}"

        done = subprocess.run([sys.executable, "-m", "nimbus", "deploy", "."], env=env, cwd=root,
                              capture_output=True, text=True, check=True)
        route = next(line.split(": ", 1)[1] for line in done.stdout.splitlines()
                     if line.startswith("httpApi (path")) + "/app"
        for _ in range(edits):  # baseline: the same edit through `nimbus deploy`
            start = time.perf_counter()
            marker = edit()
            subprocess.run([sys.executable, "-m", "nimbus", "deploy", "."], env=env, cwd=root, capture_output=True,
                           check=True)
            deploy_ms.append(_serve_new(route, marker, start))
        with (logs / "out").open("w") as out, (logs / "err").open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "nimbus", "dev", "."], env=env, cwd=root, stdout=out,
                                    stderr=err)
        try:
            while "watching" not in (logs / "err").read_text():
                time.sleep(0.05)
            for _ in range(edits):
                time.sleep(0.3)
                start = time.perf_counter()
                dev_ms.append(_serve_new(route, edit(), start))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    base, med = statistics.median(deploy_ms), statistics.median(dev_ms)
    print(f"Save -> new code served, p50 of {edits} edits:")
    print(f"  baseline: nimbus deploy of the edit   {base:7.0f} ms")
    print(f"  nimbus dev                            {med:7.0f} ms  x{med / base:.2f}  (goal p50 <= 300 ms: "
          + ("met" if med <= 300 else "NOT met") + f"; all: {', '.join(f'{x:.0f}' for x in sorted(dev_ms))})")


def dispatch_figures(seconds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="nimbus-bench-echo-"))
    root.mkdir(exist_ok=True)
    (root / "app.py").write_text(HANDLER)
    (root / "serverless.yml").write_text(
        f"service: echo\nprovider: {{name: aws, runtime: {RUNTIME}, memorySize: 1769}}\nfunctions:\n"
        "  echo:\n    handler: app.handler\n    url: true\n    events:\n      - httpApi: 'POST /echo'\n")
    with nimbus_server({"NIMBUS_AUTH": "sigv4", "NIMBUS_IDLE_TIMEOUT": "600"}) as server:
        env = {**os.environ, "NIMBUS_ENDPOINT": server.url, "NIMBUS_DATA_DIR": server.data_dir}
        done = subprocess.run([sys.executable, "-m", "nimbus", "deploy", "."], env=env, cwd=root,
                              capture_output=True, text=True, check=True)
        found = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": http" in line)
        route = found["httpApi (path form)"] + "/echo"
        uid = found["echo"].split("//", 1)[1].split(".", 1)[0]
        url = f"{server.url}/lambda-url/{uid}/echo"
        body = json.dumps({"hello": "world"}).encode()
        for target in (route, url):
            assert httpx.post(target, content=body, timeout=60).text == "ok", target
            wrk(target, 16, 3, body)  # warm-up: environments for both
        rows = []
        for _ in range(2):  # alternate, so drift on a shared machine hits both alike
            rows.append(("route", wrk(route, 16, seconds, body)))
            rows.append(("url", wrk(url, 16, seconds, body)))
    route_rps = statistics.mean(r.rps for n, r in rows if n == "route")
    url_rps = statistics.mean(r.rps for n, r in rows if n == "url")
    p50 = {n: statistics.mean(r.p50_ms for m, r in rows if m == n) for n in ("route", "url")}
    print(f"Same function, wrk c16, {seconds} s x2 each:")
    print(f"  function URL (baseline)   {url_rps:8.0f} req/s  p50 {p50['url']:.3f} ms")
    print(f"  HTTP API route POST /echo {route_rps:8.0f} req/s  p50 {p50['route']:.3f} ms")
    print(f"  route / function URL: {route_rps / url_rps:.2f}  (goal >= 0.90: "
          + ("met" if route_rps / url_rps >= 0.9 else "NOT met") + ")")
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--sls", default=os.environ.get("SLS_BIN", "/tmp/sls17/node_modules/.bin/serverless"))
    args = parser.parse_args()
    deploy_figures(args.rounds, args.sls)
    dev_figures(args.edits)
    dispatch_figures(args.seconds)


if __name__ == "__main__":
    main()
