"""AWS Lambda prices applied to metered usage."""

from __future__ import annotations

import pytest

from nimbus.observe.cost import AWS_PRICES, bill, estimate
from nimbus.observe.metering import Usage


def test_ten_million_requests_of_200_ms_at_256_mb() -> None:
    # The figure: 10M requests x 200 ms x 256 MB = 500,000 GB-s; after the free tier (1M requests,
    # 400,000 GB-s) that is $1.80 of requests plus 100,000 GB-s of duration.
    x86 = estimate(10_000_000, 200, 256, "x86_64")
    arm = estimate(10_000_000, 200, 256, "arm64")
    assert x86 == pytest.approx(3.46, abs=0.01)
    assert arm == pytest.approx(3.14, abs=0.01)
    assert x86 == pytest.approx(1.80 + 100_000 * 0.0000166667, abs=1e-9)
    assert arm == pytest.approx(1.80 + 100_000 * 0.0000133334, abs=1e-9)


def test_without_free_tier_and_the_gross_figures() -> None:
    usage = Usage("f", "x86_64", 256, 10_000_000, 10_000_000 * 200)
    priced = bill([usage], free_tier=False)
    assert priced.gb_seconds == pytest.approx(500_000)
    assert priced.lines[0].request_cost == pytest.approx(2.0)
    assert priced.lines[0].duration_cost == pytest.approx(500_000 * 0.0000166667)
    assert priced.total == pytest.approx(priced.gross)
    assert priced.free_tier_credit == 0


def test_usage_inside_the_free_tier_costs_nothing() -> None:
    assert estimate(1_000_000, 100, 128) == 0.0
    assert estimate(5, 1, 128) == 0.0


def test_free_tier_is_shared_and_credits_the_dearer_architecture_first() -> None:
    x86 = Usage("a", "x86_64", 1024, 600_000, 300_000_000)  # 300,000 GB-s
    arm = Usage("b", "arm64", 1024, 600_000, 300_000_000)  # 300,000 GB-s
    priced = bill([x86, arm])
    expected_credit = 1_000_000 * 0.2 / 1e6 + 300_000 * 0.0000166667 + 100_000 * 0.0000133334
    assert priced.free_tier_credit == pytest.approx(expected_credit)
    assert priced.total == pytest.approx(200_000 * 0.2 / 1e6 + 200_000 * 0.0000133334)
    assert [line.function for line in priced.lines] == ["a", "b"]


def test_provisioned_concurrency_is_priced_per_gb_second_allocated() -> None:
    usage = Usage("p", "x86_64", 1024, 0, 0, provisioned_ms=3_600_000)  # one 1 GB environment for an hour
    priced = bill([usage], free_tier=False)
    assert priced.lines[0].provisioned_cost == pytest.approx(3600 * AWS_PRICES.provisioned_price("x86_64"))
    assert AWS_PRICES.provisioned_price("x86_64") == 0.0000041667


def test_unknown_architecture_is_priced_as_x86() -> None:
    assert AWS_PRICES.duration_price("riscv") == AWS_PRICES.duration_price("x86_64")
