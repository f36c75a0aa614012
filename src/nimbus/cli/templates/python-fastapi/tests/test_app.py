"""Calls the Lambda handler with HTTP API (payload 2.0) events, as nimbus and AWS do."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app  # noqa: E402


def event(method, path, body=None):
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "localhost", "content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "test"},
                               "stage": "$default", "requestId": "r", "routeKey": "$default", "accountId": "0",
                               "apiId": "a", "domainName": "localhost", "domainPrefix": "localhost",
                               "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0},
            "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False}


class Context:
    function_name = "test"
    aws_request_id = "r"


def test_hello():
    response = app.handler(event("GET", "/hello/Ada"), Context())
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {"message": "Hello, Ada!"}


def test_create_validates():
    ok = app.handler(event("POST", "/items", {"name": "pen", "price": 1.5}), Context())
    assert ok["statusCode"] == 201
    bad = app.handler(event("POST", "/items", {"name": "pen"}), Context())
    assert bad["statusCode"] == 422
