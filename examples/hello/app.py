"""The quickstart function: greets whoever the event names."""

import os


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"saying hello to {name}")
    return {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "version": context.function_version,
        "request_id": context.aws_request_id,
        "memory_mb": int(context.memory_limit_in_mb),
        "region": os.environ["AWS_REGION"],
    }
