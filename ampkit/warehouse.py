"""The warehouse: one small interface over DuckDB (embedded default) and BigQuery (production).

Every query is a named `.sql` file in BigQuery's dialect (`ampkit/sql/`), run with query
parameters only: no value is ever formatted into SQL, and the only names that reach SQL text
(project, dataset, table) are checked against strict patterns first.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qs, urlparse

import pyarrow as pa

from ampkit import sql as sqlfiles
from ampkit.errors import ConfigError, DamagedError, LockedError, SchemaError, WarehouseError

logger = logging.getLogger(__name__)

PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-zA-Z0-9_.:-]{1,63}$")
DATASET_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
TABLE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
BATCH_ROWS = 50_000

# The columns every table must have, with the BigQuery types ampkit relies on.
EVENT_COLUMNS = {
    "id": "INT64", "name": "STRING", "url": "STRING", "user_id": "INT64",
    "anonymous_user_id": "STRING", "source": "STRING", "argument": "STRING",
    "public_argument": "STRING", "version": "STRING", "timestamp": "TIMESTAMP",
    "feature_flags": "STRING", "cohort_id": "DATE", "first_source_url": "STRING",
    "last_source_url": "STRING", "referrer": "STRING", "device_id": "STRING", "insert_id": "STRING",
}
TABLES = {"event_logs": EVENT_COLUMNS, "amplitude_events": {**EVENT_COLUMNS, "loaded_at": "TIMESTAMP"}}
DUCKDB_TYPES = {"INT64": "BIGINT", "STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMP WITH TIME ZONE",
                "DATE": "DATE", "FLOAT64": "DOUBLE", "BOOL": "BOOLEAN"}


def check_identifier(kind: str, value: str, pattern: re.Pattern = TABLE_PATTERN) -> str:
    """Return `value` if it is a safe identifier of `kind`, else raise ConfigError."""
    if not isinstance(value, str) or not pattern.fullmatch(value):  # fullmatch: `$` alone lets "name\n" through
        raise ConfigError(f"{kind} name {value!r} is not valid (letters, digits and _ only)")
    return value


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def open(url: str, **options: Any) -> "Warehouse":  # noqa: A001 - the verb of this module
    """Open the warehouse named by `url`: `duckdb:///path`, `duckdb://:memory:` or `bigquery://PROJECT/DATASET`."""
    parsed = urlparse(url)
    if parsed.scheme == "duckdb":
        # SQLAlchemy's convention: duckdb:///relative/path, duckdb:////absolute/path.
        rest = url[len("duckdb://"):]
        target = rest[1:] if rest.startswith("/") else rest
        return DuckDBWarehouse(target or ":memory:")
    if parsed.scheme == "bigquery":
        project = parsed.netloc
        dataset = parsed.path.strip("/")
        if not project or not dataset or "/" in dataset:
            raise ConfigError(f"warehouse URL '{url}' must look like bigquery://PROJECT/DATASET")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        return BigQueryWarehouse(project, dataset, endpoint=query.get("endpoint"),
                                 location=options.get("location") or query.get("location") or "US",
                                 storage_api=options.get("storage_api", False))
    raise ConfigError(f"unknown warehouse URL '{url}': use duckdb:///path/to/file.duckdb or bigquery://PROJECT/DATASET")


@contextlib.contextmanager
def using(config, warehouse: "Warehouse | None" = None) -> Iterator["Warehouse"]:
    """`warehouse` if the caller has one open, else the configured one, opened for the block and
    closed after it: how a function that may be handed a warehouse borrows or opens one (I/O)."""
    if warehouse is not None:
        yield warehouse
        return
    with open(config.warehouse, location=config.bigquery_location) as wh:
        yield wh


class Warehouse:
    """What the rest of ampkit needs from a warehouse; subclasses do the I/O."""

    dialect = ""
    name = ""
    # How many staged rows (and estimated bytes) a run snapshots, sends and records at once. On
    # DuckDB the engine's memory bounds it; on BigQuery every job costs a second or two and the
    # rows stream in pages, so a slice is as large as a crash may make a run send again.
    slice_rows = 100_000
    slice_bytes = 50_000_000

    def run(self, query: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a named query; returns its last statement's rows as an Arrow table (I/O)."""
        raise NotImplementedError

    def stream(self, query: str, params: Mapping[str, Any] | None = None,
               batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """Run a named query and yield its rows in Arrow batches, memory bounded (I/O)."""
        raise NotImplementedError

    def append(self, table: str, rows: pa.Table) -> None:
        """Append Arrow rows to `table`, matching columns by name (I/O)."""
        raise NotImplementedError

    def columns(self, table: str) -> dict[str, str] | None:
        """The table's columns as {name: BigQuery type}, or None if it does not exist (I/O)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    @contextlib.contextmanager
    def held(self, memory_limit: str | None = None):
        """Keep the warehouse open across the operations inside (a no-op where opening is free)."""
        yield

    @contextlib.contextmanager
    def exclusive(self, name: str, holder: str):
        """Hold the process-level lock `name` meanwhile, or raise LockedError at once (I/O).

        Only where the warehouse itself cannot answer while another process works (a DuckDB
        file); elsewhere the lease table alone decides.
        """
        yield

    def note_lease(self, name: str, holder: str, expires_at: dt.datetime) -> None:
        """Tell the lock `name` (see exclusive) when `holder`'s lease expires (I/O)."""

    def keep_copy(self) -> None:
        """Keep a copy of the warehouse as it is before a run changes it, where the engine keeps
        none of its own (I/O). Call it before this process opens the warehouse."""

    def restore(self, force: bool = False, horizon_days: int = 7) -> str:
        """Put the copy `keep_copy` kept in place of a damaged warehouse, refusing one older than
        `horizon_days` or a warehouse that reads fine unless `force`; returns where the one it
        replaced went (I/O)."""
        raise WarehouseError(f"{self.name} keeps no copy of its own to put back")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ensure_tables(self) -> None:
        """Create event_logs, amplitude_events and ampkit's state tables if absent (idempotent)."""
        self.run("schema_event_logs")
        self.run("schema_state")

    def ensure_state(self) -> None:
        """Create ampkit's own tables (ledger, lease, outcomes, counts) if absent, and nothing else.

        The event tables are the company's: a command reading them checks they exist first
        (`check_table`), so a mistyped warehouse URL or dataset fails instead of syncing an
        empty table every hour.
        """
        self.run("schema_state")

    def check_table(self, table: str) -> None:
        """Raise SchemaError naming the first missing or mistyped column of `table`."""
        expected = TABLES[table]
        found = self.columns(table)
        if found is None:
            how = ("`ampkit seed` loads synthetic events for a trial" if table == "event_logs" else
                   "`ampkit stage` (or the scheduled query scheduled/amplitude_events.sql) loads it")
            raise SchemaError(f"table {self.name}.{table} does not exist: check the warehouse URL; {how}")
        for column, kind in expected.items():
            if column not in found:
                raise SchemaError(f"table {self.name}.{table} has no column '{column}' ({kind} expected)")
            if found[column] != kind:
                raise SchemaError(f"column {table}.{column} is {found[column]}, expected {kind}")


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: a DuckDB file (or memory), opened per operation.

    A DuckDB file admits one writing process at a time, so each operation opens, works and
    closes; a second process (another run, a notebook kernel) waits for the lock instead of
    failing.
    """

    dialect = "duckdb"
    LOCK_WAIT_SECONDS = 120.0

    def __init__(self, path: str):
        self.path = path
        self.name = Path(path).name if path != ":memory:" else "memory"
        self._memory = None
        self._capped = False
        self._locks: dict[str, Any] = {}
        if path == ":memory:":
            import duckdb
            self._memory = duckdb.connect(":memory:")
            self._setup(self._memory)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _setup(con) -> None:
        con.execute("SET TimeZone = 'UTC'")

    @contextlib.contextmanager
    def connect(self):
        """A DuckDB connection for one operation, waiting while another process holds the file."""
        import duckdb
        if self._memory is not None:
            try:
                yield self._memory
            except BaseException:
                # The one in-memory connection outlives the operation: a failed transaction must not
                # stay open on it (a closed file connection rolls back by itself).
                with contextlib.suppress(duckdb.Error):
                    self._memory.execute("ROLLBACK")
                raise
            return
        deadline = time.monotonic() + self.LOCK_WAIT_SECONDS
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException as exc:
                if _damaged(exc):
                    raise self._damage(exc) from exc
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {_first_line(exc)}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                if _damaged(exc):
                    raise self._damage(exc) from exc
                raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {_first_line(exc)}") from exc
        try:
            self._setup(con)
            yield con
        except (duckdb.Error, WarehouseError) as exc:
            # A damaged block can also surface later, when a query first reads it.
            cause = exc if isinstance(exc, duckdb.Error) else exc.__cause__
            if cause is not None and not isinstance(exc, DamagedError) and _damaged(cause):
                raise self._damage(cause) from exc
            raise
        finally:
            con.close()

    # DuckDB can leave its file failing its own checksums when its process is killed while it
    # writes a checkpoint: a block the header on disk still points at is reused before the new
    # header lands (the race duckdb/duckdb#25106 fixes on one path; 2.0.1 and 1.5.6 still show it,
    # tests/reliability/duckdb_checkpoint_kill.py). No DuckDB setting avoids every such moment, so
    # the sync keeps the file's last good copy and a damaged file says how to put it back.
    @property
    def good_copy(self) -> Path:
        return Path(f"{self.path}.last-good")

    def _damage(self, exc: BaseException) -> DamagedError:
        copy = self.good_copy
        how = (f"`ampkit restore-warehouse` puts back its last good copy, of {_taken(copy)}" if copy.exists()
               else f"no copy was kept ({copy.name} is taken as a sync starts): restore it from a backup")
        return DamagedError(f"DuckDB warehouse {self.path} is damaged ({_first_line(exc)}), most likely by a process "
                            f"killed while DuckDB wrote a checkpoint: {how}; see docs/RELIABILITY.md")

    def keep_copy(self) -> None:
        if self._memory is not None:
            return
        source, wal, copy = Path(self.path), Path(f"{self.path}.wal"), self.good_copy
        try:
            before = source.stat()
        except FileNotFoundError:
            return
        # At rest only: a WAL beside the file means its last writer has not finished (or died) and
        # a checkpoint may be half-written; the copy kept before then stays.
        if wal.exists():
            logger.info("%s has a write-ahead log beside it: keeping the copy taken before", source.name)
            return
        if copy.exists() and (copy.stat().st_size, copy.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            return  # unchanged since the copy
        if _open_here(source) is not False:
            # DuckDB's lock on the file is a POSIX lock, which closing any descriptor of the file in
            # this process would drop: another process could then open it while DuckDB has it here.
            logger.info("%s is (or may be) open in this process: no copy now", source.name)
            return
        partial = copy.with_name(copy.name + ".partial")
        try:
            with source.open("rb") as held:
                # A shared lock of DuckDB's kind keeps writers out while the copy is read (and says
                # when one has the file now); closing it cannot drop a lock of DuckDB's here (above).
                fcntl.lockf(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
                _write_synced(held, partial)
            _check_reads(partial)
            os.utime(partial, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.replace(partial, copy)
        except (BlockingIOError, PermissionError):
            logger.info("%s is open in another process: keeping the copy taken before", source.name)
        except OSError as exc:
            logger.warning("could not keep a copy of %s: %s", source.name, exc)
        except WarehouseError as exc:  # DamagedError included: the copy taken before stays
            logger.warning("not keeping a copy of %s: %s", source.name, exc)
        finally:
            partial.unlink(missing_ok=True)

    def restore(self, force: bool = False, horizon_days: int = 7) -> str:
        copy = self.good_copy
        if self._memory is not None or not copy.exists():
            raise WarehouseError(f"no copy of {self.path} to put back ({copy.name} is taken as a sync starts)")
        if not force:
            if dt.datetime.now(dt.timezone.utc) - _copy_time(copy) > dt.timedelta(days=horizon_days):
                raise WarehouseError(f"{copy.name} is of {_taken(copy)}, older than Amplitude's {horizon_days}-day "
                                     "insert_id window: the runs since would be stored twice; --force puts it back anyway")
            try:
                _check_reads(Path(self.path))
            except (DamagedError, WarehouseError):
                pass
            else:
                raise WarehouseError(f"{self.path} reads back in full: putting back {copy.name} would drop what "
                                     "changed since; --force does it anyway")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = f"{self.path}.set-aside-{stamp}"
        partial = Path(f"{self.path}.restoring")
        try:
            with Path(self.path).open("r+b") as live:
                try:
                    fcntl.lockf(live, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (BlockingIOError, PermissionError):
                    raise WarehouseError(f"{self.path} is open in another process: stop it first") from None
                # The copy is in place beside it before anything moves: a failure leaves the file as it was.
                with copy.open("rb") as good:
                    _write_synced(good, partial)
                wal = Path(f"{self.path}.wal")
                if wal.exists():
                    os.replace(wal, aside + ".wal")
                try:
                    os.link(self.path, aside)
                except OSError:  # a filesystem without hard links
                    shutil.copyfile(self.path, aside)
                os.replace(partial, self.path)
        except FileNotFoundError:
            raise WarehouseError(f"{self.path} does not exist: copy {copy.name} there by hand if it is the one") from None
        finally:
            partial.unlink(missing_ok=True)
        return aside

    @contextlib.contextmanager
    def held(self, memory_limit: str | None = None):
        """Keep the database open across the operations inside, for this process.

        Opening the file and checkpointing it on close cost ~15 ms per operation; while held,
        operations open a connection to the database already open (under a millisecond) and
        it is checkpointed once, at the end. Other processes wait for the lock meanwhile, as
        they do during any one operation, so hold it for a bounded piece of work only.
        `memory_limit` (e.g. "128MB") caps DuckDB's memory meanwhile, its cache of the table
        blocks it read included; past it DuckDB evicts that cache and spills to disk.
        """
        if self._memory is not None:
            yield
            return
        if memory_limit is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*[KMGT]i?B", memory_limit):
            raise ConfigError(f"memory limit {memory_limit!r} is not like '128MB'")
        with self.connect() as con:
            if memory_limit:
                con.execute("SET memory_limit = ?", [memory_limit])
                self._capped = True
            try:
                yield
            finally:
                self._capped = False

    @contextlib.contextmanager
    def exclusive(self, name, holder):
        # A DuckDB file is locked by whichever process has it open, the sync included while it
        # streams a slice to Amplitude; a second sync waiting for the file to read the lease
        # table could run after the first instead of skipping. An OS lock beside the file
        # answers at once, and the OS drops it when its process dies.
        if self._memory is not None or not Path(self.path).exists():
            yield  # nothing runs on a file that does not exist; the table check says what is wrong
            return
        check_identifier("lock", name)
        with Path(f"{self.path}.{name}.lock").open("a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                other, _, until = f.read().strip().partition("\n")
                expires = _parse_time(until)
                if expires is None or expires > dt.datetime.now(dt.timezone.utc):
                    raise LockedError(f"another sync holds the lease ({other or 'starting'}, until {until or 'unknown'})",
                                      other, expires) from None
                # Alive but stalled past its lease: the lease table decides, as on any warehouse.
                logger.warning("lock holder %s stalled past its lease (%s); asking the lease table", other, until)
                yield
                return
            self._locks[name] = f
            try:
                self._write_lock(f, holder, None)
                yield
            finally:
                del self._locks[name]
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)

    def note_lease(self, name, holder, expires_at):
        f = self._locks.get(name)
        if f is not None:
            self._write_lock(f, holder, expires_at)

    @staticmethod
    def _write_lock(f, holder: str, expires_at: dt.datetime | None) -> None:
        f.seek(0)
        f.truncate()
        f.write(holder + ("\n" + expires_at.isoformat() if expires_at else ""))
        f.flush()

    def run(self, query, params=None):
        check_params(params)
        statements = sqlfiles.duckdb_statements(query)
        with self.connect() as con, _translate(query):
            for statement in statements[:-1]:
                con.execute(statement, _used_params(statement, params))
            rel = con.sql(statements[-1], params=_used_params(statements[-1], params))
            return _as_bigquery(rel.to_arrow_table()) if rel is not None else pa.table({})

    def stream(self, query, params=None, batch_rows=BATCH_ROWS):
        import duckdb
        check_params(params)
        statements = sqlfiles.duckdb_statements(query)
        with self.connect() as con, _translate(query):
            for statement in statements[:-1]:
                con.execute(statement, _used_params(statement, params))
            last = statements[-1]
            for attempt in (1, 2):
                started = False
                try:
                    rel = con.sql(last, params=_used_params(last, params))
                    for batch in rel.to_arrow_reader(batch_rows):
                        if batch.num_rows:
                            batch = _as_bigquery(batch)
                            started = True
                            # Handed over, not kept: this frame holding it while the caller works
                            # would keep the engine's copy alive beside the caller's.
                            held, batch = [batch], None
                            yield held.pop()
                    return
                except duckdb.OutOfMemoryException:
                    # A memory cap set by held() is a bound on the cache, never a reason to fail: the
                    # rows' size decides what a query needs. Lifted (for the rest of the hold), and the
                    # last statement read again (the ones before it, which may write, are not re-run).
                    if started or not self._capped or attempt == 2:
                        raise
                    logger.warning("%s needs more memory than the slice's cap; lifting the cap", query)
                    con.execute("RESET memory_limit")
                    self._capped = False

    def append(self, table, rows):
        check_identifier("table", table)
        if rows.num_rows == 0:
            return
        with self.connect() as con, _translate(f"append to {table}"):
            con.register("ampkit_rows", rows)
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ampkit_rows")
            finally:
                con.unregister("ampkit_rows")

    def columns(self, table):
        check_identifier("table", table)
        if self._memory is None and not Path(self.path).exists():
            return None  # looking must not create the file (a mistyped path would become a warehouse)
        with self.connect() as con:
            rows = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall()
        if not rows:
            return None
        reverse = {v: k for k, v in DUCKDB_TYPES.items()}
        return {name: reverse.get(kind, kind) for name, kind in rows}

    def close(self):
        if self._memory is not None:
            self._memory.close()
            self._memory = None


def _as_bigquery(data):
    """DuckDB's answer typed as BigQuery's: a SUM of INT64s is an INT64 there, a 128-bit integer
    (Arrow decimal128(38, 0)) here. Cast back, refusing an overflow as BigQuery would."""
    fields = [i for i, f in enumerate(data.schema) if pa.types.is_decimal(f.type) and f.type.scale == 0]
    if not fields:
        return data
    columns = [c.cast(pa.int64()) if i in fields else c for i, c in enumerate(data.columns)]
    names = data.schema.names
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, names=names)
    return pa.Table.from_arrays(columns, names=names)


def _used_params(statement: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    # DuckDB refuses parameters a statement does not use, and a file's statements use different ones.
    if not params:
        return {}
    return {k: _duck_value(v) for k, v in params.items() if re.search(r"\$" + re.escape(k) + r"\b", statement)}


def _duck_value(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


@contextlib.contextmanager
def _translate(what: str):
    """Turn a DuckDB error into a WarehouseError naming the query."""
    import duckdb
    try:
        yield
    except duckdb.CatalogException as exc:
        raise SchemaError(f"{what}: {_first_line(exc)}") from exc
    except duckdb.Error as exc:
        raise WarehouseError(f"{what}: {_first_line(exc)}") from exc


def _copy_time(copy: Path) -> dt.datetime:
    """When the file a copy was taken of last changed (keep_copy gives the copy its mtime)."""
    return dt.datetime.fromtimestamp(copy.stat().st_mtime, dt.timezone.utc)


def _taken(copy: Path) -> str:
    return _copy_time(copy).strftime("%Y-%m-%d %H:%M UTC")


def _write_synced(source, path: Path) -> None:
    """Copy the open file `source` to `path`, on disk before it returns (a rename may follow)."""
    with path.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


# What DuckDB says when a file's blocks or metadata fail their checks, as opposed to a query's error.
DAMAGE_SIGNS = ("corrupt database file", "corrupt wal file", "could not read enough bytes",
                "no more data remaining in metadatareader", "failed to load metadata pointer")


def _damaged(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(sign in text for sign in DAMAGE_SIGNS)


def _open_here(path: Path) -> bool | None:
    """Whether this process has `path` open, from Linux's /proc; None where it cannot tell."""
    target = os.path.realpath(path)
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return True
    return False


def _check_reads(path: Path) -> None:
    """Raise DamagedError unless every block of every table of the DuckDB file at `path` reads back
    (a hash of each row reads every column); WarehouseError if it fails for another reason."""
    import duckdb
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if _damaged(exc):
            raise DamagedError(f"{path.name}: {_first_line(exc)}") from exc
        raise WarehouseError(f"{path.name} does not open: {_first_line(exc)}") from exc
    try:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                             "WHERE database_name = current_database() AND NOT temporary").fetchall()
        for schema, table in tables:
            con.execute(f"SELECT bit_xor(hash(t)) FROM {_quoted(schema)}.{_quoted(table)} AS t").fetchall()
    except duckdb.Error as exc:
        if _damaged(exc):
            raise DamagedError(f"{path.name}: {_first_line(exc)}") from exc
        raise WarehouseError(f"{path.name} does not read back: {_first_line(exc)}") from exc
    finally:
        con.close()


def _quoted(name: str) -> str:
    """An identifier DuckDB reads as exactly `name`, whatever it holds (quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class BigQueryWarehouse(Warehouse):
    """Google BigQuery through google-cloud-bigquery, with Application Default Credentials.

    Queries run with the dataset as the default dataset, so the `.sql` files name bare tables.
    Results stream as Arrow record batches; the Storage Read API is opt-in (`storage_api`).
    """

    dialect = "bigquery"
    slice_rows = 2_000_000
    slice_bytes = 4_000_000_000

    def __init__(self, project: str, dataset: str, endpoint: str | None = None,
                 location: str = "US", storage_api: bool = False):
        self.project = check_identifier("project", project, PROJECT_PATTERN)
        self.dataset = check_identifier("dataset", dataset, DATASET_PATTERN)
        self.name = f"{project}.{dataset}"
        self.location = location
        self.storage_api = storage_api
        self.endpoint = endpoint
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from google.cloud import bigquery
            options: dict[str, Any] = {"project": self.project, "location": self.location}
            if self.endpoint:
                from google.api_core.client_options import ClientOptions
                from google.auth.credentials import AnonymousCredentials
                options["client_options"] = ClientOptions(api_endpoint=self.endpoint)
                # A local stand-in takes no credentials; production always goes through ADC.
                if urlparse(self.endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
                    options["credentials"] = AnonymousCredentials()
            with _bq_errors("connect"):
                self._client = bigquery.Client(**options)
        return self._client

    def _job_config(self, params: Mapping[str, Any] | None):
        from google.cloud import bigquery
        return bigquery.QueryJobConfig(
            default_dataset=f"{self.project}.{self.dataset}",
            query_parameters=[_bq_param(k, v) for k, v in (params or {}).items()])

    def _query(self, query: str, params):
        check_params(params)
        (statement,) = sqlfiles.bigquery_statements(query)
        used = {k: v for k, v in (params or {}).items() if re.search("@" + re.escape(k) + r"\b", statement)}
        with _bq_errors(query):
            job = self.client.query(statement, job_config=self._job_config(used))
            return job.result()

    def run(self, query, params=None):
        rows = self._query(query, params)
        with _bq_errors(query):
            return rows.to_arrow(create_bqstorage_client=self.storage_api) if rows.schema else pa.table({})

    def stream(self, query, params=None, batch_rows=BATCH_ROWS):
        rows = self._query(query, params)
        if not rows.schema:
            return
        with _bq_errors(query):
            storage = None
            if self.storage_api:
                from google.cloud import bigquery_storage
                storage = bigquery_storage.BigQueryReadClient()
            for batch in rows.to_arrow_iterable(bqstorage_client=storage):
                if batch.num_rows:
                    yield batch

    def append(self, table, rows):
        from google.cloud import bigquery
        import pyarrow.parquet as pq
        check_identifier("table", table)
        if rows.num_rows == 0:
            return
        buffer = io.BytesIO()
        pq.write_table(rows, buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        with _bq_errors(f"append to {table}"):
            job = self.client.load_table_from_file(buffer, f"{self.project}.{self.dataset}.{table}",
                                                   job_config=config, rewind=True)
            job.result()

    def columns(self, table):
        from google.api_core import exceptions as gexc
        check_identifier("table", table)
        try:
            with _bq_errors(f"describe {table}"):
                t = self.client.get_table(f"{self.project}.{self.dataset}.{table}")
        except SchemaError:
            return None
        return {f.name: {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}.get(f.field_type, f.field_type)
                for f in t.schema}

    def restore(self, force: bool = False, horizon_days: int = 7) -> str:
        raise WarehouseError(f"{self.name} keeps its own history: time travel (2 to 7 days, the dataset's setting) "
                             "restores a table as of a moment (CREATE TABLE ... CLONE ... FOR SYSTEM_TIME AS OF)")

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None


def check_params(params: Mapping[str, Any] | None) -> None:
    """Raise WarehouseError unless every parameter's value fits the type ampkit.sql.PARAMETER_TYPES
    declares for it, on every backend: what DuckDB would cast, BigQuery refuses. ampkit's own files
    use declared parameters only (tests/test_sql.py); any other query's are typed by their value,
    which a NULL cannot be."""
    for name, value in (params or {}).items():
        kind = sqlfiles.PARAMETER_TYPES.get(name)
        if kind is None:
            if value is None:
                raise WarehouseError(f"query parameter @{name} is NULL and has no declared type (ampkit.sql.PARAMETER_TYPES)")
            continue
        element = kind[6:-1] if kind.startswith("ARRAY<") else None
        if element is not None and not isinstance(value, (list, tuple)):
            raise WarehouseError(f"parameter @{name} must be a list ({kind})")
        if element is not None and any(v is None for v in value):
            raise WarehouseError(f"parameter @{name} holds a NULL, which BigQuery refuses in an array")
        for v in (value if element is not None else [value]):
            given = None if v is None else _bq_type(v)
            if given not in (None, element or kind) and not ((element or kind) == "FLOAT64" and given == "INT64"):
                raise WarehouseError(f"parameter @{name} is declared {kind} but was given {type(v).__name__}")


def _bq_param(name: str, value: Any):
    """The parameter with the type ampkit.sql declares for it: BigQuery types a NULL by its
    declaration, and a STRING NULL cannot be written to a TIMESTAMP column."""
    from google.cloud import bigquery
    kind = sqlfiles.PARAMETER_TYPES.get(name)
    if kind is None and isinstance(value, (list, tuple)):
        kinds = {_bq_type(v) for v in value} or {"STRING"}
        if len(kinds) != 1:
            raise WarehouseError(f"parameter @{name} mixes types {sorted(kinds)}")
        kind = f"ARRAY<{kinds.pop()}>"
    kind = kind or _bq_type(value)
    if kind.startswith("ARRAY<"):
        return bigquery.ArrayQueryParameter(name, kind[6:-1], list(value))
    return bigquery.ScalarQueryParameter(name, kind, value)


def _bq_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


@contextlib.contextmanager
def _bq_errors(what: str):
    """Turn google.api_core errors into WarehouseError / SchemaError naming the query."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc
    try:
        yield
    except gexc.NotFound as exc:
        raise SchemaError(f"{what}: not found in BigQuery: {_bq_message(exc)}") from exc
    except (gexc.GoogleAPIError, aexc.GoogleAuthError) as exc:
        raise WarehouseError(f"{what}: BigQuery error: {_bq_message(exc)}") from exc


def _bq_message(exc: Exception) -> str:
    # A job's exception message carries the errors again plus "\n\nLocation: ...\nJob ID: ..."
    # (google-cloud-bigquery's footer): BigQuery's own message is the first error's, one line.
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    return _first_line(Exception(first.get("message") or getattr(exc, "message", None) or str(exc)))
