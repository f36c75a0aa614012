"""Durable handlers the tests deploy (source text for the function zip) and run in the reference emulator."""

from __future__ import annotations

WORKFLOW = r'''
from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, StepConfig, CallbackConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy


@durable_step
def greet(ctx: StepContext, name: str) -> str:
    return f"hello {name}"


def flaky(ctx: StepContext) -> str:
    if ctx.attempt < 2:
        raise RuntimeError(f"transient failure, attempt {ctx.attempt}")
    return f"ok on attempt {ctx.attempt}"


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    g = context.step(greet(event.get("name", "world")))
    f = context.step(flaky, name="flaky", config=StepConfig(retry_strategy=create_retry_strategy(
        RetryStrategyConfig(max_attempts=3, initial_delay=Duration.from_seconds(1)))))
    context.wait(Duration.from_seconds(2), name="pause")
    cb = context.create_callback(name="approval", config=CallbackConfig(
        timeout=Duration.from_seconds(event.get("callback_timeout", 300))))
    approval = cb.result()
    par = context.parallel([lambda c: c.step(lambda s: 1, name="a"),
                            lambda c: c.step(lambda s: 2, name="b")], name="par")
    mapped = context.map([1, 2, 3], lambda c, item, i, items: c.step(lambda s: item * 10, name=f"m{i}"), name="map")
    child = context.run_in_child_context(lambda c: c.step(lambda s: "inner", name="inner"), name="child")
    return {"greet": g, "flaky": f, "approval": approval, "par": par.get_results(),
            "map": mapped.get_results(), "child": child}
'''

WAITER = r'''
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    n = context.step(lambda s: event.get("n", 0), name="before")
    context.wait(Duration.from_seconds(event.get("seconds", 1)), name="sleep")
    after = context.step(lambda s: n + 1, name="after")
    return {"n": after}
'''

CHAINER = r'''
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    plain = context.invoke(event["plain"], {"x": 20}, name="plain")
    durable = context.invoke(event["durable"], {"n": 41, "seconds": 1}, name="durable")
    return {"plain": plain, "durable": durable}
'''

PLAIN = r'''
def handler(event, context):
    return {"doubled": event["x"] * 2}
'''

COMPOSITE = r'''
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    n = event.get("n", 1)
    double = context.step(lambda s: n * 2, name="double")
    par = context.parallel([lambda c: c.step(lambda s: 1, name="a"),
                            lambda c: c.step(lambda s: 2, name="b")], name="par")
    mapped = context.map([1, 2], lambda c, item, i, items: c.step(lambda s: item * 10, name=f"m{i}"), name="map")
    context.wait(Duration.from_seconds(1), name="breath")
    child = context.run_in_child_context(lambda c: c.step(lambda s: "inner", name="inner"), name="child")
    return {"double": double, "par": par.get_results(), "map": mapped.get_results(), "child": child}
'''

# A hand-written durable handler (no SDK): checkpoints with boto3 itself to check the wire contract from inside
# an invocation, with the function's own scoped credentials.
RAW_CHECKPOINTS = r'''
import json
import boto3
from botocore.exceptions import ClientError


def handler(event, context):
    client = boto3.client("lambda")
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    update = [{"Id": "raw-step", "Type": "STEP", "Action": "START", "Name": "raw", "SubType": "Step"}]
    first = client.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token, Updates=update,
                                                ClientToken="client-token-1")
    again = client.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token, Updates=update,
                                                ClientToken="client-token-1")
    try:
        client.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token, Updates=[],
                                            ClientToken="client-token-2")
        stale = None
    except ClientError as exc:
        stale = [exc.response["Error"]["Code"], exc.response["Error"]["Message"]]
    ops = first["NewExecutionState"]["Operations"]
    echo = [[o["Type"], o["Status"]] for o in ops if o["Id"] == "raw-step"][0]
    done = [{"Id": "raw-step", "Type": "STEP", "Action": "SUCCEED", "Payload": "1"}]
    client.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=first["CheckpointToken"],
                                        Updates=done)
    result = {"replayed_same": first["CheckpointToken"] == again["CheckpointToken"], "stale": stale, "echo": echo}
    return {"Status": "SUCCEEDED", "Result": json.dumps(result)}
'''
