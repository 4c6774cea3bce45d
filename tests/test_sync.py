"""The hourly sync against the real sandbox over HTTP and a real DuckDB warehouse."""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from ampkit import dashboard, seed, stage, state, sync, warehouse as warehouses
from ampkit.errors import ConfigError, SyncError, WarehouseError
from ampkit.sandbox import SandboxConfig, start

import children
import damage
from conftest import API_KEY, NOW, SECRET_KEY, fill

HOUR = dt.timedelta(hours=1)


def accepted_insert_ids(url: str) -> list[str]:
    with warehouses.open(url) as wh:
        return [r["insert_id"] for r in _query(wh, "SELECT insert_id FROM ampkit_deliveries WHERE outcome = 'accepted'")]


def _query(wh, sql: str) -> list[dict]:
    with wh.connect() as con:
        return con.sql(sql).to_arrow_table().to_pylist()


def exported(config) -> dict:
    d = dashboard.Dashboard(config)
    try:
        # The export is by upload time, which is the real clock, whatever the run's clock says.
        now = dt.datetime.now(dt.timezone.utc)
        return d.insert_ids(now - dt.timedelta(days=1), now + HOUR)
    finally:
        d.close()


def assert_exactly_once(config, url):
    expected = accepted_insert_ids(url)
    got = exported(config)
    assert len(expected) == len(set(expected)), "an insert_id was accepted twice in the ledger"
    assert set(got) == set(expected), f"missing {len(set(expected) - set(got))}, unexpected {len(set(got) - set(expected))}"
    dupes = {k: v for k, v in got.items() if v != 1}
    assert not dupes, f"{len(dupes)} insert_ids stored more than once"
    return len(expected)


def identity(result: sync.SyncResult) -> None:
    assert result.extracted == result.accepted + sum(result.filtered.values()) + sum(result.rejected.values())
    for w in result.windows:
        w.check()


def test_a_day_synced_hour_by_hour(warehouse_url, make_config, sandbox):
    fill(warehouse_url, days=2, events_per_day=4000, hours=24, now=NOW - dt.timedelta(hours=1))
    with warehouses.open(warehouse_url) as wh:
        for h in range(24, -1, -1):
            at = NOW - h * HOUR
            cfg = make_config(now=at + dt.timedelta(minutes=5))
            stage.run(wh, cfg, at)
            result = sync.run(cfg, progress="none")
            assert result.status == "ok"
            identity(result)
    runs = state.runs(warehouses.open(warehouse_url), 100)
    assert len(runs) == 25 and {r["status"] for r in runs} == {"ok"}
    count = assert_exactly_once(make_config(), warehouse_url)
    assert count > 1000
    totals = {k: v for r in runs for k, v in json.loads(r["filtered"]).items()}
    assert {"backend", "code_insights", "codeintel_deny_list"} <= set(totals)
    rejected = {k for r in runs for k in json.loads(r["rejected"])}
    assert {"no_id", "malformed_public_argument"} <= rejected
    # Only public_argument leaves: no private marker in any request the sandbox received.
    bodies = json.dumps(sandbox.control.requests(limit=1000))
    assert "PRIVATE-" not in bodies


def test_private_argument_never_sent(warehouse_url, make_config):
    from ampkit.sandbox import SandboxConfig, start
    fill(warehouse_url, days=1, events_per_day=1500, hours=2)
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], export_lag_seconds=0, record_bodies=True)) as sb:
        cfg = make_config(amplitude_url=sb.url, gzip=False)
        result = sync.run(cfg, progress="none")
        assert result.accepted > 0
        log = sb.control.requests(limit=1000)
        bodies = [json.dumps(r.get("body")) for r in log if r.get("path") == "/batch"]
        assert bodies and all("PRIVATE-" not in b for b in bodies)
        assert all('"argument"' not in b for b in bodies)


def test_rerun_is_a_no_op_and_safe(seeded, make_config):
    cfg = make_config()
    first = sync.run(cfg, progress="none")
    again = sync.run(cfg, progress="none")
    assert first.accepted > 0 and again.extracted == 0
    assert_exactly_once(cfg, seeded)


@pytest.mark.parametrize("endpoint", ["batch", "httpapi"])
def test_faults_at_20_percent_deliver_everything_once(seeded, make_config, sandbox, endpoint):
    cfg = make_config(amplitude_endpoint=endpoint, max_events_per_request=200, concurrency=3,
                      request_timeout_seconds=2)
    path = "/batch" if endpoint == "batch" else "/2/httpapi"
    share = 0.20 / 9
    c = sandbox.control
    # One certain 503 first, so the retry path runs even when the random shares spare a short run.
    c.inject(path, status=503, count=1)
    c.inject(path, status=429, share=share, throttled="first")
    c.inject(path, status=413, share=share)
    for status in (500, 502, 503, 504):
        c.inject(path, status=status, share=share)
    c.inject(path, kind="ingested_then_500", share=share)
    c.inject(path, kind="drop", share=share)
    c.inject(path, kind="non_json", share=share)
    result = sync.run(cfg, progress="none")
    c.clear_faults()
    assert result.status == "ok" and result.retries > 0
    identity(result)
    assert_exactly_once(cfg, seeded)
    assert c.stats()["faults_injected"] > 0


def test_400_dead_letters_exactly_the_named_events(seeded, make_config, sandbox):
    # min_id_length 6 on the sandbox side only: ampkit sends with the default 5, so 5-character
    # ids are refused by "Amplitude" and must land in the dead-letter table, the rest delivered.
    from ampkit.sandbox import SandboxConfig, start
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], export_lag_seconds=0, min_id_length=40)) as sb:
        cfg = make_config(amplitude_url=sb.url)
        result = sync.run(cfg, progress="none")
        identity(result)
        assert result.rejected.get("amplitude_invalid_id_lengths:device_id", 0) > 0
        assert_exactly_once(cfg, seeded)


def test_throttling_holds_only_throttled_ids(seeded, make_config, sandbox):
    cfg = make_config(max_events_per_request=100, throttle_hold_seconds=0.3)
    sandbox.control.inject("/batch", status=429, count=3, throttled="first")
    result = sync.run(cfg, progress="none")
    assert result.status == "ok"
    assert_exactly_once(cfg, seeded)


def test_daily_quota_ids_are_dead_lettered(seeded, make_config, sandbox):
    cfg = make_config(max_events_per_request=100)
    sandbox.control.inject("/batch", status=429, count=1, throttled="first", daily_quota=True)
    result = sync.run(cfg, progress="none")
    identity(result)
    assert result.rejected.get("quota", 0) > 0
    assert_exactly_once(cfg, seeded)


def test_outage_beyond_budget_fails_loudly_and_next_run_completes(seeded, make_config, sandbox):
    cfg = make_config(retry_budget_seconds=1.5, max_backoff_seconds=0.2)
    sandbox.control.inject("/batch", status=503, share=1.0)
    with pytest.raises(SyncError, match="retry budget"):
        sync.run(cfg, progress="none")
    with warehouses.open(seeded) as wh:
        assert state.watermark(wh) is None
        assert state.runs(wh, 1)[0]["status"] == "failed"
    sandbox.control.clear_faults()
    result = sync.run(cfg, progress="none")
    assert result.status == "ok"
    assert_exactly_once(cfg, seeded)


def test_late_rows_within_lookback_are_delivered(seeded, make_config):
    cfg = make_config()
    sync.run(cfg, progress="none")
    # A row whose load committed late: its loaded_at is before the watermark.
    with warehouses.open(seeded) as wh:
        mark = state.watermark(wh)
        with wh.connect() as con:
            # Within the lookback: 2 hours before the watermark. Beyond it: 30 hours before.
            for prefix, hours in (("late-", 2), ("too-late-", 30)):
                con.execute(f"""INSERT INTO amplitude_events SELECT * REPLACE (id + {len(prefix)} * 10000000 AS id,
                               '{prefix}' || id AS insert_id, $mark - INTERVAL {hours} HOUR AS loaded_at)
                               FROM amplitude_events WHERE name = 'SearchSubmitted' AND device_id IS NOT NULL LIMIT 3""",
                            {"mark": mark})
    later = make_config(now=NOW + HOUR)
    result = sync.run(later, progress="none")
    assert result.accepted >= 3
    ids = exported(cfg)
    assert sum(1 for k in ids if str(k).startswith("late-")) == 3
    # Beyond the lookback nothing is sent by the hourly run; the reconciliation reports them.
    assert sum(1 for k in ids if str(k).startswith("too-late-")) == 0
    assert_exactly_once(cfg, seeded)


def test_two_concurrent_runs_never_both_send(seeded, make_config):
    cfg = make_config(max_events_per_request=50)
    results = []
    threads = [threading.Thread(target=lambda: results.append(sync.run(cfg, progress="none"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in results)
    assert statuses == ["ok", "skipped_locked"]
    with warehouses.open(seeded) as wh:
        assert "skipped_locked" in {r["status"] for r in state.runs(wh, 10)}
    assert_exactly_once(cfg, seeded)


def test_an_hourly_run_held_up_by_amplitude_leaves_the_duckdb_file_to_others(seeded, sandbox, monkeypatch):
    monkeypatch.setenv("AMPKIT_WAREHOUSE", seeded)
    monkeypatch.setenv("AMPKIT_AMPLITUDE_URL", sandbox.url)
    monkeypatch.setenv("AMPKIT_NOW", NOW.isoformat())
    monkeypatch.setenv("AMPKIT_SETTLE_SECONDS", "0")
    sandbox.control.inject("/batch", kind="delay", delay_seconds=300, share=1.0)  # held until cleared
    run = children.start([sys.executable, "-m", "ampkit", "sync", "--progress", "none"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = seeded.removeprefix("duckdb:///") + f".{state.LEASE_NAME}.lock"
    try:
        deadline = time.monotonic() + 60
        while "\n" not in (open(lock).read() if os.path.exists(lock) else ""):  # the lease is taken
            assert time.monotonic() < deadline and run.poll() is None, run.stdout.read() if run.poll() is not None else ""
            time.sleep(0.05)
        wh = warehouses.open(seeded)
        wh.LOCK_WAIT_SECONDS = 2.0
        ledger: list = []
        while not ledger:
            # While its first request waits on Amplitude, the run must not hold the file. The lease
            # is taken a moment before the run's row is written: an empty ledger means "not yet".
            assert time.monotonic() < deadline and run.poll() is None, "the run ended or kept the file locked"
            try:
                ledger = state.runs(wh, 5)
            except WarehouseError:
                pass
            time.sleep(0.02)
        assert [r["status"] for r in ledger] == ["running"]
        assert sandbox.control.stats()["events_in_store"] == 0, "a request got through the gate"
    finally:
        sandbox.control.clear_faults()
    out = run.communicate(timeout=120)[0]
    assert run.returncode == 0, out[-2000:]
    with warehouses.open(seeded) as wh:
        assert [r["status"] for r in state.runs(wh, 5)] == ["ok"]


def test_a_run_behind_the_watermark_records_an_empty_window_and_its_lag(seeded, make_config):
    assert sync.run(make_config(settle_seconds=300), progress="none").status == "ok"
    behind = sync.run(make_config(now=NOW - dt.timedelta(hours=2)), progress="none")  # a replayed hour
    assert behind.status == "ok" and behind.extracted == 0
    with warehouses.open(seeded) as wh:
        first, replayed = state.runs(wh, 2)  # newest clock first: the replayed hour's clock is earlier
    assert replayed["run_id"] == behind.run_id
    assert replayed["window_start"] == replayed["window_end"] == first["window_end"]  # nothing looked at, never backwards
    assert first["lag_events"] == first["accepted"] and replayed["lag_events"] is None  # it accepted nothing


def test_dry_run_sends_nothing_and_moves_nothing(seeded, make_config, sandbox):
    cfg = make_config()
    result = sync.run(cfg, dry_run=True, progress="none")
    assert result.status == "dry_run" and result.extracted > 0 and result.samples
    identity(result)
    assert "event_type" in result.samples[0] and "argument" not in json.dumps(result.samples)
    assert sandbox.control.stats()["requests"] == 0
    with warehouses.open(seeded) as wh:
        assert state.watermark(wh) is None
    # Per event, as the record's chart shows it: the same totals, rejects by the transform included.
    events = sync.breakdown(cfg, result)
    assert events["events"].sum() == result.extracted
    per = events.groupby("outcome")["events"].sum()
    assert per["accepted"] == result.accepted and per["rejected"] == sum(result.rejected.values())
    assert per.get("filtered", 0) + per.get("held", 0) == sum(result.filtered.values())


def test_backfill_by_event_time_in_windows_sized_by_rows(seeded, make_config):
    cfg = make_config(initial_lookback_hours=1, lookback_hours=0, slice_rows=500)
    first = sync.run(cfg, progress="none")
    result = sync.run(cfg, start=NOW - dt.timedelta(days=2), end=NOW, progress="none")
    # Windows of loaded hours packed up to 500 rows (an hour holding more is one window, sliced), not
    # one per event hour: the fixture's rows were loaded by 7 staging runs, the first holding most.
    assert result.extracted > first.extracted > 0
    assert 2 <= len(result.windows) <= 7
    assert any("backfill:" in w and "warehouse jobs" in w for w in result.warnings)
    identity(result)
    again = sync.run(cfg, start=NOW - dt.timedelta(days=2), end=NOW, progress="none")
    assert again.extracted == 0 and again.windows == []  # what was handled costs nothing more
    assert_exactly_once(cfg, seeded)


def test_a_large_backfill_asks_for_yes_with_its_estimate(seeded, make_config):
    cfg = make_config(confirm_threshold_events=100, slice_rows=1000)
    with pytest.raises(ConfigError) as caught:
        sync.run(cfg, start=NOW - dt.timedelta(days=2), end=NOW, yes=False, progress="none")
    message = str(caught.value)
    assert "rows in" in message and "windows" in message and "warehouse jobs" in message and "GB read" in message
    assert "--yes" in message
    with warehouses.open(seeded) as wh:
        assert state.watermark(wh) is None and [r["status"] for r in state.runs(wh, 5)] == ["failed"]


def test_crash_at_random_points_then_rerun_is_exactly_once(seeded, make_config, sandbox):
    cfg = make_config()
    env = {**os.environ, "AMPKIT_WAREHOUSE": seeded, "AMPKIT_NOW": NOW.isoformat(),
           "AMPKIT_AMPLITUDE_URL": sandbox.url, "AMPKIT_MAX_EVENTS_PER_REQUEST": "100",
           "AMPKIT_SETTLE_SECONDS": "0", "AMPKIT_CONCURRENCY": "2"}
    sandbox.control.inject("/batch", kind="delay", delay_seconds=0.02, share=1.0)
    rng = random.Random(7)
    for _ in range(4):
        p = children.start([sys.executable, "-m", "ampkit", "-q", "sync", "--progress", "none"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 2.5))
        p.kill()
        p.wait()
        _restore_if_damaged(seeded, env)
    sandbox.control.clear_faults()
    done = subprocess.run([sys.executable, "-m", "ampkit", "sync", "--json", "--progress", "none"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    assert_exactly_once(cfg, seeded)
    with warehouses.open(seeded) as wh:
        statuses = [r["status"] for r in state.runs(wh, 20)]
    # Every run shares the fixed clock's start time, so the ledger's order among them is arbitrary.
    # A kill may land before a run wrote its ledger row (a slow start), so "interrupted" rows are not
    # guaranteed here; tests/reliability/test_crashes.py kills at named points and checks them.
    assert "ok" in statuses and "running" not in statuses


def test_a_sync_keeps_a_copy_of_the_duckdb_file_as_it_was_before_the_run(seeded, make_config, sandbox):
    import duckdb
    path = seeded.removeprefix("duckdb:///")
    with duckdb.connect(path, read_only=True) as con:
        before = con.execute("SELECT count(*) FROM amplitude_events").fetchone()[0]
    result = sync.run(make_config(), progress="none")
    assert result.status == "ok" and result.accepted > 0
    with duckdb.connect(f"{path}.last-good", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM amplitude_events").fetchone()[0] == before
        assert con.execute("SELECT count(*) FROM ampkit_deliveries").fetchone()[0] == 0  # from before the run


def _restore_if_damaged(url: str, env: dict) -> None:
    """A kill inside DuckDB's checkpoint can damage its file (DuckDB's bug, docs/RELIABILITY.md): put
    the last good copy back as the error tells a user to; the sync then re-sends, Amplitude keeps once."""
    if damage.damaged(url):
        done = damage.restore(url, env=env)
        assert done.returncode == 0, done.stderr


def test_dead_letters_replay_sends_the_fixed_rows(seeded, make_config, sandbox):
    from ampkit import deadletter
    cfg = make_config(max_events_per_request=100)
    sandbox.control.inject("/batch", status=429, count=2, throttled="first", daily_quota=True)
    first = sync.run(cfg, progress="none")
    quota = first.rejected.get("quota", 0)
    assert quota > 0
    replayed = deadletter.replay(cfg, ["quota"], NOW - dt.timedelta(days=1))
    assert replayed.accepted == quota and replayed.extracted == quota
    assert deadletter.replay(cfg, ["quota"], NOW - dt.timedelta(days=1)) is None
    assert_exactly_once(cfg, seeded)
    with warehouses.open(seeded) as wh:
        left = _query(wh, "SELECT COUNT(*) AS n FROM ampkit_deliveries WHERE reason = 'quota'")[0]["n"]
    assert left == 0


def test_resend_beyond_the_dedup_horizon_needs_force(seeded, make_config):
    cfg = make_config()
    sync.run(cfg, progress="none")
    # Ten days later, with an interrupted run that may have sent part of the still-open window.
    later = make_config(now=NOW + dt.timedelta(days=10))
    with warehouses.open(seeded) as wh, wh.connect() as con:
        con.execute("""INSERT INTO ampkit_runs (run_id, started_at, status, window_start, window_end)
                       VALUES ('old-run', $t, 'interrupted', $a, $b)""",
                    {"t": NOW + dt.timedelta(hours=1), "a": NOW, "b": NOW + dt.timedelta(hours=2)})
    with pytest.raises(SyncError, match="--force"):
        sync.run(later, progress="none")
    # Nothing was loaded for ten days: the guardrail would hold the empty hours, accepted here.
    assert sync.run(later, force=True, progress="none", accept_volume=("all",)).status == "ok"


def _depth(text: str) -> int:
    depth = deepest = 0
    for c in text:
        depth += 1 if c in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


@pytest.mark.parametrize("levels", [1, 2, 5, 40])
def test_depth_pattern_accepts_exactly_the_sequences_within_its_depth(levels):
    import re
    pattern = re.compile(sync.depth_pattern(levels))
    rng = random.Random(levels)
    for _ in range(300):
        # A random balanced JSON-like bracket tree, sometimes just over the limit.
        target = rng.choice([levels, levels + 1, rng.randint(1, levels + 3)])
        def tree(d):
            if d >= target or rng.random() < 0.2:
                return "{}"
            return "{" + "".join(tree(d + 1) if rng.random() < 0.7 else "[]" for _ in range(rng.randint(1, 3))) + "}"
        text = tree(1)
        assert bool(pattern.fullmatch(text)) == (_depth(text) <= levels), text


def test_the_lease_is_given_back_when_recording_the_run_fails(seeded, make_config):
    # The ledger refuses the run's final row (a CHECK the run cannot satisfy; DuckDB checks it on
    # insert): the 'running' row goes in, recording the result fails, and the lease must still be
    # released, or every later run would skip until it expired.
    with warehouses.open(seeded) as wh:
        wh.ensure_state()
        with wh.connect() as con:
            columns = ", ".join(f"{n} {t}" for n, t in con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'ampkit_runs' "
                "ORDER BY ordinal_position").fetchall())
            con.execute("DROP TABLE ampkit_runs")
            con.execute(f"CREATE TABLE ampkit_runs ({columns}, CHECK (status IN ('running', 'skipped_locked')))")
    with pytest.raises(WarehouseError):
        sync.run(make_config(), progress="none")
    with warehouses.open(seeded) as wh:
        assert [r["holder"] for r in _query(wh, "SELECT * FROM ampkit_lease")] == [None]  # unowned: given back


def test_the_lease_is_renewed_on_a_timer_while_a_run_outlives_it(seeded, make_config, sandbox):
    # A one-second lease and a send held up for three: without renewals the lease would lapse
    # mid-send and a second run would take over; with them the second run is turned away.
    sandbox.control.inject("/batch", kind="delay", delay_seconds=3, count=1)
    cfg = make_config(lease_seconds=1)
    first: dict = {}
    runner = threading.Thread(target=lambda: first.update(result=sync.run(cfg, progress="none")))
    runner.start()
    deadline = time.monotonic() + 60
    while sandbox.control.faults():  # the one-shot delay is taken: the first run's request is held
        assert time.monotonic() < deadline and runner.is_alive(), "the first run never sent"
        time.sleep(0.01)
    time.sleep(1.5)  # the lease it took before sending would have lapsed by now without renewals
    second = sync.run(cfg, progress="none")
    runner.join(60)
    assert second.status == "skipped_locked", second.to_dict()
    assert first["result"].status == "ok" and first["result"].accepted > 0
    with warehouses.open(seeded) as wh:
        expiries = _query(wh, "SELECT holder, expires_at FROM ampkit_lease")
    assert [e["holder"] for e in expiries] == [None]  # given back at the end


def test_an_empty_source_and_no_source_are_one_key_with_one_decision():
    """The checkpoint matches rows to decisions on COALESCE(source, ''): two keys for one would give
    its rows two decisions, an UPDATE BigQuery refuses (the ZetaSQL oracle found it; DuckDB allows it)."""
    rows = [{"name": "X", "source": None, "row_count": 2}, {"name": "X", "source": "", "row_count": 3},
            {"name": "X", "source": "WEB", "row_count": 1}]
    assert sync._keys(rows) == [{"name": "X", "source": None, "row_count": 5}, {"name": "X", "source": "WEB", "row_count": 1}]


def test_a_five_minute_schedule_for_two_hours_sends_every_row_exactly_once(warehouse_url, make_config, sandbox):
    """Two simulated hours at a 5-minute cadence, each run staging its own rows (stage_in_run), with
    every row committed to event_logs after a log-normal delay (median 20 s, up to 30 min): 24
    runs, one of them slow enough that the next finds the lease taken and skips. Every row that
    arrived is staged once and sent once; no run re-sends; the lag the runs record is minutes."""
    begin = NOW - 2 * HOUR
    with warehouses.open(warehouse_url) as wh:
        seed.fill(wh, seed.SeedSpec(start=(NOW - dt.timedelta(days=1)).date(), days=2, events_per_day=6000,
                                    dirty_share=0.0, late_share=0.0, until=NOW, commit_delay_seconds=20))

    def tick(t: dt.datetime) -> sync.SyncResult:
        return sync.run(make_config(now=t, sync_interval_minutes=5, stage_in_run=True, initial_lookback_hours=1),
                        progress="none")

    first = tick(begin)
    assert first.status == "ok" and first.window_end == begin  # no settle time: it staged its own rows
    results = [first]
    lock = warehouse_url.removeprefix("duckdb:///") + f".{state.LEASE_NAME}.lock"
    for k in range(1, 25):
        t = begin + k * dt.timedelta(minutes=5)
        if k == 12:
            # A slow run: Amplitude answers in 3 s a request, and the next tick comes while it sends.
            sandbox.control.inject("/batch", kind="delay", delay_seconds=3, share=1.0)
            slow: list = []
            runner = threading.Thread(target=lambda t=t: slow.append(tick(t)))
            runner.start()
            deadline = time.monotonic() + 60
            while "\n" not in (open(lock).read() if os.path.exists(lock) else ""):
                assert time.monotonic() < deadline and runner.is_alive(), "the slow run never took the lease"
                time.sleep(0.02)
            overlapping = tick(t + dt.timedelta(minutes=5))
            assert overlapping.status == "skipped_locked" and overlapping.sent == 0
            sandbox.control.clear_faults()
            runner.join()
            results += slow + [overlapping]
            continue
        if k == 13:
            continue  # its tick was the overlapping one
        results.append(tick(t))
    statuses = [r.status for r in results]
    assert statuses.count("ok") == 24 and statuses.count("skipped_locked") == 1, statuses
    done = [r for r in results if r.status == "ok"]
    for before, after in zip(done, done[1:]):
        assert after.window_start == before.window_end  # no gap, no overlap, whatever the slow run did
        identity(after)
    config = make_config(now=NOW)
    sent = assert_exactly_once(config, warehouse_url)
    assert sent == sum(r.accepted for r in done)
    with warehouses.open(warehouse_url) as wh:
        (row,) = _query(wh, f"""
            SELECT (SELECT COUNT(*) FROM event_logs WHERE timestamp > TIMESTAMP '{begin - 2 * HOUR:%Y-%m-%d %H:%M:%S}+00') AS arrived,
                   (SELECT COUNT(DISTINCT id) FROM amplitude_events WHERE timestamp > TIMESTAMP '{begin - 2 * HOUR:%Y-%m-%d %H:%M:%S}+00') AS staged,
                   (SELECT COUNT(*) FROM amplitude_events WHERE loaded_at > TIMESTAMP '{begin - HOUR:%Y-%m-%d %H:%M:%S}+00') AS in_windows,
                   (SELECT COUNT(*) FROM ampkit_deliveries) AS decided,
                   (SELECT COUNT(DISTINCT id) FROM ampkit_deliveries) AS decided_ids""")
    assert row["staged"] == row["arrived"] > 500  # every row that arrived was staged, despite the short lookbacks
    assert row["decided"] == row["decided_ids"] == row["in_windows"]  # one outcome per row of the windows
    lags = [r.lag["event"] for r in done[1:] if r.lag]
    assert len(lags) >= 20 and max(x["p95"] for x in lags) <= 35 * 60  # commit delay (cap 30 min) + 5 min cadence
    assert sorted(x["p50"] for x in lags)[len(lags) // 2] <= 5 * 60
