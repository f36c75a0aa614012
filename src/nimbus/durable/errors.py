"""Errors of the durable APIs, in Lambda's error shape (subclasses of the one hierarchy in nimbus/errors.py)."""

from __future__ import annotations

from nimbus.errors import InvalidParameterValue, LambdaError


class DurableExecutionAlreadyStarted(LambdaError):
    status = 409
    error_type = "DurableExecutionAlreadyStartedException"


class CallbackTimeout(LambdaError):
    status = 400
    error_type = "CallbackTimeoutException"


def invalid_token() -> InvalidParameterValue:
    """The SDK retries only a 4xx whose message starts exactly like this (facts §4.1)."""
    return InvalidParameterValue("Invalid checkpoint token")
