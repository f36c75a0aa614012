"""Schedule expressions as EventBridge Scheduler and EventBridge rules write them: `rate(5 minutes)`, AWS's
6-field `cron(min hour day-of-month month day-of-week year)` and `at(2026-01-01T09:00:00)`, evaluated in an
IANA time zone.

Cron is evaluated by croniter with AWS's dialect mapped onto it: day-of-week 1-7 = SUN-SAT becomes croniter's
0-6, `nL` (last weekday n of the month) becomes `L<n-1>`, `n#k` becomes `<n-1>#k`, the year is croniter's 7th
field, and one of the two day fields must be `?` (croniter ORs them when both are restricted, AWS refuses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]

_RATE = re.compile(r"rate\(([1-9]\d{0,8}) (minute|minutes|hour|hours|day|days)\)")
_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_CRON = re.compile(r"cron\(([^()]*)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"

# What each AWS field accepts (values are range-checked afterwards).
_NUM_LIST = r"(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*"
_FIELD_RES = [
    re.compile(rf"^{_NUM_LIST}$"),  # minute
    re.compile(rf"^{_NUM_LIST}$"),  # hour
    re.compile(r"^(\?|L|\d+W|LW|" + _NUM_LIST + ")$"),  # day of month
    re.compile(rf"^((\*|(\d+|{_MONTHS})(-(\d+|{_MONTHS}))?)(/\d+)?)(,((\d+|{_MONTHS})(-(\d+|{_MONTHS}))?(/\d+)?))*$"),
    re.compile(r"^(\?|L|[1-7]L|([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)#[1-5]|"
               r"((\*|([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(-([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT))?)(/\d+)?)"
               r"(,(([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(-([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT))?(/\d+)?))*)$"),
    re.compile(rf"^{_NUM_LIST}$"),  # year
]
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199)]


class InvalidExpression(ValueError):
    """Not a schedule expression AWS accepts."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression. `kind` is rate, cron or at."""

    text: str
    kind: str
    period_s: int = 0  # rate
    at_local: datetime | None = None  # at: naive local time
    cron: str = ""  # cron: the croniter form (7 fields with seconds and year)

    @property
    def one_time(self) -> bool:
        return self.kind == "at"

    def next_after(self, after_ms: int, tz: str, anchor_ms: int, end_ms: int | None = None) -> int | None:
        """The first tick strictly after `after_ms` (epoch ms), or None when there is none (before `end_ms`).
        `anchor_ms`: rate ticks are anchor + k·period (the StartDate, or the creation time); cron and at ticks
        are not before it (a StartDate)."""
        zone = zone_of(tz)
        tick: int | None
        if self.kind == "at":
            assert self.at_local is not None
            tick = _local_to_ms(self.at_local, zone)
            if tick <= after_ms:
                return None
        elif self.kind == "rate":
            period = self.period_s * 1000
            tick = anchor_ms if after_ms < anchor_ms else anchor_ms + ((after_ms - anchor_ms) // period + 1) * period
        else:
            start = max(after_ms, anchor_ms - 1)
            base = datetime.fromtimestamp(start / 1000, UTC).astimezone(zone)
            try:
                it = croniter(self.cron, base, second_at_beginning=False)
                for _ in range(8):
                    nxt = it.get_next(datetime)
                    # A wall-clock time that does not exist (spring forward) is skipped, as AWS does;
                    # croniter would move it past the gap.
                    # A repeated one (fall back) runs once: its second occurrence (fold 1) is skipped.
                    local = datetime.fromtimestamp(nxt.timestamp(), zone)
                    if croniter.match(self.cron, nxt.replace(tzinfo=None)) and not local.fold:
                        break
                else:
                    return None
            except Exception:  # past the last year of the expression
                return None
            tick = int(nxt.timestamp() * 1000)
        if end_ms is not None and tick > end_ms:
            return None
        return tick


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidExpression(f"Invalid time zone {name}") from exc


def _local_to_ms(local: datetime, zone: ZoneInfo) -> int:
    return int(local.replace(tzinfo=zone).timestamp() * 1000)


def parse(text: str, allow_at: bool = True) -> Expression:
    """Parse an expression; raises InvalidExpression. EventBridge rules take rate and cron only."""
    m = _RATE.fullmatch(text)
    if m:
        value, unit = int(m.group(1)), m.group(2)
        return Expression(text, "rate", period_s=value * _UNIT_S[unit.rstrip("s")])
    m = _AT.fullmatch(text)
    if m and allow_at:
        try:
            y, mo, d, h, mi, se = (int(g) for g in m.groups())
            local = datetime(y, mo, d, h, mi, se)  # noqa: DTZ001 (a wall-clock time in the schedule's zone)
        except ValueError:
            raise InvalidExpression(text) from None
        return Expression(text, "at", at_local=local)
    m = _CRON.fullmatch(text)
    if m:
        return Expression(text, "cron", cron=_to_croniter(m.group(1), text))
    raise InvalidExpression(text)


def _check_numbers(field: str, index: int, text: str) -> None:
    low, high = _RANGES[index]
    for number in re.findall(r"(?<![/#])\b\d+\b", field):
        if not low <= int(number) <= high:
            raise InvalidExpression(text)


def _shift_dow(value: str) -> str:
    """AWS day-of-week (1-7 = SUN-SAT, or a name) to croniter's 0-6."""
    n = _DAYS.get(value.upper())
    return str((n if n is not None else int(value)) - 1)


def _to_croniter(body: str, text: str) -> str:
    fields = body.split(" ")
    if len(fields) != 6 or any(not f for f in fields):
        raise InvalidExpression(text)
    for i, f in enumerate(fields):
        if not _FIELD_RES[i].match(f.upper()):
            raise InvalidExpression(text)
        if i in (0, 1, 2, 5) or (i == 4 and f[0].isdigit()):
            _check_numbers(f, i, text)
    # croniter misreads a one-value range such as `8-8`; it means the value itself.
    fields = [re.sub(r"\b(\d+)-\1\b(?!/)", r"\1", f) for f in fields]
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise InvalidExpression(text)  # exactly one of the day fields is `?`
    if dom == "?":
        dom = "*"
    if dow == "?":
        dow = "*"
    elif dow.upper() == "L":
        dow = "6"  # the last day of the week: Saturday
    elif dow.upper().endswith("L"):
        dow = f"L{_shift_dow(dow[:-1])}"
    elif "#" in dow:
        day, nth = dow.split("#")
        dow = f"{_shift_dow(day)}#{nth}"
    elif dow != "*":
        parts = []
        for item in dow.split(","):
            item, _, step = item.partition("/")
            span = "-".join("*" if x == "*" else _shift_dow(x) for x in item.split("-"))
            parts.append(span + (f"/{step}" if step else ""))
        dow = ",".join(parts)
    if dom.upper() == "LW":
        raise InvalidExpression(text)  # croniter has no LW; AWS accepts it, rarely used
    expr = f"{minute} {hour} {dom} {month} {dow} 0 {year}"
    try:
        croniter(expr, datetime(2026, 1, 1, tzinfo=UTC), second_at_beginning=False)
    except Exception:
        raise InvalidExpression(text) from None
    return expr


def scheduled_time(tick_ms: int) -> str:
    """`2022-03-22T18:59:43Z`: the scheduled time as Scheduler and EventBridge write it."""
    return datetime.fromtimestamp(tick_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def period(expression: Expression) -> timedelta | None:
    return timedelta(seconds=expression.period_s) if expression.kind == "rate" else None
