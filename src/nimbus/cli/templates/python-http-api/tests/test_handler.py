import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import handler  # noqa: E402


def test_hello_uses_the_path_parameter():
    event = {"version": "2.0", "routeKey": "GET /hello/{name}", "pathParameters": {"name": "Ada"}}
    response = handler.hello(event, None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"message": "Hello, Ada!"}


def test_create_echoes_the_item():
    response = handler.create({"version": "2.0", "body": json.dumps({"id": 1})}, None)
    assert response["statusCode"] == 201 and json.loads(response["body"]) == {"created": {"id": 1}}
