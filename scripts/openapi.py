"""Writes nimbus's published OpenAPI description of the Lambda REST API (src/nimbus/api/openapi.json) from
botocore's Lambda service model, the same model boto3 and the AWS CLI speak: every operation with its path,
method, path/query/header parameters, JSON body schema and status code. Run after upgrading botocore:

    .venv/bin/python scripts/openapi.py

The property-based API fuzzing in tests/e2e/test_openapi_fuzz.py (schemathesis) reads this file, and the
server publishes it at GET /nimbus/v1/openapi.json.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders

OUT = Path(__file__).resolve().parents[1] / "src" / "nimbus" / "api" / "openapi.json"

SCALARS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "boolean": {"type": "boolean"},
    "double": {"type": "number"},
    "float": {"type": "number"},
    "timestamp": {"type": "string"},
    "blob": {"type": "string", "format": "byte"},
}


def schema_of(name: str, shapes: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one botocore shape (structures, lists and maps refer to components)."""
    shape = shapes[name]
    kind = shape["type"]
    if kind == "structure":
        props = {member: {"$ref": f"#/components/schemas/{spec['shape']}"}
                 for member, spec in shape.get("members", {}).items() if "location" not in spec}
        out: dict[str, Any] = {"type": "object", "properties": props}
        required = [r for r in shape.get("required", []) if r in props]
        if required:
            out["required"] = required
        return out
    if kind == "list":
        out = {"type": "array", "items": {"$ref": f"#/components/schemas/{shape['member']['shape']}"}}
        if "min" in shape:
            out["minItems"] = shape["min"]
        if "max" in shape:
            out["maxItems"] = shape["max"]
        return out
    if kind == "map":
        return {"type": "object", "additionalProperties": {"$ref": f"#/components/schemas/{shape['value']['shape']}"}}
    out = dict(SCALARS[kind])
    if kind == "string":
        if "enum" in shape:
            out["enum"] = list(shape["enum"])
        if "min" in shape:
            out["minLength"] = shape["min"]
        if "max" in shape:
            out["maxLength"] = shape["max"]
        if "pattern" in shape:
            out["pattern"] = shape["pattern"]
    elif kind in ("integer", "long"):
        if "min" in shape:
            out["minimum"] = shape["min"]
        if "max" in shape:
            out["maximum"] = shape["max"]
    return out


def operation(name: str, op: dict[str, Any], shapes: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(path, method, OpenAPI operation) of one botocore operation."""
    uri = op["http"]["requestUri"]
    path, _, fixed_query = uri.partition("?")
    path = re.sub(r"\{(\w+)\+\}", r"{\1}", path)  # greedy labels: OpenAPI has one kind of path parameter
    params: list[dict[str, Any]] = []
    for key, _, value in (q.partition("=") for q in fixed_query.split("&") if q):
        params.append({"name": key, "in": "query", "required": True, "schema": {"type": "string", "enum": [value]}})
    body: dict[str, Any] | None = None
    input_name = op.get("input", {}).get("shape")
    if input_name:
        shape = shapes[input_name]
        required = set(shape.get("required", []))
        payload = shape.get("payload")
        for member, spec in shape.get("members", {}).items():
            location = spec.get("location")
            if location in ("uri", "querystring", "header"):
                # Path parameters are any non-empty string: their patterns (ARNs) are what the server
                # validates, and generators cannot satisfy them together with a URL's own rules.
                schema = ({"type": "string", "minLength": 1} if location == "uri"
                          else {"$ref": f"#/components/schemas/{spec['shape']}"})
                params.append({
                    "name": spec.get("locationName", member),
                    "in": {"uri": "path", "querystring": "query", "header": "header"}[location],
                    "required": location == "uri" or member in required,
                    "schema": schema,
                })
        if payload:
            target = shape["members"][payload]["shape"]
            if shapes[target]["type"] == "blob":
                body = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
            else:
                body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{target}"}}}}
        elif any("location" not in spec for spec in shape.get("members", {}).values()):
            body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{input_name}"}}}}
    code = str(op["http"].get("responseCode", 200))
    spec: dict[str, Any] = {
        "operationId": name,
        "parameters": params,
        "responses": {code: {"description": "success"},
                      "default": {"description": "Lambda's error shape",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    }
    if body is not None:
        spec["requestBody"] = body
    return path, op["http"]["method"].lower(), spec


def build() -> dict[str, Any]:
    """The whole OpenAPI document."""
    model = botocore.loaders.Loader().load_service_model("lambda", "service-2")
    shapes = model["shapes"]
    paths: dict[str, dict[str, Any]] = {}
    for name in sorted(model["operations"]):
        path, method, spec = operation(name, model["operations"][name], shapes)
        # Two operations on one path and method differ only by a fixed query (ListLayers / GetLayerVersionByArn,
        # Get/ListProvisionedConcurrencyConfig(s)): OpenAPI keeps one per path and method.
        paths.setdefault(path, {}).setdefault(method, spec)
    schemas = {name: schema_of(name, shapes) for name in sorted(shapes)}
    schemas["Error"] = {"type": "object", "required": ["Type", "message"],
                        "properties": {"Type": {"type": "string"}, "message": {"type": "string"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "nimbus: the AWS Lambda REST API", "version": model["metadata"]["apiVersion"],
                 "description": f"Generated by scripts/openapi.py from botocore {botocore.__version__}'s "
                                "Lambda model. Requests are signed with SigV4 (service lambda)."},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def main() -> int:
    OUT.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
