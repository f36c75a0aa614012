"""ApiEnvironment through the SandboxManager on both backends: a bash custom runtime, output capture, and
external extensions (started from /opt/extensions, INVOKE and SHUTDOWN events, logs, hidden variables)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from nimbus.sandbox.manager import SandboxManager

from .conftest import Sink, make_request, make_spec

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the bash runtimes here use curl")

RUNTIME = r'''#!/bin/bash
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
H=$(mktemp)
echo "runtime init"
while true; do
  EVENT=$(curl -sS -D "$H" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | cut -d' ' -f2 | tr -d '\r\n')
  echo "runtime got $EVENT"
  curl -sS -X POST "$API/invocation/$ID/response" -d "$EVENT" >/dev/null
done
'''

EXTENSION = r'''#!/bin/bash
set -eu
NAME=$(basename "$0")
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
H=$(mktemp)
REG=$(curl -sS -D "$H" -X POST "$API/register" -H "Lambda-Extension-Name: $NAME" -d '{"events":["INVOKE","SHUTDOWN"]}')
ID=$(grep -Fi Lambda-Extension-Identifier "$H" | cut -d' ' -f2 | tr -d '\r\n')
echo "[$NAME] registered $REG handler=${_HANDLER:-hidden}"
while true; do
  EVENT=$(curl -sS "$API/event/next" -H "Lambda-Extension-Identifier: $ID")
  echo "[$NAME] event $EVENT"
  case "$EVENT" in *SHUTDOWN*) echo "[$NAME] bye"; exit 0 ;; esac
done
'''


def code_tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return root


@pytest.fixture
def opt_dir(tmp_path: Path) -> Path:
    """What a layer holding an extension merges into (mounted at /opt)."""
    return code_tree(tmp_path / "opt", {"extensions/logger": EXTENSION})


async def test_bash_runtime_on_both_backends(tmp_path: Path, manager: SandboxManager, sink: Sink) -> None:
    spec = make_spec(code_tree(tmp_path / "code", {"bootstrap": RUNTIME}), runtime="provided.al2023")
    first = await manager.invoke(spec, make_request(spec, b'{"n":1}'))
    assert first.function_error is None, first.payload
    assert json.loads(first.payload) == {"n": 1}
    assert first.init_duration_ms is not None
    assert "runtime init" in sink.texts()  # INIT's output goes to the stream before the invocation
    texts = [text for _, text in first.logs]
    assert texts == ['runtime got {"n":1}']  # printed before answering: always captured
    second = await manager.invoke(spec, make_request(spec, b"[2]"))
    assert second.environment_id == first.environment_id and second.init_duration_ms is None
    assert [text for _, text in second.logs] == ["runtime got [2]"]


async def test_extensions_get_invoke_and_shutdown_events(
    tmp_path: Path, manager: SandboxManager, sink: Sink, opt_dir: Path
) -> None:
    spec = make_spec(code_tree(tmp_path / "code", {"bootstrap": RUNTIME}), runtime="provided.al2023",
                     handler="my.handler", opt_dir=opt_dir)
    requests = [make_request(spec, b"1"), make_request(spec, b"2")]
    results = [await manager.invoke(spec, r) for r in requests]
    assert [r.payload for r in results] == [b"1", b"2"]
    assert results[0].environment_id == results[1].environment_id
    manager.retire(spec.function_name, set())

    def texts() -> list[str]:
        return [t for r in results for _, t in r.logs] + sink.texts()

    for _ in range(200):
        if "[logger] bye" in texts():
            break
        await asyncio.sleep(0.05)
    lines = texts()
    registered = next(t for t in lines if t.startswith("[logger] registered"))
    assert json.loads(registered.split(" ", 2)[2].rsplit(" ", 1)[0]) == {
        "functionName": spec.function_name, "functionVersion": "$LATEST", "handler": "my.handler"}
    assert registered.endswith("handler=hidden")  # extensions do not see the runtime's variables
    events = [json.loads(t.split(" ", 2)[2]) for t in lines if t.startswith("[logger] event")]
    assert [e["eventType"] for e in events] == ["INVOKE", "INVOKE", "SHUTDOWN"]
    assert [e["requestId"] for e in events[:2]] == [r.request_id for r in requests]
    assert events[0]["invokedFunctionArn"] == spec.function_arn
    assert events[2]["shutdownReason"] == "spindown"
    assert "[logger] bye" in lines
