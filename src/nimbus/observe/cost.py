"""What metered usage would cost on AWS Lambda, with its public price table (us-east-1, on-demand):
requests $0.20 per 1M; duration $0.0000166667 per GB-s on x86_64 and $0.0000133334 on arm64; provisioned
concurrency $0.0000041667 per GB-s (x86_64) / $0.0000033334 (arm64) while allocated; a monthly free tier
of 1M requests and 400,000 GB-s shared by all functions and both architectures. Pure functions.

Example (a test): 10M requests of 200 ms at 256 MB in a month = 500,000 GB-s; after the free tier
9M x $0.20/1M + 100,000 GB-s x price = $1.80 + $1.67 = $3.47 on x86_64, $1.80 + $1.33 = $3.13 on arm64.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nimbus.errors import InvalidParameterValue
from nimbus.observe.metering import Meter, Usage, month_range


@dataclass(frozen=True)
class PriceTable:
    """AWS Lambda's public prices (USD)."""

    per_million_requests: float = 0.20
    gb_second: tuple[tuple[str, float], ...] = (("x86_64", 0.0000166667), ("arm64", 0.0000133334))
    provisioned_gb_second: tuple[tuple[str, float], ...] = (("x86_64", 0.0000041667), ("arm64", 0.0000033334))
    free_requests: int = 1_000_000
    free_gb_seconds: float = 400_000.0

    def duration_price(self, architecture: str) -> float:
        return dict(self.gb_second).get(architecture, dict(self.gb_second)["x86_64"])

    def provisioned_price(self, architecture: str) -> float:
        return dict(self.provisioned_gb_second).get(architecture, dict(self.provisioned_gb_second)["x86_64"])


AWS_PRICES = PriceTable()


@dataclass
class Line:
    """One function (with one architecture and memory size) on the bill, before the free tier."""

    function: str
    architecture: str
    memory_mb: int
    requests: int
    gb_seconds: float
    provisioned_gb_seconds: float
    request_cost: float
    duration_cost: float
    provisioned_cost: float

    @property
    def total(self) -> float:
        return self.request_cost + self.duration_cost + self.provisioned_cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "architecture": self.architecture,
            "memoryMB": self.memory_mb,
            "requests": self.requests,
            "gbSeconds": self.gb_seconds,
            "provisionedGbSeconds": self.provisioned_gb_seconds,
            "requestCost": self.request_cost,
            "durationCost": self.duration_cost,
            "provisionedCost": self.provisioned_cost,
            "total": self.total,
        }


@dataclass
class Bill:
    """A month's usage priced: lines per function, the free tier's credit, and the total due."""

    lines: list[Line] = field(default_factory=list)
    requests: int = 0
    gb_seconds: float = 0.0
    free_tier_credit: float = 0.0
    free_tier: bool = True

    @property
    def gross(self) -> float:
        return sum(line.total for line in self.lines)

    @property
    def total(self) -> float:
        return max(0.0, round(self.gross - self.free_tier_credit, 10))  # no float dust when all of it is free

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": [line.to_dict() for line in self.lines],
            "requests": self.requests,
            "gbSeconds": self.gb_seconds,
            "gross": self.gross,
            "freeTierCredit": self.free_tier_credit,
            "freeTierApplied": self.free_tier,
            "total": self.total,
        }


def bill(usage: Iterable[Usage], prices: PriceTable = AWS_PRICES, free_tier: bool = True) -> Bill:
    """Price a month of usage. The free tier (account-wide) is credited against requests and against the
    GB-seconds of the dearest architecture first, as a customer would want it applied."""
    out = Bill(free_tier=free_tier)
    gb_by_arch: dict[str, float] = {}
    for u in usage:
        gb = u.gb_seconds
        pgb = u.provisioned_gb_seconds
        line = Line(
            function=u.function,
            architecture=u.architecture,
            memory_mb=u.memory_mb,
            requests=u.requests,
            gb_seconds=gb,
            provisioned_gb_seconds=pgb,
            request_cost=u.requests * prices.per_million_requests / 1_000_000,
            duration_cost=gb * prices.duration_price(u.architecture),
            provisioned_cost=pgb * prices.provisioned_price(u.architecture),
        )
        out.lines.append(line)
        out.requests += u.requests
        out.gb_seconds += gb
        gb_by_arch[u.architecture] = gb_by_arch.get(u.architecture, 0.0) + gb
    if free_tier:
        credit = min(out.requests, prices.free_requests) * prices.per_million_requests / 1_000_000
        free_gb = prices.free_gb_seconds
        for arch in sorted(gb_by_arch, key=prices.duration_price, reverse=True):
            used = min(free_gb, gb_by_arch[arch])
            credit += used * prices.duration_price(arch)
            free_gb -= used
        out.free_tier_credit = credit
    return out


def estimate(requests: int, duration_ms: float, memory_mb: int, architecture: str = "x86_64",
             prices: PriceTable = AWS_PRICES, free_tier: bool = True) -> float:
    """The monthly cost of `requests` invocations of `duration_ms` each at `memory_mb` (a what-if)."""
    usage = Usage("estimate", architecture, memory_mb, requests, round(requests * duration_ms))
    return bill([usage], prices, free_tier).total


async def cost_report(meter: Meter, month: str | None, function: str | None, free_tier: bool = True) -> dict[str, Any]:
    """The priced usage of `month` (YYYY-MM, default the current one), optionally of one function, as
    `GET /nimbus/v1/cost` and the dashboard show it."""
    try:
        start, end = month_range(month)
    except ValueError as exc:
        raise InvalidParameterValue(str(exc)) from None
    await meter.flush()
    usage = await asyncio.to_thread(meter.usage, start, end, function)
    doc = bill(usage, AWS_PRICES, free_tier=free_tier).to_dict()
    doc["month"] = month or time.strftime("%Y-%m", time.gmtime(start))
    doc["function"] = function
    doc["prices"] = {
        "perMillionRequests": AWS_PRICES.per_million_requests,
        "gbSecond": dict(AWS_PRICES.gb_second),
        "provisionedGbSecond": dict(AWS_PRICES.provisioned_gb_second),
        "freeRequests": AWS_PRICES.free_requests,
        "freeGbSeconds": AWS_PRICES.free_gb_seconds,
    }
    return doc
