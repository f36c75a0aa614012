import pytest

from nimbus.config import Settings
from nimbus.errors import TooManyRequests
from nimbus.invoke.concurrency import Concurrency


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(reserved_total: int = 0, **settings: int) -> tuple[Concurrency, Clock]:
    clock = Clock()
    return Concurrency(Settings(**settings), lambda: reserved_total, clock), clock  # type: ignore[arg-type]


def test_reserved_concurrency_caps_the_function() -> None:
    c, _ = make()
    lease = c.acquire("f", 2, False)
    c.acquire("f", 2, False)
    with pytest.raises(TooManyRequests) as info:
        c.acquire("f", 2, False)
    assert info.value.extra["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    c.release(lease)
    c.acquire("f", 2, False)


def test_reserved_zero_throttles_everything() -> None:
    c, _ = make()
    with pytest.raises(TooManyRequests):
        c.acquire("f", 0, False)


def test_unreserved_pool_is_account_limit_minus_reservations() -> None:
    c, _ = make(reserved_total=7, account_concurrency=10)
    leases = [c.acquire(f"f{i}", None, False) for i in range(3)]
    with pytest.raises(TooManyRequests) as info:
        c.acquire("g", None, False)
    assert info.value.extra["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert info.value.status == 429
    c.acquire("r", 7, False)  # reserved functions don't draw from the unreserved pool
    c.release(leases[0])
    c.acquire("g", None, False)
    assert c.in_flight() == 4


def test_scaling_rate_limits_new_environments_and_refills() -> None:
    c, clock = make(scaling_rate=3, scaling_window=10)
    for _ in range(3):
        c.acquire("f", None, True)
    with pytest.raises(TooManyRequests) as info:
        c.acquire("f", None, True)
    assert info.value.extra["Reason"] == "FunctionInvocationRateLimitExceeded"
    c.acquire("f", None, False)  # warm invocations are not rate limited
    c.acquire("other", None, True)  # each function scales independently
    clock.now = 10 / 3 + 0.01
    c.acquire("f", None, True)
    clock.now = 1000.0  # tokens do not accumulate beyond one window
    for _ in range(3):
        c.acquire("f", None, True)
    with pytest.raises(TooManyRequests):
        c.acquire("f", None, True)
