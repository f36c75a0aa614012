"""SQS's two wire protocols, reduced to one shape: a request becomes (operation, parameters in the JSON
protocol's shape), and a result (JSON-shaped) or an `SqsError` is written back in the request's protocol.

- JSON 1.0 (botocore ≥ 1.34.90, AWS CLI v2 > 2.13.33): `X-Amz-Target: AmazonSQS.<Op>`, JSON body and reply;
  errors carry `__type` and the legacy code in `x-amzn-query-error: <Code>;Sender`.
- Query (older SDKs and CLIs): `Action=<Op>` form fields with flattened, 1-based lists and maps
  (`Attribute.1.Name`, `MessageAttribute.1.Value.StringValue`, `SendMessageBatchRequestEntry.2.Id`), XML
  replies in the 2012-11-05 namespace, errors as `<ErrorResponse>`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from nimbus.events.sqs.errors import InvalidParameterValue, QueueNotFound, SqsError

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"

# query field -> (JSON member, how its flattened entries become JSON)
_QUERY_COLLECTIONS: dict[str, tuple[str, str]] = {
    "Attribute": ("Attributes", "name-value"),
    "Tag": ("Tags", "key-value"),
    "MessageAttribute": ("MessageAttributes", "name-struct"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "name-struct"),
    "AttributeName": ("AttributeNames", "list"),
    "MessageAttributeName": ("MessageAttributeNames", "list"),
    "MessageSystemAttributeName": ("MessageSystemAttributeNames", "list"),
    "TagKey": ("TagKeys", "list"),
    "SendMessageBatchRequestEntry": ("Entries", "entries"),
    "DeleteMessageBatchRequestEntry": ("Entries", "entries"),
    "ChangeMessageVisibilityBatchRequestEntry": ("Entries", "entries"),
}
_INTEGERS = frozenset({"DelaySeconds", "MaxNumberOfMessages", "VisibilityTimeout", "WaitTimeSeconds", "MaxResults"})


def _tree(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return root


def _numbered(node: Any) -> list[Any]:
    if not isinstance(node, dict):
        return []
    return [node[k] for k in sorted((k for k in node if k.isdigit()), key=int)]


def _convert(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        spec = _QUERY_COLLECTIONS.get(key)
        if spec is None:
            if isinstance(value, dict):
                out[key] = _convert(value)
            elif key in _INTEGERS:
                out[key] = _integer(key, value)
            else:
                out[key] = value
            continue
        member, kind = spec
        items = _numbered(value)
        if kind == "list":
            out[member] = [str(i) for i in items]
        elif kind == "name-value":
            out[member] = {str(i.get("Name")): str(i.get("Value", "")) for i in items if isinstance(i, dict)}
        elif kind == "key-value":
            out[member] = {str(i.get("Key")): str(i.get("Value", "")) for i in items if isinstance(i, dict)}
        elif kind == "name-struct":
            out[member] = {str(i.get("Name")): _convert(i.get("Value") or {}) for i in items if isinstance(i, dict)}
        else:
            out[member] = [_convert(i) for i in items if isinstance(i, dict)]
    return out


def _integer(name: str, value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value  # the operation reports the invalid value in SQS's words


def parse_query(body: bytes, query_string: str) -> tuple[str, dict[str, Any]]:
    """(Action, parameters) of a query-protocol request (form body, or the URL's query for GET)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameterValue("The request body is not UTF-8 form data.") from None
    pairs = parse_qsl(query_string, keep_blank_values=True) + parse_qsl(text, keep_blank_values=True)
    fields = {k: v for k, v in pairs}
    action = fields.pop("Action", "")
    pairs = [(k, v) for k, v in pairs if k not in ("Action", "Version") and not k.startswith("X-Amz-")]
    return action, _convert(_tree(pairs))


def parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("the request body is not a JSON object")
    return value


# ------------------------------------------------------------------------------------------ replies


def json_reply(result: dict[str, Any]) -> bytes:
    return json.dumps(result, separators=(",", ":")).encode()


def json_error(exc: SqsError) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"__type": f"com.amazonaws.sqs#{exc.error_type}", "message": exc.message}).encode()
    fault = "Sender" if exc.sender else "Receiver"
    return body, {"x-amzn-query-error": f"{exc.code};{fault}"}


def xml_error(exc: SqsError, request_id: str) -> bytes:
    fault = "Sender" if exc.sender else "Receiver"
    message = exc.message
    if isinstance(exc, QueueNotFound) and message == QueueNotFound().message:
        message = "The specified queue does not exist for this wsdl version."  # the query protocol's wording
    return (f'<?xml version="1.0"?><ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>{fault}</Type>'
            f"<Code>{_x(exc.code)}</Code><Message>{_x(message)}</Message><Detail/></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()


def _x(text: Any) -> str:
    # \r must survive XML's line-end normalization, or the SDK's MD5 of the body would differ.
    return escape(str(text), {"\r": "&#xD;", '"': "&quot;"})


_BATCH_ENTRY = {
    "SendMessageBatch": "SendMessageBatchResultEntry",
    "DeleteMessageBatch": "DeleteMessageBatchResultEntry",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibilityBatchResultEntry",
}


def _xml_value(name: str, value: Any, action: str) -> str:
    if value is None:
        return ""
    if name in ("Attributes",) and isinstance(value, dict):
        return "".join(f"<Attribute><Name>{_x(k)}</Name><Value>{_x(v)}</Value></Attribute>" for k, v in value.items())
    if name == "Tags" and isinstance(value, dict):
        return "".join(f"<Tag><Key>{_x(k)}</Key><Value>{_x(v)}</Value></Tag>" for k, v in value.items())
    if name == "MessageAttributes" and isinstance(value, dict):
        parts = []
        for k, v in value.items():
            inner = "".join(f"<{f}>{_x(v[f])}</{f}>" for f in ("StringValue", "BinaryValue", "DataType") if f in v)
            parts.append(f"<MessageAttribute><Name>{_x(k)}</Name><Value>{inner}</Value></MessageAttribute>")
        return "".join(parts)
    if name in ("QueueUrls", "queueUrls"):
        return "".join(f"<QueueUrl>{_x(u)}</QueueUrl>" for u in value)
    if name == "Messages":
        return "".join(f"<Message>{_xml_struct(m, action)}</Message>" for m in value)
    if name == "Successful":
        tag = _BATCH_ENTRY[action]
        return "".join(f"<{tag}>{_xml_struct(e, action)}</{tag}>" for e in value)
    if name == "Failed":
        return "".join(f"<BatchResultErrorEntry>{_xml_struct(e, action)}</BatchResultErrorEntry>" for e in value)
    if isinstance(value, bool):
        return f"<{name}>{'true' if value else 'false'}</{name}>"
    return f"<{name}>{_x(value)}</{name}>"


def _xml_struct(value: dict[str, Any], action: str) -> str:
    return "".join(_xml_value(k, v, action) for k, v in value.items())


# Operations whose reply has no <…Result> element (no output shape); every other reply has one, even empty.
_NO_RESULT = frozenset({"ChangeMessageVisibility", "DeleteMessage", "DeleteQueue", "PurgeQueue",
                        "SetQueueAttributes", "TagQueue", "UntagQueue"})


def xml_reply(action: str, result: dict[str, Any], request_id: str) -> bytes:
    inner = _xml_struct(result, action)
    if action in _NO_RESULT:
        result_part = ""
    else:
        result_part = f"<{action}Result>{inner}</{action}Result>" if inner else f"<{action}Result/>"
    return (f'<?xml version="1.0"?><{action}Response xmlns="{XML_NAMESPACE}">{result_part}'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>").encode()


