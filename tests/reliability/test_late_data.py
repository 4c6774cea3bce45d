"""5. Late data: rows loaded late within the lookback are delivered; beyond it the hourly run leaves them
to the reconciliation, which reports them as late (and a backfill delivers them, once).

Rows flow as in production: into `event_logs`, staged into `amplitude_events` by the scheduled
query (`ampkit.stage`), whose `loaded_at` is the staging run's time. A "late" row is one whose
staging run committed with a `loaded_at` the sync's watermark had already passed.
"""
from __future__ import annotations

import datetime as dt

import pyarrow as pa

from ampkit import reconcile, stage, sync
from ampkit import warehouse as warehouses

from . import support
from .support import HOUR, MINUTE, NOW

LOOKBACK = 2
SETTINGS = {"initial_lookback_hours": 1, "lookback_hours": LOOKBACK}


def log_rows(url: str, rows: list[dict]) -> None:
    """Write rows into event_logs (what Looker sees), as the product's event stream would."""
    schema = pa.schema([f for f in support.EVENT_SCHEMA if f.name != "loaded_at"])
    with warehouses.open(url) as wh:
        wh.ensure_tables()
        wh.append("event_logs", pa.Table.from_pylist([{k: v for k, v in r.items() if k != "loaded_at"} for r in rows],
                                                      schema=schema))


def staged_at(url: str, run_time: dt.datetime) -> int:
    with warehouses.open(url) as wh:
        return stage.run(wh, support.config(url, "http://127.0.0.1:9", now=run_time), run_time).staged


def test_late_rows_within_lookback_delivered_beyond_it_reported_by_reconciliation(wh_url, amp, prefix, rel):
    on_time = [support.row(i, prefix, timestamp=NOW - 50 * MINUTE + i * support.MINUTE / 10) for i in range(1, 31)]
    in_lookback = [support.row(100 + i, prefix, timestamp=NOW - 3 * HOUR + i * MINUTE) for i in range(5)]
    beyond = [support.row(200 + i, prefix, timestamp=NOW - 30 * HOUR + i * MINUTE) for i in range(4)]
    log_rows(wh_url, on_time)
    assert staged_at(wh_url, NOW - 35 * MINUTE) == len(on_time)
    first = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    assert first.accepted == len(on_time) and support.watermark(wh_url) == NOW

    # Loads that committed late: their loaded_at is before the watermark the sync already passed.
    log_rows(wh_url, in_lookback + beyond)
    assert staged_at(wh_url, NOW - 26 * HOUR) == len(beyond)             # beyond the 2 h lookback
    assert staged_at(wh_url, NOW - 1 * HOUR) == len(in_lookback)         # within it
    later = support.config(wh_url, amp.url, **{**SETTINGS, "now": NOW + HOUR})
    second = sync.run(later, progress="none")
    support.identity(second)
    assert second.accepted == len(in_lookback)
    sent = {r["insert_id"] for r in on_time + in_lookback}
    rel.delivered(sent, support.exported(amp.url, prefix), "late within lookback")
    assert not support.outcome_of(wh_url, [r["id"] for r in beyond]), "the hourly run touched rows beyond its lookback"

    rec = reconcile.run(later, (NOW - 2 * dt.timedelta(days=1)).date(), NOW.date())
    late_rows = [r for r in rec.rows if r.late_beyond_lookback]
    assert sum(r.late_beyond_lookback for r in late_rows) == len(beyond), [dataclass_view(r) for r in rec.rows]
    assert all(r.day == beyond[0]["timestamp"].date() and r.name == "SearchSubmitted" for r in late_rows)
    assert all("backfill" in " ".join(r.notes) and r.status in ("warn", "fail") for r in late_rows)
    assert rec.totals()["late_beyond_lookback"] == len(beyond)

    # The documented remedy: a backfill of their event time sends them, once.
    backfill = sync.run(later, start=NOW - 31 * HOUR, end=NOW - 29 * HOUR, progress="none")
    assert backfill.accepted == len(beyond)
    rel.delivered(sent | {r["insert_id"] for r in beyond}, support.exported(amp.url, prefix), "after the backfill")
    assert support.books(wh_url) == []


def dataclass_view(row) -> dict:
    return {"day": str(row.day), "name": row.name, "late_beyond": row.late_beyond_lookback, "staged": row.staged}


def test_lookback_boundary_is_exclusive(wh_url, amp, prefix, rel):
    """loaded_at exactly at watermark - lookback is beyond it; a microsecond later is within."""
    support.insert(wh_url, [support.row(1, prefix)])
    sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    edge = NOW - LOOKBACK * HOUR
    support.insert(wh_url, [support.row(2, prefix, loaded_at=edge),
                            support.row(3, prefix, loaded_at=edge + dt.timedelta(microseconds=1))])
    result = sync.run(support.config(wh_url, amp.url, **{**SETTINGS, "now": NOW + 10 * MINUTE}), progress="none")
    assert result.accepted == 1
    assert support.outcome_of(wh_url, [1, 2, 3]) == {1: ("accepted", None), 3: ("accepted", None)}
    rel.delivered({f"{prefix}-1", f"{prefix}-3"}, support.exported(amp.url, prefix), "lookback boundary")


def test_row_loaded_five_hours_late_after_several_runs_is_sent_once(wh_url, amp, prefix, rel):
    """A row appears with an old loaded_at after hourly runs passed it: within a 6 h lookback, sent once."""
    support.insert(wh_url, [support.row(1, prefix)])
    for h in range(0, 3):
        sync.run(support.config(wh_url, amp.url, initial_lookback_hours=1, lookback_hours=6, now=NOW + h * HOUR),
                 progress="none")
    mark = support.watermark(wh_url)
    support.insert(wh_url, [support.row(2, prefix, loaded_at=mark - 5 * HOUR)])
    late = sync.run(support.config(wh_url, amp.url, initial_lookback_hours=1, lookback_hours=6, now=NOW + 3 * HOUR),
                    progress="none")
    assert late.accepted == 1
    rel.delivered({f"{prefix}-1", f"{prefix}-2"}, support.exported(amp.url, prefix), "5 h late")
    assert support.books(wh_url) == []


def test_the_hourly_path_through_odd_minute_loads_a_clock_that_jumps_and_an_outage(wh_url, amp, prefix, rel):
    """The ordinary hourly run (no --start/--end), as a scheduler drives it: loads commit at odd
    minutes, seconds and microseconds (on the hour and a microsecond after it too); the scheduler
    stops for longer than the lookback while loads go on; a run's clock steps back once. Every
    staged row gets exactly one outcome, each load is taken by the first run whose clock has passed
    it, and the watermark never passes a staged row without an outcome."""
    start = NOW - 20 * HOUR

    def t(minutes, seconds=0, micros=0):
        return start + dt.timedelta(minutes=minutes, seconds=seconds, microseconds=micros)

    loads = [t(3, 27, 481516), t(17), t(60), t(60, 0, 1), t(119, 59, 999999), t(143, 12, 5),
             # the outage: no run from +3 h to +9 h (longer than the 2 h lookback); loads go on
             t(200), t(261, 41, 1), t(320, 0, 500000), t(389, 59, 999999), t(451, 7), t(512, 33, 3),
             t(566), t(601, 1, 1), t(677, 59, 59)]
    # In the order they happen; the sixth run's clock stepped back 5 minutes behind the fifth's.
    runs = [t(5), t(65, 13, 123456), t(125, 5), t(180), t(545, 2, 1), t(540), t(605), t(665, 44, 2), t(725)]
    timeline = sorted([(when, "load", 0) for when in loads]
                      + [(when if k != 5 else runs[4], "run", k) for k, when in enumerate(runs)], key=lambda e: (e[0], e[2]))
    staged: dict[int, dt.datetime] = {}
    taken_by: dict[int, int] = {}
    for when, what, k in timeline:
        if what == "load":
            first = len(staged) + 1
            rows = [support.row(first + i, prefix, timestamp=when - (i + 1) * MINUTE) for i in range(3)]
            log_rows(wh_url, rows)
            assert staged_at(wh_url, when) == len(rows)
            staged.update({r["id"]: when for r in rows})
            continue
        result = sync.run(support.config(wh_url, amp.url, now=runs[k], **SETTINGS), progress="none")
        assert result.status == "ok", result.error
        support.identity(result)
        outcomes = support.outcome_of(wh_url, list(staged))
        for id_ in outcomes:
            taken_by.setdefault(id_, k)
        mark = support.watermark(wh_url)
        waiting = sorted(loaded for id_, loaded in staged.items() if id_ not in outcomes)
        assert mark is None or not waiting or waiting[0] > mark, (
            f"run {k} at {runs[k]}: the watermark {mark} passed rows without an outcome loaded at {waiting[:3]}")

    outcomes = support.outcome_of(wh_url, list(staged))
    assert set(outcomes) == set(staged), f"rows without an outcome: {sorted(set(staged) - set(outcomes))[:10]}"
    assert {o for o, _ in outcomes.values()} == {"accepted"}
    twice = support.query(wh_url, "SELECT id, COUNT(*) AS n FROM ampkit_deliveries GROUP BY id HAVING COUNT(*) > 1")
    assert not twice, f"rows with more than one outcome: {twice[:5]}"
    for id_, loaded in staged.items():
        first_after = next(k for k, clock in enumerate(runs) if clock >= loaded)
        assert taken_by[id_] == first_after, (
            f"row {id_} loaded at {loaded} was taken by run {taken_by[id_]} ({runs[taken_by[id_]]}), "
            f"not by the first run after it, {first_after} ({runs[first_after]})")
    rel.delivered({f"{prefix}-{i}" for i in staged}, support.exported(amp.url, prefix), "the hourly path")
