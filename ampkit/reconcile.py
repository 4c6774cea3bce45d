"""Reconciliation: Looker (the warehouse) vs Amplitude, per day and event type, every gap explained.

The counts come from the engine (small aggregates, never raw rows in pandas): `event_logs` per
local day and name, the staging and sync counts kept as data moved, and what Amplitude's Export
API returned, loaded into the warehouse for `$insert_id` set differences. `compare()` is pure:
it lines the sources up and names each part of every difference:

    looker - amplitude = before_start + not_staged + not_synced + planner_gap + late_beyond_lookback
                         + filtered (per rule) + rejected (per reason) + export_lag
                         - amplitude_only - duplicated - unexplained

Each row gets a status against tolerances, and anomalies are named, one per cause, each with
what to do (docs/RECONCILIATION.md): a missing hour, a hole in Amplitude's export, a family that
vanished or flooded, events in Amplitude the warehouse never sent, an excluded event leaking in,
rows the planner skipped, rows loaded too late for the lookback, and a time-zone mismatch with
the Amplitude project.
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
from ampkit.dashboard import export_time
from ampkit.errors import AmplitudeError, ConfigError, ReconcileError

logger = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EXPORT_SCHEMA = pa.schema([("recon_id", pa.string()), ("insert_id", pa.string()), ("event_type", pa.string()),
                           ("platform", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
                           ("uploaded_at", pa.timestamp("us", tz="UTC"))])
CAUSES = ("before_start", "not_staged", "not_synced", "planner_gap", "late_beyond_lookback", "filtered", "rejected",
          "export_lag", "amplitude_only", "duplicated", "unexplained")
# The time-zone cross-check tries every offset from UTC-12:00 to UTC+14:00 in quarter hours.
QUARTER = dt.timedelta(minutes=15)
OFFSETS = range(-48, 57)
HOURLY_DAYS = 7  # the Dashboard's hourly segmentation covers at most 7 days
HOURLY_INTERVAL = -3600000


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
    planner_gap: int = 0
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
               "not_synced": self.not_synced + self.late_in_lookback, "planner_gap": self.planner_gap,
               "late_beyond_lookback": self.late_beyond_lookback}
        out.update({f"filtered:{k}": v for k, v in self.filtered.items()})
        out.update({f"rejected:{k}": v for k, v in self.rejected.items()})
        out.update({"export_lag": self.export_lag, "amplitude_only": -self.amplitude_only,
                    "duplicated": -self.duplicated, "unexplained": -self.unexplained})
        return {k: v for k, v in out.items() if v}


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """Something a person must look at, named, with what to do about it."""

    kind: str
    severity: str          # warn | fail
    message: str
    day: str = ""
    name: str = ""
    count: int = 0
    action: str = ""


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
        keys = ("looker", "staged", "accepted", "amplitude", "before_start", "not_staged", "not_synced", "planner_gap",
                "late_beyond_lookback", "export_lag", "amplitude_only", "duplicated", "unexplained")
        out = {k: sum(getattr(r, k) for r in self.rows) for k in keys}
        out["not_synced"] += sum(r.late_in_lookback for r in self.rows)
        out["filtered"] = dict(_sum_dicts(r.filtered for r in self.rows))
        out["rejected"] = dict(_sum_dicts(r.rejected for r in self.rows))
        return out

    def headline(self) -> dict[str, Any]:
        """The verdict in a few numbers (a report's index line)."""
        t = self.totals()
        return {"looker": t["looker"], "amplitude": t["amplitude"], "unexplained": self.unexplained_total,
                "anomalies": len(self.anomalies), "verdict": self.status}

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
            segmentation: dict[str, dict[str, int]] | None = None, quarters: list[dict] | None = None,
            holes: list[tuple[dt.datetime, dt.datetime]] | None = None,
            segmentation_hours: dict[str, dict[str, int]] | None = None,
            export_ready: dt.datetime | None = None) -> Reconciliation:
    """Line the sources up per (day, name), explain every difference, and name anomalies (pure).

    `segmentation` is Amplitude's Dashboard daily totals for a few event types, `segmentation_hours`
    its hourly totals of the same, `quarters` its export's counts of them per 15 minutes, `holes`
    the loaded_at ranges no run covered."""
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
    # Per (day, name): all, loaded after the watermark, before the lookback, in a hole of the
    # ledger, and in a hole before the lookback; staged, and decided by a run.
    split = ("staged", "staged_after_mark", "staged_before_lookback", "staged_in_gap", "staged_in_gap_before_lookback")
    staged_split: dict[tuple, list[int]] = collections.defaultdict(lambda: [0] * 5)
    for r in staged:
        x = row(r["day"], r["name"])
        x.staged += r["staged"]
        s = staged_split[(r["day"], r["name"])]
        for i, key in enumerate(split):
            s[i] += r.get(key) or 0
    done_split: dict[tuple, list[int]] = collections.defaultdict(lambda: [0] * 5)
    for r in outcomes:
        x = row(r["day"], r["name"])
        d = done_split[(r["day"], r["name"])]
        for i, key in enumerate(("n", "n_after_mark", "n_before_lookback", "n_in_gap", "n_in_gap_before_lookback")):
            d[i] += r.get(key) or 0
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
        # A leak is an excluded event ampkit never sent: what ampkit itself sent under an earlier
        # map (its insert_ids are in the ledger) is history, not a leak.
        decision = data_map.decide(r["name"] or "", r["platform"])
        if not decision.sends and r["amplitude_only"]:
            leaks[(r["day"], r["name"], decision.rule)] += r["amplitude_only"]

    recent_from = (now - dt.timedelta(hours=tolerance.recent_hours)).astimezone(ZoneInfo(time_zone)).date()
    for (day, name), x in rows.items():
        x.not_staged = x.looker - x.before_start - x.staged
        s, d = staged_split[(day, name)], done_split[(day, name)]
        x.not_synced = max(0, s[1] - d[1])
        # Below the watermark, beyond the lookback (no run will come back for them) and never
        # decided: in a hole of the ledger (no run's window covered its load time: the planner's
        # fault), else loaded after a run had passed it (late). Inside the lookback, the next run
        # takes either.
        x.planner_gap = max(0, s[4] - d[4])
        x.late_beyond_lookback = max(0, s[2] - d[2] - x.planner_gap)
        x.late_in_lookback = max(0, (s[0] - d[0]) - x.not_synced - x.planner_gap - x.late_beyond_lookback)
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
            x.notes.append(f"{x.late_beyond_lookback} rows loaded too late for the hourly run: backfill with {_backfill(day, day, time_zone)}")
            x.status = "warn" if x.status == "ok" else x.status
        if x.planner_gap:
            x.notes.append(f"{x.planner_gap} staged rows no run's window covered: backfill with {_backfill(day, day, time_zone)}")
            x.status = "fail"
        if x.unexplained:
            x.notes.append(f"{x.unexplained:+} events unexplained")

    zone = ZoneInfo(time_zone)
    anomalies = _anomalies(rows, hourly, leaks, tolerance, data_map, map_versions or [], segmentation or {}, zone)
    anomalies += _unsynced(rows, holes or [], zone)
    family_anomalies, families = _families(rows, hourly, zone, tolerance, map_versions or [])
    # One anomaly per cause: an event of a family that vanished is named by the family's.
    vanished = {a.name for a in family_anomalies if a.kind == "family_vanished"}
    anomalies = [a for a in anomalies if not (a.kind == "event_vanished" and catalogue.family(a.name) in vanished)]
    anomalies += family_anomalies
    checks = []
    if segmentation_hours:
        anomaly, note = _time_zone_check(segmentation_hours, quarters or [], time_zone, start, end, tolerance,
                                         export_ready or now)
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


def _anomalies(rows, hourly, leaks, tolerance: Tolerance, data_map, map_versions, segmentation, zone: ZoneInfo) -> list[Anomaly]:
    out: list[Anomaly] = []
    # A missing hour: the sync had Amplitude accept events of that hour, Amplitude's export shows
    # (almost) none. When Amplitude's own Dashboard counts them all the same, the data is there and
    # the export has a hole: an export gap, not a loss.
    per_hour = collections.defaultdict(lambda: [0, 0, 0])
    for h in hourly:
        v = per_hour[h["hour"]]
        v[0] += h["accepted"]; v[1] += h["accepted_recent"]; v[2] += h["amplitude"]
    for hour, (accepted, recent, amplitude) in sorted(per_hour.items()):
        expected = accepted - recent
        if expected >= max(10, tolerance.floor) and amplitude < 0.5 * expected:
            label = f"{hour:%Y-%m-%d %H}:00"
            if _in_dashboard(hour, hourly, segmentation, zone):
                out.append(Anomaly("export_gap", "warn",
                                   f"hour {label} UTC: Amplitude's export has {amplitude:,} of {expected:,} accepted events, "
                                   "but its Dashboard counts them: the events are in Amplitude, its export lacks them",
                                   day=label, count=expected - amplitude,
                                   action="nothing to resend; reconcile again later (Amplitude refills late export hours), "
                                          "and if the hour stays empty, report it to Amplitude support with the hour"))
            else:
                out.append(Anomaly("missing_hour", "fail", f"hour {label} UTC: Amplitude has {amplitude:,} of {expected:,} accepted events",
                                   day=label, count=expected - amplitude,
                                   action="Amplitude acknowledged these events and does not hold them: look for a deletion "
                                          "or a project change in Amplitude, then report the hour to Amplitude support; "
                                          "ampkit_deliveries lists the events and the run that sent them"))
    # In Amplitude but never sent by the sync (double sends with fresh insert_ids, another source).
    # Events the data map excludes are named once, as a leak, below: not counted here again.
    leaked = collections.Counter()
    for (day, name, _), n in leaks.items():
        leaked[(day, name)] += n
    for (day, name), x in sorted(rows.items()):
        band = tolerance.band(x.accepted, False)
        foreign = x.amplitude_only - leaked[(day, name)]
        if foreign > band:
            out.append(Anomaly("amplitude_only", "fail", f"{foreign:,} '{name}' events on {day} are in Amplitude with insert_ids the warehouse never sent (a double send or a foreign source)",
                               str(day), name, foreign,
                               action="find who else sends to this project (another job, an SDK in the product); "
                                      "Amplitude cannot delete single events: note the day in analyses"))
        if x.duplicated > band:
            out.append(Anomaly("duplicated", "fail", f"{x.duplicated:,} '{name}' events on {day} are in Amplitude more than once with the same insert_id",
                               str(day), name, x.duplicated,
                               action="sent after Amplitude's 7-day insert_id dedup window: check for a resend with --force"))
    for (day, name, rule), n in sorted(leaks.items()):
        out.append(Anomaly("excluded_in_amplitude", "fail", f"{n:,} '{name}' events on {day} reached Amplitude although the data map excludes them (rule {rule})",
                           str(day), name, n,
                           action=f"find the sender: ampkit keeps them out (rule '{rule}'); another source sends them"))
    # An event that vanished: sent on earlier days, then filtered by a rule (a data-map change).
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
                                   str(r.day), name, r.filtered[rule],
                                   action=f"if rule '{rule}' should not apply, fix the data map and backfill from {r.day}"))
                break
    return out


def _in_dashboard(hour: dt.datetime, hourly, segmentation, zone: ZoneInfo) -> bool:
    """Whether Amplitude's Dashboard totals for the hour's local day hold what its export lacks in
    that hour, for the event types the cross-check asked about (pure)."""
    day = hour.astimezone(zone).date().isoformat()
    names = [n for n in segmentation if day in segmentation[n]]
    lacking = sum(h["accepted"] - h["accepted_recent"] - h["amplitude"] for h in hourly
                  if h["hour"] == hour and h["name"] in names)
    if lacking < 5:
        return False  # the cross-check's event types are not among those missing: cannot tell
    of_day = [h for h in hourly if h["name"] in names and h["hour"].astimezone(zone).date().isoformat() == day]
    exported = sum(h["amplitude"] for h in of_day)
    # The Dashboard counts too what is still inside the export lag: that is not the hole's.
    in_lag = sum(h["accepted_recent"] for h in of_day)
    counted = sum(segmentation[n][day] for n in names)
    return counted - exported - in_lag >= 0.8 * lacking


def _unsynced(rows, holes: list[tuple[dt.datetime, dt.datetime]], zone: ZoneInfo) -> list[Anomaly]:
    """Staged rows the sync never decided: in a hole of the ledger (the planner's fault), or loaded
    after the runs had passed their load time, beyond the lookback (late data) (pure)."""
    out = []
    gap_days = sorted(d for d in {day for (day, _), x in rows.items() if x.planner_gap})
    if gap_days:
        n = sum(x.planner_gap for x in rows.values())
        windows = ", ".join(f"{a:%Y-%m-%d %H:%M}..{b:%Y-%m-%d %H:%M}" for a, b in holes) or "unknown"
        out.append(Anomaly("planner_gap", "fail",
                           f"{n:,} staged events were never extracted: their load time falls in a hole of the ledger "
                           f"(loaded_at {windows} UTC), which no run's window covered though the watermark passed it. "
                           "Not late data: the sync skipped them",
                           str(gap_days[0]), count=n,
                           action=f"backfill them: {_backfill(gap_days[0], gap_days[-1], zone.key)}; and report the hole "
                                  "(ampkit runs shows the windows on either side)"))
    for day in sorted({day for (day, _), x in rows.items() if x.late_beyond_lookback}):
        n = sum(x.late_beyond_lookback for (d, _), x in rows.items() if d == day)
        out.append(Anomaly("late_beyond_lookback", "warn",
                           f"{n:,} events of {day} were loaded after the runs had passed their load time, beyond the "
                           "lookback: no scheduled run will send them",
                           str(day), count=n, action=f"backfill the day: {_backfill(day, day, zone.key)}"))
    return out


def _backfill(first: dt.date, last: dt.date, time_zone: str) -> str:
    """The command that backfills local days [first, last] (their event time, in UTC)."""
    zone = ZoneInfo(time_zone)
    a = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.timezone.utc)
    b = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
    return f"`ampkit sync --start {a:%Y-%m-%dT%H:%M}Z --end {b:%Y-%m-%dT%H:%M}Z`"


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
        judged = []  # (day, expected, seen in the hours that have history)
        per_hour: dict[dt.datetime, float] = {}
        for k, day in enumerate(ordered):
            expected = compared = 0.0
            for hour in days[day]:
                earlier = [hour - (day - d) for d in ordered[:k]]
                history = [sent[(family, h)] for h in earlier if h in active]
                if history:
                    per_hour[hour] = statistics.median(history)
                    expected += per_hour[hour]
                    # Only hours with history are weighed: a day the range cuts (or a UTC hour
                    # that a half-hour zone splits across two days) has fewer to compare.
                    compared += sent[(family, hour)]
            seen = sum(sent[(family, h)] for h in days[day])
            if k:
                judged.append((day, expected, compared))
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
                               str(since.date()), family, int(expected - seen),
                               action=(f"if rule '{rules.most_common(1)[0][0]}' should not keep it out, fix the data map and "
                                       f"backfill from {since.date()}" if rules and sum(rules.values()) >= expected / factor else
                                       "look upstream: the product's logging or the event_logs load stopped writing these events")))
        flood = next(((d, e, n) for d, e, n in judged if n > e * factor and n >= floor), None)
        if flood is not None:
            day, expected, seen = flood
            out.append(Anomaly("family_flood", "fail",
                               f"family '{family}' flooded Amplitude on {day}: {seen:,} events against {expected:,.0f} expected "
                               f"from the days before{_in_force(map_versions, day, zone)}: check the data map and the source",
                               str(day), family, int(seen - expected),
                               action="check the data map (a rule that now sends the family) and the source (a logging loop)"))
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


def _time_zone_check(hours, quarters, time_zone, start, end, tolerance,
                     export_ready: dt.datetime | None = None) -> tuple[Anomaly | None, str]:
    """Amplitude's Dashboard hourly totals (labelled in the project's zone) against its export's
    events per 15 minutes, bucketed into local hours in the configured zone and at every offset from
    UTC-12:00 to UTC+14:00 in quarter hours (pure). Both are Amplitude's exact counts, so the right
    offset matches hour by hour; only the whole days inside the range are compared (the first and
    last are cut by the range), at most the last seven (the Dashboard's hourly limit). The offset
    that fits best is found per day, so a daylight-saving change shows as two, and the IANA zones
    that have it are named. A day that may reach into Amplitude's export lag in some zone (it ends
    after `export_ready`, at UTC-12:00) is left out: the export lacks its last hours yet."""
    zone = ZoneInfo(time_zone)
    days = check_days(start, end, export_ready)
    if not days:
        return None, ("time-zone cross-check: no whole day inside the range and out of Amplitude's export lag to "
                      "compare (the first and last days are cut by the range): widen it")
    names = sorted(n for n in hours if any(q["name"] == n for q in quarters))
    seg: dict[str, collections.Counter] = {}
    for n in names:
        seg[n] = collections.Counter()
        for label, c in hours[n].items():  # a repeated label (the hour a clock falls back) adds up
            seg[n][label[:13].replace(" ", "T")] += c
    counts = [(q["bucket"], q["name"], q["amplitude"]) for q in quarters if q["name"] in seg]
    wanted = {d.isoformat() for d in days}

    def local_hours(local) -> collections.Counter:
        out: collections.Counter = collections.Counter()
        for bucket, name, n in counts:
            key = local(bucket).strftime("%Y-%m-%dT%H")
            if key[:10] in wanted:
                out[(name, key)] += n
        return out

    def distance(ours: collections.Counter) -> dict[str, int]:
        per_day: collections.Counter = collections.Counter()
        for name in names:
            for key in set(k for (n, k) in ours if n == name) | {k for k in seg[name] if k[:10] in wanted}:
                per_day[key[:10]] += abs(seg[name].get(key, 0) - ours.get((name, key), 0))
        return per_day

    total = sum(c for n in names for k, c in seg[n].items() if k[:10] in wanted)
    configured = sum(distance(local_hours(lambda b: b.astimezone(zone))).values())
    scored = {o: distance(local_hours(lambda b, o=o: b + o * QUARTER)) for o in OFFSETS}
    best = {d: min((scored[o].get(d.isoformat(), 0), abs(o), o) for o in OFFSETS) for d in days}
    best = {d: (o, score) for d, (score, _, o) in best.items()}
    fitted = sum(score for _, score in best.values())
    note = (f"time-zone cross-check on {len(names)} event types over {len(days)} whole days, hour by hour: "
            f"{configured:,} of {total:,} events off in {time_zone}")
    if total and configured > max(tolerance.floor, tolerance.pct * total) and fitted < configured / 2:
        offsets = list(dict.fromkeys(o for d, (o, _) in sorted(best.items())))
        spans = ", ".join(_offset(o) + (f" from {min(d for d in days if best[d][0] == o)}" if len(offsets) > 1 else "")
                          for o in offsets)
        zones = _zones_with(best)
        return Anomaly("time_zone_mismatch", "fail",
                       f"Amplitude's hourly totals fit {spans}{' (' + ', '.join(zones) + ')' if zones else ''} and not this "
                       f"report's time zone {time_zone} ({configured:,} of {total:,} events off; {fitted:,} at the fitted offset)",
                       count=configured,
                       action=f"set time_zone to the Amplitude project's zone{' (' + zones[0] + '?)' if zones else ''}: "
                              "Amplitude's charts count days in it"), note
    return None, note


def _offset(quarters: int) -> str:
    sign = "+" if quarters >= 0 else "-"
    minutes = abs(quarters) * 15
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _zones_with(best: dict[dt.date, tuple[int, int]], limit: int = 3) -> list[str]:
    """IANA zones whose offset on each day (at local noon) is the day's fitted offset (pure)."""
    import zoneinfo
    found = []
    for name in sorted(zoneinfo.available_timezones()):
        if "/" not in name or name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/")):
            continue
        z = ZoneInfo(name)
        if all(dt.datetime.combine(d, dt.time(12), z).utcoffset() == o * QUARTER for d, (o, _) in best.items()):
            found.append(name)
    # The best-known first: a zone named after a country's main city tends to be the shortest to read.
    return sorted(found, key=lambda n: (n.count("/"), len(n)))[:limit]


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
        # A week before the range: a hole that began before it is still seen as one.
        windows = wh.run("recon_windows", {"since": start_ts - dt.timedelta(days=7)}).to_pylist()
        gaps = holes(windows, mark)
        params.update({"gap_starts": [a for a, _ in gaps], "gap_ends": [b for _, b in gaps]})
        looker = _rows(wh.run("recon_looker", params))
        staged = _rows(wh.run("recon_staged", params))
        outcomes = _rows(wh.run("recon_outcomes", params))
        amplitude = _rows(wh.run("recon_amplitude", params)) if row_level else []
        hourly = _rows(wh.run("recon_hourly", params)) if row_level else []
        versions = wh.run("recon_map_versions").to_pylist()
        segmentation = _segmentation(amp, outcomes, start, end, segmentation_events)
        quarters = _rows(wh.run("recon_quarters", {**params, "names": sorted(segmentation)})) if row_level and segmentation else []
        ready = now - dt.timedelta(seconds=config.export_lag_seconds)
        by_hour = _segmentation_hours(amp, sorted(segmentation), check_days(start, end, ready)) if quarters else {}
        wh.run("recon_clear", {"recon_id": recon_id})
    finally:
        if own:
            wh.close()
        if dashboard is None:
            amp.close()
    return compare(looker, staged, outcomes, amplitude, hourly, start=start, end=end, time_zone=config.time_zone,
                   now=now, data_map=data_map, tolerance=tolerance, map_versions=versions, segmentation=segmentation,
                   quarters=quarters, holes=gaps, segmentation_hours=by_hour,
                   export_ready=ready)


def holes(windows: list[dict], watermark: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The loaded_at ranges (start, end] below the watermark that no scheduled run's window covered,
    between the first window and the watermark (pure): what the sync skipped. Before the first
    window is history ampkit never had to send (a backfill's), not a hole."""
    out = []
    covered_to = None
    for w in sorted(windows, key=lambda w: (w["window_start"], w["window_end"])):
        a, b = _aware(w["window_start"]), _aware(w["window_end"])
        if covered_to is not None and covered_to < a and covered_to < watermark:
            out.append((covered_to, min(a, watermark)))
        covered_to = b if covered_to is None else max(covered_to, b)
    return out


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
                      "platform": event.get("platform"), "event_time": export_time(event.get("event_time")),
                      "uploaded_at": export_time(event.get("server_upload_time"))})
        if len(batch) >= 100_000:
            wh.append("ampkit_amplitude_export", pa.Table.from_pylist(batch, schema=EXPORT_SCHEMA))
            total += len(batch)
            batch = []
    if batch:
        wh.append("ampkit_amplitude_export", pa.Table.from_pylist(batch, schema=EXPORT_SCHEMA))
        total += len(batch)
    logger.info("export loaded rows=%d", total)
    return total


def _segmentation(amp, outcomes: list[dict], start: dt.date, end: dt.date, top: int) -> dict[str, dict[str, int]]:
    """Amplitude's own daily totals for the `top` busiest accepted event types (a cross-check within its cost limits)."""
    if top <= 0:
        return {}
    volume = collections.Counter()
    for r in outcomes:
        if r["outcome"] == "accepted":
            volume[r["name"]] += r["n"]
    out = {}
    # Ties broken by name: two reconciliations of the same data ask about the same event types.
    for name, _ in sorted(volume.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        try:
            out[name] = amp.segmentation(name, start, end)
        except AmplitudeError as exc:
            logger.warning("segmentation cross-check skipped for %s: %s", name, exc)
    return out


def check_days(start: dt.date, end: dt.date, export_ready: dt.datetime | None) -> list[dt.date]:
    """The days the time-zone cross-check compares (pure): those inside [start, end] (the range cuts
    the first and last), not reaching into Amplitude's export lag in any zone (ending, at UTC-12:00,
    before `export_ready`), the last seven of them (the Dashboard's hourly limit)."""
    days = [start + dt.timedelta(days=i) for i in range(1, (end - start).days)]
    if export_ready is not None:
        days = [d for d in days if dt.datetime.combine(d + dt.timedelta(days=1), dt.time(12), dt.timezone.utc) <= export_ready]
    return days[-HOURLY_DAYS:]


def _segmentation_hours(amp, names: list[str], days: list[dt.date]) -> dict[str, dict[str, int]]:
    """Amplitude's own hourly totals of `names` over `days`, labelled by local hour in the project's
    zone: the time-zone cross-check's (I/O)."""
    out = {}
    for name in names if days else []:
        try:
            out[name] = amp.segmentation(name, days[0], days[-1], interval=HOURLY_INTERVAL)
        except AmplitudeError as exc:
            logger.warning("hourly segmentation for the time-zone cross-check skipped for %s: %s", name, exc)
    return out
