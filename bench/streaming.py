"""Response streaming time to first byte: InvokeWithResponseStream of a warm Python handler that yields a
chunk, sleeps 1 s, then yields more. TTFB = request sent -> first PayloadChunk event fully received by the
client. Goal (issue 6): TTFB <= 20 ms. Baseline, same run: the full round trip of a warm buffered Invoke of
an echo function (what a non-streaming call costs end to end).

Run: .venv/bin/python bench/streaming.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
from botocore.eventstream import EventStreamBuffer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import create_function, nimbus_server  # noqa: E402

STREAMER = '''
import time

def handler(event, context):
    yield b"first chunk"
    time.sleep(event.get("pause", 1.0))
    yield b"second chunk"
    yield b"third chunk"
'''
ECHO = "def handler(event, context):\n    return event\n"


def stream_once(client: httpx.Client, url: str, pause: float) -> tuple[float, float, int]:
    """(ms to the first PayloadChunk, ms to the end of the stream, number of events)."""
    buf = EventStreamBuffer()
    first = None
    events = 0
    t0 = time.perf_counter()
    with client.stream("POST", url, content=json.dumps({"pause": pause})) as resp:
        resp.raise_for_status()
        for data in resp.iter_raw():
            buf.add_data(data)
            for message in buf:
                events += 1
                if first is None and message.headers.get(":event-type") == "PayloadChunk":
                    first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None, "no PayloadChunk received"
    return (first - t0) * 1000, (end - t0) * 1000, events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pause", type=float, default=1.0)
    args = parser.parse_args()

    with nimbus_server({"NIMBUS_IDLE_TIMEOUT": "600", "NIMBUS_AUTH": "none"}) as server:
        url = server.url
        create_function(url, "streamer", STREAMER, MemorySize=1769)
        create_function(url, "echo", ECHO, MemorySize=1769)
        stream_url = f"{url}/2021-11-15/functions/streamer/response-streaming-invocations"
        echo_url = f"{url}/2015-03-31/functions/echo/invocations"
        with httpx.Client(timeout=60) as client:
            stream_once(client, stream_url, 0.0)  # cold start, not measured
            for _ in range(3):
                client.post(echo_url, content=b"{}").raise_for_status()
            buffered = []
            for _ in range(max(args.runs, 20)):
                t0 = time.perf_counter()
                client.post(echo_url, content=b'{"hello":"world"}').raise_for_status()
                buffered.append((time.perf_counter() - t0) * 1000)
            ttfb, total = [], []
            for _ in range(args.runs):
                first, end, events = stream_once(client, stream_url, args.pause)
                assert events == 4, events  # three chunks + InvokeComplete
                ttfb.append(first)
                total.append(end)

    base = statistics.median(buffered)
    p50 = statistics.median(ttfb)
    print(f"{'':44} {'p50 ms':>8} {'max ms':>8}")
    print(f"{'baseline: buffered Invoke round trip (echo)':44} {base:8.2f} {max(buffered):8.2f}")
    print(f"{'streaming TTFB (first PayloadChunk)':44} {p50:8.2f} {max(ttfb):8.2f}")
    label = f"streaming total (handler sleeps {args.pause:.1f} s)"
    print(f"{label:44} {statistics.median(total):8.2f} "
          f"{max(total):8.2f}")
    print(f"TTFB / buffered round trip: {p50 / base:.2f}x; goal TTFB <= 20 ms: {'met' if p50 <= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
