"""The reconciliation's anomaly matrix: one clean baseline of fourteen days of hourly runs (seeded
warehouse, the sandbox over HTTP, real syncs), then, per case, a copy of it with exactly one fault
injected, reconciled: the anomaly it must name (kind, severity, day or hour, event or family) is
the only one. And the other side: the clean days reconciled in four time zones raise nothing.

The baseline is built once for the module and copied per case (the warehouse file and the
sandbox's store), so a case costs a reconciliation, or the day of runs its fault needs.
Amplitude's numbers are its own: the Export API and Dashboard segmentation of the sandbox, whose
clock follows the runs' (uploads carry the simulated time, and its export lags two hours).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import shutil
from importlib import resources
from pathlib import Path

import pytest

from ampkit import catalogue, config as configuration, datamap, reconcile, seed, stage, sync
from ampkit import warehouse as warehouses
from ampkit.sandbox import SandboxConfig, start
from conftest import API_KEY, NOW, SECRET_KEY

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
DAYS = 14
FIRST_HOUR = dt.datetime.combine((NOW - DAYS * DAY).date(), dt.time(1), dt.timezone.utc)
SPLIT = NOW - DAY          # snapshot A: the cases whose fault needs runs start here
EXPORT_LAG = 7200
RANGE = ((NOW - 2 * DAY).date(), NOW.date())   # a case's reconciliation: 2022-03-12 .. 2022-03-14 (UTC)
D13 = "2022-03-13"


@dataclasses.dataclass
class Baseline:
    root: Path

    def copy(self, snapshot: str, to: Path) -> Path:
        shutil.copytree(self.root / snapshot, to)
        return to


def settings(url: str, amplitude_url: str, now: dt.datetime, **more) -> configuration.Config:
    values = {"warehouse": url, "amplitude_url": amplitude_url, "now": now, "stage_in_run": True,
              "settle_seconds": 0, "export_lag_seconds": EXPORT_LAG, "retry_budget_seconds": 60,
              "max_backoff_seconds": 0.5}
    return configuration.load({**values, **more})


@contextlib.contextmanager
def amplitude(folder: Path, now: dt.datetime, **options):
    """The sandbox on `folder`'s store, its clock frozen at `now` (the runs' clock)."""
    config = SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], db_path=str(folder / "amplitude.duckdb"),
                           export_lag_seconds=EXPORT_LAG, **options)
    with start(config) as sb:
        sb.control.set_clock(now)
        yield sb


def hourly(url: str, sb, hours, **more) -> None:
    """One scheduled run per hour (each stages its own rows), the sandbox's clock with it."""
    for t in hours:
        sb.control.set_clock(t)
        with warehouses.open(url) as wh, wh.held():  # one open of the file per run, not per query
            result = sync.run(settings(url, sb.url, t, **more), progress="none", warehouse=wh)
        assert result.status == "ok", (t, result.status, result.error)


def hours(first: dt.datetime, last: dt.datetime):
    t = first
    while t <= last:
        yield t
        t += HOUR


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    root = tmp_path_factory.mktemp("baseline")
    folder = root / "work"
    folder.mkdir()
    url = f"duckdb:///{folder}/warehouse.duckdb"
    with pytest.MonkeyPatch.context() as env:  # built before any test's environment is set up
        env.setenv("AMPLITUDE_API_KEY", API_KEY)
        env.setenv("AMPLITUDE_SECRET_KEY", SECRET_KEY)
        build(url, folder, root)
    return Baseline(root)


def build(url: str, folder: Path, root: Path) -> None:
    with warehouses.open(url) as wh:
        seed.fill(wh, seed.SeedSpec(start=(NOW - DAYS * DAY).date(), days=DAYS + 1, events_per_day=3000,
                                    dirty_share=0.005, late_share=0.0, until=NOW))
    with amplitude(folder, FIRST_HOUR) as sb:
        hourly(url, sb, hours(FIRST_HOUR, SPLIT))
    shutil.copytree(folder, root / "A")
    with amplitude(folder, SPLIT) as sb:
        hourly(url, sb, hours(SPLIT + HOUR, NOW))
    shutil.copytree(folder, root / "B")


@dataclasses.dataclass
class Case:
    folder: Path
    sandbox: object
    url: str

    def config(self, now: dt.datetime = NOW, **more) -> configuration.Config:
        return settings(self.url, self.sandbox.url, now, **more)

    def reconcile(self, first=RANGE[0], last=RANGE[1], **more) -> reconcile.Reconciliation:
        return reconcile.run(self.config(**more), first, last)


@contextlib.contextmanager
def case(baseline: Baseline, snapshot: str, tmp_path: Path, *, at: dt.datetime = NOW, **sandbox):
    folder = baseline.copy(snapshot, tmp_path / "case")
    with amplitude(folder, at, **sandbox) as sb:
        yield Case(folder, sb, f"duckdb:///{folder}/warehouse.duckdb")


def named(rec: reconcile.Reconciliation) -> list[tuple[str, str, str, str]]:
    return [(a.kind, a.severity, a.day, a.name) for a in rec.anomalies]


def exported(sb, first: dt.datetime, last: dt.datetime, event_type: str | None = None) -> list[dict]:
    """Events the sandbox holds with event time in [first, last) (its export, read directly)."""
    from ampkit.dashboard import Dashboard
    amp = Dashboard(configuration.load({"amplitude_url": sb.url}))
    try:
        wall = dt.datetime.now(dt.timezone.utc)
        rows = [e for e in amp.export(FIRST_HOUR - DAY, wall) if first.strftime("%Y-%m-%d %H") <= e["event_time"][:13] < last.strftime("%Y-%m-%d %H")]
    finally:
        amp.close()
    return [e for e in rows if event_type is None or e["event_type"] == event_type]


def foreign(events: list[dict], prefix: str) -> list[dict]:
    """Copies of exported events as a second sender would make them: the same content, fresh insert_ids."""
    return [{"event_type": e["event_type"], "device_id": e.get("device_id") or "device-x", "user_id": e.get("user_id"),
             "time": int(dt.datetime.fromisoformat(e["event_time"] + "+00:00").timestamp() * 1000),
             "insert_id": f"{prefix}-{i}", "platform": e.get("platform")} for i, e in enumerate(events)]


# --- the clean side ---------------------------------------------------------------------------

@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"])
def test_fourteen_clean_days_raise_nothing_in_any_time_zone(baseline, tmp_path, zone):
    """The project and the report in `zone` (Los Angeles changes to daylight time on 2022-03-13),
    every day of the fourteen, the last hours inside Amplitude's export lag."""
    first = (FIRST_HOUR + DAY).astimezone(dt.timezone.utc).date()
    with case(baseline, "B", tmp_path, time_zone=zone) as c:
        rec = c.reconcile(first, NOW.astimezone(configuration.load({"time_zone": zone}).zone).date(), time_zone=zone)
    assert named(rec) == [] and rec.status == "ok", (named(rec), [r for r in rec.rows if r.status != "ok"][:3])
    assert rec.unexplained_total == 0
    assert rec.totals()["export_lag"] > 0  # the last two hours were accepted, not yet exported: explained
    assert any("hour by hour: 0 of" in c for c in rec.checks), rec.checks  # the time-zone cross-check ran: every hour fits


# --- one fault each ---------------------------------------------------------------------------

def test_an_hour_never_in_amplitude_is_a_missing_hour(baseline, tmp_path):
    hour = dt.datetime(2022, 3, 13, 10, tzinfo=dt.timezone.utc)
    with case(baseline, "B", tmp_path) as c:
        assert c.sandbox.control.delete_events(event_start_ms=hour, event_end_ms=hour + HOUR) > 10
        rec = c.reconcile()
    assert named(rec) == [("missing_hour", "fail", "2022-03-13 10:00", "")]
    assert "Amplitude support" in rec.anomalies[0].action


def test_an_upload_hour_missing_from_the_export_is_an_export_gap_not_a_loss(baseline, tmp_path):
    """The run at 11:00 uploaded the events loaded in the hour before: the export lacks that upload
    hour, Amplitude's Dashboard still counts them."""
    with case(baseline, "B", tmp_path, export_missing_hours=("20220313T11",)) as c:
        rec = c.reconcile()
    assert named(rec) == [("export_gap", "warn", "2022-03-13 10:00", "")]
    assert "nothing to resend" in rec.anomalies[0].action


def test_events_sent_twice_with_fresh_insert_ids_are_events_only_amplitude_has(baseline, tmp_path):
    with case(baseline, "B", tmp_path) as c:
        window = exported(c.sandbox, dt.datetime(2022, 3, 13, 9), dt.datetime(2022, 3, 13, 15))
        name = collections.Counter(e["event_type"] for e in window).most_common(1)[0][0]
        twice = [e for e in window if e["event_type"] == name][:40]
        assert len(twice) >= 20
        c.sandbox.control.seed_events(foreign(twice, "again"), upload_time=dt.datetime(2022, 3, 13, 15, 5, tzinfo=dt.timezone.utc))
        rec = c.reconcile()
    assert named(rec) == [("amplitude_only", "fail", D13, name)]


def test_an_excluded_family_sent_anyway_is_a_leak(baseline, tmp_path):
    """Code insights events (kept out by rule code_insights) reach Amplitude from another sender."""
    with case(baseline, "B", tmp_path) as c:
        events = [{"event_type": "InsightAddition", "device_id": f"device-{i:04d}", "platform": "WEB",
                   "time": int(dt.datetime(2022, 3, 13, 14, i, tzinfo=dt.timezone.utc).timestamp() * 1000),
                   "insert_id": f"leak-{i}"} for i in range(30)]
        c.sandbox.control.seed_events(events, upload_time=dt.datetime(2022, 3, 13, 15, 5, tzinfo=dt.timezone.utc))
        rec = c.reconcile()
    assert named(rec) == [("excluded_in_amplitude", "fail", D13, "InsightAddition")]
    assert "rule code_insights" in rec.anomalies[0].message


SHIPPED = resources.files("ampkit.resources").joinpath("datamap.yaml").read_text()


# The busiest family of the seed: at 3,000 events a day it is well over guardrail_min_events
# (50 a day) even in the half day after a change, on a weekend.
FAMILY = "search"


def test_a_family_kept_out_by_a_map_change_vanishes_from_its_first_day(baseline, tmp_path):
    members = sorted(e.name for e in catalogue.events() if e.family == FAMILY)
    edited = tmp_path / "datamap.yaml"
    edited.write_text(SHIPPED.replace("rules:\n", f"""rules:
  - id: no_search
    action: exclude
    reason: excluded_family
    note: search moves to its own tool
    events: [{", ".join(members)}]

""", 1))
    with case(baseline, "A", tmp_path, at=SPLIT) as c:
        # Deployed by hand with the guardrail warning only: a change made outside ampkit's review.
        hourly(c.url, c.sandbox, hours(SPLIT + HOUR, NOW), data_map=str(edited), guardrail="warn")
        c.sandbox.control.set_clock(NOW)
        rec = c.reconcile(data_map=str(edited))
    assert named(rec) == [("family_vanished", "fail", D13, FAMILY)]
    assert rec.anomalies[0].message.startswith(f"family '{FAMILY}' vanished from Amplitude from 2022-03-13 12:00")
    assert "kept out by rule 'no_search'" in rec.anomalies[0].message


def test_a_family_dropped_upstream_vanishes_and_is_called_an_upstream_drop(baseline, tmp_path):
    files = sorted(e.name for e in catalogue.events() if e.family == FAMILY)
    with case(baseline, "A", tmp_path, at=SPLIT) as c:
        with warehouses.open(c.url) as wh, wh.connect() as con:
            names = ", ".join(f"'{n}'" for n in files)
            dropped = con.execute(f"DELETE FROM event_logs WHERE name IN ({names}) AND timestamp > TIMESTAMP '2022-03-13 12:00:00+00'").fetchone()[0]
        assert dropped > 50
        hourly(c.url, c.sandbox, hours(SPLIT + HOUR, NOW))
        c.sandbox.control.set_clock(NOW)
        rec = c.reconcile()
    assert named(rec) == [("family_vanished", "fail", D13, FAMILY)]
    assert "an upstream drop" in rec.anomalies[0].message


def test_rows_the_planner_skipped_are_a_planner_gap_with_the_window_not_late(baseline, tmp_path):
    """Eight hours staged while no run ran, then the watermark moved past them (a planner fault):
    the next run's lookback recovers six of them, and two hours of rows are never extracted."""
    with case(baseline, "A", tmp_path, at=SPLIT) as c:
        with warehouses.open(c.url) as wh:
            for t in hours(SPLIT + HOUR, SPLIT + 8 * HOUR):
                stage.run(wh, c.config(now=t), t)
            with wh.connect() as con:
                con.execute("UPDATE ampkit_state SET value = ? WHERE key = 'watermark'", [SPLIT + 8 * HOUR])
        hourly(c.url, c.sandbox, hours(SPLIT + 9 * HOUR, NOW))
        c.sandbox.control.set_clock(NOW)
        rec = c.reconcile()
    assert named(rec) == [("planner_gap", "fail", D13, "")]
    assert "2022-03-13 12:00..2022-03-13 20:00" in rec.anomalies[0].message
    assert rec.totals()["planner_gap"] == rec.anomalies[0].count > 0 and rec.totals()["late_beyond_lookback"] == 0
    assert "ampkit sync --start 2022-03-13T00:00Z --end 2022-03-14T00:00Z" in rec.anomalies[0].action


def test_rows_loaded_after_the_lookback_are_late_with_the_backfill_command(baseline, tmp_path):
    """A staging rerun for an old hour (as a scheduled query's backfill does) loads rows the runs
    passed 33 hours ago."""
    with case(baseline, "B", tmp_path) as c:
        with warehouses.open(c.url) as wh:
            # Events of 00:00-03:00 that reach event_logs only now.
            rows = next(seed.generate(seed.SeedSpec(start=dt.date(2022, 3, 13), days=1, events_per_day=2000, seed=7,
                                                    dirty_share=0.0, late_share=0.0, first_id=10**8,
                                                    until=dt.datetime(2022, 3, 13, 3, tzinfo=dt.timezone.utc))))[0]
            assert rows.num_rows > 20
            wh.append("event_logs", rows)
            stage.run(wh, c.config(), dt.datetime(2022, 3, 13, 3, tzinfo=dt.timezone.utc))
        rec = c.reconcile()
    assert named(rec) == [("late_beyond_lookback", "warn", D13, "")]
    assert "ampkit sync --start 2022-03-13T00:00Z --end 2022-03-14T00:00Z" in rec.anomalies[0].action


@pytest.mark.parametrize("zone, offsets", [
    ("Etc/GMT+12", {"UTC-12:00"}), ("America/St_Johns", {"UTC-03:30", "UTC-02:30"}),
    ("America/Los_Angeles", {"UTC-08:00", "UTC-07:00"}), ("Asia/Kolkata", {"UTC+05:30"}),
    ("Asia/Kathmandu", {"UTC+05:45"}), ("Pacific/Chatham", {"UTC+13:45"}), ("Pacific/Kiritimati", {"UTC+14:00"})])
def test_an_amplitude_project_in_another_time_zone_is_named_with_the_offset_that_fits(baseline, tmp_path, zone, offsets):
    with case(baseline, "B", tmp_path, time_zone=zone) as c:
        rec = c.reconcile((NOW - 3 * DAY).date(), NOW.date())
    assert [(a.kind, a.severity) for a in rec.anomalies] == [("time_zone_mismatch", "fail")], named(rec)
    message = rec.anomalies[0].message
    assert any(o in message for o in offsets), message
    assert "set time_zone" in rec.anomalies[0].action
