"""Runs one of `handlers` in the testing package's reference emulator (in-process runner) and prints its
outcome as JSON. Run as a child process (`python -m tests.durable.reference NAME PAYLOAD`): the emulator
leaves an event loop and sockets open, which a pytest process with warnings-as-errors would refuse."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.durable import handlers


def shape(ops: list[Any]) -> list[Any]:
    """Operations as (type, name, status, result, children), comparable across runners."""
    return [[op.operation_type.value, op.name, op.status.value, getattr(op, "result", None),
             shape(getattr(op, "child_operations", None) or [])] for op in ops]


def main() -> None:
    from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

    source = getattr(handlers, sys.argv[1])
    namespace: dict[str, Any] = {}
    exec(compile(source, "handler.py", "exec"), namespace)  # noqa: S102 - the tests' own handler source
    with DurableFunctionTestRunner(handler=namespace["handler"]) as runner:
        result = runner.run(input=sys.argv[2], execution_timeout=60)
    print(json.dumps({"status": result.status.value, "result": result.result, "operations": shape(result.operations)}))


if __name__ == "__main__":
    main()
