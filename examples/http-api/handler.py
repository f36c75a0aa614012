"""HTTP API handlers: payload format 2.0 in, a JSON response out."""

import json
import os


def hello(event, context):
    # the HTTP API route gives {name}; called through the function URL, the path's last segment does
    name = (event.get("pathParameters") or {}).get("name") or event.get("rawPath", "/").rsplit("/", 1)[-1] or "world"
    body = {"message": f"{os.environ['GREETING']}, {name}!", "stage": os.environ["STAGE"],
            "owner": os.environ["OWNER"], "version": context.function_version}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def items(event, context):
    raw = event.get("body") or "{}"
    return {"statusCode": 201, "body": json.dumps({"received": json.loads(raw), "route": event.get("routeKey")})}
