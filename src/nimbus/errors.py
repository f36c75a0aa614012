"""The one exception hierarchy of nimbus. Every error a client can see is a `LambdaError` subclass that
knows its wire name and HTTP status; `api/` maps them to Lambda's error shape in exactly one place."""

from __future__ import annotations

import errno
from typing import Any, ClassVar


class LambdaError(Exception):
    """An error answered to the client in AWS Lambda's shape.

    The body carries `Type` ("User" for client faults, "Service" for ours) and the message under both
    `message` and `Message`, because botocore's models spell it one way or the other per error type.
    """

    status: ClassVar[int] = 400
    error_type: ClassVar[str] = "InvalidParameterValueException"
    fault: ClassVar[str] = "User"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"Type": self.fault, "message": self.message, "Message": self.message, **self.extra}

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.error_type}


class InvalidParameterValue(LambdaError):
    status = 400
    error_type = "InvalidParameterValueException"


class InvalidRequestContent(LambdaError):
    status = 400
    error_type = "InvalidRequestContentException"


class ValidationError(LambdaError):
    """AWS answers schema violations (lengths, patterns, enums) with this type."""

    status = 400
    error_type = "ValidationException"


class UnsupportedMediaType(LambdaError):
    status = 415
    error_type = "UnsupportedMediaTypeException"


class ResourceNotFound(LambdaError):
    status = 404
    error_type = "ResourceNotFoundException"


class UnknownOperation(LambdaError):
    status = 404
    error_type = "UnknownOperationException"


class ResourceConflict(LambdaError):
    status = 409
    error_type = "ResourceConflictException"


class ResourceInUse(LambdaError):
    status = 400
    error_type = "ResourceInUseException"


class PreconditionFailed(LambdaError):
    status = 412
    error_type = "PreconditionFailedException"


class RequestTooLarge(LambdaError):
    status = 413
    error_type = "RequestTooLargeException"


class RequestEntityTooLarge(LambdaError):
    """A control-plane request or zip over Lambda's limits (AWS's type for CreateFunction/UpdateFunctionCode;
    Invoke uses RequestTooLargeException)."""

    status = 413
    error_type = "RequestEntityTooLargeException"


class PolicyLengthExceeded(LambdaError):
    status = 400
    error_type = "PolicyLengthExceededException"


class TooManyRequests(LambdaError):
    """A throttle. `reason` is one of AWS's ThrottleReason values."""

    status = 429
    error_type = "TooManyRequestsException"

    def __init__(self, message: str, reason: str, retry_after: int = 1) -> None:
        super().__init__(message, Reason=reason)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after)}


class ServiceError(LambdaError):
    status = 500
    error_type = "ServiceException"
    fault = "Service"


DISK_FULL = ("No space is left on the server's data volume: the request was not accepted (nothing of it was "
             "stored). Retry once space is freed.")
DATABASE_BUSY = ("The server's database is locked by another process and did not free up in time: the request "
                 "was not accepted. Retry.")
INTERNAL = "An internal error occurred. See the server log."


def service_error(exc: BaseException) -> ServiceError:
    """The ServiceException (500, which SDKs retry) for an unexpected failure, saying what broke when it is a
    fault of the server's storage that the operator can fix: a full disk, or a database locked elsewhere."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if (isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT)) or \
                "database or disk is full" in text or "no space left on device" in text:
            return ServiceError(DISK_FULL)
        if "database is locked" in text or "lock timeout" in text:
            return ServiceError(DATABASE_BUSY)
        current = current.__cause__ or current.__context__
    return ServiceError(INTERNAL)


class ResourceNotReady(LambdaError):
    status = 502
    error_type = "ResourceNotReadyException"
    fault = "Service"


class InvalidRuntime(LambdaError):
    status = 502
    error_type = "InvalidRuntimeException"
    fault = "Service"


# Authentication (issue 7): what AWS answers for unsigned, badly signed and unauthorized requests.


class MissingAuthenticationToken(LambdaError):
    status = 403
    error_type = "MissingAuthenticationTokenException"


class IncompleteSignature(LambdaError):
    status = 403
    error_type = "IncompleteSignatureException"


class InvalidSignature(LambdaError):
    status = 403
    error_type = "InvalidSignatureException"


class UnrecognizedClient(LambdaError):
    status = 403
    error_type = "UnrecognizedClientException"


class AccessDenied(LambdaError):
    status = 403
    error_type = "AccessDeniedException"


class CrossAccountDenied(AccessDenied):
    """A function ARN of another account: AWS answers 403 AccessDeniedException without a message
    (LocalStack snapshot test_create_lambda_exceptions, function_arn_other_account_exc, recorded against AWS)."""

    def __init__(self) -> None:
        super().__init__("")

    def body(self) -> dict[str, Any]:
        return {"Message": None}


class CodeSigningConfigNotFound(LambdaError):
    """PutFunctionCodeSigningConfig naming a config that does not exist (issue 21)."""

    status = 404
    error_type = "CodeSigningConfigNotFoundException"


class ProvisionedConcurrencyConfigNotFound(LambdaError):
    """GetProvisionedConcurrencyConfig on a qualifier without one (issue 5)."""

    status = 404
    error_type = "ProvisionedConcurrencyConfigNotFoundException"


# --- API Gateway (HTTP APIs, issue 17): the `apigatewayv2` API's own error names -------------------------


class ApiNotFound(LambdaError):
    status = 404
    error_type = "NotFoundException"


class ApiBadRequest(LambdaError):
    status = 400
    error_type = "BadRequestException"


class ApiConflict(LambdaError):
    status = 409
    error_type = "ConflictException"
