"""invoke_stream on a fake invoker: the response size limit, the outcome of failures, the start callback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from nimbus.errors import ValidationError
from nimbus.invoke.service import InvokeOutcome
from nimbus.invoke.streaming import StreamStart, invoke_stream


class FakeInvoker:
    """Calls on_admitted, then on_chunk with `chunks`, then answers `outcome`."""

    def __init__(self, chunks: list[bytes], outcome: InvokeOutcome) -> None:
        self.chunks = chunks
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    async def invoke(self, function: str, qualifier: str | None, payload: bytes, **kw: Any) -> InvokeOutcome:
        self.calls.append(kw)
        if self.outcome.kind == "sync":
            kw["on_admitted"]("$LATEST", "rid-1")
            for chunk in self.chunks:
                kw["on_chunk"](chunk)
        return self.outcome


def run(invoker: FakeInvoker, limit: int = 10, **kw: Any) -> tuple[Any, list[bytes], list[StreamStart]]:
    got: list[bytes] = []
    starts: list[StreamStart] = []
    outcome = asyncio.run(
        invoke_stream(invoker, "fn", None, b"{}", got.append, limit=limit,  # type: ignore[arg-type]
                      on_start=starts.append, **kw)
    )
    return outcome, got, starts


OK = InvokeOutcome("sync", "rid-1", "$LATEST")


def test_chunks_pass_through_in_order_after_start() -> None:
    outcome, got, starts = run(FakeInvoker([b"ab", b"", b"cd"], OK))
    assert got == [b"ab", b"cd"]
    assert starts == [StreamStart("$LATEST", "rid-1")]
    assert (outcome.kind, outcome.error_code, outcome.bytes_streamed) == ("sync", None, 4)


def test_response_over_the_limit_is_cut_and_ends_with_an_error() -> None:
    outcome, got, _ = run(FakeInvoker([b"123456", b"7890", b"x"], OK), limit=10)
    assert got == [b"123456", b"7890"]
    assert outcome.error_code == "Function.ResponseSizeTooLarge"
    assert "(10 bytes)" in json.loads(outcome.error_details)["errorMessage"]


def test_function_error_becomes_error_code_and_details() -> None:
    doc = json.dumps({"errorType": "KeyError", "errorMessage": "'x'"}).encode()
    failed = InvokeOutcome("sync", "rid-1", "$LATEST", doc, function_error="Unhandled", log_result="bG9n")
    outcome, got, _ = run(FakeInvoker([b"a"], failed))
    assert got == [b"a"]
    assert (outcome.function_error, outcome.error_code, outcome.log_result) == ("Unhandled", "KeyError", "bG9n")
    assert outcome.error_details == doc.decode()


def test_a_buffered_answer_is_one_chunk() -> None:
    outcome, got, _ = run(FakeInvoker([], InvokeOutcome("sync", "rid-1", "$LATEST", b'{"a":1}')))
    assert got == [b'{"a":1}'] and outcome.bytes_streamed == 7


def test_consumer_failure_does_not_reach_the_sandbox() -> None:
    def broken(_data: bytes) -> None:
        raise RuntimeError("client went away")

    invoker = FakeInvoker([b"a", b"b"], OK)
    outcome = asyncio.run(invoke_stream(invoker, "fn", None, b"{}", broken, limit=10))  # type: ignore[arg-type]
    assert outcome.kind == "sync"


def test_dry_run_and_invalid_types() -> None:
    outcome, got, starts = run(FakeInvoker([], InvokeOutcome("dry_run", "rid-1", "$LATEST")), invocation_type="DryRun")
    assert (outcome.kind, got, starts) == ("dry_run", [], [])
    with pytest.raises(ValidationError, match="RequestResponse, DryRun"):
        run(FakeInvoker([], OK), invocation_type="Event")
