"""ampkit/sql against BigQuery's own semantics.

The gate: every statement of every `.sql` file (ampkit/sql/, scheduled/) must pass Google's ZetaSQL
analyzer with BigQuery's language options, against the catalog of the project's CREATE TABLE files,
with parameters typed as the warehouse binds them.

The oracle: every file is run on the DuckDB path (sqlglot's translation, as ampkit runs it) and on
ZetaSQL's reference evaluator over the same small tables, with Hypothesis choosing the rows and
the parameters from values that break translations (on and off the hour, microseconds, NULLs,
empty strings, Unicode, DST and day boundaries in non-UTC zones, large integers); the answers and
the tables left behind must be equal.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from ampkit import sql as sqlfiles
from ampkit import state, sync
from ampkit import warehouse as warehouses

from bigquery_oracle import ROOT, Oracle, OracleError, schema
from bigquery_standin import partition_filters, tables_read

SQL_FILES = sorted(Path(sqlfiles.HERE).glob("*.sql")) + sorted((ROOT / "scheduled").glob("*.sql"))
SCHEMA = {"schema_event_logs", "schema_state", "schema_seed"}
SCHEMAS = schema()
TABLES = {name: t.columns for name, t in SCHEMAS.items()}
UTC = dt.timezone.utc
ARROW = {"INT64": pa.int64(), "STRING": pa.string(), "TIMESTAMP": pa.timestamp("us", tz="UTC"),
         "DATE": pa.date32(), "FLOAT64": pa.float64(), "BOOL": pa.bool_()}
EXAMPLES = int(os.environ.get("AMPKIT_ORACLE_EXAMPLES", "15"))
# Shrinking a difference re-runs both engines hundreds of times; AMPKIT_ORACLE_SHRINK=1 asks for it.
PHASES = tuple(p for p in Phase if p != Phase.shrink or os.environ.get("AMPKIT_ORACLE_SHRINK") == "1")


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.fixture(scope="session")
def oracle():
    return Oracle()


# --- the gate --------------------------------------------------------------------------------------

def test_every_parameter_a_file_uses_is_declared_with_its_bigquery_type():
    undeclared = {f"{p.name}: @{name}" for p in SQL_FILES for name in sqlfiles.parameters(str(p))
                  if name not in sqlfiles.PARAMETER_TYPES}
    assert not undeclared, f"declare these in ampkit.sql.PARAMETER_TYPES: {sorted(undeclared)}"


@pytest.mark.parametrize("path", SQL_FILES, ids=ids(SQL_FILES))
def test_bigquery_accepts_every_statement(oracle, path):
    findings = oracle.check(path)
    assert not findings, "BigQuery would refuse:\n" + "\n".join(map(str, findings))


def test_the_gate_names_file_line_and_column_of_what_bigquery_refuses(oracle, tmp_path):
    # The defect that shipped: a CTE named `rows` (a reserved word in BigQuery) that sqlglot accepts.
    bad = tmp_path / "bad.sql"
    bad.write_text("-- the extract\nSELECT 1 AS x;\nWITH rows AS (SELECT id FROM amplitude_events)\nSELECT id FROM rows",
                   encoding="utf-8")
    (finding,) = oracle.check(bad)
    assert (finding.line, finding.column) == (3, 6)
    assert "ROWS" in finding.message and str(bad) in str(finding)
    sqlglot.parse(bad.read_text(), read="bigquery")  # the reason a gate is needed: sqlglot takes it


def test_the_gate_refuses_an_undeclared_or_mistyped_parameter(oracle, tmp_path):
    bad = tmp_path / "params.sql"
    bad.write_text("SELECT COUNT(*) AS n FROM amplitude_events WHERE loaded_at > @limit", encoding="utf-8")
    (finding,) = oracle.check(bad)
    assert "INT64" in finding.message and "TIMESTAMP" in finding.message
    bad.write_text("SELECT COUNT(*) AS n FROM amplitude_events WHERE loaded_at > @no_such_parameter", encoding="utf-8")
    (finding,) = oracle.check(bad)
    assert "no_such_parameter" in finding.message


# --- the translation -------------------------------------------------------------------------------

@pytest.mark.parametrize("bigquery, duckdb_value", [
    ("DIV(7199 + 3599, 3600) * 3600", 7200),  # sqlglot 30.31 alone: 7199
    ("2 * DIV(7, 2)", 6),
    ("DIV(-7, 2)", -3),
    ("DIV(7 - 1, 2 + 1)", 2),
])
def test_translated_integer_division_keeps_bigquery_precedence(bigquery, duckdb_value):
    import duckdb
    tree = sqlfiles.portable(sqlglot.parse_one(f"SELECT {bigquery} AS v", read="bigquery"))
    assert duckdb.sql(tree.sql(dialect="duckdb")).fetchall()[0][0] == duckdb_value


# --- the oracle ------------------------------------------------------------------------------------

# Instants where translations break: on the hour and a microsecond either side, quarter-hour
# buckets, UTC midnight, DST changes (US, EU, Lord Howe's half hour), a half-hour zone's midnight.
MOMENTS = [dt.datetime(2022, 3, 14, 9, 0, tzinfo=UTC), dt.datetime(2022, 3, 14, 9, 0, 0, 1, tzinfo=UTC),
           dt.datetime(2022, 3, 14, 8, 59, 59, 999999, tzinfo=UTC), dt.datetime(2022, 3, 14, 9, 0, 0, 500000, tzinfo=UTC),
           dt.datetime(2022, 3, 14, 9, 14, 59, 999999, tzinfo=UTC), dt.datetime(2022, 3, 14, 9, 37, 12, 345678, tzinfo=UTC),
           dt.datetime(2022, 3, 14, 0, 0, tzinfo=UTC), dt.datetime(2022, 3, 13, 23, 59, 59, 999999, tzinfo=UTC),
           dt.datetime(2022, 3, 13, 10, 0, tzinfo=UTC), dt.datetime(2022, 3, 27, 1, 0, tzinfo=UTC),
           dt.datetime(2022, 4, 2, 15, 0, tzinfo=UTC), dt.datetime(2022, 3, 13, 18, 30, tzinfo=UTC),
           dt.datetime(2020, 12, 1, 0, 0, tzinfo=UTC), dt.datetime(2020, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
           dt.datetime(2022, 3, 14, 10, 0, tzinfo=UTC), dt.datetime(2022, 3, 14, 11, 0, tzinfo=UTC)]
ZONES = ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Kiritimati",
         "Etc/GMT+12", "Europe/Berlin", "Asia/Kathmandu"]
EVENTS = ["ViewHome", "SearchResultsQueried", "ViewSignUpPage", "SignUpSucceeded", "CodeIntelligenceHover",
          "InsightsViewed", "Ünïcødé☃", "", " "]
ARGUMENTS = ["{}", None, "", " ", '{"query":"repo:x","n":1}', '{"email":"ada@example.com"}', 'not json',
             '{"u":"\\u0040x ada@example.io"}', '{"n": NaN}', "[1,2]", '"text"', '{"a":{"b":{"c":[[[1]]]}}}',
             '{"token":"sgp_abcdef0123456789"}', '{"k":"' + "x" * 1030 + '"}', '{"ü":"☃","e":"\\u00e9"}',
             '{"big": 12345678901234567890}', '{"f": 1.5e300}', '{ "spaced" : true }']
URLS = ["https://sourcegraph.com/search?q=ada%40example.com", None, "", "https://sourcegraph.com/-/sign-up",
        "https://x.io/?token=ghp_0123456789abcdefXYZ", "https://sourcegraph.com/☃"]
FLAGS = ["{}", None, "", '{"search-ranking":true}', "[]", "nope", '{"x": Infinity}']
# Ordinary values first in each pool: Hypothesis leans to a pool's first entries.
IDS = ["device-1", "abc", None, "", " ", "backend", "DEVICE-ÄÖ", "null", "00000000-0000-0000-0000-000000000000"]
USERS = [42, 1, None, 0, -1, 99999, 100000, 123456789012, 2 ** 62]

# Values per (table, column), then per column, then per type: small pools, so joins and groups meet.
COLUMN_VALUES = {
    "name": EVENTS, "public_argument": ARGUMENTS, "argument": ["secret@example.com", None],
    "url": URLS, "first_source_url": URLS, "last_source_url": URLS, "referrer": URLS,
    "feature_flags": FLAGS, "anonymous_user_id": IDS, "device_id": IDS, "user_id": USERS,
    "source": [None, "WEB", "BACKEND", "CODEHOSTINTEGRATION", ""], "platform": [None, "WEB", "BACKEND"],
    "version": [None, "", "3.38.0"], "insert_id": [None, "", "i-1", "i-2", "i-3", "ü-4"],
    "id": [1000, 1001, 1002, 1003, 1004, 1005, None], "run_id": ["r1", "r2", "r3"], "replayed_run_id": [None, "r1", "r2"], "recon_id": ["x1", "x2"],
    "outcome": ["accepted", "filtered", "rejected", "held", None], "reason": [None, "backend", "no_id", "quota"],
    "rule": [None, "backend", "before_start"], "action": ["send", "exclude", "hold"],
    "status": ["ok", "running", "failed", "interrupted", "skipped_locked"], "mode": ["sync", "backfill", None],
    "key": ["watermark", "other"], "holder": ["h1", "h2", None], "event_type": EVENTS, "detail": [None, "x"],
    "event": [None, '{"event_type":"x"}'], "data_map_version": [None, "v1", "v2"], "host": ["a", None],
    "error": [None, "boom"], "filtered": [None, "{}"], "rejected": [None, "{}"], "notebook_path": [None, "p"],
}
TABLE_VALUES = {("ampkit_lease", "name"): ["hourly_sync", "other"], ("ampkit_run_rules", "name"): EVENTS}


def moments(anchors=()):
    """Instants: the pool above, the parameters' own bounds and a microsecond either side of them
    (so rows meet the ranges they are filtered by), or any instant of the period."""
    near = [a + d for a in anchors if isinstance(a, dt.datetime) and a.year < 9000
            for d in (dt.timedelta(0), dt.timedelta(microseconds=1), -dt.timedelta(microseconds=1))]
    anywhere = st.datetimes(min_value=dt.datetime(2020, 11, 28), max_value=dt.datetime(2022, 4, 3), timezones=st.just(UTC))
    pool = st.sampled_from(near * 3 + MOMENTS)  # a range's inside and edges first, then the instants above
    return st.one_of(pool, pool, pool, anywhere)


def values_for(table: str, column: str, kind: str, nullable: bool, anchors=()):
    pool = TABLE_VALUES.get((table, column)) or COLUMN_VALUES.get(column)
    named = [a for a in anchors if isinstance(a, str)]
    if column in ("name", "event_type") and named and table not in ("ampkit_lease",):
        # The events the query asks about (funnel steps, active events) come up most often.
        base = st.one_of(st.sampled_from(named), st.sampled_from(named), st.sampled_from(pool))
        return (st.none() | base) if nullable else base
    if pool is not None:
        base = st.sampled_from([v for v in pool if v is not None or nullable])
    elif kind == "INT64":
        base = st.sampled_from([1, 2, 3, 4, 5, 2 ** 53 + 1]) | st.integers(-3, 10 ** 12)
    elif kind == "TIMESTAMP":
        base = moments(anchors)
    elif kind == "DATE":
        base = st.sampled_from([dt.date(2020, 12, 1), dt.date(2022, 3, 13), dt.date(2022, 3, 14)])
    elif kind == "FLOAT64":
        base = st.floats(0, 1e6, allow_nan=False)
    elif kind == "BOOL":
        base = st.booleans()
    else:
        base = st.text(alphabet="ab ☃é\"\\", max_size=4)
    return (st.none() | base) if nullable else base


@st.composite
def table_rows(draw, table: str, anchors=(), max_rows: int = 6, inside=()):
    columns = TABLES[table]
    required = SCHEMAS[table].required
    n = draw(st.sampled_from([max_rows, 3, max_rows, 0]))
    rows = []
    for i in range(n):
        row = {c: draw(values_for(table, c, k, c not in required, anchors)) for c, k in columns}
        # Most rows fall inside the ranges the query filters on (every time column of the row: a
        # row must pass all of a query's ranges at once to be counted).
        if inside and draw(st.sampled_from([True, True, True, False])):
            for c, k in columns:
                if k == "TIMESTAMP" and row[c] is not None:
                    row[c] = draw(st.sampled_from(inside))
        if table in ("event_logs", "seed_late_arrivals"):
            row["id"] = 1000 + i  # a row id is unique in the warehouse
        if table == "amplitude_events":
            row["id"] = 1003 + i  # staged ids overlap event_logs' in part: staging skips those only
        if table == "ampkit_runs":
            row["run_id"] = f"r{i + 1}"  # and so is a run's
        rows.append(row)
    return rows


# Most likely first: Hypothesis leans to a strategy's first choices, so an empty range comes last.
SPANS = [dt.timedelta(days=1), dt.timedelta(days=9), dt.timedelta(hours=1), dt.timedelta(days=60),
         dt.timedelta(hours=7, minutes=30), dt.timedelta(minutes=15), dt.timedelta(microseconds=1), dt.timedelta(0)]
# Bounds that callers always pass in order (lower first); drawn apart, most ranges would be empty.
ORDERED = [["lookback_start", "window_start", "window_end"], ["event_start", "event_end"],
           ["start_ts", "end_ts", "scan_end"], ["since", "until"]]


def parameter_values(name: str, kind: str):
    special = {
        "tz": st.sampled_from(ZONES), "lanes": st.integers(1, 8), "limit": st.integers(0, 5),
        "min_id_length": st.integers(1, 6), "max_depth": st.integers(1, 6),
        "max_properties_bytes": st.sampled_from([20, 1024, 1_000_000]),
        "window_seconds": st.sampled_from([0, 59, 3600, 86400]),
        "steps": st.lists(st.sampled_from(EVENTS[:6]), min_size=1, max_size=4, unique=True),
        "active_events": st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True),
        "blocklist": st.just(["null", "undefined", "00000000-0000-0000-0000-000000000000"]),
        "reasons": st.lists(st.sampled_from(["backend", "no_id", "quota"]), min_size=1, max_size=2, unique=True),
        "move_watermark": st.booleans(), "name": st.just("hourly_sync"), "run_id": st.sampled_from(["r1", "r2"]),
        "recon_id": st.just("x1"), "holder": st.sampled_from(["h1", "h2"]),
        "amplitude_start_date": st.sampled_from([dt.date(2020, 12, 1), dt.date(2022, 3, 14)]),
        "start_time": st.sampled_from([dt.datetime(2020, 12, 1, tzinfo=UTC), dt.datetime(2022, 3, 14, 9, tzinfo=UTC)]),
        # Parallel arrays: sync_world fills them from the rows it builds (the data map's decisions, rejects).
        **dict.fromkeys(["key_names", "key_sources", "key_actions", "key_rules", "key_reasons", "reject_ids",
                         "reject_insert_ids", "reject_names", "reject_event_times", "reject_loaded_ats",
                         "reject_reasons", "reject_details", "reject_events"], st.just([])),
        "schema_version": st.sampled_from(["v1", "v2"]),
        # The hourly run reads every event time: its bounds are the epoch and the far future.
        "event_start": st.just(sync.EPOCH) | moments(), "event_end": st.just(sync.FAR_FUTURE) | moments(),
        # Nothing rolled up yet (the usual case in a small world), or a horizon somewhere in it.
        "kept_from": st.just(sync.EPOCH) | moments(),
        "weeks": st.integers(0, 8),
        "accepted_volumes": st.lists(st.sampled_from(["search", "product_ui"]), max_size=2, unique=True),
        "accepted_notes": st.lists(st.sampled_from(["family 'search' would send 0 events", ""]), max_size=2),
        # The ledger's holes: (start, end] pairs, none (the usual case) or one inside the small world.
        "gap_starts": st.sampled_from([[], [dt.datetime(2022, 3, 13, 18, tzinfo=UTC)]]),
        "gap_ends": st.just([dt.datetime(2022, 3, 14, 9, tzinfo=UTC)]),
        "names": st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True),
        # A slice's lag histogram: parallel arrays of one length (lag.Lags.params()).
        "lag_hours": st.just([dt.datetime(2022, 3, 14, 11, tzinfo=UTC), dt.datetime(2022, 3, 14, 11, tzinfo=UTC)]),
        "lag_measures": st.just(["event", "loaded"]), "lag_buckets": st.sampled_from([[420, 60], [0, 7300]]),
        "lag_counts": st.sampled_from([[3, 3], [1, 2]]),
        "lag_newest": st.just([dt.datetime(2022, 3, 14, 11, 53, tzinfo=UTC), dt.datetime(2022, 3, 14, 11, 59, tzinfo=UTC)]),
    }
    if name in special:
        return special[name]
    if name in ("depth_pattern", "flags_depth_pattern"):
        return st.integers(1, 6).map(sync.depth_pattern)
    if kind == "TIMESTAMP":
        return moments()
    if name in COLUMN_VALUES:
        return st.sampled_from([v for v in COLUMN_VALUES[name] if v is not None])
    return values_for("", name, kind, nullable=False)


def tables_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [t for t in TABLES if f" {t}" in text]


@st.composite
def sync_world(draw, tables: dict, params: dict):
    """The sync's working tables as a run leaves them: pending rows taken from staged rows, the data
    map's decision per (name, source), some dead letters, the lease mostly held by the caller."""
    run_id = params.get("run_id", "r1")
    staged = tables.get("amplitude_events") or draw(table_rows("amplitude_events", ()))
    pending = []
    for row in staged:
        if draw(st.sampled_from([True, True, True, False])):
            pending.append({"run_id": draw(st.sampled_from([run_id, run_id, "r3"])), "id": row["id"], "name": row["name"],
                            "source": row["source"], "insert_id": row["insert_id"] or f"sg-{row['id']}",
                            "event_time": row["timestamp"], "loaded_at": row["loaded_at"], "rule": None, "outcome": None})
    world = {"ampkit_pending": pending}
    keys = {(p["name"], p["source"] or None) for p in pending}  # one decision per COALESCE(source, ''), as sync._keys
    world["ampkit_run_rules"] = [{"run_id": run_id, "name": n, "source": src, "action": draw(st.sampled_from(["send", "send", "exclude", "hold"])),
                                  "rule": draw(st.sampled_from(["default", "backend", "code_insights"])), "reason": None}
                                 for n, src in sorted(keys, key=repr)]
    if "key_names" in params:
        # The run's decisions travel as parameters (sync_extract.sql inserts them); the table holds
        # another run's, which the query must not pick up.
        mine = world["ampkit_run_rules"]
        params.update({"key_names": [r["name"] for r in mine], "key_sources": [r["source"] or "" for r in mine],
                       "key_actions": [r["action"] for r in mine], "key_rules": [r["rule"] for r in mine],
                       "key_reasons": [r["reason"] or "" for r in mine]})
        world["ampkit_run_rules"] = [{**r, "run_id": "r3", "action": "send"} for r in mine[:1]]
    rejects = [{"id": p["id"], "insert_id": p["insert_id"], "name": p["name"], "event_time": p["event_time"],
                "loaded_at": p["loaded_at"], "reason": draw(st.sampled_from(["no_id", "quota"])), "detail": "",
                "event": '{"event_type":"x"}'}
               for p in pending if draw(st.sampled_from([False, False, False, True]))]
    spilled = draw(st.sampled_from([False, False, True]))  # too many for parameters: a load job wrote them
    world["ampkit_rejects"] = [{"run_id": run_id, **r} for r in rejects] if spilled else []
    listed = [] if spilled else rejects
    if "reject_ids" in params:
        text = lambda v: "" if v is None else (v.isoformat() if isinstance(v, dt.datetime) else str(v))  # noqa: E731
        params.update({"reject_ids": [r["id"] for r in listed],
                       **{f"reject_{c}s": [text(r[c]) for r in listed]
                          for c in ("insert_id", "name", "event_time", "loaded_at", "reason", "detail", "event")}})
    world["ampkit_dead_letters"] = []
    if "reject_ids" in params and "accepted" in params:
        # The checkpoint's accounting identity: the counts a run would pass, mostly right (else nothing commits).
        mine = [p for p in pending if p["run_id"] == run_id]
        actions = {(r["name"], r["source"] or ""): r["action"] for r in world["ampkit_run_rules"] if r["run_id"] == run_id}
        dead = {r["id"] for r in rejects}
        start = params.get("start_time")
        accepted = sum(1 for p in mine if p["id"] not in dead and not (p["event_time"] is not None and start is not None
                                                                      and p["event_time"] < start)
                       and actions.get((p["name"], p["source"] or "")) == "send")
        off = draw(st.sampled_from([0, 0, 0, 0, 1]))
        params.update({"extracted": len(mine) + off, "accepted": accepted})
    world["ampkit_deliveries"] = [{"id": p["id"] + 100, "insert_id": p["insert_id"], "name": p["name"], "source": p["source"],
                                   "event_time": p["event_time"], "loaded_at": p["loaded_at"], "outcome": "accepted",
                                   "reason": None, "run_id": "r0", "delivered_at": p["loaded_at"]}
                                  for p in pending if draw(st.sampled_from([False, False, False, False, True]))]
    if draw(st.sampled_from([True, True, True, False])):
        world["ampkit_lease"] = [{"name": params.get("name", "hourly_sync"), "holder": params.get("holder", "h1"),
                                  "acquired_at": None, "expires_at": None}]
    return {**{"amplitude_events": staged}, **world}


@st.composite
def inputs(draw, path: Path):
    path = ROOT / path
    params = {p: draw(parameter_values(p, sqlfiles.PARAMETER_TYPES[p])) for p in sqlfiles.parameters(str(path))}
    for chain in ORDERED:
        # Each bound after the first is the one before plus a span (nothing, a microsecond, ... weeks),
        # so ranges are ordered, mostly non-empty, and sometimes exactly empty.
        present = [p for p in chain if p in params and params[p].year < 9000]
        for lower, upper in zip(present, present[1:]):
            params[upper] = params[lower] + draw(st.sampled_from(SPANS))
    ranges = [(params[a], params[b]) for chain in ORDERED for present in [[p for p in chain if p in params]]
              for a, b in zip(present, present[1:]) if params[a].year < 9000 and params[b].year < 9000]
    inside = tuple(a + (b - a) / 2 for a, b in ranges)
    anchors = inside + tuple(v for v in params.values() if isinstance(v, dt.datetime)) + tuple(
        e for v in params.values() if isinstance(v, list) for e in v if isinstance(e, str))
    names = tables_of(path)
    within = tuple(p for a, b in ranges if b > a for p in (a + dt.timedelta(microseconds=1), a + (b - a) / 2, b))
    tables = {t: draw(table_rows(t, anchors, inside=within)) for t in names}
    if "ampkit_pending" in names:
        world = draw(sync_world(tables, params))
        tables.update({t: rows for t, rows in world.items() if t in names})
    return tables, params


def duckdb_run(path: Path, tables: dict[str, list[dict]], params: dict):
    """The file as ampkit runs it on DuckDB: (columns, rows, tables after), or the error."""
    with warehouses.DuckDBWarehouse(":memory:") as wh:
        for schema in sorted(SCHEMA):
            wh.run(schema)
        for name, rows in tables.items():
            schema = pa.schema([(c, ARROW[k]) for c, k in TABLES[name]])
            wh.append(name, pa.Table.from_pylist(rows, schema=schema))
        result = wh.run(str(path), params)
        with wh.connect() as con:
            after = {name: con.sql(f"SELECT * FROM {name}").to_arrow_table().to_pylist() for name in tables}
    return result.column_names, [tuple(r.values()) for r in result.to_pylist()], after


def normal(value):
    """Compare by meaning: instants in UTC, floats to 12 digits, JSON text by its parsed value."""
    if isinstance(value, dt.datetime):
        # A TIMESTAMP is an instant: a naive datetime is another type (DuckDB's TIMESTAMP), not equal.
        return value.astimezone(UTC).replace(fold=0) if value.tzinfo else ("naive", value)
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value))  # BigQuery answers INT64 or FLOAT64; a DECIMAL is another type
    if isinstance(value, float):
        return float(f"{value:.12g}") if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return tuple(normal(v) for v in value)
    if isinstance(value, str) and value[:1] == "{" and value.endswith("},"):
        try:
            return ("json", json.dumps(json.loads(value[:-1]), sort_keys=True))
        except ValueError:
            return value
    return value


# Columns whose values are the engine's own by design, checked for their properties instead:
# sync_extract's `lane` spreads send keys over lanes with FARM_FINGERPRINT, which DuckDB lacks (HASH).
ENGINE_SPECIFIC = {"sync_extract": "lane"}


def engine_specific(path: Path, columns: list[str], rows: list[tuple], params: dict) -> list[tuple]:
    """Rows without the engine-specific column, after checking it: an INT64 in [0, @lanes), one per lane key."""
    name = ENGINE_SPECIFIC.get(path.stem)
    if name is None or not rows:
        return rows
    i, key = columns.index(name), columns.index("lane_key")
    lanes: dict = {}
    for r in rows:
        assert type(r[i]) is int and 0 <= r[i] < params["lanes"], f"{path.name}: lane {r[i]!r} not in [0, {params['lanes']})"
        assert lanes.setdefault(r[key], r[i]) == r[i], f"{path.name}: lane key {r[key]!r} in two lanes"
    return [r[:i] + r[i + 1:] for r in rows]


def bag(rows) -> list:
    return sorted((tuple(normal(v) for v in r) for r in rows), key=repr)


def compare(oracle, path: Path, tables, params):
    """Assert both engines agree; returns BigQuery's (ZetaSQL's) Result, or None when both failed."""
    try:
        expected = oracle.run(path, tables, params)
    except OracleError as exc:
        expected = exc
    try:
        columns, rows, after = duckdb_run(path, tables, params)
    except Exception as exc:  # noqa: BLE001 - an error is an answer to compare
        got = exc
    else:
        got = None
    where = f"{path.relative_to(ROOT)} with parameters {params!r} over rows {tables!r}"
    if isinstance(expected, OracleError) or got is not None:
        assert isinstance(expected, OracleError) and got is not None, (
            f"{where}:\n  BigQuery (ZetaSQL): {expected if isinstance(expected, OracleError) else expected.rows}"
            f"\n  DuckDB: {got if got is not None else rows}")
        return None
    if expected.rows is not None and not any(c.startswith("$") for c in expected.columns):
        assert columns == expected.columns, f"{where}:\n  columns, BigQuery (ZetaSQL): {expected.columns}\n  DuckDB: {columns}"
    if expected.rows is not None:
        have = bag(engine_specific(path, columns, rows, params))
        want = bag(engine_specific(path, expected.columns, expected.rows, params))
        assert have == want, f"{where}:\n  BigQuery (ZetaSQL): {want}\n  DuckDB:             {have}"
    for name in tables:
        want = bag(tuple(r.get(c) for c, _ in TABLES[name]) for r in expected.tables[name])
        have = bag(tuple(r.get(c) for c, _ in TABLES[name]) for r in after[name])
        assert have == want, f"{where}:\n  table {name} after, BigQuery (ZetaSQL): {want}\n  DuckDB: {have}"
    return expected


COMPUTED = [p for p in SQL_FILES if p.stem not in SCHEMA]
# Files whose answer needs several rows to line up (a person's steps in order, within a window):
# more cases, so enough of them answer.
SPARSE = {"onboarding_funnel": 3, "onboarding_retention": 2}


@pytest.mark.parametrize("path", COMPUTED, ids=ids(COMPUTED))
def test_duckdb_answers_as_bigquery_does(oracle, path):
    examples = EXAMPLES * SPARSE.get(path.stem, 1)

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None, phases=PHASES,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(inputs(path.relative_to(ROOT)))  # relative: the same cases in every clone
    def check(case):
        tables, params = case
        result = compare(oracle, path, tables, params)
        if result is not None and (result.rows or {n: result.tables[n] for n in tables} != tables):
            answered.append(1)
    answered: list[int] = []
    check()
    # A case that answers nothing and changes nothing cannot fail: most cases must meet the pools.
    assert len(answered) >= max(1, examples // 10), (
        f"{path.name}: only {len(answered)} of {examples} generated cases gave rows or changed a table")


# --- hand-computed expectations, checked on both engines ------------------------------------------

def answer(oracle, path: Path, tables, params):
    """compare(), for a case both engines must answer (an error on both is a failure here)."""
    result = compare(oracle, path, tables, params)
    assert result is not None, f"{path.name}: both engines refused the case: {oracle_error(oracle, path, tables, params)}"
    return result


def oracle_error(oracle, path, tables, params) -> str:
    try:
        oracle.run(path, tables, params)
    except OracleError as exc:
        return str(exc)
    return "(ZetaSQL answered)"


def at(h, m=0, s=0, us=0, day=14):
    return dt.datetime(2022, 3, day, h, m, s, us, tzinfo=UTC)


def staged_row(id_, loaded_at, timestamp=None, **values):
    row = {c: None for c, _ in TABLES["amplitude_events"]}
    row.update(id=id_, name="ViewHome", loaded_at=loaded_at, timestamp=timestamp or loaded_at, **values)
    return row


def test_staging_counts_each_row_in_its_quarter_hour(oracle):
    times = [at(8, 59, 59, 999999), at(9), at(9, 14, 59, 999999), at(9, 15), at(9, 15, 0, 1)]
    tables = {"event_logs": [{**{c: None for c, _ in TABLES["event_logs"]}, "id": 1000 + i, "name": "ViewHome",
                              "timestamp": t} for i, t in enumerate(times)],
              "amplitude_events": [], "ampkit_stage_counts": []}
    result = answer(oracle, ROOT / "scheduled" / "amplitude_events.sql", tables,
                     {"run_time": at(10), "amplitude_start_date": dt.date(2020, 12, 1)})
    counts = {r["bucket"]: r["row_count"] for r in result.tables["ampkit_stage_counts"]}
    assert counts == {at(8, 45): 1, at(9): 2, at(9, 15): 2}
    assert {r["loaded_at"] for r in result.tables["amplitude_events"]} == {at(10)}


def test_extract_builds_the_event_amplitude_receives(oracle):
    row = staged_row(1000, at(9, 30), at(9, 5, 0, 123456), user_id=42, device_id="dev-123456", source="WEB",
                     version="3.38.0", anonymous_user_id="anon-1", cohort_id=dt.date(2022, 3, 7),
                     public_argument='{"query":"repo:x","by":"ada@example.com"}', argument="never@sent.io",
                     feature_flags='{"ranking":true}', referrer="https://x.io/?t=ghp_0123456789abcdef")
    tables = {"amplitude_events": [row],
              "ampkit_pending": [{"run_id": "r1", "id": 1000, "name": "ViewHome", "source": "WEB", "insert_id": "i-1",
                                  "event_time": row["timestamp"], "loaded_at": row["loaded_at"], "rule": None,
                                  "outcome": None}],
              "ampkit_run_rules": [],
              "ampkit_deliveries": []}
    # The data map's decision travels with the query (state.rule_params), as a run sends it.
    params = {**sync.extract_params(_config(), "r1", at(10)),
              **state.rule_params([("ViewHome", "WEB", "send", "default", None)])}
    params = {k: v for k, v in params.items() if k in sqlfiles.parameters("sync_extract")}
    result = answer(oracle, sqlfiles.path("sync_extract"), tables, params)
    (out,) = [dict(zip(result.columns, r)) for r in result.rows]
    assert out["reject_reason"] is None and out["insert_id"] == "i-1" and out["user_id"] == "000042"
    assert json.loads(out["event"][:-1]) == {
        "event_type": "ViewHome", "user_id": "000042", "device_id": "dev-123456", "time": 1647248700123,
        "insert_id": "i-1", "platform": "WEB", "app_version": "3.38.0",
        "event_properties": {"query": "repo:x", "by": "[redacted-email]"},
        "user_properties": {"anonymous_user_id": "anon-1", "feature_flags": {"ranking": True},
                            "cohort_id": "2022-03-07", "first_source_url": None,
                            "referrer": "https://x.io/?t=[redacted-token]"}}
    assert "never@sent.io" not in out["event"]


def _config():
    from ampkit import config as configuration
    return configuration.load({"warehouse": "duckdb://:memory:"})


# --- live: the same files on a real BigQuery project (skipped without one) --------------------------

LIVE = os.environ.get("AMPKIT_LIVE_BIGQUERY", "")
SAMPLE = {"TIMESTAMP": dt.datetime(2022, 3, 14, 9, tzinfo=UTC), "DATE": dt.date(2020, 12, 1), "INT64": 1,
          "FLOAT64": 1.0, "BOOL": True, "STRING": "UTC", "ARRAY<STRING>": ["ViewHome"]}


@pytest.mark.live
@pytest.mark.skipif(not LIVE, reason="set AMPKIT_LIVE_BIGQUERY=bigquery://PROJECT/SCRATCH_DATASET (see docs/BIGQUERY.md)")
@pytest.mark.parametrize("path", COMPUTED, ids=ids(COMPUTED))
def test_live_bigquery_dry_runs_every_statement(oracle, path):
    """Real BigQuery validates each statement (a dry run: nothing runs, nothing is billed) in a
    scratch dataset where ampkit's tables are created if absent."""
    from google.cloud import bigquery
    wh = warehouses.open(LIVE)
    for schema in sorted(SCHEMA):
        wh.run(schema)
    params = [warehouses._bq_param(p, SAMPLE[sqlfiles.PARAMETER_TYPES[p]]) for p in sqlfiles.parameters(str(path))]
    for statement in oracle.statements(path):
        if statement.kind in ("resolved_begin_stmt_node", "resolved_commit_stmt_node"):
            continue
        used = [p for p in params if f"@{p.name}" in statement.text]
        job = wh.client.query(statement.text, job_config=bigquery.QueryJobConfig(
            dry_run=True, use_query_cache=False, default_dataset=f"{wh.project}.{wh.dataset}", query_parameters=used))
        assert job.total_bytes_processed is not None


# --- bytes: every read of a partitioned table names its partition column ---------------------------

def partition_columns() -> dict[str, str]:
    """{table: its partition column} from the CREATE TABLE files (PARTITION BY DATE(column))."""
    return {name: t.partition for name, t in SCHEMAS.items() if t.partition}


def unbounded_references(path: Path) -> set[str]:
    """The partitioned tables a file reads or changes without a predicate on the partition column
    in the same query block (its WHERE or JOIN ... ON): BigQuery would read every partition. The
    stand-in bills (and refuses) by the same rule."""
    partitioned = partition_columns()
    found = set()
    for tree in sqlglot.parse(path.read_text(encoding="utf-8"), read="bigquery"):
        if tree is None:
            continue
        for table in tables_read(tree):
            column = partitioned.get(table.name)
            if column is not None and not partition_filters(table, column):
                found.add(table.name)
    return found


UNBOUNDED = {
    ("datamap_volumes.sql", "amplitude_events"): "`datamap suggest`, on demand: bounded by event time, partitioned by load time",
    ("event_logs_count.sql", "event_logs"): "COUNT(*) of a whole table is answered from metadata (free)",
    ("seed_clear.sql", "event_logs"): "synthetic data only (ampkit seed)",
    ("seed_next_id.sql", "event_logs"): "synthetic data only (ampkit seed)",
    ("stage_count.sql", "amplitude_events"): "COUNT(*) of a whole table is answered from metadata (free)",
    ("summary.sql", "event_logs"): "`ampkit status`, on demand: ranges of every table",
    ("summary.sql", "amplitude_events"): "`ampkit status`, on demand: ranges of every table",
}


def test_every_hourly_read_of_a_partitioned_table_names_its_partition_column():
    assert partition_columns() == {"event_logs": "timestamp", "amplitude_events": "loaded_at",
                                   "ampkit_deliveries": "loaded_at", "ampkit_volumes": "loaded_hour",
                                   "ampkit_lags": "accepted_at"}
    found = {(p.name, t) for p in SQL_FILES if p.parent.name != "scheduled" for t in unbounded_references(p)}
    assert found - set(UNBOUNDED) == set(), f"reads every partition: {sorted(found - set(UNBOUNDED))}"
    assert set(UNBOUNDED) - found == set(), f"bounded now, drop from UNBOUNDED: {sorted(set(UNBOUNDED) - found)}"


def test_the_partition_check_sees_an_unbounded_read(tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT p.id FROM ampkit_pending AS p JOIN amplitude_events AS a ON a.id = p.id "
                   "WHERE a.timestamp > @since", encoding="utf-8")
    assert unbounded_references(bad) == {"amplitude_events"}
    bad.write_text("SELECT p.id FROM ampkit_pending AS p JOIN amplitude_events AS a ON a.id = p.id "
                   "WHERE a.loaded_at > @since", encoding="utf-8")
    assert unbounded_references(bad) == set()
    for weak in ("a.loaded_at > @since OR p.id > 1", "a.loaded_at > p.loaded_at"):
        bad.write_text("SELECT p.id FROM ampkit_pending AS p JOIN amplitude_events AS a ON a.id = p.id "
                       f"WHERE {weak}", encoding="utf-8")
        assert unbounded_references(bad) == {"amplitude_events"}, weak
