"""Schedule expressions (events/schedules/expressions.py): AWS-recorded accept/reject cases, the cron dialect
mapped onto croniter, rate anchoring, at() in a time zone, and DST (skipped spring-forward, single fall-back)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nimbus.events.schedules.expressions import InvalidExpression, parse


def ms(*args: int, tz: str = "UTC") -> int:
    from zoneinfo import ZoneInfo

    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[arg-type,misc]


def utc(value: int | None) -> datetime:
    assert value is not None
    return datetime.fromtimestamp(value / 1000, UTC).replace(tzinfo=None)


@pytest.mark.parametrize("text", [
    "cron(0 1 * * * *)", "cron(7 20 * * NOT *)", "cron(0 dummy ? * MON-FRI *)", "cron(71 8 1 * ? *)", "cron()",
    "rate(10 seconds)", "rate(10 years)", "rate(10)", "rate(10 minutess)", "rate(foo minutes)", "rate(-10 minutes)",
    "rate( 10 minutes )", " rate(10 minutes)", "at(2021-12-31T23:59:59Z)", "at(2021-12-31)", "rate(0 minutes)",
    "cron(0 1 ? * ? *)", "cron(0 1 1 * 2 *)", "at(2021-02-30T00:00:00)",
])
def test_rejected_as_on_aws(text: str) -> None:
    with pytest.raises(InvalidExpression):
        parse(text)


@pytest.mark.parametrize("text", [
    "cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)", "cron(*/15 * * * ? *)", "cron(0-59/10 0-23/2 ? * * *)",
    "at(2022-12-31T23:59:59)", "rate(1 minute)", "rate(5 minutes)", "rate(1 day)",
])
def test_accepted_as_on_aws(text: str) -> None:
    parse(text)


@pytest.mark.parametrize(("text", "after", "expected"), [
    ("cron(0-15/1 8-8 ? * 2,3,4,5,6,7 *)", (2026, 3, 1), datetime(2026, 3, 2, 8, 0)),  # 1 = SUN: Monday next
    ("cron(0 18 ? * MON-FRI *)", (2026, 3, 7), datetime(2026, 3, 9, 18, 0)),
    ("cron(0 10 ? * 6L *)", (2026, 3, 1), datetime(2026, 3, 27, 10, 0)),  # last Friday
    ("cron(0 10 ? * 3#2 *)", (2026, 3, 1), datetime(2026, 3, 10, 10, 0)),  # second Tuesday
    ("cron(0 10 L * ? *)", (2026, 2, 1), datetime(2026, 2, 28, 10, 0)),
    ("cron(0 10 15W * ? *)", (2026, 3, 1), datetime(2026, 3, 16, 10, 0)),  # the 15th is a Sunday
    ("cron(0 12 * * ? 2030)", (2026, 3, 1), datetime(2030, 1, 1, 12, 0)),
    ("cron(0 12 1 JAN ? *)", (2026, 3, 1), datetime(2027, 1, 1, 12, 0)),
])
def test_cron_next(text: str, after: tuple[int, int, int], expected: datetime) -> None:
    assert utc(parse(text).next_after(ms(*after), "UTC", 0)) == expected


def test_rate_counts_from_its_anchor() -> None:
    expr = parse("rate(5 minutes)")
    anchor = ms(2026, 1, 1, 0, 0, 7)
    assert utc(expr.next_after(anchor - 1, "UTC", anchor)) == datetime(2026, 1, 1, 0, 0, 7)
    assert utc(expr.next_after(anchor, "UTC", anchor)) == datetime(2026, 1, 1, 0, 5, 7)
    assert expr.next_after(anchor, "UTC", anchor, end_ms=anchor + 60_000) is None


def test_at_in_a_time_zone_fires_once() -> None:
    expr = parse("at(2026-07-01T09:00:00)")
    tick = expr.next_after(0, "Europe/Paris", 0)
    assert utc(tick) == datetime(2026, 7, 1, 7, 0)
    assert expr.next_after(tick or 0, "Europe/Paris", 0) is None


def test_dst_spring_forward_skipped_fall_back_once() -> None:
    expr = parse("cron(30 2 * * ? *)")
    nxt = expr.next_after(ms(2026, 3, 28, 12), "Europe/Paris", 0)
    assert utc(nxt) == datetime(2026, 3, 30, 0, 30)  # 02:30 did not exist on the 29th
    first = expr.next_after(ms(2026, 10, 24, 12), "Europe/Paris", 0)
    assert utc(first) == datetime(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert utc(expr.next_after(first or 0, "Europe/Paris", 0)) == datetime(2026, 10, 26, 1, 30)  # not 02:30 CET
