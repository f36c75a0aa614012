"""Rendering stored configuration into Lambda's documents."""

from __future__ import annotations

import json
import re

from nimbus.control.documents import lambda_timestamp, policy_document, render_config, statement


def test_timestamp_format() -> None:
    assert lambda_timestamp(0) == "1970-01-01T00:00:00.000+0000"
    assert lambda_timestamp(1705314030.1239) == "2024-01-15T10:20:30.123+0000"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", lambda_timestamp())


def test_internal_keys_and_empty_fields_stay_out() -> None:
    doc = render_config("us-east-1", "000000000000", "fn", "1", {"Runtime": "python3.12", "Environment": {}},
                        "rev", "ts", "1")
    assert doc["FunctionArn"].endswith(":fn:1") and doc["Version"] == "1"
    assert "Environment" not in doc and "Layers" not in doc
    assert doc["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/fn"}


def test_policy_statement_shapes() -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:fn"
    st = statement(arn, {"StatementId": "s", "Action": "lambda:InvokeFunctionUrl", "Principal": "*",
                         "FunctionUrlAuthType": "NONE"})
    assert st["Principal"] == "*"
    assert st["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    role = statement(arn, {"StatementId": "r", "Action": "lambda:*", "Principal": "arn:aws:iam::1:role/x"})
    assert role["Principal"] == {"AWS": "arn:aws:iam::1:role/x"} and "Condition" not in role
    doc = json.loads(policy_document([st, role]))
    assert doc["Id"] == "default" and len(doc["Statement"]) == 2
