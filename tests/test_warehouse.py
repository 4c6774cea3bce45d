"""The warehouse on DuckDB (the embedded default): every `.sql` file against known data,
URL parsing, schema checks, identifier and parameter safety, streaming, the sqlglot
mistranslations we must not rely on, and the synthetic seed."""
from __future__ import annotations

import csv
import datetime as dt
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from ampkit import seed, stage
from ampkit import sql as sqlfiles
from ampkit import warehouse
from ampkit.config import Config
from ampkit import config as configmod
from ampkit.errors import ConfigError, LockedError, SchemaError, WarehouseError
from ampkit.warehouse import EVENT_COLUMNS, TABLES, DuckDBWarehouse, BigQueryWarehouse

import children  # tests/children.py: every child ends with its test
import damage  # tests/damage.py: a DuckDB file damaged as a kill leaves it

UTC = dt.timezone.utc
SQL_DIR = Path(sqlfiles.__file__).parent
# Every .sql file ampkit ships, each answered by a test below (test_every_sql_file_is_tested keeps this honest).
SQL_FILES_TESTED = {"schema_event_logs", "schema_state", "schema_seed", "amplitude_events", "seed_release",
                    "seed_next_id", "seed_clear", "stage_count", "summary", "summary_seed"}
INJECTIONS = ["'; DROP TABLE event_logs; --", "`event_logs`; DELETE FROM event_logs WHERE TRUE; --",
              "O'Reilly", 'say "hi" \\', "x' OR '1'='1", "$name", "@name"]

ARROW_TYPES = {"INT64": pa.int64(), "STRING": pa.string(), "TIMESTAMP": pa.timestamp("us", tz="UTC"),
               "DATE": pa.date32(), "FLOAT64": pa.float64(), "BOOL": pa.bool_()}


def t(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def rows_table(rows: list[dict], columns: dict[str, str] = EVENT_COLUMNS) -> pa.Table:
    """Arrow rows in a table's column types; columns a row leaves out are NULL (name defaults to 'E')."""
    data = {name: [r.get(name, "E" if name == "name" else None) for r in rows] for name in columns}
    return pa.table({name: pa.array(values, ARROW_TYPES[columns[name]]) for name, values in data.items()})


def event(id_: int, ts: dt.datetime, **kw) -> dict:
    return {"id": id_, "name": kw.pop("name", f"Event{id_}"), "timestamp": ts, "user_id": id_ * 10,
            "anonymous_user_id": f"anon-{id_}", "source": "WEB", "url": f"https://sourcegraph.com/{id_}",
            "cohort_id": dt.date(2024, 1, 1), "insert_id": f"ins-{id_}", "device_id": f"dev-{id_}",
            "argument": "{}", "public_argument": "{}", "version": "1", "feature_flags": "{}",
            "first_source_url": "", "last_source_url": "", "referrer": "", **kw}


def query_file(tmp_path: Path, name: str, text: str) -> str:
    """A named query (ampkit runs `.sql` files only): write it and return its path."""
    p = tmp_path / f"{name}.sql"
    p.write_text(text, encoding="utf-8")
    return str(p)


@pytest.fixture
def q(tmp_path):
    """q(text) -> a throwaway named query holding `text`."""
    counter = itertools.count()
    return lambda text: query_file(tmp_path, f"q{next(counter)}", text)


@pytest.fixture
def wh():
    with warehouse.open("duckdb://:memory:") as w:
        yield w


@pytest.fixture
def tables(wh):
    wh.ensure_tables()
    wh.run("schema_seed")
    return wh


def by_id(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["id"])


# --- every .sql file, against known data ------------------------------------------------

def test_every_sql_file_of_the_staging_layer_is_here():
    # The known-answer tests below cover these; every other file at least runs (test_every_sql_file_runs_on_duckdb).
    assert SQL_FILES_TESTED <= {p.stem for p in SQL_DIR.glob("*.sql")}


def test_schema_event_logs_creates_both_tables_idempotently(wh, q):
    wh.run("schema_event_logs")
    assert wh.columns("event_logs") == EVENT_COLUMNS
    assert wh.columns("amplitude_events") == TABLES["amplitude_events"]
    wh.append("event_logs", rows_table([event(1, t(2024, 1, 1))]))
    wh.run("schema_event_logs")  # IF NOT EXISTS: a second run keeps the table and its rows
    assert wh.run(q("SELECT COUNT(*) AS n FROM event_logs")).column("n")[0].as_py() == 1
    wh.check_table("event_logs")
    wh.check_table("amplitude_events")


def test_schema_event_logs_enforces_not_null(wh):
    wh.run("schema_event_logs")
    with pytest.raises(WarehouseError, match="NOT NULL|not null|null"):
        wh.append("event_logs", rows_table([{"id": 1, "name": None}]))


def test_schema_state_creates_state_tables_idempotently(wh):
    wh.run("schema_state")
    wh.run("schema_state")
    cols = {name: wh.columns(name) for name in
            ("ampkit_runs", "ampkit_state", "ampkit_lease", "ampkit_pending", "ampkit_deliveries", "ampkit_dead_letters")}
    assert all(c is not None for c in cols.values()), cols
    assert cols["ampkit_runs"]["duration_seconds"] == "FLOAT64"
    assert cols["ampkit_runs"]["extracted"] == "INT64"
    assert cols["ampkit_state"] == {"key": "STRING", "value": "TIMESTAMP", "run_id": "STRING", "updated_at": "TIMESTAMP"}
    assert cols["ampkit_lease"] == {"name": "STRING", "holder": "STRING", "acquired_at": "TIMESTAMP", "expires_at": "TIMESTAMP"}
    assert cols["ampkit_deliveries"]["outcome"] == "STRING" and cols["ampkit_deliveries"]["loaded_at"] == "TIMESTAMP"
    assert cols["ampkit_dead_letters"]["replayed_run_id"] == "STRING"


def test_schema_seed_is_event_logs_plus_arrive_at(wh):
    wh.run("schema_seed")
    wh.run("schema_seed")
    assert wh.columns("seed_late_arrivals") == {**EVENT_COLUMNS, "arrive_at": "TIMESTAMP"}


STAGE_ROWS = [
    event(1, t(2020, 11, 30, 23, 59, 59)),   # before the Amplitude start date: never staged
    event(2, t(2020, 12, 1)),                # exactly the start date: staged
    event(3, t(2024, 1, 1, 10)),             # before run_time: staged
    event(4, t(2024, 1, 1, 12)),             # exactly run_time: staged
    event(5, t(2024, 1, 1, 12, 0, 1)),       # after run_time: waits for the next run
    event(6, t(2024, 1, 3), name="Future"),  # a skewed clock: waits for its time
]


def stage_params(run_time: dt.datetime, start: dt.date = dt.date(2020, 12, 1), since: dt.datetime | None = None) -> dict:
    """The staging query's parameters; by default it reads event_logs from the start date (a first load)."""
    return {"run_time": run_time, "amplitude_start_date": start,
            "stage_since": since or dt.datetime.combine(start, dt.time(), dt.timezone.utc)}


def test_amplitude_events_stages_the_window_once(tables, q):
    wh = tables
    wh.append("event_logs", rows_table(STAGE_ROWS))
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 12)))
    staged = by_id(wh.run(q("SELECT * FROM amplitude_events")))
    assert [r["id"] for r in staged] == [2, 3, 4]
    assert {r["loaded_at"] for r in staged} == {t(2024, 1, 1, 12)}
    source = {r["id"]: r for r in STAGE_ROWS}
    for r in staged:  # every column copied as is, but the private argument, which is never staged
        assert {k: r[k] for k in EVENT_COLUMNS} == {k: source[r["id"]].get(k) if k != "argument" else None
                                                    for k in EVENT_COLUMNS}

    # Re-running the same hour adds nothing (idempotent by id).
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 12)))
    assert wh.run("stage_count").column("staged")[0].as_py() == 3

    # A late event (stamped before the last run, arriving after it) gets the next run's loaded_at.
    wh.append("event_logs", rows_table([event(7, t(2024, 1, 1, 10, 30))]))
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 13)))
    staged = {r["id"]: r["loaded_at"] for r in wh.run(q("SELECT id, loaded_at FROM amplitude_events")).to_pylist()}
    assert staged == {2: t(2024, 1, 1, 12), 3: t(2024, 1, 1, 12), 4: t(2024, 1, 1, 12),
                      5: t(2024, 1, 1, 13), 7: t(2024, 1, 1, 13)}


def test_amplitude_events_honours_the_start_date(tables, q):
    wh = tables
    wh.append("event_logs", rows_table(STAGE_ROWS))
    # The start date is a DATE: the window opens at its midnight UTC.
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 12), dt.date(2024, 1, 1)))
    assert sorted(wh.run(q("SELECT id FROM amplitude_events")).column("id").to_pylist()) == [3, 4]


def test_stage_run_twice_adds_nothing_the_second_time(tables, q):
    wh = tables
    wh.append("event_logs", rows_table(STAGE_ROWS))
    config = Config(now=t(2024, 1, 1, 12))
    first, second = stage.run(wh, config), stage.run(wh, config)
    assert (first.staged, second.staged) == (3, 0)
    # After the first load, a run looks back 72 hours of event time: id 6 (Jan 3) is staged, id 5
    # (Jan 1, 12:00:01) is older than that and is not: the reconciliation names it as not staged.
    assert stage.run(wh, config, t(2024, 1, 5)).staged == 1
    assert stage.run(wh, config, t(2024, 1, 4)).staged == 1  # an earlier run time reaches back to it
    stage.run(wh, config)
    # Reconciliation's staged counts are recounted on a re-run, never added to.
    counts = wh.run(q("SELECT run_time, SUM(row_count) AS n FROM ampkit_stage_counts GROUP BY 1 ORDER BY 1")).to_pylist()
    assert [r["n"] for r in counts] == [3, 1, 1]


def test_seed_release_moves_arrived_rows_only(tables, q):
    wh = tables
    late = [{**event(10, t(2024, 1, 1, 1)), "arrive_at": t(2024, 1, 1, 5)},
            {**event(11, t(2024, 1, 1, 2)), "arrive_at": t(2024, 1, 1, 6)},    # exactly now: arrives
            {**event(12, t(2024, 1, 1, 3)), "arrive_at": t(2024, 1, 1, 6, 0, 1)}]
    wh.append("seed_late_arrivals", rows_table(late, {**EVENT_COLUMNS, "arrive_at": "TIMESTAMP"}))
    wh.run("seed_release", {"now": t(2024, 1, 1, 6)})
    released = by_id(wh.run(q("SELECT * FROM event_logs")))
    assert released == [{k: r.get(k) for k in EVENT_COLUMNS} for r in late[:2]]
    waiting = wh.run(q("SELECT id FROM seed_late_arrivals")).column("id").to_pylist()
    assert waiting == [12]
    wh.run("seed_release", {"now": t(2024, 1, 1, 6)})  # nothing new: no duplicates
    assert wh.run(q("SELECT COUNT(*) AS n FROM event_logs")).column("n")[0].as_py() == 2


def test_seed_next_id(tables):
    wh = tables
    assert wh.run("seed_next_id").column("next_id").to_pylist() == [1]
    wh.append("event_logs", rows_table([event(10, t(2024, 1, 1)), event(4, t(2024, 1, 1))]))
    assert wh.run("seed_next_id").column("next_id").to_pylist() == [11]
    wh.append("seed_late_arrivals", rows_table([{**event(25, t(2024, 1, 1)), "arrive_at": t(2024, 1, 2)}],
                                               {**EVENT_COLUMNS, "arrive_at": "TIMESTAMP"}))
    assert wh.run("seed_next_id").column("next_id").to_pylist() == [26]


def test_seed_clear_empties_event_logs_and_late_rows_only(tables):
    wh = tables
    wh.append("event_logs", rows_table([event(1, t(2024, 1, 1))]))
    wh.append("seed_late_arrivals", rows_table([{**event(2, t(2024, 1, 1)), "arrive_at": t(2024, 1, 2)}],
                                               {**EVENT_COLUMNS, "arrive_at": "TIMESTAMP"}))
    wh.run("amplitude_events", stage_params(t(2024, 1, 2)))
    wh.run("seed_clear")
    counts = summary(wh)
    assert {r["table_name"]: r["row_count"] for r in counts} == {
        "event_logs": 0, "amplitude_events": 1, "ampkit_deliveries": 0, "ampkit_dead_letters": 0, "seed_late_arrivals": 0}


def summary(wh) -> list[dict]:
    """What `ampkit status` prints: the tables, then the demo's late rows."""
    return wh.run("summary").to_pylist() + wh.run("summary_seed").to_pylist()


def test_stage_count(tables):
    wh = tables
    assert wh.run("stage_count").to_pylist() == [{"staged": 0}]
    wh.append("event_logs", rows_table(STAGE_ROWS))
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 12)))
    assert wh.run("stage_count").to_pylist() == [{"staged": 3}]


def test_summary_reports_every_table(tables):
    wh = tables
    wh.append("event_logs", rows_table(STAGE_ROWS))
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 12)))
    # Outcomes are summarised from their counts (the row-level table requires a partition filter).
    wh.append("ampkit_outcome_counts", pa.table({
        "run_id": ["r1", "r1"], "outcome": ["accepted", "filtered"], "row_count": pa.array([1, 1], pa.int64()),
        "bucket": pa.array([t(2020, 12, 1), t(2024, 1, 1, 10)], pa.timestamp("us", tz="UTC")),
        "loaded_at": pa.array([t(2024, 1, 1, 12)] * 2, pa.timestamp("us", tz="UTC"))}))
    wh.append("seed_late_arrivals", rows_table([{**event(9, t(2024, 1, 2)), "arrive_at": t(2024, 1, 3)}],
                                               {**EVENT_COLUMNS, "arrive_at": "TIMESTAMP"}))
    got = {r.pop("table_name"): r for r in summary(wh)}
    assert got == {
        "event_logs": {"row_count": 6, "first_event": t(2020, 11, 30, 23, 59, 59), "last_event": t(2024, 1, 3), "last_loaded": None},
        "amplitude_events": {"row_count": 3, "first_event": t(2020, 12, 1), "last_event": t(2024, 1, 1, 12),
                             "last_loaded": t(2024, 1, 1, 12)},
        "ampkit_deliveries": {"row_count": 2, "first_event": t(2020, 12, 1), "last_event": t(2024, 1, 1, 10),
                              "last_loaded": t(2024, 1, 1, 12)},
        "ampkit_dead_letters": {"row_count": 0, "first_event": None, "last_event": None, "last_loaded": None},
        "seed_late_arrivals": {"row_count": 1, "first_event": t(2024, 1, 2), "last_event": t(2024, 1, 2), "last_loaded": None},
    }


# --- every .sql file runs, with typed sample parameters, on known data -------------------

# A value of the right BigQuery type for every parameter a `.sql` file uses (by name). A file
# with a parameter missing here fails test_every_sql_file_runs_on_duckdb, naming it.
SAMPLE_PARAMS = {
    "run_id": "run-1", "name": "hourly_sync", "holder": "holder-1", "mode": "sync", "status": "ok",
    "host": "host-1", "notebook_path": "runs/x.ipynb", "data_map_version": "v1", "error": "",
    "filtered": "{}", "rejected": "{}",
    "run_time": t(2024, 1, 1, 12), "now": t(2024, 1, 1, 12), "started_at": t(2024, 1, 1, 12),
    "finished_at": t(2024, 1, 1, 12, 5), "expires_at": t(2024, 1, 1, 13), "start_time": t(2020, 12, 1),
    "window_start": t(2024, 1, 1, 11), "window_end": t(2024, 1, 1, 12), "lookback_start": t(2024, 1, 1, 6),
    "event_start": t(2020, 1, 1), "event_end": t(2030, 1, 1), "watermark": t(2024, 1, 1, 12),
    "horizon": t(2024, 1, 1), "future_limit": t(2024, 1, 2), "dedup_start": t(2023, 12, 25),
    "since": t(2020, 12, 1), "until": t(2024, 1, 2), "start_ts": t(2023, 12, 25), "end_ts": t(2024, 1, 2),
    "recon_id": "recon-1", "tz": "America/New_York", "lag_cutoff": t(2024, 1, 1, 10), "reasons": ["quota"],
    "amplitude_start_date": dt.date(2020, 12, 1),
    "extracted": 3, "sent": 2, "accepted": 1, "filtered_total": 1, "rejected_total": 0, "requests": 1,
    "retries": 0, "limit": 20, "lanes": 4, "min_id_length": 5, "max_properties_bytes": 8192,
    "duration_seconds": 1.5, "move_watermark": True, "blocklist": list(seed.BLOCKLISTED_IDS),
    "steps": ["Event2", "Event3", "Event4"], "active_events": ["Event2", "Event3"], "window_seconds": 604800,
    "scan_end": t(2024, 1, 9), "max_depth": 40, "depth_pattern": r"^[\[{][\]}]$", "flags_depth_pattern": r"^[\[{][\]}]$",
    "stage_since": t(2020, 12, 1), "schema_version": "v1", "kept_from": t(2023, 12, 1), "rollup_before": t(2023, 12, 2),
    "key_names": ["Event2", "Event3", "Event4"], "key_sources": ["WEB"] * 3, "key_actions": ["send", "send", "drop"],
    "key_rules": ["default", "default", "noise"], "key_reasons": ["", "", "noise"],
    "reject_ids": [3], "reject_insert_ids": ["ins-3"], "reject_names": ["Event3"],
    "reject_event_times": ["2024-01-01T10:00:00+00:00"], "reject_loaded_ats": ["2024-01-01T12:00:00+00:00"],
    "reject_reasons": ["no_id"], "reject_details": [""], "reject_events": ['{"event_type":"Event3"}'],
    "hour_from": t(2024, 1, 1, 11), "hour_to": t(2024, 1, 1, 13), "weeks": 4, "approved_by": "analyst",
    "note": "reviewed", "accepted_volumes": ["search"], "accepted_notes": ["family 'search' flood"],
    "accepted_at": t(2024, 1, 1, 12, 5), "lag_hours": [t(2024, 1, 1, 11), t(2024, 1, 1, 11)],
    "lag_measures": ["event", "loaded"], "lag_buckets": [420, 300], "lag_counts": [2, 2],
    "lag_newest": [t(2024, 1, 1, 11, 58), t(2024, 1, 1, 12)],
    "gap_starts": [t(2024, 1, 1, 9)], "gap_ends": [t(2024, 1, 1, 10)], "names": ["Event2", "Event3"],
}


def sample_params(name: str) -> dict:
    used = set(sqlfiles.parameters(name))
    missing = used - set(SAMPLE_PARAMS)
    assert not missing, f"{name}.sql uses {sorted(missing)}: add typed sample values to SAMPLE_PARAMS in tests/test_warehouse.py"
    return {k: SAMPLE_PARAMS[k] for k in sorted(used)}


def result_columns(name: str) -> list[str] | None:
    """The output column names of a file's last statement, or None if it is not a query."""
    last = [tree for tree in sqlglot.parse(sqlfiles.text(name), read="bigquery") if tree is not None][-1]
    return list(last.named_selects) if isinstance(last, exp.Query) else None


def load_known_data(wh) -> None:
    """Small known rows in every table ampkit's files read (works on any backend: appends and files)."""
    wh.ensure_tables()
    wh.run("schema_seed")
    wh.append("event_logs", rows_table(STAGE_ROWS))
    wh.run("amplitude_events", stage_params(t(2024, 1, 1, 12)))
    wh.run("run_begin", sample_params("run_begin"))  # sync_finalize commits for the lease holder only
    ts = pa.timestamp("us", tz="UTC")
    wh.append("ampkit_pending", pa.table({
        "run_id": ["run-1"] * 3, "id": pa.array([2, 3, 4], pa.int64()), "name": ["Event2", "Event3", "Event4"],
        "source": ["WEB"] * 3, "insert_id": ["ins-2", "ins-3", "ins-4"],
        "event_time": pa.array([t(2020, 12, 1), t(2024, 1, 1, 10), t(2024, 1, 1, 12)], ts),
        "loaded_at": pa.array([t(2024, 1, 1, 12)] * 3, ts)}))
    if wh.columns("ampkit_run_rules") is not None:
        wh.append("ampkit_run_rules", pa.table({
            "run_id": ["run-1"] * 3, "name": ["Event2", "Event3", "Event4"], "source": ["WEB"] * 3,
            "action": ["send", "send", "drop"], "rule": ["default", "default", "noise"], "reason": [None, None, "noise"]}))
    wh.append("ampkit_deliveries", pa.table({
        "id": pa.array([1], pa.int64()), "insert_id": ["ins-1"], "name": ["Event1"], "source": ["WEB"],
        "event_time": pa.array([t(2020, 11, 30)], ts), "loaded_at": pa.array([t(2023, 12, 31)], ts),
        "outcome": ["accepted"], "run_id": ["run-0"], "delivered_at": pa.array([t(2023, 12, 31, 1)], ts)}))
    wh.append("ampkit_state", pa.table({"key": ["watermark"], "value": pa.array([t(2023, 12, 31)], ts),
                                        "run_id": ["run-0"], "updated_at": pa.array([t(2023, 12, 31, 1)], ts)}))
    wh.append("ampkit_runs", pa.table({
        "run_id": ["run-0"], "started_at": pa.array([t(2023, 12, 31)], ts), "finished_at": pa.array([t(2023, 12, 31, 1)], ts),
        "status": ["ok"], "mode": ["sync"], "window_start": pa.array([t(2023, 12, 30)], ts),
        "window_end": pa.array([t(2023, 12, 31)], ts), "extracted": pa.array([1], pa.int64())}))


SQL_NAMES = sorted(p.stem for p in SQL_DIR.glob("*.sql"))


@pytest.mark.parametrize("name", SQL_NAMES)
def test_every_sql_file_runs_on_duckdb(wh, name):
    """Each file translates, runs on known data with typed parameters, and returns its declared columns.
    (The answers of the files listed in SQL_FILES_TESTED are checked one by one above.)"""
    load_known_data(wh)
    result = wh.run(name, sample_params(name))
    columns = result_columns(name)
    if columns is not None:
        assert result.column_names == columns


# --- open(): warehouse URLs --------------------------------------------------------------

def test_open_duckdb_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warehouse.open("duckdb:///data/w.duckdb") as w:
        assert isinstance(w, DuckDBWarehouse) and w.path == "data/w.duckdb"
        w.ensure_tables()
    assert (tmp_path / "data" / "w.duckdb").is_file()


def test_open_duckdb_absolute_path(tmp_path):
    target = tmp_path / "abs" / "w.duckdb"
    with warehouse.open(f"duckdb:///{target}") as w:  # duckdb:////abs/... (the path keeps its slash)
        assert w.path == str(target)
        w.ensure_tables()
    assert target.is_file()
    # A second opening sees the same data (the file, not memory).
    with warehouse.open(f"duckdb:///{target}") as w:
        assert w.columns("event_logs") == EVENT_COLUMNS


@pytest.mark.parametrize("url", ["duckdb://:memory:", "duckdb://", "duckdb:///:memory:"])
def test_open_duckdb_memory(url):
    with warehouse.open(url) as w:
        assert isinstance(w, DuckDBWarehouse) and w.path == ":memory:"
        w.ensure_tables()
        assert w.columns("event_logs") == EVENT_COLUMNS


def test_open_bigquery_url():
    w = warehouse.open("bigquery://my-project/analytics")
    assert isinstance(w, BigQueryWarehouse)
    assert (w.project, w.dataset, w.endpoint, w.location, w.name) == ("my-project", "analytics", None, "US", "my-project.analytics")
    w = warehouse.open("bigquery://my-project/analytics?endpoint=http://127.0.0.1:9050&location=EU")
    assert (w.endpoint, w.location) == ("http://127.0.0.1:9050", "EU")
    assert warehouse.open("bigquery://my-project/analytics?location=EU", location="asia-northeast1").location == "asia-northeast1"


@pytest.mark.parametrize("url", ["postgres://db/analytics", "warehouse.duckdb", "", "bigquery://my-project",
                                 "bigquery://my-project/", "bigquery://my-project/a/b", "bigquery:///analytics",
                                 "sqlite:///w.db"])
def test_open_bad_url_is_a_one_line_config_error_naming_it(url):
    with pytest.raises(ConfigError) as info:
        warehouse.open(url)
    message = str(info.value)
    assert "\n" not in message and f"'{url}'" in message


def test_malformed_ampkit_toml_is_a_one_line_config_error(tmp_path):
    bad = tmp_path / "ampkit.toml"
    bad.write_text('warehouse = "duckdb:///w.duckdb\nnow = \n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        configmod.load(path=bad, env={})
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


# --- check_table ---------------------------------------------------------------------------

def _create(wh, ddl: str) -> None:
    with wh.connect() as con:
        con.execute(ddl)


def test_check_table_names_a_missing_column(wh):
    columns = ", ".join(f"{c} {warehouse.DUCKDB_TYPES[k]}" for c, k in EVENT_COLUMNS.items() if c != "insert_id")
    _create(wh, f"CREATE TABLE event_logs ({columns})")
    with pytest.raises(SchemaError) as info:
        wh.check_table("event_logs")
    assert "'insert_id'" in str(info.value) and "event_logs" in str(info.value) and "\n" not in str(info.value)


def test_check_table_names_a_mistyped_column(wh):
    columns = ", ".join(f"{c} {'VARCHAR' if c == 'cohort_id' else warehouse.DUCKDB_TYPES[k]}" for c, k in EVENT_COLUMNS.items())
    _create(wh, f"CREATE TABLE event_logs ({columns})")
    with pytest.raises(SchemaError, match=r"event_logs\.cohort_id is STRING, expected DATE"):
        wh.check_table("event_logs")


def test_check_table_names_a_missing_table(wh):
    with pytest.raises(SchemaError) as info:
        wh.check_table("amplitude_events")
    assert "amplitude_events does not exist" in str(info.value) and "\n" not in str(info.value)
    assert wh.columns("amplitude_events") is None


def test_a_query_on_a_missing_table_is_a_one_line_schema_error(wh):
    with pytest.raises(SchemaError) as info:
        wh.run("stage_count")
    assert "amplitude_events" in str(info.value) and "\n" not in str(info.value)


# --- identifiers and parameters ------------------------------------------------------------

BAD_NAMES = ["event_logs; DROP TABLE event_logs", "event`logs", "event'logs", 'event"logs', "event logs",
             "", "analytics.event_logs", "event_logs--", "1events", "event_logs\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_table_names_are_refused_before_any_sql(tables, name):
    wh = tables
    with pytest.raises(ConfigError, match="not valid"):
        warehouse.check_identifier("table", name)
    with pytest.raises(ConfigError):
        wh.columns(name)
    with pytest.raises(ConfigError):
        wh.append(name, rows_table([event(1, t(2024, 1, 1))]))
    assert wh.columns("event_logs") == EVENT_COLUMNS


@pytest.mark.parametrize("url", ["bigquery://my proj/analytics", "bigquery://my'proj/analytics", "bigquery://my`proj/analytics",
                                 "bigquery://my;proj/analytics", "bigquery://my-project/ana lytics",
                                 "bigquery://my-project/ana;lytics", "bigquery://my-project/ana`lytics",
                                 "bigquery://my-project/ana'lytics", 'bigquery://my-project/ana"lytics',
                                 "bigquery://my-project/ana-lytics"])
def test_bad_project_and_dataset_names_are_refused(url):
    with pytest.raises(ConfigError) as info:
        warehouse.open(url)
    assert "\n" not in str(info.value)


def test_good_identifiers_pass():
    for name in ("event_logs", "_x", "E1"):
        assert warehouse.check_identifier("table", name) == name
    assert BigQueryWarehouse("example.com:my-project", "analytics_2").project == "example.com:my-project"


def test_injection_strings_as_parameters_are_plain_values(tables, tmp_path):
    wh = tables
    names = INJECTIONS + ["plain"]
    wh.append("event_logs", rows_table([event(i + 1, t(2024, 1, 1), name=n) for i, n in enumerate(names)]))
    one = query_file(tmp_path, "one", "SELECT id, name FROM event_logs WHERE name = @name ORDER BY id")
    many = query_file(tmp_path, "many", "SELECT id FROM event_logs WHERE name IN UNNEST(@names) ORDER BY id")
    for i, value in enumerate(names):
        assert wh.run(one, {"name": value}).to_pylist() == [{"id": i + 1, "name": value}]
    assert wh.run(many, {"names": INJECTIONS}).column("id").to_pylist() == list(range(1, len(INJECTIONS) + 1))
    # Nothing was dropped or deleted, and a value that is not there matches nothing.
    assert wh.run(query_file(tmp_path, "n", "SELECT COUNT(*) AS n FROM event_logs")).column("n")[0].as_py() == len(names)
    assert wh.run(one, {"name": "x' OR '1'='1'--"}).num_rows == 0
    wh.check_table("event_logs")
    wh.check_table("amplitude_events")


def test_typed_parameters_round_trip(wh, tmp_path):
    q = query_file(tmp_path, "echo", "SELECT @ts AS ts, @d AS d, @i AS i, @s AS s, @b AS b, @f AS f, @names AS names")
    params = {"ts": t(2024, 1, 2, 3, 4, 5, 678901), "d": dt.date(2024, 2, 29), "i": 2**40, "s": "x'y",
              "b": True, "f": 1.25, "names": ["a", "b'c"]}
    row = wh.run(q, params).to_pylist()[0]
    assert row == params


def test_sql_that_does_not_parse_is_a_one_line_warehouse_error(wh, tmp_path):
    with pytest.raises(WarehouseError) as info:
        wh.run(query_file(tmp_path, "bad", "SELECT FROM WHERE"))
    assert "bad.sql" in str(info.value)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_sql_duckdb_refuses_is_a_one_line_warehouse_error(tables, tmp_path):
    with pytest.raises(WarehouseError) as info:
        tables.run(query_file(tmp_path, "bad", "SELECT id FROM event_logs WHERE no_such_column = 1"))
    assert "\n" not in str(info.value) and "bad" in str(info.value) and "no_such_column" in str(info.value)


# --- streaming -------------------------------------------------------------------------------

def test_stream_yields_bounded_batches_lazily(wh, tmp_path):
    q = query_file(tmp_path, "numbers", "SELECT x FROM UNNEST(GENERATE_ARRAY(1, @n)) AS x ORDER BY x")
    stream = wh.stream(q, {"n": 120_000}, batch_rows=10_000)
    first = next(stream)  # a generator: the first batch comes before the rest is read
    batches = [first, *stream]
    assert len(batches) >= 12
    assert all(isinstance(b, pa.RecordBatch) and 0 < b.num_rows <= 10_000 for b in batches)
    assert pa.Table.from_batches(batches).column("x").to_pylist() == list(range(1, 120_001))


def test_stream_of_an_empty_result_yields_nothing(tables, tmp_path):
    assert list(tables.stream(query_file(tmp_path, "none", "SELECT id FROM event_logs"))) == []


# --- sqlglot 30.30 / DuckDB 2.0 mistranslations ----------------------------------------------

MISTRANSLATIONS = {
    # name: (BigQuery text, what BigQuery answers, what DuckDB answers through sqlglot)
    "dayofweek": ("SELECT EXTRACT(DAYOFWEEK FROM DATE '2024-01-07') AS v", 1, 0),  # a Sunday: BigQuery 1..7 from Sunday
    "timestamp_diff_hour": ("SELECT TIMESTAMP_DIFF(TIMESTAMP '2024-01-01 11:00:00', TIMESTAMP '2024-01-01 10:59:00', HOUR) AS v", 0, 1),
    "timestamp_diff_day": ("SELECT TIMESTAMP_DIFF(TIMESTAMP '2024-01-02 00:00:01', TIMESTAMP '2024-01-01 23:59:59', DAY) AS v", 0, 1),
}
DATE_ARITHMETIC = ["SELECT DATE_ADD(DATE '2024-01-01', INTERVAL 1 DAY) AS v",
                   "SELECT DATE_SUB(DATE '2024-01-01', INTERVAL 1 DAY) AS v",
                   "SELECT DATE '2024-01-01' + INTERVAL 1 DAY AS v",
                   "SELECT DATE_TRUNC(DATE '2024-01-03', WEEK(MONDAY)) AS v"]
# Spellings that give BigQuery's answer on both engines.
PORTABLE = {
    "SELECT FORMAT_DATE('%u', DATE '2024-01-07') AS v": "7",  # ISO weekday, Monday = 1
    "SELECT DIV(TIMESTAMP_DIFF(TIMESTAMP '2024-01-01 11:00:00', TIMESTAMP '2024-01-01 10:59:00', MICROSECOND), 3600000000) AS v": 0,
    "SELECT DATE(TIMESTAMP_ADD(TIMESTAMP(DATE '2024-01-01'), INTERVAL 1 DAY)) AS v": dt.date(2024, 1, 2),
}


@pytest.mark.parametrize("name", sorted(MISTRANSLATIONS))
def test_pinned_mistranslations(wh, tmp_path, name):
    """DuckDB's answer differs from BigQuery's: a failure here means sqlglot or DuckDB changed."""
    text, bigquery_answer, duckdb_answer = MISTRANSLATIONS[name]
    got = wh.run(query_file(tmp_path, name, text)).column("v")[0].as_py()
    assert got == duckdb_answer != bigquery_answer


@pytest.mark.parametrize("text", DATE_ARITHMETIC)
def test_pinned_date_arithmetic_returns_timestamp(wh, tmp_path, text):
    result = wh.run(query_file(tmp_path, "date_math", text))
    assert pa.types.is_timestamp(result.schema.field("v").type)  # BigQuery: DATE


@pytest.mark.parametrize("text", sorted(PORTABLE))
def test_portable_spellings_agree_with_bigquery(wh, tmp_path, text):
    assert wh.run(query_file(tmp_path, "portable", text)).column("v")[0].as_py() == PORTABLE[text]
    assert not risky_constructs(text)


def risky_constructs(text: str) -> list[str]:
    """The constructs sqlglot/DuckDB mistranslate, found in BigQuery text (comments ignored)."""
    found = []
    for tree in sqlglot.parse(text, read="bigquery"):
        if tree is None:
            continue
        for node in tree.walk():
            if isinstance(node, exp.Extract) and node.this.name.upper() == "DAYOFWEEK":
                found.append("EXTRACT(DAYOFWEEK)")
            elif isinstance(node, (exp.TimestampDiff, exp.DatetimeDiff)) and node.unit and node.unit.name.upper() != "MICROSECOND":
                found.append(f"{type(node).__name__}({node.unit.name})")
            elif isinstance(node, (exp.DateAdd, exp.DateSub, exp.DateTrunc)):
                found.append(type(node).__name__)
            elif isinstance(node, (exp.Add, exp.Sub)) and any(isinstance(side, exp.Interval) for side in (node.this, node.expression)):
                found.append("+/- INTERVAL")
    return found


def test_risky_construct_finder_finds_each_one():
    for name, (text, _, _) in MISTRANSLATIONS.items():
        assert risky_constructs(text), name
    for text in DATE_ARITHMETIC:
        assert risky_constructs(text), text
    assert risky_constructs("SELECT TIMESTAMP_DIFF(a, b, SECOND) FROM t")
    assert not risky_constructs("-- EXTRACT(DAYOFWEEK FROM x) in a comment\nSELECT 1")


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_no_sql_file_uses_a_mistranslated_construct(path):
    assert risky_constructs(path.read_text(encoding="utf-8")) == []


# --- the synthetic seed ------------------------------------------------------------------------

SPEC = seed.SeedSpec(start=dt.date(2024, 3, 4), days=14, events_per_day=10_000, seed=11, dirty_share=0.03, late_share=0.04)
FUNNEL = [name for name, _, _ in seed.FUNNEL]


@pytest.fixture(scope="module")
def seeded():
    """A fortnight of synthetic traffic in a DuckDB warehouse, with every row (on time and late)."""
    with warehouse.open("duckdb://:memory:") as w:
        result = seed.fill(w, SPEC)
        with w.connect() as con:
            ontime = con.sql("SELECT * FROM event_logs ORDER BY id").to_arrow_table()
            late = con.sql("SELECT * FROM seed_late_arrivals ORDER BY id").to_arrow_table()
        everything = ontime.select(list(EVENT_COLUMNS)).to_pylist() + late.select(list(EVENT_COLUMNS)).to_pylist()
        yield result, ontime, late, everything


def _all_rows(seeded) -> list[dict]:
    """Every generated row, on time and late (as event_logs rows)."""
    return seeded[3]


def test_seed_counts_add_up(seeded):
    result, ontime, late, _ = seeded
    assert (result.rows, result.late_rows) == (ontime.num_rows, late.num_rows)
    assert 0.8 * SPEC.days * SPEC.events_per_day < result.rows + result.late_rows < 1.2 * SPEC.days * SPEC.events_per_day
    ids = ontime.column("id").to_pylist() + late.column("id").to_pylist()
    assert sorted(ids) == list(range(1, len(ids) + 1))  # unique, dense, from first_id


def test_seed_is_deterministic_for_a_seed():
    spec = seed.SeedSpec(start=dt.date(2024, 1, 1), days=2, events_per_day=3000, seed=5)

    def contents(spec):
        with warehouse.open("duckdb://:memory:") as w:
            seed.fill(w, spec)
            with w.connect() as con:
                return (con.sql("SELECT * FROM event_logs ORDER BY id").to_arrow_table(),
                        con.sql("SELECT * FROM seed_late_arrivals ORDER BY id").to_arrow_table())

    first, again = contents(spec), contents(spec)
    assert first[0].num_rows > 0 and first[1].num_rows > 0
    assert first[0].equals(again[0]) and first[1].equals(again[1])
    other = contents(seed.SeedSpec(start=dt.date(2024, 1, 1), days=2, events_per_day=3000, seed=6))
    assert not first[0].equals(other[0])


def test_seed_volumes_are_heavy_tailed(seeded):
    counts = Counter(r["name"] for r in _all_rows(seeded))
    volumes = sorted(counts.values(), reverse=True)
    assert len(volumes) >= 100
    assert volumes[0] >= 100 * statistics.median(volumes)
    assert sum(volumes[:10]) >= 0.5 * sum(volumes)  # a few events carry most of the traffic


def test_seed_has_every_source(seeded):
    assert set(seeded[1].column("source").to_pylist()) == {"WEB", "CODEHOSTINTEGRATION", "BACKEND", "STATICWEB", "IDEEXTENSION"}


def test_seed_has_code_insights_events(seeded):
    text = resources.files("ampkit.resources").joinpath("event_catalogue.csv").read_text(encoding="utf-8")
    insights = {r["name"] for r in csv.DictReader(text.splitlines()) if r["is_code_insights"] == "true"}
    assert len(insights) >= 10
    counts = Counter(r["name"] for r in _all_rows(seeded) if r["name"] in insights)
    assert len(counts) >= 5 and sum(counts.values()) >= 20


def test_seed_walks_the_signup_funnel(seeded):
    """Some visitors walk the whole funnel, in order: their web steps share an anonymous_user_id,
    the backend SignUpSucceeded carries the user id their later steps carry, and time moves on."""
    rows = [r for r in _all_rows(seeded) if r["name"] in FUNNEL]
    signups = defaultdict(list)
    visitors = defaultdict(list)
    for r in rows:
        if r["name"] == "SignUpSucceeded":
            assert r["source"] == "BACKEND" and r["anonymous_user_id"] == "backend"
            if r["user_id"]:
                signups[r["user_id"]].append(r)
        elif r["anonymous_user_id"] not in ("", "backend"):
            visitors[r["anonymous_user_id"]].append(r)
    complete = []
    for anon, steps in visitors.items():
        users = {r["user_id"] for r in steps if r["user_id"]}
        walk = sorted(steps + [s for u in users for s in signups.get(u, [])], key=lambda r: (r["timestamp"], FUNNEL.index(r["name"])))
        matched = []
        for r in walk:
            if len(matched) < len(FUNNEL) and r["name"] == FUNNEL[len(matched)]:
                matched.append(r)
        if len(matched) == len(FUNNEL):
            complete.append(matched)
    assert len(complete) >= 3
    for matched in complete:
        times = [r["timestamp"] for r in matched]
        assert times == sorted(times) and times[0] < times[-1]
        user = matched[2]["user_id"]
        assert matched[0]["user_id"] == 0  # anonymous before signing up
        # The same user after (a dirty row may have lost its ids: user_id 0, a blocklisted device).
        assert all(r["user_id"] in (user, 0) for r in matched[3:]) and sum(r["user_id"] == user for r in matched[3:]) >= 3
        assert len({r["anonymous_user_id"] for r in matched if r["name"] != "SignUpSucceeded"}) == 1
    # Drop-off: fewer visitors reach each later step.
    reached = Counter()
    for anon, steps in visitors.items():
        names = {r["name"] for r in steps}
        reached["ViewSignUp"] += "ViewSignUp" in names
    assert reached["ViewSignUp"] > 5 * len(complete)


def test_seed_cohorts_are_mondays(seeded):
    cohorts = set(seeded[1].column("cohort_id").to_pylist()) | set(seeded[2].column("cohort_id").to_pylist())
    assert None not in cohorts and len(cohorts) >= 3
    assert {d.weekday() for d in cohorts} == {0}


def _dirty_count(rows: list[dict]) -> int:
    return sum(1 for r in rows if r["device_id"] == "ab12" or r["device_id"] in seed.BLOCKLISTED_IDS
               or r["public_argument"] == '{"broken": ' or r["anonymous_user_id"] == "")


def test_seed_dirty_rows_at_about_the_configured_share(seeded):
    rows = _all_rows(seeded)
    # Four of the six kinds of dirt are visible in a single row (missing ids, short and
    # blocklisted device ids, broken JSON); the others are future times and duplicate insert ids.
    expected = SPEC.dirty_share * 4 / 6 * len(rows)
    assert 0.7 * expected < _dirty_count(rows) < 1.3 * expected
    end = dt.datetime.combine(SPEC.start + dt.timedelta(days=SPEC.days), dt.time(), UTC)
    assert any(r["timestamp"] > end for r in rows)
    inserts = Counter(r["insert_id"] for r in rows if r["insert_id"])
    assert any(n > 1 for n in inserts.values())


def test_seed_without_dirt_is_clean(q):
    with warehouse.open("duckdb://:memory:") as w:
        seed.fill(w, seed.SeedSpec(start=dt.date(2024, 1, 1), days=2, events_per_day=5000, seed=11, dirty_share=0.0))
        rows = w.run(q("SELECT * FROM event_logs")).to_pylist()
    assert rows and _dirty_count(rows) == 0
    inserts = Counter(r["insert_id"] for r in rows if r["insert_id"])
    assert max(inserts.values()) == 1


def test_seed_late_rows_wait_and_are_released_after_arrive_at(q):
    spec = seed.SeedSpec(start=dt.date(2024, 1, 1), days=2, events_per_day=4000, seed=3, late_share=0.05)
    with warehouse.open("duckdb://:memory:") as w:
        result = seed.fill(w, spec)
        late = w.run(q("SELECT id, timestamp, arrive_at FROM seed_late_arrivals")).to_pylist()
        assert 0.6 * 0.05 < result.late_rows / (result.rows + result.late_rows) < 1.4 * 0.05
        assert all(dt.timedelta(hours=2) <= r["arrive_at"] - r["timestamp"] <= dt.timedelta(hours=30) for r in late)
        on_time = set(w.run(q("SELECT id FROM event_logs")).column("id").to_pylist())
        assert not on_time & {r["id"] for r in late}

        now = t(2024, 1, 2, 12)
        seed.release(w, now)
        due = {r["id"] for r in late if r["arrive_at"] <= now}
        assert 0 < len(due) < len(late)
        ids = set(w.run(q("SELECT id FROM event_logs")).column("id").to_pylist())
        assert ids == on_time | due
        waiting = set(w.run(q("SELECT id FROM seed_late_arrivals")).column("id").to_pylist())
        assert waiting == {r["id"] for r in late} - due

        seed.release(w, t(2024, 1, 10))
        assert w.run("summary_seed").to_pylist()[0]["row_count"] == 0
        assert w.run(q("SELECT COUNT(*) AS n FROM event_logs")).column("n")[0].as_py() == result.rows + result.late_rows


def test_release_without_seed_table_does_nothing(wh):
    wh.ensure_tables()
    seed.release(wh, t(2024, 1, 1))  # no seed_late_arrivals: a real warehouse, nothing to release
    assert wh.columns("seed_late_arrivals") is None


def test_finalize_commits_nothing_for_a_run_that_lost_the_lease(wh):
    """The lease is a fence: sync_finalize's transaction fails, and rolls back, for any other holder."""
    load_known_data(wh)
    before = {t: wh.run("summary").to_pylist() for t in ("all",)}
    pending = wh.run("sync_resolve", sample_params("sync_resolve")).to_pylist()
    with pytest.raises(WarehouseError, match="lease was lost"):
        wh.run("sync_finalize", {**sample_params("sync_finalize"), "holder": "a-stalled-run"})
    assert {t: wh.run("summary").to_pylist() for t in ("all",)} == before
    assert wh.run("sync_resolve", sample_params("sync_resolve")).to_pylist() == pending


def test_finalize_refuses_a_slice_whose_rows_are_gone(wh):
    """The accounting check holds over an empty slice too: COUNTIF over no rows is 0 on BigQuery,
    and DuckDB's COUNT_IF (NULL there) once let this commit (the ZetaSQL gate found it)."""
    load_known_data(wh)
    with pytest.raises(WarehouseError, match="the outcomes do not add up: extracted 1, decided 0 of 0"):
        wh.run("sync_finalize", {**sample_params("sync_finalize"), "run_id": "run-gone", "extracted": 1, "accepted": 0})


def test_exclusive_lock_refuses_a_second_holder_at_once_and_names_the_first(tmp_path):
    url = f"duckdb:///{tmp_path}/w.duckdb"
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    with warehouse.open(url) as a, warehouse.open(url) as b:
        a.ensure_state()
        with a.exclusive("hourly_sync", "run-a@host:1"), a.held():
            a.note_lease("hourly_sync", "run-a@host:1", soon)
            # `a` holds the DuckDB file too: the refusal must not wait for it.
            with pytest.raises(LockedError, match="run-a@host:1") as caught:
                with b.exclusive("hourly_sync", "run-b@host:2"):
                    pass
            assert caught.value.expires_at == soon
        with b.exclusive("hourly_sync", "run-b@host:2"):
            assert Path(f"{tmp_path}/w.duckdb.hourly_sync.lock").read_text() == "run-b@host:2"
        assert Path(f"{tmp_path}/w.duckdb.hourly_sync.lock").read_text() == ""


def test_exclusive_lock_of_a_holder_stalled_past_its_lease_defers_to_the_lease_table(tmp_path):
    url = f"duckdb:///{tmp_path}/w.duckdb"
    with warehouse.open(url) as a, warehouse.open(url) as b:
        a.ensure_state()
        with a.exclusive("hourly_sync", "run-a@host:1"):
            a.note_lease("hourly_sync", "run-a@host:1", dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
            with b.exclusive("hourly_sync", "run-b@host:2"):
                pass  # not refused: the lease table (expired there too) lets it take over


def test_exclusive_lock_dies_with_its_process(tmp_path):
    url = f"duckdb:///{tmp_path}/w.duckdb"
    with warehouse.open(url) as wh:
        wh.ensure_state()
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom ampkit import warehouse\n"
        f"with warehouse.open({url!r}).exclusive('hourly_sync', 'child'):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with warehouse.open(url) as wh, pytest.raises(LockedError, match="child"):
            with wh.exclusive("hourly_sync", "parent"):
                pass
    finally:
        child.kill()
        child.wait()
    with warehouse.open(url) as wh, wh.exclusive("hourly_sync", "parent"):
        pass


def test_exclusive_lock_is_free_where_the_warehouse_answers_concurrently():
    with warehouse.open("duckdb://:memory:") as a:
        with a.exclusive("hourly_sync", "one"), a.exclusive("hourly_sync", "two"):
            pass


def test_finalize_records_outcomes_by_the_same_rules_resolve_counted_them():
    # The two files spell the outcome rules twice (resolve must stay read-only); they must not drift.
    def rules(name):
        return [case.sql(dialect="bigquery") for tree in sqlglot.parse(sqlfiles.text(name), read="bigquery")
                if tree is not None for case in tree.find_all(exp.Case)]
    assert len(rules("sync_resolve")) == 2
    assert rules("sync_finalize") == rules("sync_resolve")


# -- a DuckDB file damaged by a kill, and its last good copy ------------------------------------------

def _filled(tmp_path, rows=3):
    path = tmp_path / "wh.duckdb"
    with warehouse.open(f"duckdb:///{path}") as w:
        w.ensure_tables()
        w.append("amplitude_events", pa.Table.from_pylist(
            [{"id": i, "name": "ViewHome", "loaded_at": dt.datetime(2022, 3, 14, tzinfo=dt.timezone.utc)} for i in range(rows)]))
    return path


def _rows(path):
    import duckdb
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT COUNT(*), bit_xor(hash(e)) FROM amplitude_events AS e").fetchone()[0]
    finally:
        con.close()


def _restore(path, *more):
    return damage.restore(f"duckdb:///{path}", *more)


def test_a_damaged_duckdb_file_says_what_happened_and_how_to_put_its_copy_back(tmp_path):
    path = _filled(tmp_path)
    w = warehouse.open(f"duckdb:///{path}")
    w.keep_copy()
    copy = tmp_path / "wh.duckdb.last-good"
    assert copy.exists() and _rows(copy) == 3
    damage.damage(path)
    with pytest.raises(WarehouseError) as caught:
        w.columns("amplitude_events")
    message = str(caught.value)
    assert type(caught.value).__name__ == "DamagedError"
    assert "is damaged (Corrupt database file" in message and "killed while DuckDB wrote a checkpoint" in message
    assert "`ampkit restore-warehouse` puts back its last good copy, of 20" in message and "docs/RELIABILITY.md" in message
    # The copy of a damaged file is never taken: the good one stays.
    w.keep_copy()
    assert _rows(copy) == 3

    done = _restore(path)
    assert done.returncode == 0, done.stderr
    assert "put back the last good copy; the file it replaced is" in done.stdout and "within 7 days" in done.stdout
    assert _rows(path) == 3
    assert len(list(tmp_path.glob("wh.duckdb.set-aside-*"))) == 1
    assert not list(tmp_path.glob("*.restoring"))
    # A file that reads back in full is not replaced unless asked.
    again = _restore(path)
    assert again.returncode == 1 and "reads back in full" in again.stderr and "--force" in again.stderr
    assert _restore(path, "--force").returncode == 0
    assert len(list(tmp_path.glob("wh.duckdb.set-aside-*"))) == 2


def test_damage_in_a_table_block_is_found_before_it_replaces_the_copy(tmp_path):
    import duckdb
    path = _filled(tmp_path, rows=200_000)  # several blocks of table data
    w = warehouse.open(f"duckdb:///{path}")
    w.keep_copy()
    copy = tmp_path / "wh.duckdb.last-good"
    con = duckdb.connect(str(path), read_only=True)
    block = con.execute("SELECT max(block_id) FROM pragma_storage_info('amplitude_events') WHERE block_id >= 0").fetchone()[0]
    con.close()
    damage.damage(path, block)
    assert w.columns("amplitude_events")  # the catalog still reads: only the data is damaged
    w.keep_copy()
    assert _rows(copy) == 200_000, "a damaged file replaced the good copy"
    done = _restore(path)
    assert done.returncode == 0, done.stderr
    assert _rows(path) == 200_000


def test_a_copy_older_than_amplitudes_insert_id_window_is_not_put_back_unless_forced(tmp_path):
    path = _filled(tmp_path)
    warehouse.open(f"duckdb:///{path}").keep_copy()
    copy = tmp_path / "wh.duckdb.last-good"
    old = time.time() - 8 * 86400
    os.utime(copy, (old, old))
    damage.damage(path)
    refused = _restore(path)
    assert refused.returncode == 1
    assert "older than Amplitude's 7-day insert_id window: the runs since would be stored twice" in refused.stderr
    assert _restore(path, "--force").returncode == 0 and _rows(path) == 3


def test_a_damaged_duckdb_file_without_a_copy_says_there_is_none(tmp_path):
    path = _filled(tmp_path)
    damage.damage(path)
    with pytest.raises(WarehouseError, match=r"no copy was kept \(wh.duckdb.last-good is taken as a sync starts\)"):
        warehouse.open(f"duckdb:///{path}").columns("amplitude_events")
    with pytest.raises(WarehouseError, match="no copy of .* to put back"):
        warehouse.open(f"duckdb:///{path}").restore()


def _holding(path):
    """A child process with the DuckDB file open (as a running sync or stage would have it)."""
    child = children.start([sys.executable, "-c",
                            f"import duckdb, sys, time\ncon = duckdb.connect({str(path)!r})\nprint('open', flush=True)\ntime.sleep(120)"],
                           stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "open"
    return child


def test_the_copy_is_taken_only_of_a_file_at_rest(tmp_path):
    path = _filled(tmp_path)
    w = warehouse.open(f"duckdb:///{path}")
    copy = tmp_path / "wh.duckdb.last-good"
    # A write-ahead log beside the file: its last writer has not finished (or died mid-way).
    wal = tmp_path / "wh.duckdb.wal"
    wal.write_bytes(b"")
    w.keep_copy()
    assert not copy.exists()
    wal.unlink()
    # Open in this process: copying would drop DuckDB's POSIX lock on the file.
    with w.connect():
        w.keep_copy()
    assert not copy.exists()
    # Open in another process: it may be writing.
    child = _holding(path)
    try:
        w.keep_copy()
        assert not copy.exists()
    finally:
        child.kill()
        child.wait()
    w.keep_copy()
    assert copy.exists() and copy.stat().st_mtime_ns == path.stat().st_mtime_ns
    # Unchanged since: not copied again; changed: copied again.
    before = copy.stat().st_ino
    w.keep_copy()
    assert copy.stat().st_ino == before
    w.append("amplitude_events", pa.Table.from_pylist(
        [{"id": 9, "name": "ViewHome", "loaded_at": dt.datetime(2022, 3, 14, tzinfo=dt.timezone.utc)}]))
    w.keep_copy()
    assert _rows(copy) == 4


def test_restore_leaves_a_file_open_in_another_process_alone(tmp_path):
    path = _filled(tmp_path)
    warehouse.open(f"duckdb:///{path}").keep_copy()
    before = path.read_bytes()
    child = _holding(path)
    try:
        refused = _restore(path, "--force")
    finally:
        child.kill()
        child.wait()
    assert refused.returncode == 1 and "is open in another process: stop it first" in refused.stderr
    assert path.read_bytes() == before and not list(tmp_path.glob("wh.duckdb.set-aside-*"))
