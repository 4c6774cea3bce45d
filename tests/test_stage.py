"""Staging: the scheduled query BigQuery runs is ampkit's staging file with its lookback spelled out."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from ampkit import sql as sqlfiles
from ampkit import stage

ROOT = Path(__file__).resolve().parents[1]


def _body(text: str) -> str:
    """The statements without comments (the two files explain themselves differently)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


def test_the_scheduled_query_is_the_staging_file_with_its_lookback_spelled_out():
    hours = int(stage.LOOKBACK / dt.timedelta(hours=1))
    ours = _body(sqlfiles.text("amplitude_events"))
    scheduled = _body((ROOT / "scheduled" / "amplitude_events.sql").read_text(encoding="utf-8"))
    assert "@stage_since" in ours and "@stage_since" not in scheduled
    assert ours.replace("@stage_since", f"TIMESTAMP_SUB(@run_time, INTERVAL {hours} HOUR)") == scheduled
    # Scheduled queries take @run_time (and @run_date) only, besides the start date the README says to inline.
    assert set(re.findall(r"@(\w+)", scheduled)) == {"run_time", "amplitude_start_date"}


def test_a_sub_hourly_run_looks_back_two_hours_except_the_first_of_its_hour():
    from ampkit import config as configuration
    t = dt.datetime(2022, 3, 14, 12, 0, tzinfo=dt.timezone.utc)
    five = configuration.load({"sync_interval_minutes": 5}, env={})
    hourly = configuration.load({}, env={})
    assert stage.since(five, t.replace(minute=1)) == t.replace(minute=1) - stage.LOOKBACK  # the hour's sweep
    assert stage.since(five, t.replace(minute=6)) == t.replace(minute=6) - stage.RECENT
    assert stage.since(hourly, t.replace(minute=6)) == t.replace(minute=6) - stage.LOOKBACK
    assert stage.since(five, t, first=True) == dt.datetime(2020, 12, 1, tzinfo=dt.timezone.utc)
    # With the last run known (a run that stages its own rows): the first of the hour to stage
    # sweeps, whatever its minute, so a run skipped at :01 leaves the sweep to :06, not to the next hour.
    assert stage.since(five, t.replace(minute=6), previous=t - dt.timedelta(minutes=9)) == t.replace(minute=6) - stage.LOOKBACK
    assert stage.since(five, t.replace(minute=11), previous=t.replace(minute=6)) == t.replace(minute=11) - stage.RECENT


def test_a_row_committed_three_hours_late_is_staged_by_the_hours_sweep_not_lost():
    """At a 5-minute cadence most runs read two hours of event_logs: a row committed three hours
    after it happened is missed by them and staged by the first run of the next hour."""
    import pyarrow as pa
    from ampkit import config as configuration, warehouse as warehouses
    from ampkit.warehouse import EVENT_COLUMNS
    arrow = {"INT64": pa.int64(), "STRING": pa.string(), "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32()}
    t = dt.datetime(2022, 3, 14, 12, 10, tzinfo=dt.timezone.utc)
    config = configuration.load({"sync_interval_minutes": 5}, env={})

    def row(i: int, ts: dt.datetime) -> pa.Table:
        data = {"id": i, "name": "ViewHome", "timestamp": ts, "source": "WEB", "device_id": "d-00001"}
        return pa.table({c: pa.array([data.get(c)], arrow[k]) for c, k in EVENT_COLUMNS.items()})

    with warehouses.open("duckdb://:memory:") as wh:
        wh.ensure_tables()
        wh.append("event_logs", row(1, t - dt.timedelta(minutes=1)))
        assert stage.run(wh, config, t).staged == 1  # the table's first load
        wh.append("event_logs", row(2, t - dt.timedelta(hours=3)))  # committed now, three hours late
        assert stage.run(wh, config, t + dt.timedelta(minutes=5)).staged == 0
        assert stage.run(wh, config, t + dt.timedelta(minutes=51)).staged == 1  # 13:01, the hour's first run
        assert stage.run(wh, config, t + dt.timedelta(minutes=56)).staged == 0  # and once only
