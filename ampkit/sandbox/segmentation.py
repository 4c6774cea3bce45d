"""Dashboard REST queries: Event Segmentation and the Events List (parsing and shapes, pure).

All bucketing is by *event time* in the project's time zone, which is how charts count and
why they differ from the Export API (upload time, UTC).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from ampkit.sandbox.reply import Reply

DAILY, WEEKLY, MONTHLY, HOURLY, REALTIME = 1, 7, 30, -3600000, -300000
# https://amplitude.com/docs/apis/analytics/dashboard-rest (interval parameter `i`).
_MAX_RANGE_DAYS = {DAILY: 365, WEEKLY: 52 * 7, MONTHLY: 366 * 3, HOURLY: 7, REALTIME: 2}
_SUPPORTED_METRICS = ("uniques", "totals")


@dataclass(frozen=True)
class Query:
    """A parsed segmentation query. `first`/`last` are local datetimes, both included."""

    event_type: str
    metric: str
    interval: int
    first: datetime
    last: datetime

    @property
    def days(self) -> int:
        return (self.last.date() - self.first.date()).days + 1

    @property
    def cost(self) -> int:
        """days x events x (1 + 4 per group-by); the sandbox supports one event and no group-by."""
        return self.days


def parse(params: Mapping[str, str]) -> Query | Reply:
    """Read `e`, `m`, `i`, `start`, `end` (and refuse the options the sandbox does not model)."""
    for unsupported in ("e2", "g", "g2", "formula"):
        if params.get(unsupported):
            return _invalid(f"Parameter {unsupported} is not supported by the ampkit sandbox")
    if params.get("s") not in (None, "", "[]"):
        return _invalid("Segments (s) are not supported by the ampkit sandbox")
    raw_event = params.get("e")
    if not raw_event:
        return _invalid("Missing required parameter e")
    try:
        event = orjson.loads(raw_event)
    except orjson.JSONDecodeError:
        return _invalid("Invalid event definition", "e is not valid JSON")
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str) or not event["event_type"]:
        return _invalid("Invalid event definition", "e must be a JSON object with an event_type")
    if event.get("filters") or event.get("group_by"):
        return _invalid("Invalid event definition", "filters and group_by are not supported by the ampkit sandbox")
    if event["event_type"].startswith("ce:"):
        return _invalid("Invalid event definition", "custom events are not supported by the ampkit sandbox")
    metric = params.get("m") or "uniques"
    if metric not in _SUPPORTED_METRICS:
        return _invalid(f"Invalid metric {metric}", "the ampkit sandbox supports m=uniques and m=totals")
    try:
        interval = int(params.get("i") or DAILY)
    except ValueError:
        return _invalid("Invalid interval", "i must be 1, 7, 30, -3600000 or -300000")
    if interval not in _MAX_RANGE_DAYS:
        return _invalid("Invalid interval", "i must be 1, 7, 30, -3600000 or -300000")
    sub_daily = interval in (HOURLY, REALTIME)
    bounds = []
    for name in ("start", "end"):
        value = params.get(name)
        parsed = _parse_day(value, allow_hour=sub_daily, end=name == "end")
        if parsed is None:
            fmt = "YYYYMMDD or YYYYMMDDTHH" if sub_daily else "YYYYMMDD"
            return _invalid(f"Invalid {name} date", f"{name} must be {fmt}")
        bounds.append(parsed)
    first, last = bounds
    if last < first:
        return _invalid("Invalid date range", "end is before start")
    query = Query(event["event_type"], metric, interval, first, last)
    if interval == MONTHLY:
        months = (last.year - first.year) * 12 + last.month - first.month + 1
        if months > 36:
            return _invalid("Invalid date range", "monthly queries cover at most 36 months")
    elif interval == WEEKLY:
        if len(_weeks(first.date(), last.date())) > 52:
            return _invalid("Invalid date range", "weekly queries cover at most 52 weeks")
    elif query.days > _MAX_RANGE_DAYS[interval]:
        return _invalid("Invalid date range", f"this interval covers at most {_MAX_RANGE_DAYS[interval]} days")
    return query


def intervals(query: Query, zone: ZoneInfo) -> tuple[list[int], list[int], list[str]]:
    """Bucket starts and ends (epoch ms, end exclusive) and their `xValues` labels.

    Daily labels are `YYYY-MM-DD`; weekly and monthly use the bucket's first day (weeks start
    on Monday); hourly and real-time use local `YYYY-MM-DDTHH:MM:SS`.
    """
    if query.interval in (HOURLY, REALTIME):
        step = 3600 * 1000 if query.interval == HOURLY else 300 * 1000
        start = _to_ms(query.first, zone)
        stop = _to_ms(query.last, zone) + step
        starts = list(range(start, stop, step))
        labels = [datetime.fromtimestamp(s / 1000, zone).strftime("%Y-%m-%dT%H:%M:%S") for s in starts]
        return starts, [s + step for s in starts], labels
    first, last = query.first.date(), query.last.date()
    if query.interval == DAILY:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        spans = [(d, d + timedelta(days=1), d) for d in days]
    elif query.interval == WEEKLY:
        spans = [(max(w, first), min(w + timedelta(days=7), last + timedelta(days=1)), w) for w in _weeks(first, last)]
    else:
        spans = []
        month = first.replace(day=1)
        while month <= last:
            following = (month + timedelta(days=32)).replace(day=1)
            spans.append((max(month, first), min(following, last + timedelta(days=1)), month))
            month = following
    starts = [_day_ms(a, zone) for a, _, _ in spans]
    ends = [_day_ms(b, zone) for _, b, _ in spans]
    return starts, ends, [label.isoformat() for _, _, label in spans]


def response(counts: list[int], collapsed: int, labels: list[str]) -> dict:
    """The segmentation body; with no group-by there is one series labelled 0."""
    return {"data": {"series": [counts], "seriesLabels": [0],
                     "seriesCollapsed": [[{"setId": "", "value": collapsed}]], "xValues": labels}}


def current_week_ms(now_ms: int, zone: ZoneInfo) -> tuple[int, int]:
    """[Monday 00:00, next Monday 00:00) of the current ISO week in the project's zone, epoch ms."""
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    monday = today - timedelta(days=today.weekday())
    return _day_ms(monday, zone), _day_ms(monday + timedelta(days=7), zone)


def events_list(totals: Mapping[str, int]) -> dict:
    """The Events List body; the sandbox has no hidden or deleted events."""
    return {"data": [
        {"value": name, "display": name, "totals": n, "non_active": False, "deleted": False,
         "hidden": False, "flow_hidden": False}
        for name, n in totals.items()
    ]}


def _parse_day(value: str | None, allow_hour: bool, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        if len(value) == 8 and value.isdigit():
            day = datetime.strptime(value, "%Y%m%d")
            # A whole end day includes its last hour.
            return day.replace(hour=23) if end and allow_hour else day
        if allow_hour and len(value) == 11 and value[8] == "T":
            return datetime.strptime(value, "%Y%m%dT%H")
    except ValueError:
        return None
    return None


def _weeks(first: date, last: date) -> list[date]:
    week = first - timedelta(days=first.weekday())
    weeks = []
    while week <= last:
        weeks.append(week)
        week += timedelta(days=7)
    return weeks


def _day_ms(day: date, zone: ZoneInfo) -> int:
    return _to_ms(datetime(day.year, day.month, day.day), zone)


def _to_ms(local: datetime, zone: ZoneInfo) -> int:
    return int(local.replace(tzinfo=zone).timestamp() * 1000)


def _invalid(message: str, details: str | None = None) -> Reply:
    return Reply.dashboard_error(400, "invalid", message, details)
