"""A local stand-in for the few BigQuery v2 REST endpoints ampkit's BigQuery backend uses.

It is a real HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, a random port, a
background thread) that the real `google.cloud.bigquery.Client` talks to through
`ClientOptions(api_endpoint=standin.endpoint)`. It is not an emulator: it implements exactly
what `ampkit/warehouse.py` makes the client call, and answers anything else with a 404 that
says so, so a new call shows up as a failing test rather than as a silent wrong answer.

What the client calls (read from google-cloud-bigquery 3.47's `client.py`, `_job_helpers.py`,
`job/query.py`, `job/base.py`, `table.py` and google-resumable-media's `_upload.py`):

* `client.query(sql, job_config)` uses jobs.insert (`api_method="INSERT"`):
  `POST /bigquery/v2/projects/{p}/jobs` with `configuration.query` (query, defaultDataset,
  queryParameters, parameterMode NAMED, useLegacySql false).
* `.result()` polls jobs.get (`GET .../jobs/{id}`) until `status.state == "DONE"`; a failed job
  carries `status.errorResult` (reason `invalidQuery`, `notFound`, ...), which the client maps
  to an exception by reason (job/base.py `_ERROR_REASON_TO_EXCEPTION`). It then calls
  getQueryResults (`GET .../queries/{id}?maxResults=0`) for the schema and totalRows, and
  pages the rows with `GET .../queries/{id}?fields=...&formatOptions.useInt64Timestamp=true`
  plus `pageToken`. `to_arrow()` and `to_arrow_iterable()` make one Arrow batch per page.
* `client.get_table("p.d.t")`: `GET .../projects/{p}/datasets/{d}/tables/{t}`.
* `client.load_table_from_file(file, ...)` without `size` always does a resumable upload:
  `POST /upload/bigquery/v2/projects/{p}/jobs?uploadType=resumable` with the job resource
  (answer: 200 and a `Location` session URL), then `PUT` chunks with `Content-Range`
  (answer: 308 with `Range: bytes=0-N` while incomplete, 200 and the job resource at the end).

Semantics, kept honest:

* A dataset is a DuckDB schema; every table in a query is resolved against the job's
  `defaultDataset` (or its own `dataset.table` / `project.dataset.table`), and a reference to a
  missing dataset or table is a 404 `notFound` job error worded like BigQuery's.
* BigQuery text is translated the way ampkit translates it for DuckDB (sqlglot, read
  "bigquery", ampkit's SAFE. -> TRY rewrite); `@name` parameters become `CAST($name AS type)`
  with the type the client declared, and values are bound, never formatted into SQL.
* A job with several `;`-separated statements is a script: the statements run in order and
  the job's result is the last statement's (BigQuery's statementType `SCRIPT`).
* Rows come back in BigQuery's JSON row format (`{"f": [{"v": ...}]}`); TIMESTAMP values are
  microseconds since the epoch as strings when `formatOptions.useInt64Timestamp=true` (which
  this client version always asks for when it reads rows), float seconds otherwise. Pages
  stop at `page_bytes` of row JSON (BigQuery: about 10 MB) or at `maxResults` rows.
* Errors are BigQuery's error bodies: `{"error": {"code", "message", "errors": [{"reason",
  "message", "domain"}], "status"}}`.
* Jobs run synchronously when inserted; jobs.insert answers `RUNNING` and jobs.get `DONE`,
  so the client's polling path is exercised.

Cost and contention, as BigQuery bills and serializes (so a design unfit for it fails here):

* Every job is billed (`statistics.query.totalBytesProcessed`, `totalBytesBilled`, and the
  `bills` list): per table a statement reads, the logical bytes (INT64, FLOAT64, TIMESTAMP, DATE
  8; BOOL 1; STRING and BYTES 2 + their UTF-8 length; NULL 0) of the columns it names, in the
  partitions its partition-column predicates do not prune (a comparison with constants or
  parameters, ANDed into its WHERE or JOIN ON, as BigQuery prunes); billed at least 10 MB per
  table referenced. A script's job is the sum of its statements (`numChildJobs`).
* A table created with `OPTIONS (require_partition_filter = TRUE)` refuses a statement that
  reads it without such a predicate, with BigQuery's error.
* Load jobs count against the table-modification limit per table per UTC day
  (`max_table_modifications`, BigQuery's 1,500); past it a load fails with `quotaExceeded`.
* Jobs run concurrently (a thread each, one DuckDB connection each); a statement runs atomically,
  but the statements of concurrent jobs interleave (`statement_seconds` adds latency between
  them). A transaction (BEGIN ... COMMIT) that updated or deleted rows of a table aborts at
  COMMIT when another job changed that table meanwhile ("Transaction is aborted due to
  concurrent update"); INSERTs never conflict. A statement outside a transaction that collides
  with an open transaction's rows is retried (BigQuery retries three times), then fails. There is no authentication (the client uses
  AnonymousCredentials for loopback endpoints) and no jobs.query fast path, datasets.get,
  multipart upload, Storage Read API, STRUCT types or positional parameters: ampkit does not
  use them.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import io
import json
import random
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections import Counter
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from ampkit.sql import portable  # the same rewrites (SAFE. -> TRY, DIV precedence) ampkit's DuckDB path uses

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
          500: "INTERNAL", 501: "NOT_IMPLEMENTED"}
REASON_CODE = {"invalidQuery": 400, "invalid": 400, "quotaExceeded": 403, "notFound": 404, "duplicate": 409,
               "notImplemented": 501}
# BigQuery's on-demand pricing: at least 10 MB per table a query references.
MIN_BILLED_PER_TABLE = 10 * 1024 * 1024
MAX_TABLE_MODIFICATIONS = 1500
FIXED_SIZE = {"INTEGER": 8, "FLOAT": 8, "TIMESTAMP": 8, "DATE": 8, "DATETIME": 8, "TIME": 8, "NUMERIC": 16, "BOOLEAN": 1}
MUTATING = ("UPDATE", "DELETE", "MERGE")
# DuckDB result types -> BigQuery's legacy field type names, as the REST API reports them.
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT", "UHUGEINT", '"NULL"', "NULL"}
SCALAR_TYPES = {"VARCHAR": "STRING", "DOUBLE": "FLOAT", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN",
                "DATE": "DATE", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "TIMESTAMP": "DATETIME",
                "BLOB": "BYTES", "TIME": "TIME", "JSON": "JSON"}
STANDARD = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}  # legacy -> Standard SQL names
ROUTE = re.compile(r"^/bigquery/v2/projects/(?P<project>[^/]+)/(?P<rest>.*)$")
UPLOAD = re.compile(r"^/upload/bigquery/v2/projects/(?P<project>[^/]+)/jobs$")


class BigQueryError(Exception):
    """A BigQuery error: HTTP status from the reason, message as BigQuery words it."""

    def __init__(self, reason: str, message: str, location: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.location = location

    @property
    def code(self) -> int:
        return REASON_CODE.get(self.reason, 500)

    def error_proto(self) -> dict:
        out = {"reason": self.reason, "message": self.message}
        if self.location:
            out["location"] = self.location
        return out

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message,
                          "errors": [{**self.error_proto(), "domain": "global"}],
                          "status": STATUS.get(self.code, "UNKNOWN")}}


# --- translation: BigQuery text -> DuckDB statements --------------------------------------

def bigquery_type(parameter_type: dict) -> str:
    """A query parameter's declared type as BigQuery spells it (`INT64`, `ARRAY<DATE>`)."""
    kind = parameter_type.get("type", "")
    if kind == "ARRAY":
        return f"ARRAY<{bigquery_type(parameter_type['arrayType'])}>"
    if kind in ("STRUCT", "RANGE", ""):
        raise BigQueryError("invalidQuery", f"the stand-in does not support {kind or 'untyped'} query parameters")
    return STANDARD.get(kind, kind)  # the client may send legacy names (INTEGER, FLOAT, BOOLEAN)


def parameter_value(parameter_type: dict, value: dict | None) -> Any:
    """The Python value to bind for a parameter (strings are cast by DuckDB to the declared type)."""
    value = value or {}
    if parameter_type.get("type") == "ARRAY":
        return [parameter_value(parameter_type["arrayType"], v) for v in value.get("arrayValues", [])]
    return value.get("value")


def translate(text: str, default_dataset: str | None = None,
              parameter_types: dict[str, str] | None = None,
              schemas: set[str] | None = None, project: str = "") -> list[tuple[exp.Expression, str, list[str]]]:
    """BigQuery text -> [(BigQuery statement tree, DuckDB SQL, parameter names used)].

    With no `default_dataset` and no `parameter_types` this is exactly ampkit's translation
    (`ampkit.sql.duckdb_statements`); with them, tables are qualified with their dataset (a
    DuckDB schema) and each `@name` becomes `CAST($name AS declared type)`.
    """
    try:
        trees = [t for t in sqlglot.parse(text, read="bigquery") if t is not None]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at [{first.get('line', 1)}:{first.get('col', 1)}]" if first else ""
        what = re.sub(r"<Token token_type: [^,]+, text: (.*?), line: .*?>", r'"\1"',
                      first.get("description") or str(exc).splitlines()[0])
        raise BigQueryError("invalidQuery", f"Syntax error: {what}{where}", "query") from None
    if not trees:
        raise BigQueryError("invalidQuery", "Syntax error: Unexpected end of script at [1:1]", "query")
    out = []
    for tree in trees:
        if default_dataset is not None or schemas is not None:
            _qualify(tree, default_dataset, schemas or set(), project)
        used = []
        for node in list(tree.find_all(exp.Parameter)):
            name = node.name
            if parameter_types is not None:
                if name not in parameter_types:
                    raise BigQueryError("invalidQuery", f"Query parameter '{name}' not found", "query")
                node.replace(exp.Cast(this=node.copy(), to=exp.DataType.build(parameter_types[name], dialect="bigquery")))
            used.append(name)
        duck = portable(tree).sql(dialect="duckdb")
        out.append((tree, duck, sorted(set(used))))
    return out


def _qualify(tree: exp.Expression, default_dataset: str | None, schemas: set[str], project: str) -> None:
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.db and table.name in ctes):
            continue
        if table.catalog and project and table.catalog != project:
            raise BigQueryError("notFound", f"Not found: Project {table.catalog}")
        dataset = table.db or default_dataset
        if not dataset:
            raise BigQueryError("invalid", f'Table "{table.name}" must be qualified with a dataset (e.g. dataset.table).', "query")
        if dataset not in schemas:
            raise BigQueryError("notFound", f"Not found: Dataset {project}:{dataset} was not found in location US")
        table.set("catalog", None)
        table.set("db", exp.to_identifier(dataset, quoted=True))


def statement_type(tree: exp.Expression) -> str:
    if isinstance(tree, exp.Insert):
        return "INSERT"
    if isinstance(tree, exp.Delete):
        return "DELETE"
    if isinstance(tree, exp.Update):
        return "UPDATE"
    if isinstance(tree, exp.Merge):
        return "MERGE"
    if isinstance(tree, exp.Create):
        return f"CREATE_{(tree.args.get('kind') or 'TABLE').upper()}"
    if isinstance(tree, exp.Drop):
        return f"DROP_{(tree.args.get('kind') or 'TABLE').upper()}"
    if isinstance(tree, exp.Query):
        return "SELECT"
    if isinstance(tree, exp.Transaction):
        return "BEGIN_TRANSACTION"
    if isinstance(tree, exp.Commit):
        return "COMMIT_TRANSACTION"
    if isinstance(tree, exp.Rollback):
        return "ROLLBACK_TRANSACTION"
    raise BigQueryError("invalidQuery", f"the stand-in does not run {type(tree).__name__} statements", "query")


# --- what a statement reads: partitions and columns -----------------------------------------

def prunes(column: exp.Column, condition: exp.Expression) -> bool:
    """Whether a predicate on `column` lets BigQuery skip partitions: a comparison with constants or
    parameters only, ANDed into the condition (under an OR, or against another column, it does not)."""
    comparison = column.parent
    if not isinstance(comparison, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.Between)):
        return False
    if any(other is not column for other in comparison.find_all(exp.Column)):
        return False
    node = comparison
    while node is not condition:
        node = node.parent
        if not isinstance(node, (exp.And, exp.Paren, exp.Where)) and node is not condition:
            return False
    return True


def partition_filters(table: exp.Table, column: str) -> list[exp.Expression]:
    """The comparisons on `table`'s partition `column` in the table's own query block (its WHERE or a
    JOIN ... ON) that prune partitions; [] when BigQuery would read every partition."""
    scope = table.find_ancestor(exp.Select, exp.Delete, exp.Update)
    if scope is None:
        return []
    conditions = [scope.args.get("where")] + [j.args.get("on") for j in scope.args.get("joins") or []]
    alias = table.alias_or_name
    return [c.parent for cond in conditions if cond is not None for c in cond.find_all(exp.Column)
            if c.name == column and c.table in ("", alias) and prunes(c, cond)]


def tables_read(tree: exp.Expression) -> list[exp.Table]:
    """The table references a statement reads (CTE names, an INSERT's target and DDL excluded)."""
    if isinstance(tree, (exp.Create, exp.Drop, exp.Transaction, exp.Commit, exp.Rollback)):
        return []
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    out = []
    for table in tree.find_all(exp.Table):
        if not table.name or (not table.db and table.name in ctes) or isinstance(table.parent, exp.Schema):
            continue
        if isinstance(tree, exp.Insert) and table.parent is tree:
            continue  # written, not read
        out.append(table)
    return out


def columns_named(tree: exp.Expression, table: exp.Table, columns: list[str]) -> list[str]:
    """The columns of `table` a statement names (all of them for a `*` in the table's own SELECT)."""
    scope = table.find_ancestor(exp.Select)
    alias = table.alias_or_name
    if scope is not None:
        for item in scope.expressions:
            if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
                                              and item.table in ("", alias)):
                return list(columns)
    named = {c.name for c in tree.find_all(exp.Column) if c.table in ("", alias)}
    return [c for c in columns if c in named]


# --- results: DuckDB -> BigQuery schema and JSON rows ---------------------------------------

def field_for(name: str, duck_type: str) -> dict:
    kind = str(duck_type)
    mode = "NULLABLE"
    if kind.endswith("[]"):
        mode, kind = "REPEATED", kind[:-2]
    if kind in INTEGER_TYPES:
        legacy = "INTEGER"
    elif kind.startswith("DECIMAL"):
        legacy = "NUMERIC"
    elif kind in SCALAR_TYPES:
        legacy = SCALAR_TYPES[kind]
    else:
        raise BigQueryError("notImplemented", f"the stand-in cannot return {kind} values (column {name})")
    return {"name": name, "type": legacy, "mode": mode}


def cell(value: Any, field: dict, int64_timestamp: bool) -> Any:
    if field["mode"] == "REPEATED":
        return [{"v": cell(v, {**field, "mode": "NULLABLE"}, int64_timestamp)} for v in (value or [])]
    if value is None:
        return None
    kind = field["type"]
    if kind == "INTEGER":
        return str(int(value))
    if kind == "FLOAT":
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(float(value))
    if kind == "BOOLEAN":
        return "true" if value else "false"
    if kind == "TIMESTAMP":
        micros = (value - EPOCH) // dt.timedelta(microseconds=1)
        return str(micros) if int64_timestamp else repr(micros / 1_000_000)
    if kind in ("DATE", "TIME"):
        return value.isoformat()
    if kind == "DATETIME":
        return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    if kind == "NUMERIC":
        return str(decimal.Decimal(value))
    if kind == "BYTES":
        return base64.standard_b64encode(value).decode()
    return str(value)


class _Conflict(Exception):
    """DuckDB refused a change colliding with another connection's open transaction."""


class Job:
    """One job: its resource, and for a query its result table and schema."""

    def __init__(self, resource: dict):
        self.resource = resource
        self.error: BigQueryError | None = None
        self.result: pa.Table | None = None
        self.fields: list[dict] | None = None
        self.affected: int | None = None
        self.polled = False
        self.statements = 0
        self.executed = 0  # statements of its script run so far (tests wait on it, not on the clock)
        self.bytes_processed = 0
        self.bytes_billed = 0

    @property
    def job_id(self) -> str:
        return self.resource["jobReference"]["jobId"]

    def finish(self, kind: str) -> None:
        now = str(int(time.time() * 1000))
        stats = self.resource.setdefault("statistics", {})
        stats.update({"creationTime": now, "startTime": now, "endTime": now})
        status: dict[str, Any] = {"state": "DONE"}
        if self.error is not None:
            status["errorResult"] = self.error.error_proto()
            status["errors"] = [self.error.error_proto()]
        self.resource["status"] = status
        detail = stats.setdefault(kind, {})
        if kind == "query":
            detail["totalBytesProcessed"] = str(self.bytes_processed)
            detail["totalBytesBilled"] = str(self.bytes_billed)
            if self.statements > 1:
                stats["numChildJobs"] = str(self.statements)
            if self.fields is not None:
                detail["schema"] = {"fields": self.fields}
            if self.affected is not None:
                detail["numDmlAffectedRows"] = str(self.affected)
        elif kind == "load" and self.affected is not None:
            detail.update({"outputRows": str(self.affected), "inputFiles": "1"})

    def view(self) -> dict:
        """The resource as jobs.insert (RUNNING, first time) or jobs.get (DONE) shows it."""
        if not self.polled:
            self.polled = True
            return {**self.resource, "status": {"state": "RUNNING"}}
        return self.resource


class BigQueryStandin:
    """The stand-in server. Use as a context manager; `.endpoint` is the client's api_endpoint."""

    def __init__(self, project: str = "test-project", datasets: tuple[str, ...] = ("analytics",),
                 page_bytes: int = 10 * 1024 * 1024, statement_seconds: float | tuple[float, float] = 0.0,
                 max_table_modifications: int = MAX_TABLE_MODIFICATIONS, seed: int = 0):
        self.project = project
        self.page_bytes = page_bytes
        # Latency between a script's statements (seconds, or a (low, high) range drawn per statement):
        # the gaps in which concurrent jobs interleave.
        self.statement_seconds = statement_seconds
        self.max_table_modifications = max_table_modifications
        self.random = random.Random(seed)
        self.requests: list[tuple[str, str]] = []
        self.jobs: dict[str, Job] = {}
        self.uploads: dict[str, dict] = {}
        self.lock = threading.RLock()
        self.duckdb = duckdb.connect(":memory:")
        self.duckdb.execute("SET TimeZone = 'UTC'")
        # (dataset, table) -> (partition column, require_partition_filter), from CREATE TABLE.
        self.partitioning: dict[tuple[str, str], tuple[str, bool, str]] = {}
        # (dataset, table) -> commits that updated or deleted its rows: a transaction's conflict check.
        self.versions: Counter = Counter()
        self.modifications: Counter = Counter()  # (dataset, table, UTC day) -> load jobs
        self.bills: list[dict] = []  # one per finished job, in order: what it cost
        for name in datasets:
            self.create_dataset(name)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> "BigQueryStandin":
        standin = self

        class Handler(_Handler):
            pass
        Handler.standin = standin
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="bigquery-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None
        with self.lock:
            self.duckdb.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, dataset: str = "analytics") -> str:
        """The ampkit warehouse URL for `dataset` on this stand-in."""
        return f"bigquery://{self.project}/{dataset}?endpoint={self.endpoint}"

    # -- data access for tests --
    def create_dataset(self, name: str) -> None:
        with self.lock:
            self.duckdb.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')

    def datasets(self) -> set[str]:
        with self.lock:
            rows = self.duckdb.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = current_database()").fetchall()
        return {r[0] for r in rows} - {"main", "information_schema", "pg_catalog"}

    def sql(self, text: str, params: Any = None) -> list[tuple]:
        """Run DuckDB SQL directly on the stand-in's storage (for assertions), all rows fetched."""
        with self.lock:
            return self.duckdb.execute(text, params).fetchall()

    def table(self, dataset: str, table: str) -> pa.Table:
        with self.lock:
            return self.duckdb.sql(f'SELECT * FROM "{dataset}"."{table}"').to_arrow_table()

    # -- jobs --
    def insert_job(self, project: str, resource: dict, data: bytes | None = None) -> Job:
        reference = resource.setdefault("jobReference", {})
        reference.setdefault("jobId", "job_" + uuid.uuid4().hex)
        reference.setdefault("location", "US")
        reference["projectId"] = project
        job_id = reference["jobId"]
        with self.lock:
            if job_id in self.jobs:
                raise BigQueryError("duplicate", f"Already Exists: Job {project}:{reference['location']}.{job_id}")
            job = Job({"kind": "bigquery#job", "id": f"{project}:{reference['location']}.{job_id}",
                       "user_email": "anonymous", **resource})
            config = resource.get("configuration", {})
            if "query" not in config and "load" not in config:
                raise BigQueryError("invalid", "the stand-in runs query and load jobs only")
            self.jobs[job_id] = job
        if "query" in config:
            job.resource["configuration"]["jobType"] = "QUERY"
            self._run_query(job, config["query"])  # statement by statement: concurrent jobs interleave
            kind = "query"
        else:
            job.resource["configuration"]["jobType"] = "LOAD"
            with self.lock:
                self._run_load(job, config["load"], data)
            kind = "load"
        with self.lock:
            job.finish(kind)
            self.bills.append({"job_id": job_id, "kind": kind, "statements": job.statements,
                               "bytes_processed": job.bytes_processed, "bytes_billed": job.bytes_billed,
                               "query": config.get("query", {}).get("query", ""), "error": job.error is not None})
        return job

    def _cursor(self):
        with self.lock:
            cursor = self.duckdb.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def _pause(self) -> None:
        gap = self.statement_seconds
        if isinstance(gap, tuple):
            with self.lock:
                gap = self.random.uniform(*gap)
        if gap:
            time.sleep(gap)

    def _bill(self, job: Job, cursor, tree: exp.Expression, types: dict[str, str], values: dict[str, Any]) -> None:
        """Add what `tree` reads to the job's bytes, as BigQuery's on-demand pricing counts them;
        refuse it, as BigQuery does, when it reads a table that requires a partition filter without one."""
        for table in tables_read(tree):
            dataset = table.db
            found = cursor.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
                                   "AND table_name = ? ORDER BY ordinal_position", [dataset, table.name]).fetchall()
            if not found:
                continue  # the statement itself reports the missing table
            kinds = {name: field_for(name, kind)["type"] for name, kind in found}
            used = columns_named(tree, table, [name for name, _ in found])
            column, required, unit = self.partitioning.get((dataset, table.name), (None, False, "DAY"))
            filters = partition_filters(table, column) if column else []
            if required and not filters:
                raise BigQueryError("invalidQuery", f"Cannot query over table '{self.project}.{dataset}.{table.name}' without a "
                                    f"filter over column(s) '{column}' that can be used for partition elimination", "query")
            size = " + ".join(f'(CASE WHEN x."{c}" IS NULL THEN 0 ELSE {FIXED_SIZE[kinds[c]]} END)' if kinds[c] in FIXED_SIZE
                              else f'COALESCE(2 + strlen(CAST(x."{c}" AS VARCHAR)), 0)' for c in used) or "0"
            where, params = "", {}
            if filters:
                alias = table.alias_or_name
                inner = (f"SELECT DISTINCT TIMESTAMP_TRUNC({alias}.{column}, {unit}) AS d FROM `{dataset}`.{table.name} AS {alias} WHERE "
                         + " AND ".join(f.sql(dialect="bigquery") for f in filters))
                ((_, inner_sql, inner_used),) = translate(inner, None, types, {dataset}, self.project)
                where = f' WHERE date_trunc(\'{unit.lower()}\', x."{column}") IN ({inner_sql})'
                params = {name: values[name] for name in inner_used}
            ((read,),) = cursor.execute(f'SELECT COALESCE(SUM({size}), 0) FROM "{dataset}"."{table.name}" AS x{where}',
                                        params).fetchall()
            job.bytes_processed += int(read)
            job.bytes_billed += max(int(read), MIN_BILLED_PER_TABLE)

    def _note_create(self, tree: exp.Create) -> None:
        partition = tree.find(exp.PartitionedByProperty)
        if partition is None or not isinstance(tree.this, exp.Schema):
            return
        table = tree.this.this
        required = any(isinstance(p, exp.Property) and p.name.lower() == "require_partition_filter"
                       and str(p.args.get("value")).upper() == "TRUE" for p in tree.find_all(exp.Property))
        # By day (PARTITION BY DATE(column)) unless the expression truncates to the hour.
        hourly = any(isinstance(t, exp.TimestampTrunc) and t.text("unit").upper() == "HOUR" for t in partition.this.find_all(exp.TimestampTrunc))
        self.partitioning[(table.db, table.name)] = (next(partition.this.find_all(exp.Column)).name, required,
                                                     "HOUR" if hourly else "DAY")

    def mutations(self, tree: exp.Expression) -> tuple[str, str] | None:
        target = tree.this if isinstance(tree, (exp.Update, exp.Delete, exp.Merge)) else None
        return (target.db, target.name) if isinstance(target, exp.Table) else None

    def _run_query(self, job: Job, config: dict) -> None:
        if config.get("useLegacySql"):
            job.error = BigQueryError("invalidQuery", "the stand-in runs Standard SQL only", "query")
            return
        if config.get("parameterMode", "NAMED") != "NAMED" and config.get("queryParameters"):
            job.error = BigQueryError("invalidQuery", "the stand-in supports named parameters only", "query")
            return
        default = config.get("defaultDataset") or {}
        if default and default.get("projectId", self.project) != self.project:
            job.error = BigQueryError("notFound", f"Not found: Project {default.get('projectId')}")
            return
        cursor = self._cursor()
        transaction: dict | None = None  # {"versions": at BEGIN, "changed": tables updated or deleted in it}
        try:
            types = {p["name"]: bigquery_type(p["parameterType"]) for p in config.get("queryParameters", [])}
            values = {p["name"]: parameter_value(p["parameterType"], p.get("parameterValue"))
                      for p in config.get("queryParameters", [])}
            statements = translate(config.get("query", ""), default.get("datasetId"), types,
                                   self.datasets(), self.project)
            kinds = [statement_type(tree) for tree, _, _ in statements]
            job.statements = len(statements)
            for position, ((tree, sql, used), kind) in enumerate(zip(statements, kinds)):
                job.executed = position
                if position:
                    self._pause()
                params = {name: values[name] for name in used}
                with self.lock:
                    self._bill(job, cursor, tree, types, values)
                    if kind == "BEGIN_TRANSACTION":
                        cursor.execute("BEGIN TRANSACTION")
                        transaction = {"versions": Counter(self.versions), "changed": set()}
                        continue
                    if kind == "COMMIT_TRANSACTION":
                        self._commit(cursor, transaction)
                        transaction = None
                        continue
                    if kind == "ROLLBACK_TRANSACTION":
                        cursor.execute("ROLLBACK")
                        transaction = None
                        continue
                    if kind == "INSERT":
                        self._check_insert_types(cursor, tree, types)
                    if kind.startswith("CREATE_TABLE"):
                        self._note_create(tree)
                    target = self.mutations(tree)
                if kind == "SELECT":
                    with self.lock:
                        rel = self._execute(cursor, sql, params, default.get("datasetId"), query=True)
                        job.fields = [field_for(name, str(kind_)) for name, kind_ in zip(rel.columns, rel.types)]
                        try:  # the relation is lazy: errors such as ERROR() surface here
                            job.result = rel.to_arrow_table()
                        except duckdb.Error as exc:
                            raise BigQueryError("invalidQuery", _first_line(exc), "query") from None
                    job.affected = None
                    continue
                rows = self._mutate(cursor, sql, params, default.get("datasetId"), target, transaction)
                job.fields, job.result = None, None
                job.affected = int(rows[0][0]) if kind in ("INSERT", "DELETE", "UPDATE", "MERGE") and rows else None
            job.executed = len(statements)
            if transaction is not None:
                raise BigQueryError("invalidQuery", "Transaction started in a script must be committed or rolled back "
                                    "before the script ends", "query")
            job.resource.setdefault("statistics", {})["query"] = {
                "statementType": "SCRIPT" if len(kinds) > 1 else kinds[0]}
        except BigQueryError as exc:
            job.error = exc
            job.fields, job.result, job.affected = None, None, None
            # A failed script leaves no transaction open (BigQuery rolls it back).
            with contextlib.suppress(duckdb.Error):
                cursor.execute("ROLLBACK")
        finally:
            cursor.close()

    def _mutate(self, cursor, sql: str, params: dict, dataset: str | None, target: tuple[str, str] | None,
                transaction: dict | None) -> list[tuple]:
        """Run a statement that changes data; a collision with another job's open transaction is
        retried outside one, as BigQuery retries a conflicting DML statement, and aborts inside one."""
        for attempt in range(4):
            with self.lock:
                try:
                    cursor_ = self._execute(cursor, sql, params, dataset)
                    rows = cursor_.fetchall() if cursor_.description else []
                except _Conflict:
                    if transaction is not None or attempt == 3:
                        raise BigQueryError("invalidQuery", f"Could not serialize access to table {self.project}:"
                                            f"{target[0] if target else dataset}.{target[1] if target else '?'} due to "
                                            "concurrent update", "query") from None
                    rows = None
                if rows is not None:
                    # BigQuery detects conflicts on the data a statement changed: one that changed
                    # no row conflicts with nothing.
                    if target is not None and rows and rows[0] and rows[0][0]:
                        if transaction is not None:
                            transaction["changed"].add(target)
                        else:
                            self.versions[target] += 1
                    return rows
            time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _commit(self, cursor, transaction: dict | None) -> None:
        """COMMIT, unless a table the transaction updated or deleted rows of changed since it began."""
        if transaction is None:
            raise BigQueryError("invalidQuery", "COMMIT TRANSACTION without a transaction in progress", "query")
        for target in sorted(transaction["changed"]):
            if self.versions[target] != transaction["versions"][target]:
                raise BigQueryError("invalidQuery", f"Transaction is aborted due to concurrent update against table "
                                    f"{self.project}.{target[0]}.{target[1]}.", "query")
        try:
            cursor.execute("COMMIT")
        except duckdb.TransactionException as exc:
            raise BigQueryError("invalidQuery", f"Transaction is aborted due to concurrent update: {_first_line(exc)}",
                                "query") from None
        for target in transaction["changed"]:
            self.versions[target] += 1

    def _check_insert_types(self, cursor, tree: exp.Insert, types: dict[str, str]) -> None:
        """BigQuery does not coerce a typed query parameter into a column of another type
        (a STRING NULL into a TIMESTAMP column is an error there, not on DuckDB): check it."""
        target = tree.this
        columns = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else None
        table = target.this if isinstance(target, exp.Schema) else target
        found = cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position", [table.db, table.name]).fetchall()
        if not found:
            return  # DuckDB reports the missing table
        kinds = {name: STANDARD.get(field_for(name, kind)["type"], field_for(name, kind)["type"]) for name, kind in found}
        columns = columns or [name for name, _ in found]
        source = tree.expression
        if isinstance(source, exp.Values):
            rows = [row.expressions for row in source.expressions]
        elif isinstance(source, exp.Select):
            rows = [source.expressions]
        else:
            return
        for row in rows:
            for position, (item, column) in enumerate(zip(row, columns), start=1):
                item = item.unalias()
                if isinstance(item, exp.Cast) and isinstance(item.this, exp.Parameter) and column in kinds:
                    declared, wanted = types[item.this.name], kinds[column]
                    if declared != wanted and not (declared == "INT64" and wanted in ("FLOAT64", "NUMERIC")):
                        raise BigQueryError("invalidQuery", f"Query column {position} has type {declared} which cannot be "
                                            f"inserted into column {column}, which has type {wanted}", "query")

    def _execute(self, cursor, sql: str, params: dict, dataset: str | None, query: bool = False):
        try:
            return cursor.sql(sql, params=params) if query else cursor.execute(sql, params)
        except duckdb.TransactionException as exc:
            if "conflict" in str(exc).lower():
                raise _Conflict(str(exc)) from None
            raise BigQueryError("invalidQuery", _first_line(exc), "query") from None
        except duckdb.CatalogException as exc:
            first = _first_line(exc)
            missing = re.search(r"Table with name (\S+) does not exist", first)
            if missing:
                raise BigQueryError("notFound", f"Not found: Table {self.project}:{dataset}.{missing.group(1)} "
                                    "was not found in location US") from None
            raise BigQueryError("invalidQuery", first, "query") from None
        except (duckdb.ParserException, duckdb.BinderException) as exc:
            raise BigQueryError("invalidQuery", _first_line(exc), "query") from None
        except duckdb.Error as exc:
            raise BigQueryError("invalidQuery", _first_line(exc), "query") from None

    def _run_load(self, job: Job, config: dict, data: bytes | None) -> None:
        target = config.get("destinationTable", {})
        dataset, table = target.get("datasetId", ""), target.get("tableId", "")
        try:
            if config.get("sourceFormat") != "PARQUET":
                raise BigQueryError("invalid", "the stand-in loads PARQUET only")
            if target.get("projectId", self.project) != self.project:
                raise BigQueryError("notFound", f"Not found: Project {target.get('projectId')}")
            if dataset not in self.datasets():
                raise BigQueryError("notFound", f"Not found: Dataset {self.project}:{dataset}")
            day = (dataset, table, dt.datetime.now(dt.timezone.utc).date())
            if self.modifications[day] >= self.max_table_modifications:
                raise BigQueryError("quotaExceeded", "Exceeded rate limits: too many table update operations for this table. "
                                    "For more information, see https://cloud.google.com/bigquery/docs/troubleshoot-quotas")
            self.modifications[day] += 1
            try:
                rows = pq.read_table(io.BytesIO(data or b""))
            except (pa.ArrowInvalid, OSError) as exc:
                raise BigQueryError("invalid", f"Error while reading data, error message: {exc}") from None
            exists = self.duckdb.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                                         "AND table_name = ?", [dataset, table]).fetchall()
            disposition = config.get("writeDisposition", "WRITE_APPEND")
            self.duckdb.register("standin_load", rows)
            try:
                if not exists:
                    if config.get("createDisposition", "CREATE_IF_NEEDED") == "CREATE_NEVER":
                        raise BigQueryError("notFound", f"Not found: Table {self.project}:{dataset}.{table}")
                    self.duckdb.execute(f'CREATE TABLE "{dataset}"."{table}" AS SELECT * FROM standin_load')
                else:
                    extra = set(rows.column_names) - {r[0] for r in exists}
                    if extra:
                        raise BigQueryError("invalid", f"Provided Schema does not match Table {self.project}:{dataset}.{table}. "
                                            f"Cannot add fields (field: {sorted(extra)[0]})")
                    if disposition == "WRITE_TRUNCATE":
                        self.duckdb.execute(f'DELETE FROM "{dataset}"."{table}"')
                    elif disposition != "WRITE_APPEND":
                        raise BigQueryError("invalid", f"the stand-in does not support {disposition}")
                    self.duckdb.execute(f'INSERT INTO "{dataset}"."{table}" BY NAME SELECT * FROM standin_load')
            except duckdb.Error as exc:
                raise BigQueryError("invalid", f"Error while reading data, error message: {_first_line(exc)}") from None
            finally:
                self.duckdb.unregister("standin_load")
            job.affected = rows.num_rows
        except BigQueryError as exc:
            job.error = exc

    def query_results(self, job_id: str, query: dict[str, str]) -> dict:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None or "query" not in job.resource.get("configuration", {}):
            raise BigQueryError("notFound", f"Not found: Job {self.project}:US.{job_id}")
        if job.error is not None:
            raise job.error
        body: dict[str, Any] = {"kind": "bigquery#getQueryResultsResponse", "jobReference": job.resource["jobReference"],
                                "jobComplete": True, "cacheHit": False, "totalBytesProcessed": str(job.bytes_processed)}
        if job.affected is not None:
            body["numDmlAffectedRows"] = str(job.affected)
        if job.result is not None:
            body["schema"] = {"fields": job.fields}
            body["totalRows"] = str(job.result.num_rows)
            start = int(query.get("pageToken") or query.get("startIndex") or 0)
            limit = int(query["maxResults"]) if query.get("maxResults") not in (None, "") else None
            int64_ts = query.get("formatOptions.useInt64Timestamp", "false").lower() == "true"
            rows, end = self._page(job, start, limit, int64_ts)
            if limit != 0:
                body["rows"] = rows
                if end < job.result.num_rows:
                    body["pageToken"] = str(end)
        fields = query.get("fields")
        if fields:
            keep = {f.strip() for f in fields.split(",")}
            body = {k: v for k, v in body.items() if k in keep}
        return body

    def _page(self, job: Job, start: int, limit: int | None, int64_ts: bool) -> tuple[list[dict], int]:
        table = job.result
        stop = table.num_rows if limit is None else min(table.num_rows, start + limit)
        rows: list[dict] = []
        size = 0
        chunk = 1000
        position = start
        while position < stop:
            piece = table.slice(position, min(chunk, stop - position))
            columns = [piece.column(i).to_pylist() for i in range(piece.num_columns)]
            for values in zip(*columns) if columns else ():
                row = {"f": [{"v": cell(v, f, int64_ts)} for v, f in zip(values, job.fields)]}
                rows.append(row)
                size += len(json.dumps(row))
                position += 1
                if size >= self.page_bytes:
                    return rows, position
        return rows, position

    def table_resource(self, dataset: str, table: str) -> dict:
        with self.lock:
            if dataset not in self.datasets():
                raise BigQueryError("notFound", f"Not found: Dataset {self.project}:{dataset}")
            columns = self.duckdb.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [dataset, table]).fetchall()
            if not columns:
                raise BigQueryError("notFound", f"Not found: Table {self.project}:{dataset}.{table}")
            (count,) = self.duckdb.execute(f'SELECT COUNT(*) FROM "{dataset}"."{table}"').fetchone()
        fields = []
        for name, kind, nullable in columns:
            field = field_for(name, kind)
            if nullable == "NO" and field["mode"] == "NULLABLE":
                field["mode"] = "REQUIRED"
            fields.append(field)
        return {"kind": "bigquery#table", "id": f"{self.project}:{dataset}.{table}", "type": "TABLE", "location": "US",
                "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": table},
                "schema": {"fields": fields}, "numRows": str(count), "creationTime": str(int(time.time() * 1000))}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    standin: BigQueryStandin

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # quiet: pytest shows failures, not every request
        pass

    def _reply(self, code: int, body: dict | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        parsed = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.standin.requests.append((method, parsed.path))
        body = self._body() if method in ("POST", "PUT") else b""
        try:
            self._route(method, parsed.path, query, body)
        except BigQueryError as exc:
            self._reply(exc.code, exc.body())
        except Exception as exc:  # a stand-in bug: say so, as a 500 the client surfaces
            self._reply(500, BigQueryError("internalError", f"stand-in failure: {type(exc).__name__}: {exc}").body())

    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        s = self.standin
        upload = UPLOAD.match(path)
        if upload:
            self._check_project(upload["project"])
            if method == "POST" and query.get("uploadType") == "resumable":
                upload_id = uuid.uuid4().hex
                s.uploads[upload_id] = {"project": upload["project"], "resource": json.loads(body or b"{}"), "data": bytearray()}
                location = f"{s.endpoint}/upload/bigquery/v2/projects/{upload['project']}/jobs?uploadType=resumable&upload_id={upload_id}"
                return self._reply(200, None, {"Location": location})
            if method == "PUT" and query.get("upload_id") in s.uploads:
                return self._chunk(query["upload_id"], body)
            raise BigQueryError("invalid", f"the stand-in does not implement {method} uploadType={query.get('uploadType')}")
        match = ROUTE.match(path)
        if not match:
            raise BigQueryError("notFound", f"Not found: URL {path} (not a BigQuery v2 endpoint the stand-in implements)")
        self._check_project(match["project"])
        rest = match["rest"]
        if method == "POST" and rest == "jobs":
            job = s.insert_job(match["project"], json.loads(body or b"{}"))
            return self._reply(200, job.view())
        if method == "GET" and (m := re.fullmatch(r"jobs/([^/]+)", rest)):
            with s.lock:
                job = s.jobs.get(m[1])
            if job is None:
                raise BigQueryError("notFound", f"Not found: Job {s.project}:{query.get('location', 'US')}.{m[1]}")
            return self._reply(200, job.view())
        if method == "GET" and (m := re.fullmatch(r"queries/([^/]+)", rest)):
            return self._reply(200, s.query_results(m[1], query))
        if method == "GET" and (m := re.fullmatch(r"datasets/([^/]+)/tables/([^/]+)", rest)):
            return self._reply(200, s.table_resource(m[1], m[2]))
        raise BigQueryError("notFound", f"Not found: URL {method} {path} (not a BigQuery v2 endpoint the stand-in implements)")

    def _check_project(self, project: str) -> None:
        if project != self.standin.project:
            raise BigQueryError("notFound", f"Not found: Project {project}")

    def _chunk(self, upload_id: str, body: bytes) -> None:
        s = self.standin
        state = s.uploads[upload_id]
        content_range = self.headers.get("Content-Range", "")
        m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", content_range.strip())
        if not m:
            raise BigQueryError("invalid", f"bad Content-Range {content_range!r}")
        if m[1] is not None:
            if int(m[1]) != len(state["data"]) or int(m[2]) - int(m[1]) + 1 != len(body):
                raise BigQueryError("invalid", f"Content-Range {content_range!r} does not follow the {len(state['data'])} bytes received")
            state["data"].extend(body)
        total = None if m[3] == "*" else int(m[3])
        if total is None or len(state["data"]) < total:
            headers = {"Range": f"bytes=0-{len(state['data']) - 1}"} if state["data"] else {}
            return self._reply(308, None, headers)
        del s.uploads[upload_id]
        job = s.insert_job(state["project"], state["resource"], bytes(state["data"]))
        return self._reply(200, job.view())

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")


# --- rows for the sync at scale ----------------------------------------------------------

def synced_history(bq: "BigQueryStandin", days: int, per_day: int, until: dt.datetime, first_id: int = 10**9) -> None:
    """`days` days of rows in `analytics.amplitude_events` before `until`, all synced (accepted outcomes in
    ampkit_deliveries), in their own partitions: history for the sync at scale (tests and benchmarks)."""
    n = days * per_day
    step = 86_400 // per_day
    bq.sql(f"""
        INSERT INTO analytics.amplitude_events (id, name, source, timestamp, loaded_at, public_argument, device_id, insert_id)
        SELECT {first_id} + range, 'ViewHome', 'WEB', CAST(? AS TIMESTAMPTZ) - to_seconds(range * {step}),
               CAST(? AS TIMESTAMPTZ) - to_seconds(range * {step}) + INTERVAL 5 MINUTE,
               '{{"query":"repo:sourcegraph"}}', 'device-' || CAST(range % 97 AS VARCHAR), 'h-' || CAST(range AS VARCHAR)
        FROM range({n})""", [until, until])
    bq.sql("""
        INSERT INTO analytics.ampkit_deliveries (id, insert_id, name, source, event_time, loaded_at, outcome, run_id, delivered_at)
        SELECT id, insert_id, name, source, timestamp, loaded_at, 'accepted', 'history', loaded_at
        FROM analytics.amplitude_events WHERE id >= ?""", [first_id])
    # What those runs handled per loaded hour: the guardrail's history.
    bq.sql("""
        INSERT INTO analytics.ampkit_volumes (run_id, loaded_hour, name, source, action, rule, row_count)
        SELECT 'history', date_trunc('hour', loaded_at), name, source, 'send', 'product_ui', COUNT(*)
        FROM analytics.amplitude_events WHERE id >= ? GROUP BY 2, 3, 4""", [first_id])


def new_hour(bq: "BigQueryStandin", rows: int, start: dt.datetime, first_id: int = 1) -> None:
    """`rows` rows in `analytics.amplitude_events`, loaded in the hour after `start`, none synced yet."""
    step = 3_600_000_000 // rows
    bq.sql(f"""
        INSERT INTO analytics.amplitude_events (id, name, source, timestamp, loaded_at, public_argument, device_id, insert_id)
        SELECT {first_id} + range, 'SearchResultsQueried', 'WEB', CAST(? AS TIMESTAMPTZ) + to_microseconds(range * {step}),
               CAST(? AS TIMESTAMPTZ) + to_microseconds(range * {step}) + INTERVAL 1 SECOND,
               '{{"query":"repo:sourcegraph"}}', 'device-' || CAST(range % 31 AS VARCHAR), NULL
        FROM range({rows})""", [start, start])


@contextlib.contextmanager
def running(**options) -> Iterator[BigQueryStandin]:
    """A started stand-in, stopped on exit."""
    with BigQueryStandin(**options) as standin:
        yield standin


@pytest.fixture
def bigquery_standin() -> Iterator[BigQueryStandin]:
    """A fresh stand-in (project `test-project`, dataset `analytics`) per test."""
    with running() as standin:
        yield standin
