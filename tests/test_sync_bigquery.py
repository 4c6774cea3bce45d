"""The sync at BigQuery's scale, counted on the stand-in that bills and contends like BigQuery
(tests/bigquery_standin.py) through the real google-cloud-bigquery client: jobs per run, bytes
that follow new rows and not history, a backfill in few jobs, and the watermark's window whole.
"""
from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from ampkit import config as configuration
from ampkit import state, sync
from ampkit import warehouse as warehouses

from bigquery_standin import new_hour, running, synced_history as history
from conftest import NOW

HOURLY_JOB_BUDGET = 7  # begin, guardrail history, plan, snapshot, deliver, checkpoint, finish


@contextlib.contextmanager
def standin(history_days: int = 0):
    """A stand-in with ampkit's tables; with `history_days` of synced history and a new hour of 300 rows."""
    with running() as bq:
        with warehouses.open(bq.url()) as wh:
            wh.ensure_tables()
            state.ensure_schema(wh)
        if history_days:
            history(bq, history_days, per_day=400, until=NOW - dt.timedelta(hours=8))
            new_hour(bq, 300, NOW - dt.timedelta(hours=1))
        yield bq


@pytest.fixture
def bq():
    with standin() as s:
        yield s


def make_config(bq, sandbox, **overrides):
    values = {"warehouse": bq.url(), "amplitude_url": sandbox.url, "now": NOW, "settle_seconds": 0,
              "retry_budget_seconds": 60, "max_backoff_seconds": 0.5, "export_lag_seconds": 0}
    return configuration.load({**values, **overrides})


def watermark(bq, at: dt.datetime, *, kept_from: dt.datetime | None = None) -> None:
    """The watermark at `at`, and row outcomes kept from `kept_from` (default: `at`'s day, the
    day's roll-up done, as on 23 runs of 24)."""
    bq.sql("INSERT INTO analytics.ampkit_state VALUES ('watermark', ?, 'history', ?)", [at, at])
    day = kept_from or at.replace(hour=0, minute=0, second=0, microsecond=0)
    bq.sql("INSERT INTO analytics.ampkit_state VALUES ('outcomes_kept_from', ?, 'history', ?)", [day, at])


def rollup_jobs(bills: list[dict]) -> list[dict]:
    return [b for b in bills if "roll-up" in b["query"].splitlines()[0] or "Roll up" in b["query"].splitlines()[0]]


def run_cost(bq, cfg, **options) -> tuple[sync.SyncResult, list[dict]]:
    before = len(bq.bills)
    # The synthetic history is sparser than the new hour (a flood to the guardrail): accepted here,
    # where the guardrail's query is counted; its verdicts are tested in test_guardrail.py.
    options.setdefault("accept_volume", ("all",))
    result = sync.run(cfg, progress="none", **options)
    return result, bq.bills[before:]


def test_an_hourly_run_is_seven_jobs_whatever_the_clock_reads(bq, sandbox):
    new_hour(bq, 300, NOW - dt.timedelta(hours=1))
    watermark(bq, NOW - dt.timedelta(hours=1))
    # A real clock: seconds past the hour, the watermark on the hour. One window, not two.
    at = NOW + dt.timedelta(minutes=7, seconds=13, microseconds=5)
    result, bills = run_cost(bq, make_config(bq, sandbox, now=at))
    assert result.status == "ok" and result.extracted == 300 and result.accepted == 300
    assert len(result.windows) == 1, "the real clock split the hour"
    assert (result.window_start, result.window_end) == (NOW - dt.timedelta(hours=1), at)
    assert len(bills) <= HOURLY_JOB_BUDGET, [b["query"].splitlines()[0] for b in bills]
    assert all(b["kind"] == "query" for b in bills), "a load job on the hourly path (it counts against the table's daily limit)"
    # The next hour, with nothing new: the same budget.
    _, idle = run_cost(bq, make_config(bq, sandbox, now=at + dt.timedelta(hours=1)))
    assert len(idle) <= HOURLY_JOB_BUDGET


def test_once_a_day_the_roll_up_adds_two_jobs_that_read_one_day_whatever_the_history(sandbox):
    def roll_up(days: int) -> tuple[list[dict], int]:
        with standin(days) as bq:
            cfg = make_config(bq, sandbox, outcome_retention_days=10)
            target = state.rollup_target(cfg, NOW, NOW - dt.timedelta(hours=1), None)
            # Yesterday's roll-up stopped a day short: today's takes one day.
            watermark(bq, NOW - dt.timedelta(hours=1), kept_from=target - dt.timedelta(days=1))
            result, bills = run_cost(bq, cfg)
            assert result.status == "ok" and result.extracted == 300, result.warnings
            with warehouses.open(bq.url()) as wh:
                assert state.kept_from(wh) == target
            jobs = rollup_jobs(bills)
            return jobs, len(bills)
    (small, n_small), (large, n_large) = roll_up(14), roll_up(140)
    assert len(small) == len(large) == 2 and n_small == n_large == HOURLY_JOB_BUDGET + 2
    a, b = sum(j["bytes_processed"] for j in small), sum(j["bytes_processed"] for j in large)
    assert a > 0 and abs(b - a) <= 0.10 * a, f"the roll-up read {a:,} bytes at 14 days of history, {b:,} at 140"


@pytest.mark.parametrize("layout", ["dirty rows", "clean rows"])
def test_an_hourly_run_reads_the_same_bytes_when_history_grows_tenfold(layout, sandbox):
    def bytes_of_one_run(days: int) -> int:
        with standin(days) as bq:
            if layout == "dirty rows":  # dead letters and filtered rows are recorded too
                bq.sql("UPDATE analytics.amplitude_events SET device_id = NULL WHERE id % 10 = 0 AND id < 1000")
            watermark(bq, NOW - dt.timedelta(hours=1))
            result, bills = run_cost(bq, make_config(bq, sandbox))
            assert result.status == "ok" and result.extracted == 300
            return sum(b["bytes_processed"] for b in bills)
    small, large = bytes_of_one_run(14), bytes_of_one_run(140)
    assert small > 0
    assert abs(large - small) <= 0.10 * small, f"an hourly run read {small:,} bytes at 14 days of history, {large:,} at 140"


def test_a_backfill_costs_a_few_jobs_per_window_and_nothing_for_what_is_done(bq, sandbox):
    # Three days of staged rows never synced, loaded hour by hour.
    for h in range(72):
        new_hour(bq, 50, NOW - dt.timedelta(hours=72 - h), first_id=1 + 100 * h)
    cfg = make_config(bq, sandbox, slice_rows=1000)
    result, bills = run_cost(bq, cfg, start=NOW - dt.timedelta(days=4), end=NOW)
    assert result.status == "ok" and result.extracted == 3600
    windows = len(result.windows)
    assert windows == 4  # 3,600 rows in hours of 50, packed up to 1,000 rows a window
    # begin, plan, finish, and per window snapshot, deliver, checkpoint: no slicing query, no load job.
    assert len(bills) == 3 + 3 * windows, [b["query"].splitlines()[0] for b in bills]
    assert not any(b["kind"] == "load" for b in bills)
    estimate = next(w for w in result.warnings if w.startswith("backfill:"))
    assert f"about {3 + 3 * windows} warehouse jobs" in estimate
    again, bills = run_cost(bq, cfg, start=NOW - dt.timedelta(days=4), end=NOW)
    assert again.extracted == 0 and len(bills) == 3  # done ranges cost the plan only


def test_the_backfill_estimate_at_one_hundred_million_rows():
    # The plan of a backfill since 2020-12-01 with 100M staged rows (about 30k an hour, 2M per window).
    start = dt.datetime(2020, 12, 1, tzinfo=dt.timezone.utc)
    hours = [{"hour": start + dt.timedelta(hours=h), "row_count": 2_500, "text_bytes": 2_500 * 600}
             for h in range(40_000)]
    windows = sync.pack(hours, start, NOW, 2_000_000, 4_000_000_000)
    estimate = sync.estimate_backfill(windows)
    assert estimate.rows == 100_000_000 and estimate.windows == 50
    assert estimate.jobs <= 300


FIVE_MINUTE_JOB_BUDGET = HOURLY_JOB_BUDGET + 1  # and the staging query, when the run stages its own rows


def five_minutes_of_new_events(bq, rows: int, start: dt.datetime) -> None:
    """`rows` events committed to event_logs in the 5 minutes after `start`, not staged yet."""
    step = 300_000_000 // rows
    bq.sql(f"""
        INSERT INTO analytics.event_logs (id, name, source, timestamp, public_argument, device_id)
        SELECT 5000000 + range, 'SearchResultsQueried', 'WEB', CAST(? AS TIMESTAMPTZ) + to_microseconds(range * {step}),
               '{{"query":"repo:sourcegraph"}}', 'device-' || CAST(range % 31 AS VARCHAR)
        FROM range({rows})""", [start])


@pytest.mark.parametrize("minute", [6, 1], ids=["two-hour lookback", "the hour's 72-hour sweep"])
def test_a_five_minute_run_that_stages_its_rows_is_eight_jobs_and_its_bytes_follow_new_rows(minute, sandbox):
    """At a 5-minute cadence each run stages its own rows: one job more than an hourly run, and the
    bytes it reads (event_logs' lookback, the staged partitions, the window) are the same at 14
    and 140 days of history, so twelve runs an hour cost twelve times what one costs, no more."""
    def one_run(days: int) -> tuple[int, int]:
        with standin(days) as bq:
            # event_logs holds the synced history too (it was staged from there).
            bq.sql("""INSERT INTO analytics.event_logs (id, name, source, timestamp, public_argument, device_id, insert_id)
                      SELECT id, name, source, timestamp, public_argument, device_id, insert_id FROM analytics.amplitude_events""")
            at = NOW + dt.timedelta(minutes=minute)
            five_minutes_of_new_events(bq, 60, at - dt.timedelta(minutes=5))
            watermark(bq, NOW)  # the previous run's
            cfg = make_config(bq, sandbox, now=at, sync_interval_minutes=5, stage_in_run=True)
            result, bills = run_cost(bq, cfg)
            # With them, over the lookback, the 300 rows of the hour before that no run has sent yet.
            assert result.status == "ok" and result.extracted == 300 + 60, (result.extracted, result.warnings)
            assert all(b["kind"] == "query" for b in bills)
            return len(bills), sum(b["bytes_processed"] for b in bills)
    (jobs_small, small), (jobs_large, large) = one_run(14), one_run(140)
    assert jobs_small == jobs_large <= FIVE_MINUTE_JOB_BUDGET
    assert small > 0 and abs(large - small) <= 0.10 * small, f"a 5-minute run read {small:,} bytes at 14 days, {large:,} at 140"
