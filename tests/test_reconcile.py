"""Reconciliation against the real sandbox and DuckDB: clean data explains fully; each injected fault is named."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
import uuid
from zoneinfo import ZoneInfo

import pytest
import requests

from ampkit import datamap, guardrail, reconcile, stage, state, sync, warehouse as warehouses
from ampkit.sandbox import SandboxConfig, start

from conftest import API_KEY, NOW, SECRET_KEY, fill

DAY = dt.timedelta(days=1)
START, END = (NOW - 2 * DAY).date(), NOW.date()


@pytest.fixture
def synced(warehouse_url, make_config):
    """Two days seeded (with dirty rows), synced, then one more staging run left pending."""
    fill(warehouse_url, days=3, events_per_day=3000, hours=6, now=NOW)
    # The last sync ran before the last staging run: its rows are a pending window.
    assert sync.run(make_config(now=NOW - dt.timedelta(minutes=55)), progress="none").status == "ok"
    return make_config()


def kinds(rec) -> set[str]:
    return {a.kind for a in rec.anomalies}


def post_events(url: str, events: list[dict]) -> None:
    r = requests.post(url + "/batch", json={"api_key": API_KEY, "events": events}, timeout=30)
    assert r.status_code == 200, r.text


def test_clean_data_is_fully_explained(synced):
    rec = reconcile.run(synced, START, END)
    assert rec.status == "ok", [a.message for a in rec.anomalies]
    assert rec.unexplained_total == 0 and not rec.anomalies
    totals = rec.totals()
    assert totals["not_synced"] > 0 and totals["amplitude"] > 0
    assert {"backend", "codeintel_deny_list", "code_insights"} <= set(totals["filtered"])
    assert {"no_id", "malformed_public_argument"} <= set(totals["rejected"])
    for r in rec.rows:
        assert r.looker - r.amplitude == sum(r.causes().values()), r


def test_one_hour_missing_in_amplitude(synced, sandbox):
    hour = (NOW - DAY).replace(hour=15)
    deleted = sandbox.control.delete_events(event_start_ms=hour, event_end_ms=hour + dt.timedelta(hours=1))
    assert deleted > 0
    rec = reconcile.run(synced, START, END)
    missing = [a for a in rec.anomalies if a.kind == "missing_hour"]
    assert len(missing) == 1 and missing[0].day == f"{hour:%Y-%m-%d %H}:00"
    assert rec.status == "fail" and rec.unexplained_total == deleted


def test_events_sent_twice_with_fresh_insert_ids(synced, sandbox):
    from ampkit.dashboard import Dashboard
    now = dt.datetime.now(dt.timezone.utc)
    rows = [r for r in Dashboard(synced).export(now - DAY, now + dt.timedelta(hours=1)) if r["event_type"] == "ViewBlob"][:40]
    post_events(sandbox.url, [{"event_type": r["event_type"], "device_id": r["device_id"], "user_id": r["user_id"],
                               "time": int(dt.datetime.fromisoformat(r["event_time"]).replace(tzinfo=dt.timezone.utc).timestamp() * 1000),
                               "insert_id": str(uuid.uuid4()), "platform": r["platform"]} for r in rows])
    rec = reconcile.run(synced, START, END)
    assert rec.totals()["amplitude_only"] == len(rows) and rec.status == "fail"
    found = [a for a in rec.anomalies if a.kind == "amplitude_only"]
    assert found and all(a.name == "ViewBlob" for a in found)


def test_family_silently_dropped_by_a_wrong_data_map_change(warehouse_url, make_config, tmp_path):
    from importlib import resources
    fill(warehouse_url, days=3, events_per_day=3000, hours=30, now=NOW)
    # The first runs use the shipped map; a later change excludes the Search family by mistake.
    first = make_config(now=NOW - dt.timedelta(hours=24), initial_lookback_hours=12, lookback_hours=0)
    sync.run(first, progress="none")
    shipped = resources.files("ampkit.resources").joinpath("datamap.yaml").read_text()
    wrong = tmp_path / "datamap.yaml"
    # The mistaken edit: SearchSubmitted taken off the send list and excluded as "low traffic".
    wrong.write_text(shipped.replace(" SearchSubmitted,", "", 1) + """
  - id: tidy_up
    action: exclude
    reason: low_traffic
    note: cleaning up
    events: [SearchSubmitted]
""")
    later = make_config(data_map=str(wrong))
    # The guardrail holds it until someone approves it; here someone did, by mistake.
    assert sync.run(later, progress="none").status == "held"
    guardrail.approve(later, datamap.load(wrong), "tidy-up")
    assert sync.run(later, progress="none").status == "ok"
    rec = reconcile.run(later, (NOW - 2 * DAY).date(), NOW.date())
    vanished = [a for a in rec.anomalies if a.kind == "event_vanished"]
    assert [a.name for a in vanished] == ["SearchSubmitted"] and "tidy_up" in vanished[0].message


def test_time_zone_mismatch_with_the_amplitude_project(warehouse_url, make_config):
    fill(warehouse_url, days=3, events_per_day=3000, hours=6)
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], export_lag_seconds=0, time_zone="America/Los_Angeles")) as sb:
        cfg = make_config(amplitude_url=sb.url)
        sync.run(cfg, progress="none")
        rec = reconcile.run(cfg, START, END)
        assert "time_zone_mismatch" in kinds(rec)
        msg = next(a.message for a in rec.anomalies if a.kind == "time_zone_mismatch")
        assert "UTC-08:00" in msg or "UTC-07:00" in msg
        # The same data with the report in the project's zone: no alarm.
        same = make_config(amplitude_url=sb.url, time_zone="America/Los_Angeles")
        assert "time_zone_mismatch" not in kinds(reconcile.run(same, START, END))


def test_backend_event_leaking_in(synced, sandbox):
    t = int((NOW - DAY).timestamp() * 1000)
    post_events(sandbox.url, [{"event_type": "search.latencies.literal", "device_id": "backend-device-1",
                               "time": t + i, "insert_id": f"leak-{i}", "platform": "BACKEND"} for i in range(25)])
    rec = reconcile.run(synced, START, END)
    leak = [a for a in rec.anomalies if a.kind == "excluded_in_amplitude"]
    assert leak and leak[0].name == "search.latencies.literal" and "rule backend" in leak[0].message


def test_rows_loaded_beyond_the_lookback_are_reported_late(synced, warehouse_url):
    with warehouses.open(warehouse_url) as wh, wh.connect() as con:
        con.execute("""INSERT INTO amplitude_events SELECT * REPLACE (id + 90000000 AS id, 'very-late-' || id AS insert_id,
                       TIMESTAMP '2022-03-12 00:00:00+00' AS loaded_at) FROM amplitude_events WHERE name = 'ViewBlob' LIMIT 4""")
        con.execute("""INSERT INTO ampkit_stage_counts SELECT TIMESTAMP '2022-03-12 00:00:00+00',
                       TO_TIMESTAMP(CAST(EPOCH(timestamp) AS BIGINT) // 900 * 900), name, COUNT(*)
                       FROM amplitude_events WHERE insert_id LIKE 'very-late-%' GROUP BY 2, 3""")
    rec = reconcile.run(synced, START, END)
    assert rec.totals()["late_beyond_lookback"] == 4
    assert any("ampkit sync --start" in n for r in rec.rows for n in r.notes)
    assert rec.status == "warn"


def test_cli_json_and_exit_code(synced, sandbox, monkeypatch):
    env = {"AMPKIT_WAREHOUSE": synced.warehouse, "AMPKIT_AMPLITUDE_URL": sandbox.url, "AMPKIT_NOW": NOW.isoformat(),
           "AMPKIT_EXPORT_LAG_SECONDS": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = [sys.executable, "-m", "ampkit", "-q", "reconcile", "--start", str(START), "--end", str(END), "--json"]
    ok = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["summary"]["status"] == "ok" and body["summary"]["unexplained_total"] == 0
    assert body["rows"] and {"causes", "status", "looker", "amplitude"} <= set(body["rows"][0])
    sandbox.control.delete_events(event_type="ViewBlob")
    bad = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and json.loads(bad.stdout)["summary"]["status"] == "fail"


def test_the_html_report_is_the_result_printed_computed_once(synced, sandbox, monkeypatch, tmp_path):
    env = {"AMPKIT_WAREHOUSE": synced.warehouse, "AMPKIT_NOW": NOW.isoformat(), "AMPKIT_EXPORT_LAG_SECONDS": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # Missing events that the default floor (3 a row) fails and --floor 40 lets pass: the report
    # must say what the command said, and reach Amplitude where --amplitude-url points.
    sandbox.control.delete_events(event_type="ViewBlob")
    args = [sys.executable, "-m", "ampkit", "-q", "reconcile", "--start", str(START), "--end", str(END), "--json",
            "--amplitude-url", sandbox.url, "--floor", "40"]

    def exports() -> int:
        return len(sandbox.control.requests(path="/api/2/export"))
    plain = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    once = exports()
    html = tmp_path / "report.html"
    with_html = subprocess.run([*args, "--html", str(html)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert plain.returncode == with_html.returncode == 0, with_html.stderr[-2000:]
    assert exports() == 2 * once, "the report pulled Amplitude's export again"
    body = json.loads(with_html.stdout)["summary"]
    assert body == json.loads(plain.stdout)["summary"] and body["status"] == "ok" and body["unexplained_total"] > 3
    text = html.read_text()
    assert f"{body['status'].upper()}: {START} .. {END} (UTC); unexplained {body['unexplained_total']:,}; " \
           f"anomalies {len(body['anomalies'])}" in text
    assert "what to do" in text  # the anomalies come first, each with its action


def test_compare_is_pure_and_balances():
    from ampkit import datamap
    m = datamap.load()
    day = dt.date(2022, 3, 13)
    rec = reconcile.compare(
        [{"day": day, "name": "ViewBlob", "looker": 100, "before_start": 0}],
        [{"day": day, "name": "ViewBlob", "staged": 95, "staged_after_mark": 5, "staged_before_lookback": 0}],
        [{"day": day, "name": "ViewBlob", "outcome": "accepted", "reason": None, "n": 88, "n_after_mark": 0, "n_before_lookback": 0, "n_recent": 0},
         {"day": day, "name": "ViewBlob", "outcome": "rejected", "reason": "no_id", "n": 2, "n_after_mark": 0, "n_before_lookback": 0, "n_recent": 0}],
        [{"day": day, "name": "ViewBlob", "platform": "WEB", "amplitude": 88, "duplicated": 0, "amplitude_only": 0}],
        [], start=day, end=day, time_zone="UTC", now=NOW, data_map=m)
    (row,) = rec.rows
    assert (row.not_staged, row.not_synced, row.unexplained, row.status) == (5, 5, 0, "ok")
    assert row.causes() == {"not_staged": 5, "not_synced": 5, "rejected:no_id": 2}


def test_the_roll_up_of_row_outcomes_leaves_the_answer_as_it_was(warehouse_url, make_config, sandbox):
    """Row outcomes rolled up into their 15-minute counts: the same rows, causes and anomalies, with
    every fault the row-level check looks for injected in the days rolled up."""
    fill(warehouse_url, days=3, events_per_day=3000, hours=60, late_share=0.03)
    # Two runs a day apart (the first one's counts are then old enough to be rolled up too), and
    # a last staging run after the second, left pending: its day is not rolled up.
    first = sync.run(make_config(now=NOW - DAY - dt.timedelta(hours=11), initial_lookback_hours=48), progress="none")
    second = sync.run(make_config(now=NOW - dt.timedelta(minutes=55)), progress="none")
    assert first.status == second.status == "ok" and first.accepted and second.accepted
    hour = (NOW - DAY).replace(hour=15)
    assert sandbox.control.delete_events(event_start_ms=hour, event_end_ms=hour + dt.timedelta(hours=1)) > 0
    from ampkit.dashboard import Dashboard
    cfg = make_config()
    now = dt.datetime.now(dt.timezone.utc)
    exported = [r for r in Dashboard(cfg).export(now - DAY, now + dt.timedelta(hours=1)) if r["event_type"] == "ViewBlob"]
    twice = [r for r in exported if r["event_time"] < f"{NOW - DAY:%Y-%m-%d}"][:30]
    post_events(sandbox.url, [{"event_type": r["event_type"], "device_id": r["device_id"], "user_id": r["user_id"],
                               "time": int(dt.datetime.fromisoformat(r["event_time"]).replace(tzinfo=dt.timezone.utc).timestamp() * 1000),
                               "insert_id": str(uuid.uuid4()), "platform": r["platform"]} for r in twice])
    t = int((NOW - 2 * DAY).replace(hour=9).timestamp() * 1000)
    post_events(sandbox.url, [{"event_type": "search.latencies.literal", "device_id": "backend-device-1",
                               "time": t + i, "insert_id": f"leak-{i}", "platform": "BACKEND"} for i in range(25)])
    before = reconcile.run(cfg, START, END)
    assert {"missing_hour", "amplitude_only", "excluded_in_amplitude"} <= kinds(before)

    with warehouses.open(warehouse_url) as wh:
        target = dt.datetime.combine(NOW.date() + DAY, dt.time(), dt.timezone.utc)
        done = state.roll_up(wh, "rollup-test", None, target, NOW)
        # The last staging run's rows have no outcome yet: the roll-up stops at their day.
        assert done.kept_from == dt.datetime.combine(NOW.date(), dt.time(), dt.timezone.utc) and done.days == 2
        assert "have no outcome yet" in done.blocked
        assert state.kept_from(wh) == done.kept_from
        with wh.connect() as con:
            left = con.execute("SELECT COUNT(*), COUNT(*) FILTER (WHERE outcome = 'rejected') FROM ampkit_deliveries "
                               "WHERE loaded_at < ?", [done.kept_from]).fetchone()
            runs = {r[0] for r in con.execute("SELECT DISTINCT run_id FROM ampkit_outcome_counts").fetchall()}
    assert left[0] == left[1] > 0, "only the rows of dead letters are kept before the horizon"
    assert first.run_id not in runs and "rollup" in runs and second.run_id in runs

    after = reconcile.run(cfg, START, END)
    assert [dataclasses.asdict(r) for r in after.rows] == [dataclasses.asdict(r) for r in before.rows]
    assert after.anomalies == before.anomalies and after.status == before.status


def test_holes_are_the_stretches_below_the_watermark_no_window_covered():
    t = lambda h: dt.datetime(2022, 3, 13, h, tzinfo=dt.timezone.utc)  # noqa: E731
    windows = [{"window_start": t(1), "window_end": t(2)}, {"window_start": t(2), "window_end": t(3)},
               {"window_start": t(6), "window_end": t(7)}, {"window_start": t(7), "window_end": t(9)}]
    assert reconcile.holes(windows, t(9)) == [(t(3), t(6))]
    assert reconcile.holes(windows, t(5)) == [(t(3), t(5))]  # the watermark bounds a hole
    assert reconcile.holes(windows[:2], t(3)) == []           # before the first window is not a hole


def test_the_time_zone_check_fits_half_and_quarter_hour_offsets_from_15_minute_counts():
    """Dashboard totals bucketed at UTC+05:45 against export counts per 15 minutes (pure)."""
    zone = dt.timezone(dt.timedelta(hours=5, minutes=45))
    start = dt.date(2022, 3, 10)
    import random
    counts = random.Random(3)  # exact counts, as both of Amplitude's APIs give them
    quarters, seg = [], {"ViewBlob": {}}
    for k in range(4 * 24 * 5):
        bucket = dt.datetime(2022, 3, 10, tzinfo=dt.timezone.utc) + k * reconcile.QUARTER
        n = counts.randint(0, 12)
        quarters.append({"bucket": bucket, "name": "ViewBlob", "amplitude": n})
        hour = bucket.astimezone(zone).strftime("%Y-%m-%dT%H:00:00")
        seg["ViewBlob"][hour] = seg["ViewBlob"].get(hour, 0) + n
    anomaly, note = reconcile._time_zone_check(seg, quarters, "UTC", start, start + dt.timedelta(days=4), reconcile.Tolerance())
    assert anomaly is not None and "UTC+05:45" in anomaly.message and "Asia/Kathmandu" in anomaly.message, note
    fine, _ = reconcile._time_zone_check(seg, quarters, "Asia/Kathmandu", start, start + dt.timedelta(days=4), reconcile.Tolerance())
    assert fine is None
    short, note = reconcile._time_zone_check(seg, quarters, "UTC", start, start + dt.timedelta(days=1), reconcile.Tolerance())
    assert short is None and "widen it" in note


def test_a_lost_hour_is_not_an_export_gap_because_the_dashboard_counts_hours_still_in_the_export_lag():
    """03:00 is gone from Amplitude (export and Dashboard), and 13:00-14:00 is accepted but not
    exported yet: the Dashboard's day total exceeds the export by the latter, which is not the hole."""
    day = dt.datetime(2022, 3, 14, tzinfo=dt.timezone.utc)
    hourly = [{"hour": day + dt.timedelta(hours=h), "name": "ViewBlob", "accepted": 100,
               "accepted_recent": 100 if h >= 13 else 0, "amplitude": 0 if h in (3, 13, 14) else 100} for h in range(15)]
    in_amplitude = 100 * 15 - 100  # everything but 03:00, the lag's hours included
    lost = reconcile._in_dashboard(day + dt.timedelta(hours=3), hourly, {"ViewBlob": {"2022-03-14": in_amplitude}}, ZoneInfo("UTC"))
    gap = reconcile._in_dashboard(day + dt.timedelta(hours=3), hourly, {"ViewBlob": {"2022-03-14": in_amplitude + 100}},
                                  ZoneInfo("UTC"))
    assert (lost, gap) == (False, True)
