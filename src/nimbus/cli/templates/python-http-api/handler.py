"""HTTP API handlers (payload format 2.0)."""

import json


def hello(event, context):
    name = (event.get("pathParameters") or {}).get("name", "world")
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"message": f"Hello, {name}!"})}


def create(event, context):
    item = json.loads(event.get("body") or "{}")
    return {"statusCode": 201, "body": json.dumps({"created": item})}
