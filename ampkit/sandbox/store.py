"""Event storage: request bodies in an append-only file, an event index in DuckDB.

Each accepted request's body (decoded, api_key masked) is appended to `<db>.bodies` with a
small header; DuckDB holds one small row per event: the columns queries need, and where its
body lies. Rows are built by the request's own thread and queued. Whichever waiting thread
gets the commit lock first becomes the committer (group commit, no writer thread): it takes
everything queued, writes and fsyncs the bodies, inserts all the rows in one DuckDB
statement (one transaction), and wakes the others. Doing it on a request thread saves two
GIL hand-offs per commit, which at 100+ requests/s is most of the commit latency. A request is answered 200 only after that, so a
restart cannot lose an acknowledged event. `path=None` keeps everything in memory.
"""
from __future__ import annotations

import logging
import os
import queue
import secrets
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from ampkit.errors import ConfigError

logger = logging.getLogger(__name__)

# The WAL would otherwise be checkpointed every few requests under load (default 16 MB).
_CHECKPOINT_THRESHOLD = "256MB"
_NON_EVENTS = ("$identify", "$groupidentify")

EVENT_SCHEMA = pa.schema([
    ("idx", pa.int32()),
    ("app", pa.int32()),
    ("upload_ms", pa.int64()),
    ("event_type", pa.string()),
    ("user_id", pa.string()),
    ("device_id", pa.string()),
    ("event_ms", pa.int64()),
    ("insert_id", pa.string()),
    ("path", pa.string()),
])
# Per-request values (path, body position) are repeated on every row rather than kept in a
# second table: DuckDB compresses the repeats away, and a second INSERT per commit would cost
# about as much as the rows themselves. The rest of a request's context lives in its body
# record's header.
_COLUMNS = "seq, " + ", ".join(EVENT_SCHEMA.names) + ", body_offset"
_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT NOT NULL, idx INTEGER NOT NULL, app INTEGER NOT NULL, upload_ms BIGINT NOT NULL,
    event_type VARCHAR NOT NULL, user_id VARCHAR, device_id VARCHAR, event_ms BIGINT NOT NULL,
    insert_id VARCHAR, path VARCHAR NOT NULL, body_offset BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""


class StoreError(Exception):
    """Raised when events could not be committed; the caller answers 503 (not ingested)."""


@dataclass(frozen=True)
class Body:
    """A request's body (as decoded) and the context export needs besides the rows."""

    data: bytes = field(repr=False)
    client_upload_ms: int | None = None
    request_ip: str | None = None

    def record(self) -> bytes:
        """The bytes appended to the body file: lengths, a JSON header, the body."""
        header = orjson.dumps({"client_upload_ms": self.client_upload_ms, "request_ip": self.request_ip})
        return struct.pack(">II", len(header), len(self.data)) + header + self.data


@dataclass
class Pending:
    """A queued write; `Store.wait` blocks until the writer has committed it (or failed)."""

    record: bytes | None
    offset: int
    rows: pa.Table | None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass(frozen=True)
class EventFilter:
    """Which stored events a delete touches; every given condition must hold. Times are epoch ms."""

    app: int | None = None
    event_types: tuple[str, ...] | None = None
    event_start_ms: int | None = None
    event_end_ms: int | None = None  # exclusive
    upload_start_ms: int | None = None
    upload_end_ms: int | None = None  # exclusive
    user_ids: tuple[str, ...] | None = None
    device_ids: tuple[str, ...] | None = None
    insert_ids: tuple[str, ...] | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value, op in (
            ("app", self.app, "="), ("event_ms", self.event_start_ms, ">="), ("event_ms", self.event_end_ms, "<"),
            ("upload_ms", self.upload_start_ms, ">="), ("upload_ms", self.upload_end_ms, "<"),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        for column, values in (("event_type", self.event_types), ("user_id", self.user_ids),
                               ("device_id", self.device_ids), ("insert_id", self.insert_ids)):
            if values is not None:
                clauses.append(f"list_contains(?, {column})")
                params.append(list(values))
        return (" AND ".join(clauses) or "TRUE"), params


def events_table(app: int, path: str, upload_ms: int, event_types: list, user_ids: list, device_ids: list,
                 times_ms: list, insert_ids: list) -> pa.Table:
    """One request's events as rows of the index (`idx` = position in the request).

    `device_ids` are as sent (None when absent); the derived device id of a user-only event
    is recomputed where needed, so throttling can tell sent ids from derived ones.
    """
    n = len(event_types)
    return pa.table([
        pa.array(np.arange(n, dtype=np.int32)),
        pa.repeat(pa.scalar(app, pa.int32()), n),
        pa.repeat(pa.scalar(upload_ms, pa.int64()), n),
        pa.array(event_types, pa.string()),
        pa.array(user_ids, pa.string()),
        pa.array(device_ids, pa.string()),
        pa.array(times_ms, pa.int64()),
        pa.array(insert_ids, pa.string()),
        pa.repeat(pa.scalar(path, pa.string()), n),
    ], schema=EVENT_SCHEMA)


class Store:
    """Stored events. Writes go through `submit`/`wait`; reads use their own DuckDB cursors."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        try:
            self._con = duckdb.connect(path or ":memory:")
        except duckdb.Error as exc:
            raise ConfigError(f"cannot open the sandbox database {path}: {exc}") from exc
        # One DuckDB thread: the sandbox's Python threads need the other cores more.
        _run(self._con, "SET threads = 1")
        _run(self._con, f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")
        for statement in filter(str.strip, _DDL.split(";")):
            _run(self._con, statement)
        self._next_seq = int(_run(self._con, "SELECT coalesce(max(seq), 0) + 1 FROM events")[0][0])
        has_rows = bool(_run(self._con, "SELECT count(*) FROM events")[0][0])
        self._bodies = _BodyFile(f"{path}.bodies" if path else None, has_rows)
        self._salt = self._uuid_salt()
        # pyarrow initialises lazily (~0.2 s); pay it now rather than in the first request.
        events_table(0, "", 0, [""], [None], [""], [0], [None])
        self._submit_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Pending | tuple] = queue.SimpleQueue()
        self._commit_lock = threading.Lock()
        self._closed = False

    # -- writes ---------------------------------------------------------------------------
    def submit(self, body: Body | None, events: pa.Table | None) -> Pending:
        """Queue one request's body and rows (`events_table`) for the next commit.

        `wait` blocks until they are durable. Commits happen in submission order, so a
        request that waits on a later ticket also knows every earlier ticket is committed.
        """
        if self._closed:
            raise StoreError("the sandbox store is closed")
        if body is None or events is None or not events.num_rows:
            pending = Pending(None, 0, None)
            self._queue.put(pending)
            return pending
        record = body.record()
        n = events.num_rows
        with self._submit_lock:
            # Positions are reserved here, in submission order; a failed commit leaves a gap.
            offset = self._bodies.reserve(len(record))
            seq = self._next_seq
            self._next_seq += n
            rows = events.add_column(0, "seq", pa.array(np.arange(seq, seq + n))).append_column(
                "body_offset", pa.repeat(pa.scalar(offset, pa.int64()), n))
            pending = Pending(record, offset, rows)
            self._queue.put(pending)
        return pending

    def wait(self, pending: Pending) -> None:
        """Block until `pending` is committed, committing the queue ourselves if nobody is."""
        while not pending.done.is_set():
            if self._commit_lock.acquire(blocking=False):
                try:
                    self._commit_queued()
                finally:
                    self._commit_lock.release()
            else:
                # Someone is committing; it takes our item too unless it started before we
                # queued, in which case we take the lock next.
                pending.done.wait(0.002)
        if pending.error is not None:
            raise StoreError(str(pending.error)) from pending.error

    def flush(self) -> None:
        """Wait until everything submitted so far is committed."""
        self.wait(self.submit(None, None))

    def delete(self, where: EventFilter) -> list[tuple[int, str | None, str | None, str | None]]:
        """Delete matching events; returns (app, device_id, user_id, insert_id) of every deleted row."""
        sql, params = where.where()
        cur = self._con.cursor()
        try:
            return _run(cur, f"DELETE FROM events WHERE {sql} RETURNING app, device_id, user_id, insert_id", params)
        finally:
            cur.close()

    def clear(self) -> None:
        """Forget every event (done by the writer, after what is already queued)."""
        pending = Pending(None, 0, None)
        self._queue.put(("clear", pending))
        self.wait(pending)

    # -- reads ----------------------------------------------------------------------------
    def count(self, app: int | None = None) -> int:
        sql = "SELECT count(*) FROM events" + (" WHERE app = ?" if app is not None else "")
        return int(self._fetch(sql, [app] if app is not None else [])[0][0])

    def dedup_keys(self, since_ms: int) -> list[tuple[int, str | None, str | None, str, int]]:
        """(app, device_id, user_id, insert_id, first upload ms) for keys stored since `since_ms`."""
        return self._fetch(
            "SELECT app, device_id, CASE WHEN device_id IS NULL THEN user_id END, insert_id, min(upload_ms) "
            "FROM events WHERE insert_id IS NOT NULL AND upload_ms >= ? GROUP BY ALL", [since_ms],
        )

    def id_counts(self, app: int, path: str | None, column: str, since_ms: int,
                  bucket_ms: int) -> list[tuple[int, str, int]]:
        """(bucket, id, events) per sent `user_id` or `device_id` uploaded since `since_ms`."""
        if column not in ("user_id", "device_id"):
            raise ValueError(column)
        self.flush()
        path_sql, params = ("AND path = ?", [path]) if path else ("", [])
        return self._fetch(
            f"SELECT upload_ms // ? AS bucket, {column}, count(*) FROM events WHERE app = ? {path_sql} "
            f"AND upload_ms >= ? AND {column} IS NOT NULL GROUP BY ALL", [bucket_ms, app, *params, since_ms],
        )

    def export_batches(self, app: int, start_ms: int, end_ms: int) -> Iterator[pa.RecordBatch]:
        """Rows uploaded in [start_ms, end_ms), in arrival order, with their bodies' metadata."""
        cur = self._con.cursor()
        try:
            reader = cur.sql(
                f"SELECT {_COLUMNS} FROM events "
                "WHERE app = ? AND upload_ms >= ? AND upload_ms < ? ORDER BY upload_ms, seq",
                params=[app, start_ms, end_ms],
            ).to_arrow_reader(10_000)
            yield from reader
        finally:
            cur.close()

    def body(self, offset: int) -> tuple[dict[str, Any], bytes]:
        """The header (`client_upload_ms`, `request_ip`) and the body stored at `offset`."""
        return self._bodies.read(offset)

    def uuid_salt(self) -> bytes:
        """Per-store random bytes that make export uuids unique across resets and databases."""
        return self._salt

    def interval_counts(
        self, app: int, event_type: str, starts_ms: Sequence[int], ends_ms: Sequence[int], uniques: bool,
    ) -> tuple[list[int], int]:
        """Counts per [start, end) interval of event time, and over all of them together.

        `event_type` may be `_all` or `_active` (every event except identify calls).
        `uniques` counts distinct users (user_id, else device_id), as Amplitude's uniques do.
        """
        bounds = pa.table({"i": pa.array(range(len(starts_ms)), pa.int32()),
                           "b_start": pa.array(starts_ms, pa.int64()), "b_end": pa.array(ends_ms, pa.int64())})
        if event_type in ("_all", "_active"):
            type_sql, params = "event_type NOT IN (?, ?)", list(_NON_EVENTS)
        else:
            type_sql, params = "event_type = ?", [event_type]
        measure = "count(DISTINCT coalesce(user_id, device_id))" if uniques else "count(*)"
        base = f"SELECT * FROM events WHERE app = ? AND {type_sql} AND event_ms >= ? AND event_ms < ?"
        args = [app, *params, min(starts_ms), max(ends_ms)]
        cur = self._con.cursor()
        try:
            cur.register("bounds", bounds)
            per = _run(cur, f"SELECT b.i, {measure} FROM ({base}) e JOIN bounds b "
                            "ON e.event_ms >= b.b_start AND e.event_ms < b.b_end GROUP BY b.i", args)
            whole = _run(cur, f"SELECT {measure} FROM ({base}) e WHERE EXISTS "
                              "(SELECT 1 FROM bounds b WHERE e.event_ms >= b.b_start AND e.event_ms < b.b_end)",
                         args)[0][0]
        finally:
            cur.close()
        counts = [0] * len(starts_ms)
        for i, n in per:
            counts[i] = int(n)
        return counts, int(whole)

    def event_type_totals(self, app: int, start_ms: int, end_ms: int) -> dict[str, int]:
        """Every event type ever stored for the app, with its count of events in [start, end) event time."""
        rows = self._fetch(
            "SELECT event_type, count(*) FILTER (WHERE event_ms >= ? AND event_ms < ?) FROM events "
            "WHERE app = ? AND event_type NOT IN (?, ?) GROUP BY event_type ORDER BY event_type",
            [start_ms, end_ms, app, *_NON_EVENTS],
        )
        return {t: int(n) for t, n in rows}

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, checkpoint, and close. Safe to call twice."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        try:
            if self.path:
                _run(self._con, "CHECKPOINT")
        finally:
            self._con.close()
            self._bodies.close()

    def _fetch(self, sql: str, params: list[Any]) -> list:
        cur = self._con.cursor()
        try:
            return _run(cur, sql, params)
        finally:
            cur.close()

    def _uuid_salt(self) -> bytes:
        rows = _run(self._con, "SELECT value FROM meta WHERE key = 'uuid_salt'")
        if rows:
            return bytes.fromhex(rows[0][0])
        salt = secrets.token_bytes(16)
        _run(self._con, "INSERT INTO meta VALUES ('uuid_salt', ?)", [salt.hex()])
        return salt

    def _commit_queued(self) -> None:
        group: list[Pending] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple):  # a clear(): commit what came before it, then clear
                self._commit(group)
                group = []
                self._clear(item[1])
            else:
                group.append(item)
        self._commit(group)

    def _commit(self, group: list[Pending]) -> None:
        if not group:
            return  # (flush() sends an empty Pending; it is released below like any other)
        try:
            writes = [p for p in group if p.rows is not None]
            if writes:
                self._insert(writes)
        except Exception as exc:  # answered as 503 by the caller; nothing of this group is stored
            logger.exception("sandbox store commit failed requests=%d", len(group))
            for pending in group:
                pending.error = exc
        finally:
            for pending in group:
                pending.done.set()

    def _insert(self, writes: list[Pending]) -> None:
        for pending in writes:
            assert pending.record is not None
            self._bodies.write(pending.offset, pending.record)
        self._bodies.sync()  # bodies are durable before any row points at them
        tables = [p.rows for p in writes]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        con = self._con
        con.register("incoming_events", table)
        try:
            # One statement is one transaction: all rows of the group, or none.
            _run(con, f"INSERT INTO events SELECT {_COLUMNS} FROM incoming_events")
        finally:
            con.unregister("incoming_events")

    def _clear(self, pending: Pending) -> None:
        try:
            _run(self._con, "DELETE FROM events")
            _run(self._con, "DELETE FROM meta WHERE key = 'uuid_salt'")
            self._salt = self._uuid_salt()
            with self._submit_lock:
                self._bodies.truncate()
        except Exception as exc:
            pending.error = exc
        finally:
            pending.done.set()


class _BodyFile:
    """Append-only body records: a file next to the database, or a dict in memory."""

    def __init__(self, path: str | None, has_rows: bool) -> None:
        self._memory: dict[int, bytes] = {}
        self._end = 0
        self._fd: int | None = None
        if path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if not has_rows:
                os.ftruncate(self._fd, 0)  # left over from a database that no longer exists
            # Bytes past the last committed record belong to a commit that a crash interrupted;
            # new records go after them.
            self._end = os.fstat(self._fd).st_size

    def reserve(self, length: int) -> int:
        offset = self._end
        self._end += length
        return offset

    def write(self, offset: int, record: bytes) -> None:
        if self._fd is None:
            self._memory[offset] = record
            return
        view = memoryview(record)
        written = 0
        while written < len(record):
            written += os.pwrite(self._fd, view[written:], offset + written)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def read(self, offset: int) -> tuple[dict[str, Any], bytes]:
        if self._fd is None:
            record = self._memory[offset]
            header_length, body_length = struct.unpack_from(">II", record)
            header = record[8:8 + header_length]
            body = record[8 + header_length:8 + header_length + body_length]
        else:
            header_length, body_length = struct.unpack(">II", os.pread(self._fd, 8, offset))
            data = os.pread(self._fd, header_length + body_length, offset + 8)
            header, body = data[:header_length], data[header_length:]
        return orjson.loads(header), body

    def truncate(self) -> None:
        self._memory.clear()
        self._end = 0
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _run(con: Any, sql: str, params: list[Any] | None = None) -> list:
    """Execute and consume: DuckDB refuses other work on a connection with an unread result."""
    return con.execute(sql, params or []).fetchall()
