"""Function URL throughput against the Invoke API, measured in the same run (issue "Function URLs, request
signing and access control"): req/s at concurrency 16 for

- the Invoke API with authentication off (`--auth none`: the baseline of earlier benchmarks),
- the Invoke API with SigV4 on (every request verified: wrk replays one signed request, which the server
  accepts within the 15-minute skew window, so the full verification runs each time),
- a public function URL (AuthType NONE + resource policy), by path prefix and by host name,
- an AWS_IAM function URL (signed like the Invoke API).

All call the same function, which returns a small constant, so the figures differ only by the HTTP surface.

Then the goal's figure (issue 16: a function URL >= 0.85 x the Invoke path to the same function): on the
`--auth none` server, `--rounds` of wrk against the Invoke API and the public URL (by path), interleaved, and
the median of the per-round ratios. With `--other <src>` each round also runs a server importing nimbus
from another tree (e.g. the commit before a change), so the two trees' ratios come from the same run.

Run: .venv/bin/python bench/function_url.py [--seconds 10] [--rounds 3] [--other /path/to/other/src]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import ROLE, WrkResult, nimbus_server, wrk, zip_source  # noqa: E402
from nimbus import sigv4  # noqa: E402
from nimbus.awscreds import read_credentials_file  # noqa: E402
from nimbus.cli.client import SigV4  # noqa: E402

SOURCE = "def handler(event, context):\n    return {'ok': True}\n"
PAYLOAD = json.dumps({"hello": "world"}).encode()


def setup(http: httpx.Client) -> tuple[str, str]:
    """The function, a public URL and an AWS_IAM URL (on an alias): their url ids."""
    body = {"FunctionName": "fn", "Runtime": "python3.12", "Handler": "app.handler", "Role": ROLE,
            "MemorySize": 1769, "Code": {"ZipFile": zip_source({"app.py": SOURCE})}}
    http.post("/2015-03-31/functions", json=body).raise_for_status()
    public = http.post("/2021-10-31/functions/fn/url", json={"AuthType": "NONE"})
    public.raise_for_status()
    http.post("/2015-03-31/functions/fn/policy", json={
        "StatementId": "public", "Action": "lambda:InvokeFunctionUrl", "Principal": "*",
        "FunctionUrlAuthType": "NONE"}).raise_for_status()
    http.post("/2015-03-31/functions/fn/aliases", json={"Name": "iam", "FunctionVersion": "$LATEST"}).raise_for_status()
    iam = http.post("/2021-10-31/functions/fn/url?Qualifier=iam", json={"AuthType": "AWS_IAM"})
    iam.raise_for_status()
    return (httpx.URL(public.json()["FunctionUrl"]).host.split(".")[0],
            httpx.URL(iam.json()["FunctionUrl"]).host.split(".")[0])


def signed_headers(creds: sigv4.Credentials, url: str) -> dict[str, str]:
    u = httpx.URL(url)
    added = sigv4.sign(creds, "POST", u.netloc.decode(), u.raw_path.decode(), "",
                       {"content-type": "application/json"}, PAYLOAD, "us-east-1", "lambda")
    return {"content-type": "application/json", **added}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--other", help="another tree's src/ directory, measured in the same rounds")
    parser.add_argument("--goal-only", action="store_true", help="only the interleaved URL/Invoke rounds")
    args = parser.parse_args()
    if args.goal_only:
        interleaved(args.seconds, args.connections, args.rounds, args.other)
        return
    c, secs = args.connections, args.seconds
    rows: list[tuple[str, WrkResult]] = []

    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600"}) as server:  # authentication off
        with httpx.Client(base_url=server.url, timeout=60) as http:
            setup(http)
        invoke = f"{server.url}/2015-03-31/functions/fn/invocations"
        wrk(invoke, c, 3, PAYLOAD)  # warm-up: creates the environments
        rows.append(("invoke API, --auth none", wrk(invoke, c, secs, PAYLOAD)))

    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_AUTH": "sigv4"}) as server:
        found = read_credentials_file(Path(server.data_dir) / "credentials")
        assert found is not None
        creds = sigv4.Credentials(*found)
        with httpx.Client(base_url=server.url, timeout=60, auth=SigV4(creds, "us-east-1")) as http:
            public_id, iam_id = setup(http)
            assert http.post("/2015-03-31/functions/fn/invocations", content=PAYLOAD).json() == {"ok": True}
        invoke = f"{server.url}/2015-03-31/functions/fn/invocations"
        by_path = f"{server.url}/lambda-url/{public_id}/"
        iam_url = f"{server.url}/lambda-url/{iam_id}/"
        port = httpx.URL(server.url).port
        host = {"Host": f"{public_id}.lambda-url.us-east-1.localhost:{port}"}
        assert httpx.post(by_path, content=PAYLOAD).json() == {"ok": True}
        assert httpx.post(server.url + "/", content=PAYLOAD, headers=host).json() == {"ok": True}
        assert httpx.post(iam_url, content=PAYLOAD, headers=signed_headers(creds, iam_url)).status_code == 200
        signed_invoke = signed_headers(creds, invoke)
        signed_invoke.pop("content-type")  # wrk sets it
        wrk(invoke, c, 3, PAYLOAD, headers=signed_invoke)  # warm-up
        rows.append(("invoke API, SigV4", wrk(invoke, c, secs, PAYLOAD, headers=signed_invoke)))
        rows.append(("function URL NONE, path prefix", wrk(by_path, c, secs, PAYLOAD)))
        rows.append(("function URL NONE, host name", wrk(server.url + "/", c, secs, PAYLOAD, headers=host)))
        signed_iam = signed_headers(creds, iam_url)
        signed_iam.pop("content-type")
        rows.append(("function URL AWS_IAM (SigV4)", wrk(iam_url, c, secs, PAYLOAD, headers=signed_iam)))

    base = rows[0][1].rps
    print(f"{'':34} {f'req/s c{c}':>10} {'p50':>9} {'p99':>9} {'non-2xx':>8} {'vs none':>8}")
    for name, r in rows:
        print(f"{name:34} {r.rps:10.0f} {r.p50_ms:8.3f}ms {r.p99_ms:8.3f}ms {r.non2xx:8d} {r.rps / base:8.2f}")
    signed = rows[1][1].rps
    print(f"function URL (NONE, path) / invoke API (SigV4), same server: {rows[2][1].rps / signed:.2f}")
    print()
    interleaved(args.seconds, c, args.rounds, args.other)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _measured(pid: int, url: str, c: int, seconds: int) -> tuple[float, float]:
    """(req/s, server CPU µs per request) of one wrk run."""
    before = _cpu_seconds(pid)
    result = wrk(url, c, seconds, PAYLOAD)
    return result.rps, (_cpu_seconds(pid) - before) / (result.rps * seconds) * 1e6


def interleaved(seconds: int, c: int, rounds: int, other: str | None) -> None:
    """Function URL (NONE, by path) / Invoke API (auth none) to the same function, rounds interleaved: the
    ratio of throughputs, and of the server's CPU per request (steadier on a shared machine)."""
    trees: list[tuple[str, dict[str, str]]] = [("this", {})]
    if other:
        trees.append(("other", {"PYTHONPATH": other}))
    ratios: dict[str, list[float]] = {name: [] for name, _ in trees}
    cpu: dict[str, list[float]] = {name: [] for name, _ in trees}
    with contextlib.ExitStack() as stack:
        targets = {}
        for name, env in trees:
            server = stack.enter_context(nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", **env}))
            with httpx.Client(base_url=server.url, timeout=60) as http:
                public_id, _ = setup(http)
            invoke, url = f"{server.url}/2015-03-31/functions/fn/invocations", f"{server.url}/lambda-url/{public_id}/"
            assert httpx.post(url, content=PAYLOAD).json() == {"ok": True}
            wrk(invoke, c, 2, PAYLOAD)  # warm-up: creates the environments
            wrk(url, c, 2, PAYLOAD)
            targets[name] = (server.pid, invoke, url)
        for n in range(rounds):
            for name, (pid, invoke, url) in (targets.items() if n % 2 == 0 else reversed(targets.items())):
                first, second = (invoke, url) if n % 2 == 0 else (url, invoke)
                got = {first: _measured(pid, first, c, seconds), second: _measured(pid, second, c, seconds)}
                ratios[name].append(got[url][0] / got[invoke][0])
                cpu[name].append(got[invoke][1] / got[url][1])
                print(f"round {n + 1} {name}: invoke {got[invoke][0]:7.0f} req/s {got[invoke][1]:6.1f} us CPU, "
                      f"function URL {got[url][0]:7.0f} req/s {got[url][1]:6.1f} us CPU, ratio {ratios[name][-1]:.2f}")
    for name in ratios:
        print(f"function URL / Invoke at c{c} ({name} tree), median of {rounds}: throughput "
              f"{statistics.median(ratios[name]):.2f} (goal >= 0.85), server CPU per request invoke/URL "
              f"{statistics.median(cpu[name]):.2f}")


if __name__ == "__main__":
    main()
