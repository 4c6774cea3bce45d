"""Freshness: how old the newest event is at each stage, from the product to Amplitude's export.

In the spirit of dbt's source freshness: each stage's newest event is compared with the clock, and
an age past `warn after` or `error after` makes `ampkit freshness` exit 1 or 2 (Nagios' codes, which
Cloud Monitoring, Prometheus' textfile collector and most schedulers read; 3 when it could not
check). The stages, in the order an event passes them:

- `event_logs`: the newest event the product wrote (upstream of ampkit);
- `amplitude_events`: the newest event the staging query loaded;
- `accepted`: the newest event Amplitude accepted from a run (the ledger's `ampkit_lags`);
- `export`: the newest event Amplitude's Export API returns (what charts are built from, after
  Amplitude's own export lag, which this stage is allowed on top of the thresholds).

The first stage too old is where to look: a stale `accepted` under a fresh `amplitude_events` is
ampkit's; a stale `event_logs` is upstream.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from ampkit import warehouse as warehouses
from ampkit.config import Config

logger = logging.getLogger(__name__)

STAGES = ("event_logs", "amplitude_events", "accepted", "export")
EXIT = {"ok": 0, "skipped": 0, "warn": 1, "error": 2, "unknown": 3}
SEVERITY = ("ok", "skipped", "warn", "error", "unknown")
# The warehouse is read this far back (partitions before are not billed): anything older is stale.
LOOKBACK = dt.timedelta(days=3)
# Export hours tried, newest first, beyond Amplitude's export lag (an HTTP request each).
EXPORT_HOURS_BEYOND_LAG = 6


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Ages (seconds) past which a stage warns or errs; the export stage gets `export_allowance` more:
    Amplitude's export lag, and an hour, since the export is ready by whole upload hours."""

    warn: int
    error: int
    export_allowance: int

    @classmethod
    def of(cls, config: Config) -> "Thresholds":
        """From the config, or from the cadence (pure): a healthy run's newest accepted event is at
        most an interval plus the settle time old (at a quiet hour, older), so warn after two
        intervals and err after six, plus the settle time when a scheduled query stages."""
        settle = 0 if config.stage_in_run else config.settle_seconds
        interval = config.sync_interval_minutes * 60
        warn = config.freshness_warn_minutes * 60 or 2 * interval + settle
        error = config.freshness_error_minutes * 60 or max(6 * interval + settle, warn)
        return cls(warn, error, config.export_lag_seconds + 3600)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: its newest event, how old it is, and what that means."""

    name: str
    newest: dt.datetime | None
    age_seconds: float | None
    status: str          # ok | warn | error | skipped
    warn_after: int
    error_after: int
    note: str = ""

    def to_dict(self) -> dict:
        return {"stage": self.name, "newest": self.newest.isoformat() if self.newest else None,
                "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
                "status": self.status, "warn_after_seconds": self.warn_after,
                "error_after_seconds": self.error_after, "note": self.note}


@dataclasses.dataclass(frozen=True)
class Freshness:
    """Every stage's freshness at `now`, the worst status and the exit code it makes."""

    now: dt.datetime
    stages: list[Stage]
    last_ok_run: dt.datetime | None = None
    error: str = ""

    @property
    def status(self) -> str:
        if self.error:
            return "unknown"
        # A stage not checked says so in its line; it neither spoils nor vouches for the rest.
        return max((s.status for s in self.stages if s.status != "skipped"), key=SEVERITY.index, default="ok")

    @property
    def exit_code(self) -> int:
        return EXIT[self.status]

    def to_dict(self) -> dict:
        return {"now": self.now.isoformat(), "status": self.status, "exit_code": self.exit_code,
                "last_ok_run": self.last_ok_run.isoformat() if self.last_ok_run else None,
                # Flat, for a log-based metric (jsonPayload.age_seconds.accepted) or jq.
                "age_seconds": {s.name: s.to_dict()["age_seconds"] for s in self.stages},
                "stages": [s.to_dict() for s in self.stages], **({"error": self.error} if self.error else {})}

    def lines(self) -> list[str]:
        out = [f"freshness at {self.now:%Y-%m-%d %H:%M} UTC: {self.status}"]
        if self.error:
            return out + [f"  could not check: {self.error}"]
        for s in self.stages:
            age = "-" if s.age_seconds is None else _duration(s.age_seconds)
            newest = f"{s.newest:%Y-%m-%d %H:%M:%S}" if s.newest else "none"
            limits = f"warn > {_duration(s.warn_after)}, error > {_duration(s.error_after)}"
            out.append(f"  {s.name:<17} newest {newest:<19}  age {age:>8}  {s.status:<7} ({limits}){'  ' + s.note if s.note else ''}")
        if self.last_ok_run:
            out.append(f"  last run that ended ok: {self.last_ok_run:%Y-%m-%d %H:%M:%S} UTC")
        return out

    def prometheus(self) -> str:
        """The Prometheus text format, for node_exporter's textfile collector or a pushgateway."""
        out = ["# HELP ampkit_freshness_age_seconds Age of the newest event at each stage.",
               "# TYPE ampkit_freshness_age_seconds gauge"]
        for s in self.stages:
            if s.age_seconds is not None:
                out.append(f'ampkit_freshness_age_seconds{{stage="{s.name}"}} {s.age_seconds:.1f}')
        out += ["# HELP ampkit_freshness_status 0 ok, 1 warn, 2 error, 3 could not check (the exit code).",
                "# TYPE ampkit_freshness_status gauge"]
        for s in self.stages:
            out.append(f'ampkit_freshness_status{{stage="{s.name}"}} {EXIT[s.status]}')
        out.append(f'ampkit_freshness_status{{stage="all"}} {self.exit_code}')
        return "\n".join(out) + "\n"


def judge(now: dt.datetime, newest: dict[str, dt.datetime | None], thresholds: Thresholds,
          notes: dict[str, str] | None = None, last_ok_run: dt.datetime | None = None) -> Freshness:
    """Each stage's status from its newest event's time (pure). A stage missing from `newest` is
    skipped (not checked: say why in `notes`); one with no event in the lookback is an error."""
    notes = notes or {}
    stages = []
    for name in STAGES:
        warn, error = thresholds.warn, thresholds.error
        if name == "export":
            warn, error = warn + thresholds.export_allowance, error + thresholds.export_allowance
        if name not in newest:
            stages.append(Stage(name, None, None, "skipped", warn, error, notes.get(name, "")))
            continue
        t = newest[name]
        if t is None:
            stages.append(Stage(name, None, None, "error", warn, error,
                                notes.get(name) or f"no event in the last {_duration(LOOKBACK.total_seconds())}"))
            continue
        age = max((now - t).total_seconds(), 0.0)
        status = "error" if age > error else "warn" if age > warn else "ok"
        stages.append(Stage(name, t, age, status, warn, error, notes.get(name, "")))
    return Freshness(now, stages, last_ok_run)


def measure(config: Config, export: bool = True, dashboard=None) -> Freshness:
    """Read each stage's newest event (one warehouse query, and the Export API's newest hours) and
    judge it (I/O). A warehouse that cannot be read gives status `unknown` (exit 3), not an error."""
    now = config.clock()
    thresholds = Thresholds.of(config)
    try:
        with warehouses.open(config.warehouse, location=config.bigquery_location) as wh:
            wh.ensure_state()
            row = wh.run("freshness", {"since": now - LOOKBACK, "now": now}).to_pylist()[0]
    except Exception as exc:  # noqa: BLE001 - whatever stops the check is "could not check" (exit 3), not a warning
        return Freshness(now, [], error=config.redact(str(exc) or type(exc).__name__))
    newest = {name: row[name] for name in ("event_logs", "amplitude_events", "accepted")}
    notes = {}
    if row["staged_at"]:
        notes["amplitude_events"] = f"last loaded {row['staged_at']:%H:%M:%S}"
    if row["accepted_at"]:
        notes["accepted"] = f"last accepted {row['accepted_at']:%H:%M:%S}"
    if not export:
        notes["export"] = "not checked (--no-export)"
    elif not (config.api_key and config.secret_key):
        notes["export"] = "not checked: needs AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY"
    else:
        try:
            newest["export"] = newest_exported(config, dashboard)
        except Exception as exc:  # noqa: BLE001 - a bad archive or row is "could not check", too
            return Freshness(now, [], error=f"Amplitude's Export API: {config.redact(str(exc) or type(exc).__name__)}")
        if newest["export"] is None:
            hours = config.export_lag_seconds // 3600 + EXPORT_HOURS_BEYOND_LAG
            notes["export"] = f"no event in the last {hours} upload hours of the export"
    return judge(now, newest, thresholds, notes, row["last_ok_run"])


def newest_exported(config: Config, dashboard=None) -> dt.datetime | None:
    """The newest event time in Amplitude's export, trying upload hours newest first (I/O).

    Upload hours are Amplitude's clock (the wall clock, even when ampkit's is fixed), and the hours
    inside the export lag are empty, so it walks back past them; the first hour with rows answers."""
    from ampkit.dashboard import Dashboard, export_time
    amp = dashboard or Dashboard(config)
    hour = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    try:
        for _ in range(config.export_lag_seconds // 3600 + EXPORT_HOURS_BEYOND_LAG):
            times = [export_time(e.get("event_time")) for e in amp.export(hour, hour)]
            times = [t for t in times if t is not None]
            if times:
                return max(times)
            hour -= dt.timedelta(hours=1)
        return None
    finally:
        if dashboard is None:
            amp.close()


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
