"""Lag as data: the histogram's buckets and percentiles, and real runs whose delays are known."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
from click.testing import CliRunner

from ampkit import cli, lag, stage, state, sync, warehouse as warehouses
from ampkit.warehouse import EVENT_COLUMNS
from tests.test_sync import NOW

ARROW = {"INT64": pa.int64(), "STRING": pa.string(), "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32()}
SECOND = dt.timedelta(seconds=1)


def test_buckets_round_up_to_two_significant_figures_and_never_below_the_lag():
    lags = np.concatenate([np.random.default_rng(1).lognormal(6, 2, 20_000), [0, 0.4, 99.5, 100, 100.01, 1e9]])
    b = lag.buckets(lags)
    assert (b >= np.ceil(lags)).all()
    big = lags >= 100
    assert (b[big] <= np.ceil(lags[big]) * 1.1).all()  # two significant figures: at most 10% above
    assert lag.buckets(np.array([-30.0, 0.0, 7200.0, 7200.5, 419.2]))[:].tolist() == [0, 0, 7200, 7300, 420]


def test_percentiles_from_buckets_bound_the_exact_ones_from_above_within_a_bucket():
    lags = np.random.default_rng(2).lognormal(5.5, 1.3, 5_001)
    values, counts = np.unique(lag.buckets(lags), return_counts=True)
    pairs = list(zip(values.tolist(), counts.tolist()))
    for percent in (50, 95, 100):
        exact = np.percentile(lags, percent, method="inverted_cdf")
        got = lag.quantile(pairs, percent)
        assert exact <= got == lag.buckets(np.array([exact]))[0]
    assert lag.quantile([], 50) is None


def test_lags_keep_event_hours_apart_and_ignore_missing_load_times():
    at = dt.datetime(2022, 3, 14, 12, tzinfo=dt.timezone.utc)
    times = pa.array([at - 7 * 60 * SECOND] * 3 + [at - 2 * 3600 * SECOND], pa.timestamp("us", tz="UTC"))
    loaded = pa.array([at - 60 * SECOND] * 3 + [None], pa.timestamp("us", tz="UTC"))
    lags = lag.Lags()
    lags.add(at, times, loaded)
    summary = lags.summary()
    assert summary["event"] == {"events": 4, "p50": 420, "p95": 7200, "max": 7200}
    assert summary["loaded"] == {"events": 3, "p50": 60, "p95": 60, "max": 60}
    assert summary["newest_event_at"] == "2022-03-14T11:53:00+00:00"
    params = lags.params()
    assert sorted(zip(params["lag_hours"], params["lag_measures"], params["lag_buckets"], params["lag_counts"])) == [
        (at - 2 * 3600 * SECOND, "event", 7200, 1), (at - 3600 * SECOND, "event", 420, 3), (at - 3600 * SECOND, "loaded", 60, 3)]


def _events(delays: list[tuple[int, int]]) -> pa.Table:
    """event_logs rows, `n` ViewHome events (sent by the shipped data map) per (delay seconds, n)."""
    data, i = [], 0
    for delay, n in delays:
        for _ in range(n):
            i += 1
            data.append({"id": 5000 + i, "name": "ViewHome", "timestamp": NOW - delay * SECOND, "user_id": 0,
                         "anonymous_user_id": f"visitor-{i:05d}", "device_id": f"visitor-{i:05d}", "source": "WEB",
                         "public_argument": "{}", "url": "https://sourcegraph.com/search", "version": "3.40.0"})
    return pa.table({c: pa.array([d.get(c) for d in data], ARROW[k]) for c, k in EVENT_COLUMNS.items()})


def test_a_run_with_a_known_delay_reports_it_in_its_result_and_the_ledger(warehouse_url, make_config):
    """90 events 7 minutes old and 10 two hours old, staged 6 minutes before the run: the run's lag
    is 420 s (p50) and 7,200 s (p95, max) from the event, 360 s from the load, plus the seconds the
    run itself took (a bucket at most), and its newest event was 7 minutes old when it finished."""
    config = make_config(settle_seconds=300, guardrail="off")
    with warehouses.open(warehouse_url) as wh:
        wh.ensure_tables()
        wh.append("event_logs", _events([(420, 90), (7200, 10)]))
        stage.run(wh, config, NOW - 360 * SECOND)
    result = sync.run(config, progress="none")
    assert result.status == "ok" and result.accepted == 100
    event, loaded = result.lag["event"], result.lag["loaded"]
    assert event["events"] == loaded["events"] == 100
    assert 420 < event["p50"] <= 430 and 7200 < event["p95"] == event["max"] <= 7300
    assert 360 < loaded["p50"] == loaded["p95"] == loaded["max"] <= 370
    assert result.lag["newest_event_at"] == (NOW - 420 * SECOND).isoformat()

    out = CliRunner().invoke(cli.cli, ["--warehouse", warehouse_url, "runs", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    # The ledger's percentiles come from SQL over the same buckets: they agree with the run's own.
    assert (row["lag_events"], row["lag_event_p50"], row["lag_event_p95"], row["lag_event_max"]) == \
        (100, event["p50"], event["p95"], event["max"])
    assert (row["lag_loaded_p50"], row["lag_loaded_p95"]) == (loaded["p50"], loaded["p95"])
    assert 420 <= row["newest_age_seconds"] < 430
    table = CliRunner().invoke(cli.cli, ["--warehouse", warehouse_url, "runs"])
    assert "p50/p95 min" in table.output and " 7/122 " in table.output, table.output


def test_lag_per_hour_merges_every_run_that_sent_the_hour(warehouse_url, make_config):
    """Two runs send events of the same hour, one 7 minutes after, one two hours after: the hour's
    histogram is both runs' (SQL over the buckets), the per-run figures each run's own."""
    with warehouses.open(warehouse_url) as wh:
        wh.ensure_tables()
        wh.append("event_logs", _events([(420, 20)]))
        stage.run(wh, make_config(), NOW - 360 * SECOND)
    first = sync.run(make_config(guardrail="off"), progress="none")
    later = NOW + 2 * 3600 * SECOND - 420 * SECOND  # the same event hour, two hours after
    with warehouses.open(warehouse_url) as wh:
        wh.append("event_logs", _events([(420, 80)]).set_column(0, "id", pa.array(range(9000, 9080), pa.int64())))
        stage.run(wh, make_config(now=later), later)
    second = sync.run(make_config(now=later, guardrail="off"), progress="none")
    assert first.lag["event"]["p50"] <= 430 and second.lag["event"]["p50"] >= 7200
    with warehouses.open(warehouse_url) as wh:
        hours = wh.run("lag_hours", {"since": NOW - 3 * 3600 * SECOND, "until": later + 3600 * SECOND}).to_pylist()
        per_run = {r["run_id"]: r for r in state.runs(wh, 5)}
    (hour,) = hours
    assert hour["event_hour"] == (NOW - 420 * SECOND).replace(minute=0, second=0)
    assert hour["events"] == 100 and hour["lag_event_p50"] >= 7200 and hour["lag_event_max"] <= 7300
    assert per_run[first.run_id]["lag_events"] == 20 and per_run[second.run_id]["lag_events"] == 80
