"""Concurrency accounting and throttling, as Lambda does it: an account-wide limit, reserved concurrency
per function (a guarantee and a cap; functions without it share what is left unreserved), and a
per-function scaling rate for new execution environments. Over a limit → 429 with AWS's `Reason`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nimbus.config import Settings
from nimbus.errors import TooManyRequests


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class Lease:
    """One admitted invocation; released when its `with` block ends (or by `Concurrency.release`)."""

    __slots__ = ("function_name", "reserved", "_owner")

    def __init__(self, function_name: str, reserved: bool, owner: Concurrency) -> None:
        self.function_name = function_name
        self.reserved = reserved
        self._owner = owner

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        # Concurrency.release, inlined: this runs once per invocation.
        owner = self._owner
        name = self.function_name
        left = owner._in_flight[name] - 1
        if left:
            owner._in_flight[name] = left
        else:
            del owner._in_flight[name]
        if not self.reserved:
            owner._unreserved_in_flight -= 1


@dataclass(frozen=True, slots=True)
class ConcurrencySnapshot:
    """The counts at one moment, for metrics and the dashboard."""

    in_flight: dict[str, int]  # function -> invocations running now
    unreserved_in_flight: int  # of those, the ones counted against the unreserved pool
    reserved_total: int  # concurrency reserved by functions (the unreserved pool is the rest)
    account_limit: int

    @property
    def total(self) -> int:
        return sum(self.in_flight.values())


class Concurrency:
    """Counts invocations in flight. Single-threaded: call from the event loop only."""

    def __init__(
        self, settings: Settings, reserved_total: Callable[[], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._reserved_total = reserved_total
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._unreserved_in_flight = 0
        self._buckets: dict[str, _Bucket] = {}

    def in_flight(self, function_name: str | None = None) -> int:
        """Invocations running now, for one function or for the whole account."""
        if function_name is None:
            return sum(self._in_flight.values())
        return self._in_flight.get(function_name, 0)

    def snapshot(self) -> ConcurrencySnapshot:
        """A copy of the counts (metrics, the dashboard)."""
        return ConcurrencySnapshot(dict(self._in_flight), self._unreserved_in_flight, self._reserved_total(),
                                   self._settings.account_concurrency)

    def acquire(self, function_name: str, reserved: int | None, new_environment: bool) -> Lease:
        """Admit one invocation or raise TooManyRequests. `new_environment` says it needs a cold start,
        which the scaling rate limits. Use the lease as a context manager: `with concurrency.acquire(...):`."""
        running = self._in_flight.get(function_name, 0)
        if reserved is not None:
            if running >= reserved:
                raise TooManyRequests("Rate Exceeded.", "ReservedFunctionConcurrentInvocationLimitExceeded")
        else:
            pool = self._settings.account_concurrency - self._reserved_total()
            if self._unreserved_in_flight >= pool:
                raise TooManyRequests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded")
        if new_environment and not self._take_scaling_token(function_name):
            reason = (
                "ReservedFunctionInvocationRateLimitExceeded"
                if reserved is not None
                else "FunctionInvocationRateLimitExceeded"
            )
            raise TooManyRequests("Rate Exceeded.", reason)
        self._in_flight[function_name] = running + 1
        if reserved is None:
            self._unreserved_in_flight += 1
        return Lease(function_name, reserved is not None, self)

    def release(self, lease: Lease) -> None:
        left = self._in_flight[lease.function_name] - 1
        if left:
            self._in_flight[lease.function_name] = left
        else:
            del self._in_flight[lease.function_name]
        if not lease.reserved:
            self._unreserved_in_flight -= 1

    def _take_scaling_token(self, function_name: str) -> bool:
        # A token bucket that refills continuously and never holds more than one window's worth, which is
        # how AWS describes "1,000 execution environments every 10 seconds" per function.
        capacity = float(self._settings.scaling_rate)
        now = self._clock()
        bucket = self._buckets.get(function_name)
        if bucket is None:
            bucket = self._buckets[function_name] = _Bucket(capacity, now)
        else:
            rate = capacity / self._settings.scaling_window
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
