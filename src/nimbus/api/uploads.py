"""Which Lambda API requests upload code: AWS answers their oversized bodies with
RequestEntityTooLargeException naming the operation (LocalStack snapshot test_oversized_request_create_lambda,
recorded against AWS), other operations with RequestTooLargeException."""

from __future__ import annotations

FUNCTIONS = "/2015-03-31/functions"


def code_upload_operation(method: str, path: str) -> str | None:
    """`CreateFunction` or `UpdateFunctionCode` for their routes, else None."""
    if method == "POST" and path.rstrip("/") == FUNCTIONS:
        return "CreateFunction"
    if method == "PUT" and path.startswith(FUNCTIONS + "/") and path.endswith("/code"):
        return "UpdateFunctionCode"
    return None
