"""The sync's state: the lease is a mutex on BigQuery's own terms, tried on the stand-in that runs
jobs concurrently and aborts conflicting transactions as BigQuery does (tests/bigquery_standin.py)."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from ampkit import state
from ampkit import warehouse as warehouses
from ampkit.errors import LockedError

from bigquery_standin import running
from conftest import NOW

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
