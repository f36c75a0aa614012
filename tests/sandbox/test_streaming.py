"""The sandbox side of response streaming (INVOKE_STREAM, CHUNK frames, InvokeRequest.on_chunk) and of layers
(Launch.opt_dir at /opt), through the SandboxManager on both backends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nimbus.sandbox.backends import BackendUnavailable
from nimbus.sandbox.manager import SandboxManager

from .conftest import Sink, make_request, make_spec, namespaces_skip_reason, started, write_code

STREAMER = """
import time

def handler(event, context):
    if event.get("plain"):
        return {"plain": True}
    return gen(event)

def gen(event):
    yield "a:%r" % time.time()
    time.sleep(event.get("pause", 0))
    yield b"b:%r" % time.time()
    if event.get("big"):
        yield b"x" * event["big"]
    if event.get("fail"):
        raise RuntimeError("mid-stream")
"""


async def test_chunks_are_handed_over_as_produced(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, STREAMER))
    got: list[tuple[float, bytes]] = []
    request = make_request(spec, json.dumps({"pause": 0.5}).encode(),
                           on_chunk=lambda data: got.append((time.time(), data)))
    result = await manager.invoke(spec, request)
    assert result.function_error is None and result.payload == b""
    assert [data[:2] for _, data in got] == [b"a:", b"b:"]
    produced_second = float(got[1][1][2:])
    assert got[0][0] < produced_second  # the first chunk arrived while the handler still slept

    # The same (warm) environment then answers a buffered invocation as usual: nothing streams.
    plain = await manager.invoke(spec, make_request(spec, b'{"plain": true}'))
    assert json.loads(plain.payload) == {"plain": True}
    assert plain.environment_id == result.environment_id
    joined = await manager.invoke(spec, make_request(spec, b"{}"))
    assert joined.payload.startswith(b"a:") and b"b:" in joined.payload


async def test_large_chunks_and_errors_mid_stream(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, STREAMER))
    got: list[bytes] = []
    big = 3 * 1024 * 1024 + 5
    result = await manager.invoke(spec, make_request(spec, json.dumps({"big": big, "fail": True}).encode(),
                                                     on_chunk=got.append))
    assert b"".join(got).endswith(b"x" * big)
    assert result.function_error == "Unhandled" and result.error_type == "RuntimeError"
    assert json.loads(result.payload)["errorMessage"] == "mid-stream"
    plain = await manager.invoke(spec, make_request(spec, b"{}", on_chunk=got.append))
    assert plain.function_error is None  # the environment survived


async def test_plain_return_value_streams_as_one_chunk(tmp_path: Path, manager: SandboxManager) -> None:
    spec = make_spec(write_code(tmp_path, STREAMER))
    got: list[bytes] = []
    result = await manager.invoke(spec, make_request(spec, b'{"plain": true}', on_chunk=got.append))
    assert (result.payload, got) == (b"", [b'{"plain": true}'])


async def test_layers_tree_is_the_runtimes_opt(tmp_path: Path, manager: SandboxManager) -> None:
    await _check_opt(tmp_path, manager)


@pytest.mark.parametrize("isolation", ["process", "namespaces"])
async def test_layers_and_streaming_without_zygotes(tmp_path: Path, sink: Sink, isolation: str) -> None:
    """Fresh starts (no zygote to fork from) get /opt and stream the same way."""
    if isolation == "namespaces" and namespaces_skip_reason():
        pytest.skip(namespaces_skip_reason() or "")
    try:
        manager = await started(isolation, sink, zygotes=False)
    except BackendUnavailable as e:
        pytest.skip(f"namespaces backend unavailable: {e}")
    try:
        await _check_opt(tmp_path, manager)
        spec = make_spec(write_code(tmp_path, STREAMER))
        got: list[bytes] = []
        result = await manager.invoke(spec, make_request(spec, b"{}", on_chunk=got.append))
        assert result.function_error is None and [g[:2] for g in got] == [b"a:", b"b:"]
    finally:
        await manager.stop()


async def _check_opt(tmp_path: Path, manager: SandboxManager) -> None:
    opt = tmp_path / "opt"
    (opt / "python").mkdir(parents=True)
    (opt / "python" / "fromlayer.py").write_text("VALUE = 'layer'\n")
    for path in [opt, *opt.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    source = (
        "import os, fromlayer\n"
        "def handler(event, context):\n"
        "    return {'value': fromlayer.VALUE, 'path': os.environ['PATH'], 'opt': os.path.isdir('/opt/python')}\n"
    )
    spec = make_spec(write_code(tmp_path, source), opt_dir=opt)
    result = await manager.invoke(spec, make_request(spec))
    body = json.loads(result.payload)
    assert body["value"] == "layer"
    if manager.backend_name == "namespaces":
        assert body["opt"] is True and body["path"].endswith(":/opt/bin")
    else:
        assert body["path"].endswith(f":{opt}/bin")
