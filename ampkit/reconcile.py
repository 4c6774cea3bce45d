"""Reconciliation: Looker (the warehouse) vs Amplitude, per day and event type, every gap explained.

The counts come from the engine (small aggregates, never raw rows in pandas): `event_logs` per
local day and name, the staging and sync counts kept as data moved, and what Amplitude's Export
API returned, loaded into the warehouse for `$insert_id` set differences. `compare()` is pure:
it lines the sources up and names each part of every difference:

    looker - amplitude = before_start + not_staged + not_synced + late_beyond_lookback
                         + filtered (per rule) + rejected (per reason) + export_lag
                         - amplitude_only - duplicated - unexplained

Each row gets a status against tolerances, and anomalies are named: a missing hour, a family
that vanished after a data-map change, events in Amplitude the warehouse never sent, an
excluded event leaking in, and a time-zone mismatch with the Amplitude project.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import json
import logging
import statistics
import uuid
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import pyarrow as pa

from ampkit import catalogue, datamap as datamaps, state, warehouse as warehouses
from ampkit.config import Config
from ampkit.errors import AmplitudeError, ConfigError, ReconcileError

logger = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EXPORT_SCHEMA = pa.schema([("recon_id", pa.string()), ("insert_id", pa.string()), ("event_type", pa.string()),
                           ("platform", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
                           ("uploaded_at", pa.timestamp("us", tz="UTC"))])
CAUSES = ("before_start", "not_staged", "not_synced", "late_beyond_lookback", "filtered", "rejected", "export_lag",
          "amplitude_only", "duplicated", "unexplained")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How much unexplained difference a row may have: max(floor, pct x expected), wider when recent."""

    floor: int = 3
    pct: float = 0.005
    recent_factor: float = 4.0
    recent_hours: int = 48
    # A family flooding or vanishing: the guardrail's band and floor (guardrail_band, guardrail_min_events).
    family_factor: float = 3.0
    family_floor: int = 50

    def band(self, expected: int, recent: bool) -> float:
        band = max(self.floor, self.pct * expected)
        return band * self.recent_factor if recent else band


@dataclasses.dataclass
class Row:
    """One (day, event type): what each source counts and why they differ."""

    day: dt.date
    name: str
    looker: int = 0
    staged: int = 0
    accepted: int = 0
    amplitude: int = 0
    before_start: int = 0
    not_staged: int = 0
    not_synced: int = 0
    late_in_lookback: int = 0
    late_beyond_lookback: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    export_lag: int = 0
    amplitude_only: int = 0
    duplicated: int = 0
    unexplained: int = 0
    status: str = "ok"
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def gap(self) -> int:
        return self.looker - self.amplitude

    def causes(self) -> dict[str, int]:
        """The gap split by named cause (positive: in Looker not Amplitude; negative: the reverse)."""
        out = {"before_start": self.before_start, "not_staged": self.not_staged,
               "not_synced": self.not_synced + self.late_in_lookback, "late_beyond_lookback": self.late_beyond_lookback}
        out.update({f"filtered:{k}": v for k, v in self.filtered.items()})
        out.update({f"rejected:{k}": v for k, v in self.rejected.items()})
        out.update({"export_lag": self.export_lag, "amplitude_only": -self.amplitude_only,
                    "duplicated": -self.duplicated, "unexplained": -self.unexplained})
        return {k: v for k, v in out.items() if v}


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """Something a person must look at, named."""

    kind: str
    severity: str          # warn | fail
    message: str
    day: str = ""
    name: str = ""
    count: int = 0


@dataclasses.dataclass
class Reconciliation:
    """The result: rows, anomalies, and a summary status (ok | warn | fail)."""

    start: dt.date
    end: dt.date
    time_zone: str
    rows: list[Row]
    anomalies: list[Anomaly]
    data_map_version: str
    checks: list[str] = dataclasses.field(default_factory=list)
    recent_hours: list[dict] = dataclasses.field(default_factory=list)   # per UTC hour, the last 48 hours
    # Per (day, family): events in Amplitude against the band from the days before (`_families`).
    families: list[dict] = dataclasses.field(default_factory=list)

    @property
    def status(self) -> str:
        levels = [r.status for r in self.rows] + [a.severity for a in self.anomalies]
        return "fail" if "fail" in levels else "warn" if "warn" in levels else "ok"

    @property
    def unexplained_total(self) -> int:
        return sum(abs(r.unexplained) for r in self.rows)

    def totals(self) -> dict[str, Any]:
        keys = ("looker", "staged", "accepted", "amplitude", "before_start", "not_staged", "not_synced",
                "late_beyond_lookback", "export_lag", "amplitude_only", "duplicated", "unexplained")
        out = {k: sum(getattr(r, k) for r in self.rows) for k in keys}
        out["not_synced"] += sum(r.late_in_lookback for r in self.rows)
        out["filtered"] = dict(_sum_dicts(r.filtered for r in self.rows))
        out["rejected"] = dict(_sum_dicts(r.rejected for r in self.rows))
        return out

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "time_zone": self.time_zone, "unexplained_total": self.unexplained_total,
                "anomalies": [dataclasses.asdict(a) for a in self.anomalies], "totals": self.totals(),
                "data_map_version": self.data_map_version, "checks": self.checks}

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = dataclasses.asdict(r)
            d["day"] = r.day.isoformat()
            d["gap"] = r.gap
            d["causes"] = r.causes()
            rows.append(d)
        recent = [{**h, "hour": h["hour"].isoformat()} for h in self.recent_hours]
        families = [{**f, "day": f["day"].isoformat()} for f in self.families]
        return {"summary": self.summary(), "rows": rows, "recent_hours": recent, "families": families}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Reconciliation":
        """The inverse of `to_dict` (a result computed once, rendered elsewhere)."""
        names = {f.name for f in dataclasses.fields(Row)}
        rows = [Row(**{**{k: v for k, v in r.items() if k in names}, "day": dt.date.fromisoformat(r["day"])})
                for r in data["rows"]]
        s = data["summary"]
        recent = [{**h, "hour": dt.datetime.fromisoformat(h["hour"])} for h in data.get("recent_hours", [])]
        families = [{**f, "day": dt.date.fromisoformat(f["day"])} for f in data.get("families", [])]
        return cls(dt.date.fromisoformat(s["start"]), dt.date.fromisoformat(s["end"]), s["time_zone"], rows,
                   [Anomaly(**a) for a in s["anomalies"]], s["data_map_version"], list(s.get("checks", [])), recent,
                   families)

    def frame(self):
        """The rows as a DataFrame, problems first (for the notebook)."""
        import pandas as pd
        order = {"fail": 0, "warn": 1, "ok": 2}
        data = [{"status": r.status, "day": r.day, "event": r.name, "looker": r.looker, "amplitude": r.amplitude,
                 "gap": r.gap, "unexplained": r.unexplained,
                 "explained by": ", ".join(f"{k} {v:+,}" for k, v in r.causes().items() if k != "unexplained"),
                 "notes": "; ".join(r.notes)} for r in self.rows]
        frame = pd.DataFrame(data)
        if frame.empty:
            return frame
        frame["_o"] = frame["status"].map(order)
        return frame.sort_values(["_o", "day", "looker"], ascending=[True, False, False]).drop(columns="_o").reset_index(drop=True)


def _sum_dicts(dicts: Iterable[dict[str, int]]) -> collections.Counter:
    total: collections.Counter = collections.Counter()
    for d in dicts:
        total.update(d)
    return total


# ---------------------------------------------------------------------------------------------
# The pure core

def compare(looker: list[dict], staged: list[dict], outcomes: list[dict], amplitude: list[dict], hourly: list[dict],
            *, start: dt.date, end: dt.date, time_zone: str, now: dt.datetime, data_map: datamaps.DataMap,
            tolerance: Tolerance = Tolerance(), map_versions: list[dict] | None = None,
            segmentation: dict[str, dict[str, int]] | None = None) -> Reconciliation:
    """Line the sources up per (day, name), explain every difference, and name anomalies (pure)."""
    rows: dict[tuple[dt.date, str], Row] = {}

    def row(day, name) -> Row:
        key = (day, name)
        if key not in rows:
            rows[key] = Row(day, name)
        return rows[key]

    for r in looker:
        x = row(r["day"], r["name"])
        x.looker += r["looker"]
        x.before_start += r["before_start"]
    staged_split: dict[tuple, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for r in staged:
        x = row(r["day"], r["name"])
        x.staged += r["staged"]
        s = staged_split[(r["day"], r["name"])]
        s[0] += r["staged"]; s[1] += r["staged_after_mark"]; s[2] += r["staged_before_lookback"]
    done_split: dict[tuple, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for r in outcomes:
        x = row(r["day"], r["name"])
        d = done_split[(r["day"], r["name"])]
        d[0] += r["n"]; d[1] += r["n_after_mark"]; d[2] += r["n_before_lookback"]
        if r["outcome"] == "accepted":
            x.accepted += r["n"]
            x.export_lag += r["n_recent"]
        elif r["outcome"] == "filtered":
            x.filtered[r["reason"]] = x.filtered.get(r["reason"], 0) + r["n"]
        else:
            x.rejected[r["reason"]] = x.rejected.get(r["reason"], 0) + r["n"]
    leaks: dict[tuple, int] = collections.Counter()
    for r in amplitude:
        x = row(r["day"], r["name"])
        x.amplitude += r["amplitude"]
        x.duplicated += r["duplicated"]
        x.amplitude_only += r["amplitude_only"]
        decision = data_map.decide(r["name"] or "", r["platform"])
        if not decision.sends and r["amplitude"]:
            leaks[(r["day"], r["name"], decision.rule)] += r["amplitude"]

    recent_from = (now - dt.timedelta(hours=tolerance.recent_hours)).astimezone(ZoneInfo(time_zone)).date()
    for (day, name), x in rows.items():
        x.not_staged = x.looker - x.before_start - x.staged
        s, d = staged_split[(day, name)], done_split[(day, name)]
        x.not_synced = max(0, s[1] - d[1])
        x.late_beyond_lookback = max(0, s[2] - d[2])
        x.late_in_lookback = max(0, (s[0] - d[0]) - x.not_synced - x.late_beyond_lookback)
        # Accepted events still inside Amplitude's export lag are only counted as lagging if missing.
        present = x.amplitude - x.amplitude_only - x.duplicated
        x.export_lag = min(x.export_lag, max(0, x.accepted - present))
        x.unexplained = present - (x.accepted - x.export_lag)
        band = tolerance.band(x.accepted, day >= recent_from)
        if abs(x.unexplained) > 3 * band:
            x.status = "fail"
        elif abs(x.unexplained) > band:
            x.status = "warn"
        if x.late_beyond_lookback:
            x.notes.append(f"{x.late_beyond_lookback} rows loaded too late for the hourly run: backfill with `ampkit sync --start {day}`")
            x.status = "warn" if x.status == "ok" else x.status
        if x.unexplained:
            x.notes.append(f"{x.unexplained:+} events unexplained")

    anomalies = _anomalies(rows, hourly, leaks, tolerance, data_map, map_versions or [], now)
    family_anomalies, families = _families(rows, hourly, ZoneInfo(time_zone), tolerance, map_versions or [])
    anomalies += family_anomalies
    checks = []
    if segmentation:
        anomaly, note = _time_zone_check(segmentation, hourly, time_zone, start, end, tolerance)
        checks.append(note)
        if anomaly:
            anomalies.append(anomaly)
    ordered = sorted(rows.values(), key=lambda r: (r.day, r.name))
    return Reconciliation(start, end, time_zone, ordered, anomalies, data_map.version, checks,
                          _recent_hours(hourly, now, tolerance.recent_hours), families)


def _recent_hours(hourly: list[dict], now: dt.datetime, hours: int) -> list[dict]:
    """Accepted vs in-Amplitude per UTC hour over the last `hours` hours (pure)."""
    since = now - dt.timedelta(hours=hours)
    per_hour: dict = collections.defaultdict(lambda: {"accepted": 0, "accepted_recent": 0, "amplitude": 0})
    for h in hourly:
        if h["hour"] >= since:
            v = per_hour[h["hour"]]
            for key in v:
                v[key] += h[key]
    return [{"hour": hour, **v} for hour, v in sorted(per_hour.items())]


def _anomalies(rows, hourly, leaks, tolerance: Tolerance, data_map, map_versions, now) -> list[Anomaly]:
    out: list[Anomaly] = []
    # A missing hour: the sync had Amplitude accept events of that hour, Amplitude shows (almost) none.
    per_hour = collections.defaultdict(lambda: [0, 0, 0])
    for h in hourly:
        v = per_hour[h["hour"]]
        v[0] += h["accepted"]; v[1] += h["accepted_recent"]; v[2] += h["amplitude"]
    for hour, (accepted, recent, amplitude) in sorted(per_hour.items()):
        expected = accepted - recent
        if expected >= max(10, tolerance.floor) and amplitude < 0.5 * expected:
            out.append(Anomaly("missing_hour", "fail", f"hour {hour:%Y-%m-%d %H}:00 UTC: Amplitude has {amplitude:,} of {expected:,} accepted events",
                               day=f"{hour:%Y-%m-%d %H}:00", count=expected - amplitude))
    # In Amplitude but never sent by the sync (double sends with fresh insert_ids, another source).
    for (day, name), x in sorted(rows.items()):
        band = tolerance.band(x.accepted, False)
        if x.amplitude_only > band:
            out.append(Anomaly("amplitude_only", "fail", f"{x.amplitude_only:,} '{name}' events on {day} are in Amplitude with insert_ids the warehouse never sent (a double send or a foreign source)",
                               str(day), name, x.amplitude_only))
        if x.duplicated > band:
            out.append(Anomaly("duplicated", "fail", f"{x.duplicated:,} '{name}' events on {day} are in Amplitude more than once with the same insert_id",
                               str(day), name, x.duplicated))
    for (day, name, rule), n in sorted(leaks.items()):
        out.append(Anomaly("excluded_in_amplitude", "fail", f"{n:,} '{name}' events on {day} reached Amplitude although the data map excludes them (rule {rule})",
                           str(day), name, n))
    # A family that vanished: sent on earlier days, then filtered by a rule (a data-map change).
    by_name = collections.defaultdict(list)
    for (day, name), x in rows.items():
        by_name[name].append(x)
    for name, days in sorted(by_name.items()):
        days.sort(key=lambda r: r.day)
        sent_days = [r.day for r in days if r.accepted > 0]
        if not sent_days:
            continue
        for r in days:
            if r.day > sent_days[0] and r.accepted == 0 and r.filtered and r.looker > tolerance.floor:
                rule = max(r.filtered, key=r.filtered.get)
                change = _version_note(map_versions, r.day)
                out.append(Anomaly("event_vanished", "fail",
                                   f"'{name}' was sent until {max(d for d in sent_days if d < r.day)} and from {r.day} is filtered by rule '{rule}'{change}: check the data map",
                                   str(r.day), name, r.filtered[rule]))
                break
    return out


def _families(rows, hourly, zone: ZoneInfo, tolerance: Tolerance, map_versions: list[dict]) -> tuple[list[Anomaly], list[dict]]:
    """Event families (the catalogue's areas) that vanished from Amplitude or flooded it, and each
    family's days against its band, for the report's chart (pure).

    Amplitude's own hourly counts (or what was accepted, for hours still inside its export lag) are
    compared per family with the same hours of the earlier days in range: the median of each hour of
    the day over the earlier days that have data at that hour, so a partial day or a quiet night is
    weighed against its own hours. Only hours in which some event reached Amplitude count, so a
    pause of the whole pipeline is the freshness check's, not a vanished family. A family vanished
    when it stays under 1/factor of that for the rest of the range, and flooded over factor times.
    """
    sent: collections.Counter = collections.Counter()
    active: set[dt.datetime] = set()
    for h in hourly:
        n = max(h["amplitude"], h["accepted_recent"])
        if n > 0:
            sent[(catalogue.family(h["name"] or ""), h["hour"])] += n
            active.add(h["hour"])
    days: dict[dt.date, list[dt.datetime]] = collections.defaultdict(list)
    for hour in active:
        days[hour.astimezone(zone).date()].append(hour)
    looker: collections.Counter = collections.Counter()
    filtered: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for (day, name), x in rows.items():
        looker[(catalogue.family(name or ""), day)] += x.looker
        filtered[(catalogue.family(name or ""), day)].update(x.filtered)
    ordered = sorted(days)
    out, series = [], []
    for family in sorted({f for f, _ in sent}):
        judged = []  # (day, expected, seen)
        per_hour: dict[dt.datetime, float] = {}
        for k, day in enumerate(ordered):
            expected = 0.0
            for hour in days[day]:
                earlier = [hour - (day - d) for d in ordered[:k]]
                history = [sent[(family, h)] for h in earlier if h in active]
                if history:
                    per_hour[hour] = statistics.median(history)
                    expected += per_hour[hour]
            seen = sum(sent[(family, h)] for h in days[day])
            if k:
                judged.append((day, expected, seen))
            series.append({"day": day, "family": family, "seen": seen, "expected": expected if k else None,
                           "low": expected / tolerance.family_factor if k else None,
                           "high": expected * tolerance.family_factor if k else None})
        factor, floor = tolerance.family_factor, tolerance.family_floor
        low = [i for i, (_, e, n) in enumerate(judged) if e >= floor and n < e / factor]
        first = next((i for i in low if all(j in low or judged[j][1] < floor for j in range(i, len(judged)))), None)
        if first is not None:
            day, expected, seen = judged[first]
            # When it started: the hour after the last one, up to that day's end, still in its band.
            day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
            hours = sorted(h for h in active if h < day_end)
            fine = [h for h in hours if per_hour.get(h) and sent[(family, h)] >= per_hour[h] / factor]
            start = next((h for h in hours if h > fine[-1]), hours[-1]) if fine else hours[0]
            rules = filtered[(family, day)]
            cause = (f"kept out by rule '{rules.most_common(1)[0][0]}' ({sum(rules.values()):,} events filtered that day)"
                     if rules and sum(rules.values()) >= expected / factor else
                     f"the warehouse has {looker[(family, day)]:,} of its events that day: an upstream drop")
            since = start.astimezone(zone)
            out.append(Anomaly("family_vanished", "fail",
                               f"family '{family}' vanished from Amplitude from {since:%Y-%m-%d %H}:00 ({zone.key}): on {day}, "
                               f"{seen:,} events against {expected:,.0f} expected from the days before; {cause}"
                               f"{_in_force(map_versions, since.date(), zone)}",
                               str(since.date()), family, int(expected - seen)))
        flood = next(((d, e, n) for d, e, n in judged if n > e * factor and n >= floor), None)
        if flood is not None:
            day, expected, seen = flood
            out.append(Anomaly("family_flood", "fail",
                               f"family '{family}' flooded Amplitude on {day}: {seen:,} events against {expected:,.0f} expected "
                               f"from the days before{_in_force(map_versions, day, zone)}: check the data map and the source",
                               str(day), family, int(seen - expected)))
    return out, series


def _in_force(map_versions: list[dict], day: dt.date, zone: ZoneInfo) -> str:
    """', data map version V in force (since T)' for the end of `day`, from the runs that used it."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
    used = [v for v in map_versions if v["first_used"] and _aware(v["first_used"]) < end]
    if not used:
        return ""
    v = max(used, key=lambda v: _aware(v["first_used"]))
    return f"; data map version {v['data_map_version']} in force (since {_aware(v['first_used']):%Y-%m-%d %H:%M} UTC)"


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


def _version_note(map_versions: list[dict], day: dt.date) -> str:
    if len(map_versions) < 2:
        return ""
    latest = map_versions[-1]
    return f" (data map version {latest['data_map_version']} in use since {latest['first_used']:%Y-%m-%d %H:%M} UTC)"


def _time_zone_check(segmentation, hourly, time_zone, start, end, tolerance) -> tuple[Anomaly | None, str]:
    """Compare Amplitude's own daily totals (bucketed in the project's zone) with ours, per offset."""
    per_hour = collections.defaultdict(collections.Counter)
    for h in hourly:
        per_hour[h["name"]][h["hour"]] += h["amplitude"]
    zone = ZoneInfo(time_zone)
    def daily(name, offset_hours=None):
        out = collections.Counter()
        for hour, n in per_hour[name].items():
            local = hour + dt.timedelta(hours=offset_hours) if offset_hours is not None else hour.astimezone(zone)
            out[local.date().isoformat()] += n
        return out
    def distance(series, ours):
        days = [d for d in series if start.isoformat() <= d <= end.isoformat()]
        return sum(abs(series[d] - ours.get(d, 0)) for d in days), sum(series[d] for d in days)
    total_ours = total_best = total = 0
    votes = collections.Counter()
    for name, series in segmentation.items():
        ours, size = distance(series, daily(name))
        total_ours += ours
        total += size
        best = min(range(-12, 15), key=lambda o: distance(series, daily(name, o))[0])
        total_best += distance(series, daily(name, best))[0]
        votes[best] += 1
    note = f"segmentation cross-check on {len(segmentation)} event types: {total_ours:,} of {total:,} events off by day"
    if total and total_ours > max(tolerance.floor, tolerance.pct * total) and total_best < total_ours / 2:
        offset = votes.most_common(1)[0][0]
        return Anomaly("time_zone_mismatch", "fail",
                       f"Amplitude's daily totals match UTC{offset:+d} better than this report's time zone {time_zone}: "
                       f"set time_zone to the Amplitude project's zone", count=total_ours), note
    return None, note


# ---------------------------------------------------------------------------------------------
# The I/O edge

def date_range(config: Config, start: str | None, end: str | None, days: int = 7) -> tuple[dt.date, dt.date]:
    """Local days [start, end] from ISO strings; defaults: the last `days` days up to the clock's day."""
    try:
        last = dt.date.fromisoformat(end) if end else config.clock().astimezone(config.zone).date()
        first = dt.date.fromisoformat(start) if start else last - dt.timedelta(days=days - 1)
    except ValueError:
        raise ConfigError(f"start and end must be days like 2022-03-14, got {start!r} and {end!r}") from None
    if last < first:
        raise ReconcileError(f"end {last} is before start {first}")
    return first, last


def run(config: Config, start: dt.date, end: dt.date, *, tolerance: Tolerance = Tolerance(),
        row_level: bool = True, segmentation_events: int = 3, warehouse=None, dashboard=None) -> Reconciliation:
    """Gather every source for local days [start, end] and compare them (I/O)."""
    if end < start:
        raise ReconcileError(f"end {end} is before start {start}")
    from ampkit.dashboard import Dashboard
    # A family flooding or vanishing is judged with the guardrail's band, so the two agree.
    tolerance = dataclasses.replace(tolerance, family_factor=config.guardrail_band, family_floor=config.guardrail_min_events)
    zone = config.zone
    now = config.clock()
    start_ts = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.timezone.utc)
    end_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
    data_map = datamaps.load(config.data_map or None)
    own = warehouse is None
    wh = warehouse or warehouses.open(config.warehouse, location=config.bigquery_location)
    amp = dashboard or Dashboard(config)
    try:
        wh.check_table("event_logs")
        wh.check_table("amplitude_events")
        wh.ensure_state()
        mark = state.watermark(wh) or EPOCH
        lookback_start = mark - dt.timedelta(hours=config.lookback_hours)
        recon_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        if row_level:
            _load_export(wh, amp, recon_id, start_ts, dt.datetime.now(dt.timezone.utc))
        params = {"tz": config.time_zone, "start_ts": start_ts, "end_ts": end_ts, "watermark": mark,
                  "lookback_start": lookback_start, "recon_id": recon_id,
                  "start_time": dt.datetime.combine(config.amplitude_start_date, dt.time(), dt.timezone.utc),
                  "lag_cutoff": now - dt.timedelta(seconds=config.export_lag_seconds)}
        looker = _rows(wh.run("recon_looker", params))
        staged = _rows(wh.run("recon_staged", params))
        outcomes = _rows(wh.run("recon_outcomes", params))
        amplitude = _rows(wh.run("recon_amplitude", params)) if row_level else []
        hourly = _rows(wh.run("recon_hourly", params)) if row_level else []
        versions = wh.run("recon_map_versions").to_pylist()
        wh.run("recon_clear", {"recon_id": recon_id})
        segmentation = _segmentation(amp, outcomes, start, end, segmentation_events)
    finally:
        if own:
            wh.close()
        if dashboard is None:
            amp.close()
    return compare(looker, staged, outcomes, amplitude, hourly, start=start, end=end, time_zone=config.time_zone,
                   now=now, data_map=data_map, tolerance=tolerance, map_versions=versions, segmentation=segmentation)


def save(result: Reconciliation, path: str | Path) -> None:
    """Write a result as JSON, for a report to render without computing it again (I/O)."""
    Path(path).write_text(json.dumps(result.to_dict(), default=str), encoding="utf-8")


def run_or_load(config: Config, start: dt.date, end: dt.date, *, tolerance: Tolerance = Tolerance(),
                saved: str = "") -> Reconciliation:
    """The result saved at `saved` by the command that computed it (`ampkit reconcile --html`),
    else a new reconciliation (I/O)."""
    if saved:
        return Reconciliation.from_dict(json.loads(Path(saved).read_text(encoding="utf-8")))
    return run(config, start, end, tolerance=tolerance)


def _rows(table: pa.Table) -> list[dict]:
    # SUM() comes back as DECIMAL on some engines; counts are whole numbers.
    rows = table.to_pylist()
    for row in rows:
        for key, value in row.items():
            if isinstance(value, decimal.Decimal):
                row[key] = int(value)
    return rows


def _load_export(wh, amp, recon_id: str, start_ts: dt.datetime, until: dt.datetime) -> int:
    """Stream Amplitude's export of every upload hour since `start_ts` into the warehouse (I/O)."""
    batch: list[dict] = []
    total = 0
    first = start_ts.replace(minute=0, second=0, microsecond=0)
    for event in amp.export(first, until):
        batch.append({"recon_id": recon_id, "insert_id": event.get("$insert_id"), "event_type": event.get("event_type"),
                      "platform": event.get("platform"), "event_time": _export_time(event.get("event_time")),
                      "uploaded_at": _export_time(event.get("server_upload_time"))})
        if len(batch) >= 100_000:
            wh.append("ampkit_amplitude_export", pa.Table.from_pylist(batch, schema=EXPORT_SCHEMA))
            total += len(batch)
            batch = []
    if batch:
        wh.append("ampkit_amplitude_export", pa.Table.from_pylist(batch, schema=EXPORT_SCHEMA))
        total += len(batch)
    logger.info("export loaded rows=%d", total)
    return total


def _export_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=dt.timezone.utc)


def _segmentation(amp, outcomes: list[dict], start: dt.date, end: dt.date, top: int) -> dict[str, dict[str, int]]:
    """Amplitude's own daily totals for the `top` busiest accepted event types (a cross-check within its cost limits)."""
    if top <= 0:
        return {}
    volume = collections.Counter()
    for r in outcomes:
        if r["outcome"] == "accepted":
            volume[r["name"]] += r["n"]
    out = {}
    for name, _ in volume.most_common(top):
        try:
            out[name] = amp.segmentation(name, start, end)
        except AmplitudeError as exc:
            logger.warning("segmentation cross-check skipped for %s: %s", name, exc)
    return out
