"""Function URL response mapping (api/urls.py) and the streaming prelude (api/url_stream.py), in-process."""

from __future__ import annotations

import base64
import json

from nimbus.api.url_stream import _prelude
from nimbus.api.urls import _preflight, _query_parameters, to_http_response


def test_structured_result() -> None:
    status, headers, body = to_http_response(json.dumps({
        "statusCode": 302, "headers": {"Location": "/x", "X-N": 1}, "cookies": ["a=1"], "body": "moved"}).encode())
    assert status == 302 and body == b"moved"
    assert (b"location", b"/x") in headers and (b"x-n", b"1") in headers and (b"set-cookie", b"a=1") in headers
    assert (b"content-type", b"application/json") in headers


def test_inference_and_base64() -> None:
    # AWS answers a JSON string as the body itself, other JSON compactly (issue 21, LocalStack snapshots)
    assert to_http_response(b'"Hello, world!"') == (200, [(b"content-type", b"application/json")],
                                                    b"Hello, world!")
    assert to_http_response(b'{"a": 1}')[2] == b'{"a":1}'
    raw = base64.b64encode(b"\x00\x01").decode()
    assert to_http_response(json.dumps({"statusCode": 200, "body": raw, "isBase64Encoded": True}).encode())[2] == \
        b"\x00\x01"
    assert to_http_response(json.dumps({"statusCode": "oops"}).encode())[0] == 502
    assert to_http_response(json.dumps({"statusCode": 99}).encode())[0] == 502


def test_query_parameters() -> None:
    assert _query_parameters("a=1&a=2&b=x+y&c=%2F&d") == {"a": "1,2", "b": "x y", "c": "/", "d": ""}


def test_preflight_only_for_allowed_origins() -> None:
    cors = {"AllowOrigins": ["https://a.example"], "AllowMethods": ["GET"], "MaxAge": 5}
    assert dict(_preflight(cors, "https://a.example"))[b"access-control-allow-origin"] == b"https://a.example"
    assert b"access-control-allow-origin" not in dict(_preflight(cors, "https://b.example"))
    assert dict(_preflight({"AllowOrigins": ["*"]}, "https://b.example"))[b"access-control-allow-origin"] == b"*"


def test_stream_prelude() -> None:
    prelude = json.dumps({"statusCode": 201, "headers": {"x-a": "b"}, "cookies": ["c=d"]}).encode()
    found = _prelude(prelude + b"\x00" * 8 + b"body")
    assert found == (201, [(b"x-a", b"b"), (b"set-cookie", b"c=d"), (b"content-type", b"application/octet-stream")],
                     b"body")
    assert _prelude(prelude[:10]) is None  # need more bytes to tell
    assert _prelude(b"plain text") is False


def test_inference_judges_every_shape() -> None:
    # Every answer is parsed: AWS re-serialises JSON compactly, and a key spelled with a JSON escape, or a
    # value that merely mentions statusCode, is judged as JSON like any other.
    assert to_http_response(b'{"ok": true}') == (200, [(b"content-type", b"application/json")], b'{"ok":true}')
    escaped = b'{"\\u0073tatusCode": 201, "body": "made"}'
    assert to_http_response(escaped)[0::2] == (201, b"made")
    mention = b'{"note": "statusCode"}'
    assert to_http_response(mention) == (200, [(b"content-type", b"application/json")], b'{"note":"statusCode"}')


def test_request_context_time_is_common_log_format() -> None:
    from nimbus.api.urls import _clf_time

    assert _clf_time(1_796_405_700) == "04/Dec/2026:17:35:00 +0000"
    assert _clf_time(1_796_405_701) == "04/Dec/2026:17:35:01 +0000"
    assert _clf_time(0) == "01/Jan/1970:00:00:00 +0000"
