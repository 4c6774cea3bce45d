"""The BigQuery backend through the real google-cloud-bigquery client.

Against `bigquery_standin` (a local HTTP stand-in of the REST endpoints the client calls, see
tests/bigquery_standin.py) always, with every socket outside loopback refused; and against real
BigQuery (`live`) when AMPKIT_LIVE_BIGQUERY=bigquery://PROJECT/DATASET names a scratch dataset
and Application Default Credentials are present. The live tests write ampkit's tables in that
dataset (event_logs, amplitude_events, state tables) and empty event_logs/amplitude_events:
never point them at a dataset that matters.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import socket
import time
import urllib.request
import uuid
from urllib.error import HTTPError

import pyarrow as pa
import pytest

from ampkit import seed, stage
from ampkit import sql as sqlfiles
from ampkit import warehouse
from ampkit.config import Config
from ampkit.errors import ConfigError, SchemaError, WarehouseError
from ampkit.warehouse import EVENT_COLUMNS, TABLES, BigQueryWarehouse

from bigquery_standin import bigquery_standin, translate  # noqa: F401 - bigquery_standin is a fixture
from test_warehouse import (INJECTIONS, SQL_NAMES, STAGE_ROWS, event, load_known_data, query_file,
                            result_columns, rows_table, sample_params, t)

LIVE_URL = os.environ.get("AMPKIT_LIVE_BIGQUERY", "")
SMALL = seed.SeedSpec(start=dt.date(2024, 1, 1), days=1, events_per_day=1500, seed=21, dirty_share=0.02, late_share=0.03)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def loopback_only(monkeypatch):
    """Refuse every connection and name lookup outside loopback: nothing may reach Google
    (no metadata server, no OAuth, no bigquery.googleapis.com). Fails the test if anything tried."""
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family == getattr(socket, "AF_UNIX", None) or (isinstance(address, tuple) and address[0] in LOOPBACK):
            return real_connect(sock, address)
        attempts.append(address)
        raise OSError(f"test refuses a connection to {address!r}")

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            attempts.append(host)
            raise socket.gaierror(f"test refuses to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    yield attempts
    assert attempts == [], f"something tried to leave loopback: {attempts}"


@pytest.fixture
def standin(bigquery_standin, loopback_only):
    return bigquery_standin


@functools.lru_cache(maxsize=None)
def _live_credentials() -> str:
    """'' if Application Default Credentials are present, else why not (looked up once)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    try:
        google.auth.default(scopes=["https://www.googleapis.com/auth/bigquery"])
    except DefaultCredentialsError as exc:
        return str(exc)
    return ""


def _live_url() -> str:
    if not LIVE_URL:
        pytest.skip("set AMPKIT_LIVE_BIGQUERY=bigquery://PROJECT/DATASET (a scratch dataset) to run live BigQuery tests")
    problem = _live_credentials()
    if problem:
        pytest.skip(f"no Google credentials for live BigQuery tests: {problem}")
    return LIVE_URL


@pytest.fixture(params=["standin", pytest.param("live", marks=pytest.mark.live)])
def target(request):
    """(warehouse URL, opener of another dataset's URL, stand-in or None) for each backend."""
    if request.param == "standin":
        s = request.getfixturevalue("standin")
        return s.url("analytics"), s.url, s
    url = _live_url()
    base = url.split("?")[0].rsplit("/", 1)[0]
    return url, lambda dataset: f"{base}/{dataset}", None


@pytest.fixture
def bq(target):
    with warehouse.open(target[0]) as w:
        assert isinstance(w, BigQueryWarehouse)
        yield w


def reference(spec: seed.SeedSpec) -> warehouse.Warehouse:
    """The same seed in an embedded DuckDB warehouse: what the BigQuery backend must match."""
    w = warehouse.open("duckdb://:memory:")
    seed.fill(w, spec)
    return w


def fresh_seed(wh, tmp_path, spec: seed.SeedSpec = SMALL) -> seed.SeedResult:
    """Seed `wh` from scratch (a live dataset may hold earlier runs' rows)."""
    wh.ensure_tables()
    result = seed.fill(wh, spec, replace=True)
    wh.run(query_file(tmp_path, "reset_staging", "DELETE FROM amplitude_events WHERE TRUE"))
    return result


def rows_of(wh, tmp_path, table: str) -> list[dict]:
    return wh.run(query_file(tmp_path, f"all_{table}", f"SELECT * FROM {table} ORDER BY id")).to_pylist()


# --- the warehouse operations, on the stand-in and (live) on BigQuery -----------------------

def test_ensure_tables_columns_and_check_table(bq):
    bq.ensure_tables()
    bq.ensure_tables()  # idempotent
    assert bq.columns("event_logs") == EVENT_COLUMNS
    assert bq.columns("amplitude_events") == TABLES["amplitude_events"]
    assert bq.columns("ampkit_runs")["duration_seconds"] == "FLOAT64"
    bq.check_table("event_logs")
    bq.check_table("amplitude_events")


def test_seed_append_and_stage_twice_match_duckdb(bq, tmp_path):
    result = fresh_seed(bq, tmp_path)
    ref = reference(SMALL)
    assert result.rows > 1000 and result.late_rows > 0
    # The parquet load jobs landed exactly the rows the embedded warehouse holds.
    assert rows_of(bq, tmp_path, "event_logs") == rows_of(ref, tmp_path, "event_logs")
    assert rows_of(bq, tmp_path, "seed_late_arrivals") == rows_of(ref, tmp_path, "seed_late_arrivals")

    config = Config(now=t(2024, 1, 1, 14))
    first, second = stage.run(bq, config), stage.run(bq, config)
    expected = stage.run(ref, config)
    assert first.staged == expected.staged > 0
    assert second.staged == 0
    counts = query_file(tmp_path, "stage_counts", "SELECT * FROM ampkit_stage_counts ORDER BY run_time, bucket, name")
    assert bq.run(counts).to_pylist() == ref.run(counts).to_pylist()  # recounted by the second run, not doubled
    assert rows_of(bq, tmp_path, "amplitude_events") == rows_of(ref, tmp_path, "amplitude_events")
    # A later run releases the late rows that have arrived and stages them, on both.
    later = Config(now=t(2024, 1, 2, 20))
    assert stage.run(bq, later).staged == stage.run(ref, later).staged > 0
    ours = {"event_logs", "amplitude_events", "seed_late_arrivals"}  # a live dataset may hold other tables' rows
    for query in ("summary", "summary_seed"):
        assert ([r for r in bq.run(query).to_pylist() if r["table_name"] in ours]
                == [r for r in ref.run(query).to_pylist() if r["table_name"] in ours])


def test_typed_parameters_round_trip(bq, tmp_path):
    q = query_file(tmp_path, "echo", "SELECT @ts AS ts, @d AS d, @i AS i, @s AS s, @b AS b, @f AS f, @names AS names, "
                                     "@days AS days, @ids AS ids")
    params = {"ts": t(2024, 1, 2, 3, 4, 5, 678901), "d": dt.date(2024, 2, 29), "i": 2**40, "s": "x'y\"z`",
              "b": True, "f": 1.25, "names": ["a", "b'c"], "days": [dt.date(2024, 1, 1)], "ids": [1, 2**53 + 1]}
    result = bq.run(q, params)
    assert result.to_pylist() == [params]
    assert result.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert result.schema.field("d").type == pa.date32()
    assert result.schema.field("ids").type == pa.list_(pa.int64())


def test_parameterized_query_matches_duckdb(bq, tmp_path):
    fresh_seed(bq, tmp_path)
    ref = reference(SMALL)
    q = query_file(tmp_path, "filtered", """
        SELECT id, name, source, timestamp, cohort_id, user_id
        FROM event_logs
        WHERE timestamp >= @since AND timestamp < TIMESTAMP(@until_day)
          AND cohort_id >= @cohort AND id > @min_id AND source = @source
          AND name IN UNNEST(@names)
        ORDER BY id""")
    names = [r["name"] for r in ref.run(query_file(tmp_path, "top", "SELECT name, COUNT(*) AS n FROM event_logs "
                                                                     "GROUP BY name ORDER BY n DESC, name LIMIT 5")).to_pylist()]
    params = {"since": t(2024, 1, 1, 6), "until_day": dt.date(2024, 1, 1) + dt.timedelta(days=1),
              "cohort": dt.date(2023, 12, 1), "min_id": 10, "source": "WEB", "names": names}
    want = ref.run(q, params).to_pylist()
    assert len(want) > 50
    assert bq.run(q, params).to_pylist() == want
    streamed = list(bq.stream(q, params))
    assert all(isinstance(b, pa.RecordBatch) for b in streamed)
    assert pa.Table.from_batches(streamed).to_pylist() == want


def test_injection_strings_as_parameters_are_inert(bq, tmp_path):
    fresh_seed(bq, tmp_path, seed.SeedSpec(start=dt.date(2024, 1, 1), days=1, events_per_day=50, seed=1))
    base = 10_000_000
    names = INJECTIONS + ["plain"]
    bq.append("event_logs", rows_table([event(base + i, t(2024, 1, 1), name=n) for i, n in enumerate(names)]))
    one = query_file(tmp_path, "one", "SELECT id, name FROM event_logs WHERE name = @name ORDER BY id")
    for i, value in enumerate(names):
        assert bq.run(one, {"name": value}).to_pylist() == [{"id": base + i, "name": value}]
    many = query_file(tmp_path, "many", "SELECT id FROM event_logs WHERE name IN UNNEST(@names) ORDER BY id")
    assert bq.run(many, {"names": INJECTIONS}).column("id").to_pylist() == [base + i for i in range(len(INJECTIONS))]
    assert bq.run(one, {"name": "x' OR '1'='1'--"}).num_rows == 0
    bq.check_table("event_logs")
    bq.check_table("amplitude_events")
    count = query_file(tmp_path, "n", "SELECT COUNT(*) AS n FROM event_logs WHERE id >= @base")
    assert bq.run(count, {"base": base}).column("n")[0].as_py() == len(names)


def test_missing_table_is_a_schema_error_naming_it(standin):
    standin.create_dataset("empty")
    with warehouse.open(standin.url("empty")) as w:
        assert w.columns("event_logs") is None
        with pytest.raises(SchemaError) as info:
            w.check_table("event_logs")
        assert "test-project.empty.event_logs does not exist" in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(SchemaError) as info:
            w.run("stage_count")
        message = str(info.value)
        assert "Table test-project:empty.amplitude_events" in message and "\n" not in message, message


def test_missing_dataset_is_a_one_line_error_naming_it(target):
    missing = "ampkit_missing_" + uuid.uuid4().hex[:8]
    with warehouse.open(target[1](missing)) as w:
        with pytest.raises(SchemaError) as info:
            w.check_table("event_logs")
        assert missing in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(SchemaError) as info:
            w.run("stage_count")
        message = str(info.value)
        assert "\n" not in message and f"Dataset {w.project}:{missing}" in message, message
        with pytest.raises(SchemaError) as info:
            w.append("event_logs", rows_table([event(1, t(2024, 1, 1))]))
        assert "\n" not in str(info.value) and missing in str(info.value)


def test_bad_sql_is_a_one_line_warehouse_error(bq, tmp_path):
    bq.ensure_tables()
    for text in ("SELECT FROM WHERE", "SELECT no_such_column FROM event_logs"):
        with pytest.raises(WarehouseError) as info:
            bq.run(query_file(tmp_path, "bad", text))
        message = str(info.value)
        assert "bad.sql" in message and "\n" not in message, message


def test_bad_identifiers_are_refused_before_any_request(target):
    url = target[0]
    project = url.split("://")[1].split("/")[0]
    for bad in ("ana lytics", "ana;lytics", "ana`lytics", "ana'lytics"):
        with pytest.raises(ConfigError):
            warehouse.open(f"bigquery://{project}/{bad}")
    with warehouse.open(url) as w:
        for table in ("event_logs; DROP TABLE event_logs", "event`logs", "event logs", "event_logs\n"):
            with pytest.raises(ConfigError):
                w.columns(table)
            with pytest.raises(ConfigError):
                w.append(table, rows_table([event(1, t(2024, 1, 1))]))


def test_stream_of_generated_rows(bq, tmp_path):
    q = query_file(tmp_path, "numbers", "SELECT x, CAST(x AS STRING) AS s FROM UNNEST(GENERATE_ARRAY(1, @n)) AS x ORDER BY x")
    batches = list(bq.stream(q, {"n": 30_000}))
    table = pa.Table.from_batches(batches)
    assert table.column("x").to_pylist() == list(range(1, 30_001))
    assert table.column("s").to_pylist()[-1] == "30000"
    assert list(bq.stream(q, {"n": 0})) == []
    empty = bq.run(q, {"n": 0})
    assert empty.num_rows == 0 and empty.column_names == ["x", "s"]


# --- stand-in only: what needs the stand-in's storage or its page size ------------------------

def test_stream_pages_are_bounded_batches(standin, tmp_path):
    standin.page_bytes = 64 * 1024  # BigQuery pages at ~10 MB; a small page makes many batches
    with warehouse.open(standin.url()) as w:
        q = query_file(tmp_path, "numbers", "SELECT x, CAST(x AS STRING) AS s FROM UNNEST(GENERATE_ARRAY(1, @n)) AS x ORDER BY x")
        stream = w.stream(q, {"n": 30_000})
        first = next(stream)
        batches = [first, *stream]
    assert len(batches) >= 5
    assert max(b.num_rows for b in batches) < 30_000 / 4
    assert pa.Table.from_batches(batches).column("x").to_pylist() == list(range(1, 30_001))
    pages = [p for m, p in standin.requests if m == "GET" and "/queries/" in p]
    assert len(pages) >= len(batches)


def test_table_with_a_missing_column_is_a_schema_error_naming_it(standin):
    standin.create_dataset("broken")
    columns = ", ".join(f"{c} {warehouse.DUCKDB_TYPES[k]}" for c, k in EVENT_COLUMNS.items() if c != "device_id")
    standin.sql(f'CREATE TABLE "broken".event_logs ({columns})')
    with warehouse.open(standin.url("broken")) as w:
        with pytest.raises(SchemaError) as info:
            w.check_table("event_logs")
    assert "'device_id'" in str(info.value) and "\n" not in str(info.value)


def test_append_lands_in_the_dataset_as_a_parquet_load(standin):
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        w.append("event_logs", rows_table(STAGE_ROWS))
        w.append("event_logs", rows_table([]))  # nothing to load: no request
    stored = standin.table("analytics", "event_logs").sort_by("id").to_pylist()
    assert stored == [{k: r.get(k) for k in EVENT_COLUMNS} for r in STAGE_ROWS]
    uploads = [(m, p) for m, p in standin.requests if p.startswith("/upload/")]
    assert uploads == [("POST", "/upload/bigquery/v2/projects/test-project/jobs"),
                       ("PUT", "/upload/bigquery/v2/projects/test-project/jobs")]
    load = [j for j in standin.jobs.values() if "load" in j.resource["configuration"]]
    assert len(load) == 1
    config = load[0].resource["configuration"]["load"]
    assert (config["sourceFormat"], config["writeDisposition"]) == ("PARQUET", "WRITE_APPEND")
    assert config["destinationTable"] == {"projectId": "test-project", "datasetId": "analytics", "tableId": "event_logs"}


def test_queries_are_parameterized_jobs_with_the_default_dataset(standin, tmp_path):
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        w.run(query_file(tmp_path, "p", "SELECT COUNT(*) AS n FROM event_logs WHERE name = @name"), {"name": "'; --"})
    job = list(standin.jobs.values())[-1].resource["configuration"]["query"]
    assert "'; --" not in job["query"]  # the value travels as a parameter, never in the text
    assert job["defaultDataset"] == {"projectId": "test-project", "datasetId": "analytics"}
    assert job["parameterMode"] == "NAMED" and job["useLegacySql"] is False
    assert job["queryParameters"] == [{"name": "name", "parameterType": {"type": "STRING"}, "parameterValue": {"value": "'; --"}}]


@pytest.mark.parametrize("name", SQL_NAMES)
def test_every_sql_file_answers_as_on_duckdb(standin, name):
    """Each `.sql` file, on the same known data with the same typed parameters, gives the same
    answer through the BigQuery client and the stand-in as on the embedded DuckDB warehouse."""
    params = sample_params(name)
    with warehouse.open("duckdb://:memory:") as ref, warehouse.open(standin.url()) as w:
        load_known_data(ref)
        load_known_data(w)
        want, got = ref.run(name, params), w.run(name, params)
        columns = result_columns(name)
        if columns is None:
            assert got.num_columns == 0
            assert w.run("summary").to_pylist() == ref.run("summary").to_pylist()
        else:
            assert got.column_names == want.column_names == columns
            key = (lambda r: json.dumps(r, default=str, sort_keys=True))
            assert sorted(got.to_pylist(), key=key) == sorted(want.to_pylist(), key=key)


@pytest.mark.parametrize("name", SQL_NAMES)
def test_standin_translates_like_ampkit(name):
    assert tuple(sql for _, sql, _ in translate(sqlfiles.text(name))) == sqlfiles.duckdb_statements(name)


def test_only_implemented_endpoints_are_called(standin, tmp_path):
    with warehouse.open(standin.url()) as w:
        fresh_seed(w, tmp_path, seed.SeedSpec(start=dt.date(2024, 1, 1), days=1, events_per_day=100, seed=2))
        stage.run(w, Config(now=t(2024, 1, 1, 12)))
        list(w.stream("summary"))
    allowed = [r"POST /bigquery/v2/projects/test-project/jobs", r"GET /bigquery/v2/projects/test-project/jobs/[^/]+",
               r"GET /bigquery/v2/projects/test-project/queries/[^/]+",
               r"GET /bigquery/v2/projects/test-project/datasets/analytics/tables/\w+",
               r"(POST|PUT) /upload/bigquery/v2/projects/test-project/jobs"]
    seen = {f"{m} {p}" for m, p in standin.requests}
    assert all(any(re.fullmatch(a, s) for a in allowed) for s in seen), seen
    assert all(any(re.fullmatch(a, s) for s in seen) for a in allowed), seen  # and each of them was used


# --- the stand-in answers as BigQuery does ----------------------------------------------------

def _http(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_standin_error_bodies_have_bigquery_shape(standin):
    base = f"{standin.endpoint}/bigquery/v2/projects/test-project"
    code, body = _http(f"{base}/datasets/analytics/tables/nope")
    assert code == 404 and body["error"]["status"] == "NOT_FOUND"
    assert body["error"]["errors"][0]["reason"] == "notFound"
    assert body["error"]["message"] == "Not found: Table test-project:analytics.nope"
    code, body = _http(f"{base}/datasets/elsewhere/tables/nope")
    assert code == 404 and body["error"]["message"] == "Not found: Dataset test-project:elsewhere"
    code, job = _http(f"{base}/jobs", "POST", {"configuration": {"query": {"query": "SELEC 1", "useLegacySql": False}}})
    assert code == 200 and job["status"] == {"state": "RUNNING"}
    code, job = _http(f"{base}/jobs/{job['jobReference']['jobId']}")
    assert job["status"]["state"] == "DONE" and job["status"]["errorResult"]["reason"] == "invalidQuery"
    code, body = _http(f"{base}/queries/{job['jobReference']['jobId']}")
    assert code == 400 and body["error"]["status"] == "INVALID_ARGUMENT"


def test_standin_timestamps_follow_format_options(standin):
    base = f"{standin.endpoint}/bigquery/v2/projects/test-project"
    _, job = _http(f"{base}/jobs", "POST", {"configuration": {"query": {
        "query": "SELECT TIMESTAMP '2024-01-01 00:00:01.5+00' AS ts, [1, 2] AS a, DATE '2024-01-02' AS d"}}})
    job_id = job["jobReference"]["jobId"]
    _, as_int = _http(f"{base}/queries/{job_id}?formatOptions.useInt64Timestamp=true")
    assert as_int["rows"] == [{"f": [{"v": "1704067201500000"}, {"v": [{"v": "1"}, {"v": "2"}]}, {"v": "2024-01-02"}]}]
    assert [f["type"] for f in as_int["schema"]["fields"]] == ["TIMESTAMP", "INTEGER", "DATE"]
    assert as_int["schema"]["fields"][1]["mode"] == "REPEATED"
    _, as_float = _http(f"{base}/queries/{job_id}")
    assert float(as_float["rows"][0]["f"][0]["v"]) == 1704067201.5
    _, none = _http(f"{base}/queries/{job_id}?maxResults=0")
    assert "rows" not in none and none["totalRows"] == "1" and none["jobComplete"] is True


def test_a_null_parameter_travels_with_its_declared_type(standin, tmp_path):
    """BigQuery types a parameter by its declaration, not its value: a None for a TIMESTAMP
    parameter is a TIMESTAMP NULL (ampkit.sql.PARAMETER_TYPES), which a TIMESTAMP column takes."""
    q = query_file(tmp_path, "lease", "INSERT INTO ampkit_lease (name, holder, acquired_at, expires_at) "
                                      "VALUES (@name, @holder, @now, @expires_at)")
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        w.run(q, {"name": "n", "holder": "h", "now": t(2024, 1, 1), "expires_at": None})
        with pytest.raises(WarehouseError, match="declared TIMESTAMP but was given str"):
            w.run(q, {"name": "n", "holder": "h", "now": t(2024, 1, 1), "expires_at": "2024-01-02"})
        with pytest.raises(WarehouseError, match="NULL and has no declared type"):
            w.run(q, {"name": "n", "holder": "h", "now": t(2024, 1, 1), "expires_at": None, "nonsense": None})
    assert standin.sql('SELECT holder, expires_at FROM "analytics".ampkit_lease') == [("h", None)]


def test_standin_refuses_a_string_into_a_timestamp_column_as_bigquery_does(standin, tmp_path):
    """BigQuery does not coerce a STRING parameter into a TIMESTAMP column (DuckDB would)."""
    q = query_file(tmp_path, "lease", "INSERT INTO ampkit_lease (name, holder, acquired_at, expires_at) "
                                      "VALUES (@name, @holder, @now, @holder)")
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        with pytest.raises(WarehouseError, match="has type STRING which cannot be inserted into column expires_at"):
            w.run(q, {"name": "n", "holder": "h", "now": t(2024, 1, 1)})


def test_script_runs_in_order_and_answers_with_its_last_statement(standin, tmp_path):
    q = query_file(tmp_path, "script", """
        INSERT INTO ampkit_lease (name, holder) VALUES (@name, 'a');
        UPDATE ampkit_lease SET holder = 'b' WHERE name = @name;
        SELECT name, holder FROM ampkit_lease WHERE name = @name""")
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        assert w.run(q, {"name": "x"}).to_pylist() == [{"name": "x", "holder": "b"}]
        assert w.run(q, {"name": "y"}).to_pylist() == [{"name": "y", "holder": "b"}]
    statistics = list(standin.jobs.values())[-1].resource["statistics"]["query"]
    assert statistics["statementType"] == "SCRIPT"
    with warehouse.open(standin.url()) as w:  # DML reports the rows it touched, as BigQuery does
        job = w.client.query("DELETE FROM ampkit_lease WHERE TRUE", job_config=w._job_config({}))
        rows = job.result()
        assert (job.num_dml_affected_rows, rows.num_dml_affected_rows, job.statement_type) == (2, 2, "DELETE")
        assert not rows.schema


def test_standin_rolls_back_a_failed_transaction(standin, tmp_path):
    q = query_file(tmp_path, "tx", """
        BEGIN TRANSACTION;
        INSERT INTO ampkit_lease (name, holder) VALUES ('x', 'a');
        INSERT INTO ampkit_lease (name, holder) VALUES (NULL, 'b');
        COMMIT TRANSACTION""")
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        with pytest.raises(WarehouseError):
            w.run(q)
        assert w.run(query_file(tmp_path, "n", "SELECT COUNT(*) AS n FROM ampkit_lease")).to_pylist() == [{"n": 0}]


# --- the stand-in bills and contends as BigQuery does -----------------------------------------

def test_standin_bills_the_columns_read_in_the_partitions_not_pruned(standin, tmp_path):
    with warehouse.open(standin.url()) as w:
        w.ensure_tables()
        ts = pa.timestamp("us", tz="UTC")
        w.append("ampkit_deliveries", pa.table({
            "id": pa.array([1, 2, 3], pa.int64()), "insert_id": ["aaaa", "bb", None], "outcome": ["accepted"] * 3,
            "run_id": ["r"] * 3, "loaded_at": pa.array([t(2024, 1, 1, 1), t(2024, 1, 1, 2), t(2024, 1, 2, 1)], ts)}))
        one_day = query_file(tmp_path, "one_day", "SELECT insert_id FROM ampkit_deliveries "
                                                  "WHERE loaded_at >= @since AND loaded_at < @until AND id > 0")
        w.run(one_day, {"since": t(2024, 1, 1), "until": t(2024, 1, 1, 12)})
        bill = standin.bills[-1]
        # Jan 1's partition only; columns insert_id (2 + length), loaded_at (8), id (8): the query names them.
        assert bill["bytes_processed"] == (2 + 4 + 8 + 8) + (2 + 2 + 8 + 8)
        assert bill["bytes_billed"] == 10 * 1024 * 1024  # the minimum per table referenced
        job = list(standin.jobs.values())[-1].resource["statistics"]["query"]
        assert job["totalBytesProcessed"] == str(bill["bytes_processed"])
        # Without a bound on loaded_at, BigQuery refuses: ampkit_deliveries requires a partition filter.
        unbounded = query_file(tmp_path, "unbounded", "SELECT COUNT(*) AS n FROM ampkit_deliveries WHERE id > 0")
        with pytest.raises(WarehouseError, match="without a filter over column\\(s\\) 'loaded_at'"):
            w.run(unbounded)
        # A bound under an OR prunes nothing, and does not count.
        weak = query_file(tmp_path, "weak", "SELECT COUNT(*) AS n FROM ampkit_deliveries WHERE loaded_at > @since OR id > 0")
        with pytest.raises(WarehouseError, match="partition elimination"):
            w.run(weak, {"since": t(2024, 1, 1)})


def test_standin_refuses_loads_past_the_daily_table_modification_limit(tmp_path):
    from bigquery_standin import running
    with running(max_table_modifications=2) as s, warehouse.open(s.url()) as w:
        rows = pa.table({"x": pa.array([1], pa.int64())})
        w.append("scratch", rows)
        w.append("scratch", rows)
        with pytest.raises(WarehouseError, match="too many table update operations"):
            w.append("scratch", rows)
        w.run(query_file(tmp_path, "dml", "INSERT INTO scratch (x) VALUES (2)"))  # DML does not count


def test_standin_aborts_a_transaction_when_another_job_changed_its_table_meanwhile(tmp_path):
    import threading
    from bigquery_standin import running
    with running() as s, warehouse.open(s.url()) as w:
        w.ensure_tables()
        s.statement_seconds = 0.4  # from here on, a script's statements are 0.4 s apart
        s.sql("INSERT INTO analytics.ampkit_state VALUES ('a', NULL, 'r', NULL), ('b', NULL, 'r', NULL)")
        slow = query_file(tmp_path, "slow", "BEGIN TRANSACTION; UPDATE ampkit_state SET run_id = 'slow' WHERE key = 'a'; "
                                            "SELECT 1 AS one; COMMIT TRANSACTION")
        other = query_file(tmp_path, "other", "UPDATE ampkit_state SET run_id = 'other' WHERE key = 'b'")
        errors = []

        def run_slow():
            with warehouse.open(s.url()) as mine:
                try:
                    mine.run(slow)
                except WarehouseError as exc:
                    errors.append(str(exc))
        thread = threading.Thread(target=run_slow)
        thread.start()
        deadline = time.monotonic() + 30
        # The slow transaction has updated its row (BEGIN and UPDATE ran) and waits before COMMIT.
        while not any(j.executed >= 2 and "'slow'" in j.resource["configuration"]["query"]["query"]
                      for j in list(s.jobs.values())):
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.01)
        w.run(other)  # another row of the same table, outside any transaction: it commits
        thread.join(10)
        assert errors and "Transaction is aborted due to concurrent update against table" in errors[0]
        assert sorted(s.sql("SELECT key, run_id FROM analytics.ampkit_state")) == [("a", "r"), ("b", "other")]
