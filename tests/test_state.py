"""The sync's state: the lease is a mutex on BigQuery's own terms, tried on the stand-in that runs
jobs concurrently and aborts conflicting transactions as BigQuery does (tests/bigquery_standin.py);
row outcomes rolled up past their retention, and nothing sent twice because of it."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from ampkit import config as configuration
from ampkit import deadletter, state, sync
from ampkit import warehouse as warehouses
from ampkit.errors import ConfigError, LockedError

from bigquery_standin import running
from conftest import NOW, fill

DAY = dt.timedelta(days=1)
MIDNIGHT = dt.datetime.combine(NOW.date(), dt.time(), dt.timezone.utc)
TRIES = 40
# The lease as it was taken before: a transaction that deletes an expired row and inserts one if
# none exists. Under snapshot isolation both racers see no row, and concurrent INSERTs never
# conflict, so both commit and both think they hold the lease.
OLD_ACQUIRE = """
BEGIN TRANSACTION;
DELETE FROM ampkit_lease WHERE name = @name AND (expires_at <= @now OR holder = @holder);
INSERT INTO ampkit_lease (name, holder, acquired_at, expires_at)
SELECT @name, @holder, @now, @expires_at FROM (SELECT 1 AS one) AS x
WHERE NOT EXISTS (SELECT 1 FROM ampkit_lease WHERE name = @name);
COMMIT TRANSACTION;
SELECT holder, expires_at FROM ampkit_lease WHERE name = @name
"""


def race(url: str, attempt) -> list[int]:
    """Run `attempt(warehouse, i)` for i = 0, 1 at the same moment; the racers it returned True for."""
    barrier = threading.Barrier(2)
    won: list[int] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        with warehouses.open(url) as wh:
            barrier.wait()
            try:
                if attempt(wh, i):
                    won.append(i)
            except BaseException as exc:  # surfaced below, with the trial
                errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return won


@pytest.fixture
def bq():
    # Statements of concurrent jobs interleave with up to 20 ms between a job's statements.
    with running(statement_seconds=(0.0, 0.02), seed=14) as standin:
        with warehouses.open(standin.url()) as wh:
            wh.ensure_tables()
            state.ensure_schema(wh)
        yield standin


def test_two_runs_racing_for_the_lease_exactly_one_wins_every_time(bq):
    def begin(wh, i):
        record = state.RunRecord(run_id=f"run-{trial}-{i}", started_at=NOW)
        try:
            state.begin(wh, record, f"holder-{trial}-{i}", 60)
        except LockedError:
            return False
        return True
    for trial in range(TRIES):
        # Free in three ways: no row yet, an unowned row, a row whose holder's lease expired.
        bq.sql("DELETE FROM analytics.ampkit_lease")
        if trial % 3 == 1:
            bq.sql("INSERT INTO analytics.ampkit_lease VALUES ('hourly_sync', NULL, NULL, NULL)")
        elif trial % 3 == 2:
            bq.sql("INSERT INTO analytics.ampkit_lease VALUES ('hourly_sync', 'gone', ?, ?)",
                   [NOW, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)])
        won = race(bq.url(), begin)
        assert len(won) == 1, f"trial {trial}: {len(won)} runs took the lease"
        holders = {h for (h,) in bq.sql("SELECT holder FROM analytics.ampkit_lease")}
        assert holders == {f"holder-{trial}-{won[0]}"}, f"trial {trial}: {holders}"
        running_rows = bq.sql("SELECT run_id FROM analytics.ampkit_runs WHERE run_id LIKE ? AND status = 'running'",
                              [f"run-{trial}-%"])
        assert running_rows == [(f"run-{trial}-{won[0]}",)], f"trial {trial}: only the winner opens its ledger row"
        bq.sql("UPDATE analytics.ampkit_runs SET status = 'ok' WHERE status = 'running'")


def test_the_stand_in_catches_the_lease_that_was_not_a_mutex(bq, tmp_path):
    old = tmp_path / "old_acquire.sql"
    old.write_text(OLD_ACQUIRE, encoding="utf-8")

    def acquire(wh, i):
        now = state.wall_clock()
        rows = wh.run(str(old), {"name": state.LEASE_NAME, "holder": f"holder-{i}", "now": now,
                                 "expires_at": now + dt.timedelta(seconds=60)}).to_pylist()
        return any(r["holder"] == f"holder-{i}" for r in rows)
    doubled = 0
    for _ in range(TRIES):
        bq.sql("DELETE FROM analytics.ampkit_lease")
        doubled += len(race(bq.url(), acquire)) == 2
    assert doubled > 0, "two racers never both took the old lease: the stand-in would not catch the bug"


def test_a_run_that_lost_its_lease_can_neither_renew_it_nor_pass_the_fence(bq):
    with warehouses.open(bq.url()) as wh:
        state.begin(wh, state.RunRecord(run_id="stalled", started_at=NOW), "stalled-holder", 60)
        # Another run takes the lease after it expired (forced here: the stalled run slept past it).
        bq.sql("UPDATE analytics.ampkit_lease SET holder = 'taker', expires_at = ?",
               [dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)])
        with pytest.raises(LockedError, match="lost the sync lease"):
            state.check_held(wh, "stalled-holder")
        with pytest.raises(LockedError, match="now held by taker"):
            state.renew(wh, "stalled-holder", 60)


def test_the_roll_up_is_due_once_a_day_behind_retention_and_the_lookback():
    cfg = configuration.load({"outcome_retention_days": 10, "lookback_hours": 6})
    mark = NOW - dt.timedelta(hours=1)
    assert state.rollup_target(cfg, NOW, mark, None) == MIDNIGHT - 10 * DAY
    assert state.rollup_target(cfg, NOW, mark, MIDNIGHT - 10 * DAY) is None  # done today
    assert state.rollup_target(cfg, NOW, mark, MIDNIGHT - 11 * DAY) == MIDNIGHT - 10 * DAY
    # A sync stuck 20 days back: rows the next run reads back over keep their outcomes.
    assert state.rollup_target(cfg, NOW, NOW - 20 * DAY, None) == MIDNIGHT - 20 * DAY
    assert state.rollup_target(cfg, NOW, None, None) is None  # nothing synced yet
    assert state.rollup_target(configuration.load({"outcome_retention_days": 0}), NOW, mark, None) is None
    with pytest.raises(ConfigError, match="more than dedup_horizon_days"):
        configuration.load({"outcome_retention_days": 7})
    days = [{"day": (MIDNIGHT - 3 * DAY).date(), "staged": 10, "without_outcome": 0},
            {"day": (MIDNIGHT - 2 * DAY).date(), "staged": 10, "without_outcome": 4}]
    until, why = state.rollup_until(days, MIDNIGHT)
    assert until == MIDNIGHT - 2 * DAY and "4 rows loaded that day have no outcome yet" in why
    assert state.rollup_until(days[:1], MIDNIGHT) == (MIDNIGHT, "")


def test_after_a_roll_up_a_backfill_sends_nothing_twice_and_a_replayed_dead_letter_once(warehouse_url, make_config, sandbox):
    fill(warehouse_url, days=3, events_per_day=2000, hours=60)
    assert sync.run(make_config(now=NOW - dt.timedelta(minutes=55), initial_lookback_hours=61), progress="none").status == "ok"
    assert sync.run(make_config(), progress="none").status == "ok"  # the last staging run too
    with warehouses.open(warehouse_url) as wh:
        done = state.roll_up(wh, "rollup-test", None, MIDNIGHT, NOW)
        assert (done.kept_from, done.days, done.blocked) == (MIDNIGHT, 2, "")
        with wh.connect() as con:
            found = con.execute("SELECT id, loaded_at < ? FROM ampkit_dead_letters WHERE reason = 'no_id'", [MIDNIGHT]).fetchall()
    broken = [r[0] for r in found]
    in_amplitude = sandbox.control.stats()["events_in_store"]
    assert in_amplitude and sum(1 for r in found if r[1]) >= 3, "dead letters in the rolled-up days"

    # Every row loaded before the horizon has only its counts now: none looks unhandled.
    again = sync.run(make_config(), start=NOW - 4 * DAY, end=NOW, progress="none")
    assert again.status == "ok" and again.extracted == 0
    assert sandbox.control.stats()["events_in_store"] == in_amplitude

    # The dead letters' rows are fixed in the warehouse and replayed: sent once, then never again.
    with warehouses.open(warehouse_url) as wh, wh.connect() as con:
        con.execute("UPDATE amplitude_events SET device_id = 'fixed-device-' || id WHERE id IN (SELECT UNNEST(?))", [broken])
    replayed = deadletter.replay(make_config(), ["no_id"], NOW - 10 * DAY)
    assert replayed.accepted == len(broken) and replayed.extracted == len(broken)
    assert sandbox.control.stats()["events_in_store"] == in_amplitude + len(broken)
    with warehouses.open(warehouse_url) as wh:
        later = state.roll_up(wh, "rollup-test-2", done.kept_from, MIDNIGHT + DAY, NOW + DAY)
        assert later.kept_from == MIDNIGHT + DAY
    for _ in range(2):
        assert sync.run(make_config(), start=NOW - 4 * DAY, end=NOW, progress="none").extracted == 0
        assert deadletter.replay(make_config(), ["no_id"], NOW - 10 * DAY) is None
    assert sandbox.control.stats()["events_in_store"] == in_amplitude + len(broken)


def test_a_warehouse_an_older_ampkit_made_gains_the_new_tables_on_the_first_run(seeded, make_config):
    """run_begin reads tables this version added; on an older warehouse its last statement fails
    after the lease and the ledger row are written, the run creates the tables and begins again,
    and the ledger keeps one row for it, never marking itself interrupted."""
    with warehouses.open(seeded) as wh, wh.connect() as con:
        con.execute("DROP TABLE IF EXISTS ampkit_approvals")
        con.execute("DROP TABLE IF EXISTS ampkit_volumes")
    record = state.RunRecord(run_id="r-upgrade", started_at=NOW, mode="sync", data_map_version="v")
    with warehouses.open(seeded) as wh:
        begun = state.begin(wh, record, "holder-upgrade", 60)
        assert begun.holder == "holder-upgrade" and begun.deployed_map is None and not begun.map_approved
        rows = wh.run("runs_list", {"limit": 10}).to_pylist()
        assert [(r["run_id"], r["status"]) for r in rows] == [("r-upgrade", "running")]
        assert wh.columns("ampkit_volumes") is not None
