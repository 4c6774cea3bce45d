"""The volume guardrail: a data-map change or an upstream break cannot silently flood or starve Amplitude.

Amplitude bills by event volume and cannot cheaply delete events, so before a run sends its open
window it weighs what it would send, per data-map rule and per event family (the catalogue's area),
against the same hours of the last weeks (docs/GUARDRAIL.md):

* **The band.** The baseline of a loaded hour is the median, over the last `guardrail_weeks` weeks
  that have history at that hour of the week, of the events sent then, as the run's data map would
  send them today (history is kept per event, so a reviewed map change moves the baseline with it).
  More than `guardrail_band` times the baseline is a flood, less than its inverse a drop. A flood is
  judged as soon as it is seen; a drop once the hour is complete (the first run whose window passes
  its end), so a sub-hourly cadence never alarms on an hour still loading. Hours where both counts
  are under `guardrail_min_events` never alarm.
* **The data map.** A run on a map version that is not the deployed one and changes, for the events
  of its window, what reaches Amplitude needs `ampkit datamap approve` first.

A departure holds the window: nothing is sent, the watermark stays, the run ends `held` with one
line naming the rule or family, the expected and the seen volume. `ampkit sync --accept-volume KEY`
accepts a departure for that run's window (recorded with it); the held rows go with the next run.
The guard, the band and the diff are pure: the run reads the history (one query) and hands it
over; `review`, `review_run` and `approve` are the I/O edges for the CLI and the run record.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import statistics
from typing import Any, Iterable

from ampkit import catalogue
from ampkit.datamap import DataMap, Decision

HOUR = dt.timedelta(hours=1)
WEEK = dt.timedelta(days=7)
KINDS = ("rule", "family")
ACCEPT_ALL = "all"  # --accept-volume all: every departure of the window (after a known outage)


@dataclasses.dataclass(frozen=True)
class Band:
    """How far a volume may stray from its baseline, and what a departure does."""

    factor: float = 3.0
    min_events: int = 50
    weeks: int = 4
    mode: str = "hold"        # hold | warn | off

    @classmethod
    def of(cls, config) -> "Band":
        return cls(config.guardrail_band, config.guardrail_min_events, config.guardrail_weeks, config.guardrail)

    def bounds(self, expected: float) -> tuple[float, float]:
        return expected / self.factor, expected * self.factor

    def departs(self, expected: float, seen: float, complete: bool) -> bool:
        """A flood (judged at once) or a drop (judged on a complete hour) beyond the band (pure)."""
        low, high = self.bounds(expected)
        if seen > high and seen >= self.min_events:
            return True
        return complete and seen < low and expected >= self.min_events


def groups(name: str, decision: Decision) -> tuple[tuple[str, str], tuple[str, str]]:
    """The groups an event to send is counted in: its data-map rule and its family (pure)."""
    return ("rule", decision.rule), ("family", catalogue.family(name))


@dataclasses.dataclass(frozen=True)
class Departure:
    """One rule or family whose events to send, in one loaded hour, left the band."""

    kind: str
    key: str
    hour: dt.datetime
    expected: float
    seen: int
    weeks: int
    factor: float

    @property
    def flood(self) -> bool:
        return self.seen > self.expected

    @property
    def ratio(self) -> float:
        """How far out it is, either way (for picking the worst)."""
        lo, hi = sorted((self.seen, self.expected))
        return hi / max(lo, 1)

    def __str__(self) -> str:
        low, high = self.expected / self.factor, self.expected * self.factor
        return (f"{self.kind} '{self.key}' would send {self.seen:,} events loaded {self.hour:%Y-%m-%d %H}:00 UTC, "
                f"expected {self.expected:,.0f} (band {low:,.0f} to {high:,.0f}, median of {self.weeks} week(s) at this hour)")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "hour": self.hour.isoformat(), "expected": self.expected,
                "seen": self.seen, "weeks": self.weeks, "direction": "flood" if self.flood else "drop"}


@dataclasses.dataclass(frozen=True)
class Shift:
    """Events a rule or family sends to Amplitude before and after a data map change: in one
    window (a run on a new map version) or per day (`ampkit datamap diff`)."""

    kind: str
    key: str
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after - self.before

    def __str__(self) -> str:
        return f"{self.kind} '{self.key}' {self.before:,.0f} -> {self.after:,.0f} events"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Verdict:
    """The guardrail's word on a window so far."""

    mode: str
    map_version: str
    deployed: str | None
    approved: bool
    departures: list[Departure]          # unexplained: they hold the window
    accepted: list[Departure]            # explained by --accept-volume
    changes: list[Shift]                 # the map's changes to this window (a new version only)
    hours: list[dict[str, Any]]          # per (kind, key, hour): expected, band, seen (for charts)
    learning: int = 0                    # hours of the window with no week of history yet

    @property
    def map_unapproved(self) -> bool:
        return bool(self.changes) and not self.approved

    @property
    def holds(self) -> bool:
        return self.mode == "hold" and (self.map_unapproved or bool(self.departures))

    def line(self) -> str:
        """One line: what is wrong and what to do; '' when nothing is."""
        if self.map_unapproved:
            top = sorted(self.changes, key=lambda c: (-abs(c.after - c.before), c.kind, c.key))
            more = f" (and {len(top) - 1} more)" if len(top) > 1 else ""
            return (f"data map {self.map_version} is not approved and changes what reaches Amplitude: {top[0]}{more} "
                    f"in this window, against the deployed {self.deployed}; review with `ampkit datamap diff`, "
                    f"then `ampkit datamap approve`")
        if self.departures:
            worst = sorted(self.departures, key=lambda d: (-d.ratio, d.kind, d.key))
            more = f" (and {len(worst) - 1} more)" if len(worst) > 1 else ""
            return f"{worst[0]}{more}; if that is right: ampkit sync --accept-volume {worst[0].key}"
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "holds": self.holds, "line": self.line(), "map_version": self.map_version,
                "deployed": self.deployed, "approved": self.approved, "learning_hours": self.learning,
                "departures": [d.to_dict() for d in self.departures], "accepted": [d.to_dict() for d in self.accepted],
                "changes": [c.to_dict() for c in self.changes],
                "hours": [{**h, "hour": h["hour"].isoformat()} for h in self.hours]}


class Guard:
    """The guardrail over one open window: the history of its hours, and what its slices add (pure).

    `history` rows are guardrail_history.sql's: week (0 = this window's hours, k = k weeks before),
    loaded_hour, name, source, action (the map's decision then) and row_count.
    """

    def __init__(self, band: Band, data_map: DataMap, history: Iterable[dict], window_end: dt.datetime,
                 deployed: str | None = None, approved: bool = False, accept: Iterable[str] = ()):
        self.band, self.map, self.window_end = band, data_map, window_end
        self.deployed, self.approved, self.accept = deployed, approved, frozenset(accept)
        self.seen: collections.Counter = collections.Counter()      # (kind, key, hour): events to send
        self.changes: collections.Counter = collections.Counter()   # (kind, key, 'before'|'after')
        self.then: dict[tuple, tuple[int, bool]] = {}                # (name, source) -> (week, sent then)
        by_week: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        covered: dict[dt.datetime, set[int]] = collections.defaultdict(set)
        for r in history:
            week, key = r["week"], (r["name"], r["source"])
            hour = _utc(r["loaded_hour"]) + week * WEEK
            decision = self.map.decide(r["name"] or "", r["source"])
            if key not in self.then or week < self.then[key][0]:
                self.then[key] = (week, r["action"] == "send")
            if week == 0:
                if decision.sends:
                    for g in groups(r["name"] or "", decision):
                        self.seen[(*g, hour)] += r["row_count"]
                continue
            covered[hour].add(week)
            if decision.sends:
                for g in groups(r["name"] or "", decision):
                    by_week[week][(*g, hour)] += r["row_count"]
        self.weeks = {hour: len(weeks) for hour, weeks in covered.items()}
        self.expected: dict[tuple, float] = {}
        for hour, weeks in covered.items():
            keys = {g for w in weeks for g in by_week[w] if g[2] == hour}
            for g in keys:
                self.expected[g] = float(statistics.median(by_week[w][g] for w in weeks))
        self.span: set[dt.datetime] = set()

    @property
    def gated(self) -> bool:
        """Whether this run's map version is new to the warehouse (the first run has none deployed)."""
        return self.deployed is not None and self.deployed != self.map.version

    def add(self, rows: Iterable[dict], final: bool) -> Verdict:
        """Count a slice's rows (name, source, loaded_hour, row_count) and judge the window so far;
        `final` on its last slice, when drops of complete hours are judged too."""
        for r in rows:
            name, source, hour = r["name"] or "", r["source"], _utc(r["loaded_hour"])
            self.span.add(hour)
            decision = self.map.decide(name, source)
            if decision.sends:
                for g in groups(name, decision):
                    self.seen[(*g, hour)] += r["row_count"]
            before = self.then.get((r["name"], source))
            if self.gated and before is not None and before[1] != decision.sends:
                for g in groups(name, decision):
                    self.changes[(*g, "before")] += r["row_count"] if before[1] else 0
                    self.changes[(*g, "after")] += r["row_count"] if decision.sends else 0
        return self.verdict(final)

    def verdict(self, final: bool) -> Verdict:
        band = self.band
        departures, accepted, hours = [], [], []
        for g in sorted(set(self.seen) | set(self.expected), key=lambda g: (g[2], g[0], g[1])):
            kind, key, hour = g
            weeks = self.weeks.get(hour, 0)
            if not weeks:
                continue
            expected, seen = self.expected.get(g, 0.0), self.seen.get(g, 0)
            complete = final and hour + HOUR <= self.window_end
            low, high = band.bounds(expected)
            out = band.departs(expected, seen, complete)
            hours.append({"kind": kind, "key": key, "hour": hour, "expected": expected, "low": low, "high": high,
                          "seen": seen, "weeks": weeks, "complete": complete, "departs": out})
            if out:
                d = Departure(kind, key, hour, expected, seen, weeks, band.factor)
                (accepted if key in self.accept or ACCEPT_ALL in self.accept else departures).append(d)
        changes = []
        for kind, key in sorted({(k, key) for k, key, _ in self.changes}):
            before, after = self.changes[(kind, key, "before")], self.changes[(kind, key, "after")]
            if before != after:
                changes.append(Shift(kind, key, before, after))
        learning = len({h for h in self.span if h not in self.weeks})
        return Verdict(band.mode, self.map.version, self.deployed, self.approved, departures, accepted,
                       changes, hours, learning)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


# --- reviewing a data map change with numbers --------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Diff:
    """Two data maps (or the deployed map, as the ledger recorded it, and a new one) over the same days."""

    old: str                  # what the old side is: a version, or "deployed (ledger)"
    new: str
    days: int                 # days with data the rates are over
    shifts: list[Shift]       # every rule and family that sends under either map, biggest change first
    starts: list[tuple[str, str | None, float]]   # (name, source, per day) that would start reaching Amplitude
    stops: list[tuple[str, str | None, float]]    # ... that would stop

    @property
    def changed(self) -> bool:
        return bool(self.starts or self.stops)

    def frame(self):
        """The per-rule and per-family table, as a DataFrame (for notebooks)."""
        import pandas as pd
        return pd.DataFrame([{"kind": s.kind, "rule or family": s.key, "events/day before": round(s.before, 1),
                              "events/day after": round(s.after, 1), "change/day": round(s.change, 1)}
                             for s in self.shifts])

    def __str__(self) -> str:
        lines = [f"data map {self.old} -> {self.new}, events per day sent to Amplitude over {self.days} day(s) with data:",
                 f"  {'kind':<7} {'rule or family':<28} {'before':>10} {'after':>10} {'change':>10}"]
        for s in self.shifts:
            mark = "" if round(s.change, 1) == 0 else "  <-"
            lines.append(f"  {s.kind:<7} {s.key:<28} {s.before:>10,.1f} {s.after:>10,.1f} {s.change:>+10,.1f}{mark}")
        for title, events in (("would start reaching Amplitude", self.starts), ("would stop reaching Amplitude", self.stops)):
            if events:
                lines.append(f"{len(events)} event type(s) {title}:")
                lines += [f"  {n} ({s or '-'}): {per_day:,.1f}/day" for n, s, per_day in events[:20]]
                if len(events) > 20:
                    lines.append(f"  ... and {len(events) - 20} more")
        if not self.changed:
            lines.append("nothing starts or stops reaching Amplitude")
        return "\n".join(lines)


def diff(daily: Iterable[dict], new: DataMap, old: DataMap | None = None, old_label: str = "") -> Diff:
    """Replay per-day volumes through two maps (pure): `daily` rows have day, name, source and
    row_count; with `old` None, each row's recorded `action` and `rule` are the old side (the ledger)."""
    rows = list(daily)
    days = max(len({r["day"] for r in rows}), 1)
    before: collections.Counter = collections.Counter()
    after: collections.Counter = collections.Counter()
    moved: dict[tuple, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        name, source, n = r["name"] or "", r["source"], r["row_count"]
        d_new = new.decide(name, source)
        if old is not None:
            d_old = old.decide(name, source)
            sent_then, rule_then = d_old.sends, d_old.rule
        else:
            sent_then, rule_then = r["action"] == "send", r["rule"] or "unknown"
        if sent_then:
            before[("rule", rule_then)] += n
            before[("family", catalogue.family(name))] += n
        if d_new.sends:
            for g in groups(name, d_new):
                after[g] += n
        if sent_then != d_new.sends:
            moved[(r["name"], source)][0 if d_new.sends else 1] += n
    shifts = [Shift(kind, key, before[(kind, key)] / days, after[(kind, key)] / days)
              for kind, key in set(before) | set(after)]
    shifts.sort(key=lambda s: (-abs(s.change), s.kind, s.key))
    starts = sorted(((n, s, v[0] / days) for (n, s), v in moved.items() if v[0]), key=lambda x: -x[2])
    stops = sorted(((n, s, v[1] / days) for (n, s), v in moved.items() if v[1]), key=lambda x: -x[2])
    return Diff(old_label or (old.version if old else "deployed"), new.version, days, shifts, starts, stops)


def review(config, new: DataMap, old: DataMap | None = None, days: int = 14, warehouse=None) -> Diff:
    """`new` against `old` over the last `days` of staged events, or, with `old` None, against what
    the runs actually did (the ledger's volumes, which know the deployed map's decisions) (I/O)."""
    from ampkit import warehouse as warehouses
    until = config.clock()
    since = until - dt.timedelta(days=days)
    with warehouses.using(config, warehouse) as wh:
        if old is None:
            wh.ensure_state()
            rows = wh.run("guardrail_daily", {"since": since, "until": until}).to_pylist()
            if rows:
                return diff(rows, new, None, "deployed (as the ledger recorded it)")
            old = _configured(config)  # no run recorded yet: the map the hourly sync is configured with
        wh.check_table("amplitude_events")
        rows = wh.run("datamap_daily", {"since": since, "until": until}).to_pylist()
        return diff(rows, new, old)


def review_run(config, result, days: int = 14) -> Diff | None:
    """For a run's record: its data map against the deployed one, when the run brought a new
    version (held for approval or approved); None when the map is the deployed one (I/O)."""
    verdict = result.guardrail or {}
    if verdict.get("deployed") in (None, verdict.get("map_version")):
        return None
    return review(config, _configured(config), None, days)


def _configured(config) -> DataMap:
    from ampkit import datamap as datamaps
    return datamaps.load(config.data_map or None)


def approve(config, data_map: DataMap, note: str = "", warehouse=None) -> bool:
    """Record that `data_map`'s version was reviewed and approved (I/O); False if it already was."""
    from ampkit import state, warehouse as warehouses
    with warehouses.using(config, warehouse) as wh:
        wh.ensure_state()
        if wh.run("guardrail_approved", {"data_map_version": data_map.version}).column("approvals")[0].as_py():
            return False
        wh.run("guardrail_approve", {"data_map_version": data_map.version, "approved_by": state.operator(),
                                     "now": state.wall_clock(), "note": note})
        return True
