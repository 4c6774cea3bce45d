"""What the reliability tests share: rows, the warehouse's books, the export oracle, secret scans.

The oracle for "nothing lost, nothing twice" is independent of ampkit's own bookkeeping: it is
the set of insert_ids a test put into the warehouse as sendable, compared with what the
sandbox's Export API returns (read here with plain `requests`, not with ampkit's reader).
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import requests

from ampkit import config as configuration
from ampkit import warehouse as warehouses

import children  # tests/children.py: every child ends with its test
import damage as damages  # tests/damage.py: a DuckDB file damaged as a kill leaves it
from damage import damage, damaged  # noqa: F401 - for the crash tests
from conftest import API_KEY, NOW, SECRET_KEY  # tests/conftest.py: the suite's key pair and clock

HERE = Path(__file__).resolve().parent
CRASHPOINT = HERE / "crashpoint.py"
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
SECRETS = {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_SECRET_KEY": SECRET_KEY}

EVENT_SCHEMA = pa.schema([
    ("id", pa.int64()), ("name", pa.string()), ("url", pa.string()), ("user_id", pa.int64()),
    ("anonymous_user_id", pa.string()), ("source", pa.string()), ("argument", pa.string()),
    ("public_argument", pa.string()), ("version", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
    ("feature_flags", pa.string()), ("cohort_id", pa.date32()), ("first_source_url", pa.string()),
    ("last_source_url", pa.string()), ("referrer", pa.string()), ("device_id", pa.string()),
    ("insert_id", pa.string()), ("loaded_at", pa.timestamp("us", tz="UTC")),
])


# -- rows -----------------------------------------------------------------------------------

def row(id: int, prefix: str, **overrides: Any) -> dict[str, Any]:
    """One valid, sendable `amplitude_events` row (a web SearchSubmitted) with ids unique to `prefix`.

    Its private `argument` carries a `PRIVATE-` marker that must never leave the warehouse.
    """
    loaded = overrides.pop("loaded_at", NOW - 20 * MINUTE)
    base = {
        "id": id, "name": "SearchSubmitted", "url": "https://sourcegraph.com/search", "user_id": 0,
        "anonymous_user_id": f"anon-{prefix}-{id}", "source": "WEB",
        "argument": f'{{"query":"PRIVATE-{prefix}-{id} repo:acme/billing","email":"PRIVATE-jane@acme.example"}}',
        "public_argument": '{"source":"nav"}', "version": "1.0.0",
        "timestamp": loaded - 10 * MINUTE, "feature_flags": "{}", "cohort_id": dt.date(2022, 3, 7),
        "first_source_url": "https://about.sourcegraph.com/", "last_source_url": "", "referrer": "",
        "device_id": f"dev-{prefix}-{id:06d}", "insert_id": f"{prefix}-{id}", "loaded_at": loaded,
    }
    base.update(overrides)
    return base


def spread(prefix: str, first_id: int, n: int, start: dt.datetime, end: dt.datetime, **overrides) -> list[dict]:
    """`n` rows with loaded_at spread evenly over (start, end]."""
    step = (end - start) / n
    return [row(first_id + i, prefix, loaded_at=start + step * (i + 1), **overrides) for i in range(n)]


def insert(url: str, rows: Iterable[dict]) -> None:
    """Append rows to amplitude_events (creating ampkit's tables first), as the staging query would."""
    rows = list(rows)
    with warehouses.open(url) as wh:
        wh.ensure_tables()
        if rows:
            wh.append("amplitude_events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))


def restore(url: str, environ: dict[str, str]) -> None:
    """`ampkit restore-warehouse` as a user told by DamagedError would run it; the file reads again."""
    done = damages.restore(url, env=environ)
    assert done.returncode == 0, done.stderr
    assert not damaged(url)


def fresh_warehouse(tmp_path: Path, name: str = "warehouse") -> str:
    url = f"duckdb:///{tmp_path}/{name}.duckdb"
    with warehouses.open(url) as wh:
        wh.ensure_tables()
    return url


class Reader:
    """Test-side reads of a DuckDB warehouse over one connection: `reader(sql, params) -> rows`."""

    def __init__(self, url: str):
        self._wh = warehouses.open(url)
        self._cm = self._wh.connect()
        self._con = self._cm.__enter__()

    def __call__(self, sql: str, params: Any = None) -> list[dict]:
        cursor = self._con.execute(sql, params or [])
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, values)) for values in cursor.fetchall()]

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self._wh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def query(url: str, sql: str, params: Any = None) -> list[dict]:
    """Rows of one SQL statement on the DuckDB warehouse (test-side reads only)."""
    with Reader(url) as read:
        return read(sql, params)


def keys_only_environment(mp) -> None:
    """For module-scoped fixtures (which run before tests/conftest.py's per-test `clean_environ`):
    no developer AMPKIT_*/AMPLITUDE_* setting, the suite's key pair (`mp`: a pytest MonkeyPatch)."""
    for name in list(os.environ):
        if name.startswith(("AMPKIT_", "AMPLITUDE_")):
            mp.delenv(name)
    for name, value in SECRETS.items():
        mp.setenv(name, value)


def config(url: str, sandbox_url: str, **overrides: Any) -> configuration.Config:
    """A Config on a test warehouse and sandbox: the suite's clock, no settle delay, small budgets."""
    values = {"warehouse": url, "amplitude_url": sandbox_url, "now": NOW, "settle_seconds": 0,
              "retry_budget_seconds": 30, "max_backoff_seconds": 0.2, "throttle_hold_seconds": 0.2,
              "request_timeout_seconds": 5}
    values.update(overrides)
    return configuration.load(values)


# -- the oracle -----------------------------------------------------------------------------

def exported(sandbox_url: str, prefix: str | None = None, *, rows: bool = False):
    """What the sandbox's Export API holds (uploads of the last day): insert_id -> copies, or the rows."""
    now = dt.datetime.now(dt.timezone.utc)
    params = {"start": (now - dt.timedelta(days=1)).strftime("%Y%m%dT%H"), "end": (now + HOUR).strftime("%Y%m%dT%H")}
    response = requests.get(f"{sandbox_url}/api/2/export", params=params, auth=(API_KEY, SECRET_KEY), timeout=120)
    out = [] if rows else collections.Counter()
    if response.status_code == 404:
        return out
    assert response.status_code == 200, f"export failed: HTTP {response.status_code} {response.text[:300]}"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        for name in archive.namelist():
            for line in gzip.decompress(archive.read(name)).splitlines():
                event = json.loads(line)
                insert_id = event.get("$insert_id")
                if prefix is not None and not str(insert_id).startswith(prefix):
                    continue
                if rows:
                    out.append(event)
                else:
                    out[insert_id] += 1
    return out


# -- the warehouse's books ------------------------------------------------------------------

class StandinReader:
    """Test-side reads of a BigQuery stand-in's dataset (its in-process DuckDB), like `Reader`."""

    def __init__(self, standin, dataset: str = "analytics"):
        self._standin = standin
        self._cursor = standin.duckdb.cursor()
        self._cursor.execute(f"SET schema = '{dataset}'")

    def __call__(self, sql: str, params: Any = None) -> list[dict]:
        with self._standin.lock:
            cursor = self._cursor.execute(sql, params or [])
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, values)) for values in cursor.fetchall()]


def standin_books(standin) -> list[str]:
    """`books()` for a BigQuery stand-in's dataset."""
    return _books(StandinReader(standin), True)


def books(url: str, *, after_clean_run: bool = True) -> list[str]:
    """Every way the state tables disagree with "each row once, every run honest"; [] when they agree."""
    with Reader(url) as query:
        return _books(query, after_clean_run)


def _books(query, after_clean_run: bool) -> list[str]:
    problems = []
    dupes = query("SELECT id, COUNT(*) AS n FROM ampkit_deliveries GROUP BY id HAVING COUNT(*) > 1")
    if dupes:
        problems.append(f"{len(dupes)} rows have more than one outcome, e.g. {dupes[:3]}")
    twice = query("SELECT insert_id, COUNT(*) AS n FROM ampkit_deliveries WHERE outcome = 'accepted' "
                  "GROUP BY insert_id HAVING COUNT(*) > 1")
    if twice:
        problems.append(f"{len(twice)} insert_ids accepted more than once, e.g. {twice[:3]}")
    orphans = query("SELECT DISTINCT d.run_id FROM ampkit_deliveries AS d "
                    "LEFT JOIN ampkit_runs AS r ON r.run_id = d.run_id WHERE r.run_id IS NULL")
    if orphans:
        problems.append(f"outcomes recorded by runs missing from the ledger: {[o['run_id'] for o in orphans]}")
    undocumented = query("SELECT d.id, d.reason FROM ampkit_deliveries AS d WHERE d.outcome = 'rejected' AND NOT EXISTS "
                         "(SELECT 1 FROM ampkit_dead_letters AS l WHERE l.run_id = d.run_id AND l.id = d.id AND l.reason = d.reason)")
    if undocumented:
        problems.append(f"rejected rows without their dead letter: {undocumented[:3]}")
    unreasoned = query("SELECT id, outcome FROM ampkit_deliveries WHERE outcome <> 'accepted' AND (reason IS NULL OR reason = '')")
    if unreasoned:
        problems.append(f"filtered or rejected rows without a named rule or reason: {unreasoned[:3]}")
    for r in query("SELECT run_id, status, extracted, accepted, filtered_total, rejected_total FROM ampkit_runs WHERE status = 'ok'"):
        if r["extracted"] != r["accepted"] + r["filtered_total"] + r["rejected_total"]:
            problems.append(f"run {r['run_id']}: extracted {r['extracted']} != accepted + filtered + rejected")
    if after_clean_run:
        running = query("SELECT run_id FROM ampkit_runs WHERE status = 'running'")
        if running:
            problems.append(f"runs still marked running after a clean run: {running}")
        for table in ("ampkit_pending", "ampkit_run_rules", "ampkit_rejects"):
            left = query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
            if left:
                problems.append(f"{table} still holds {left} rows after a clean run")
        # The lease row stays (it is only ever taken by UPDATE): unowned after a clean run.
        held = query("SELECT COUNT(*) AS n FROM ampkit_lease WHERE holder IS NOT NULL")[0]["n"]
        if held:
            problems.append(f"ampkit_lease still held ({held} rows) after a clean run")
    return problems


def outcome_of(url: str, ids: Iterable[int]) -> dict[int, tuple[str, str | None]]:
    """id -> (outcome, reason) from ampkit_deliveries."""
    ids = list(ids)
    rows = query(url, "SELECT id, outcome, reason FROM ampkit_deliveries WHERE list_contains(?, id)", [ids])
    return {r["id"]: (r["outcome"], r["reason"]) for r in rows}


def ledger(url: str) -> dict[str, dict]:
    return {r["run_id"]: r for r in query(url, "SELECT * FROM ampkit_runs")}


def watermark(url: str) -> dt.datetime | None:
    rows = query(url, "SELECT MAX(value) AS w FROM ampkit_state WHERE key = 'watermark'")
    return rows[0]["w"] if rows else None


def identity(result) -> None:
    """The accounting identity of a SyncResult, per run and per window."""
    assert result.extracted == result.accepted + sum(result.filtered.values()) + sum(result.rejected.values()), result.to_dict()
    for w in result.windows:
        w.check()


# -- subprocesses ---------------------------------------------------------------------------

def env(url: str, sandbox_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a `python -m ampkit` child: the suite's keys, the test's warehouse and sandbox."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("AMPKIT_", "AMPLITUDE_"))}
    out.update(SECRETS)
    out.update({"AMPKIT_WAREHOUSE": url, "AMPKIT_AMPLITUDE_URL": sandbox_url, "AMPKIT_SETTLE_SECONDS": "0",
                "AMPKIT_NOW": NOW.isoformat(), "PYTHONUNBUFFERED": "1"})
    out.update({f"AMPKIT_{k.upper()}": str(v) for k, v in settings.items()})
    return out


def ampkit(*args: str, environ: dict[str, str], at: str | None = None, action: str = "kill",
           trace: Path | None = None, **popen: Any) -> subprocess.Popen:
    """Start `python -m ampkit ARGS` (under the crash-point harness when `at` or `trace` is given)."""
    if at or trace:
        command = [sys.executable, str(CRASHPOINT), *(["--at", at] if at else []), "--action", action,
                   *(["--trace", str(trace)] if trace else []), "--", *args]
    else:
        command = [sys.executable, "-m", "ampkit", *args]
    return children.start(command, env=environ, **popen)


def finish(process: subprocess.Popen, timeout: float = 120) -> int:
    """Wait for a child; kill it (and fail) if it outlives `timeout`."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"ampkit child {process.args} did not end within {timeout}s")


def killed_by_sigkill(code: int) -> bool:
    return code == -signal.SIGKILL


# -- secrets --------------------------------------------------------------------------------

def leaks(text: str | bytes) -> list[str]:
    """Which of the two secrets occur in `text`."""
    if isinstance(text, bytes):
        return [name for name, value in SECRETS.items() if value.encode() in text]
    return [name for name, value in SECRETS.items() if value in text]


def dump_duckdb(path: Path, con=None) -> str:
    """Every value of every table of a DuckDB file, as text (on disk its strings are compressed)."""
    import duckdb
    own = con is None
    con = con or duckdb.connect()
    quoted = str(path).replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS scanned (READ_ONLY)")
    try:
        parts = []
        names = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_catalog = 'scanned'").fetchall()
        for schema, table in names:
            ident = ".".join('"' + n.replace('"', '""') + '"' for n in (schema, table))
            parts.append(f"{table}: {con.execute(f'SELECT * FROM scanned.{ident}').fetchall()!r}")
        return "\n".join(parts)
    finally:
        con.execute("DETACH scanned")
        if own:
            con.close()


def scan_tree(root: Path) -> dict[str, list[str]]:
    """Path -> secrets found, over every file under `root` (DuckDB files read table by table)."""
    import duckdb
    found = {}
    con = duckdb.connect()
    try:
        for path in sorted(Path(root).rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits = leaks(data)
            # A damaged file set aside by `ampkit restore-warehouse` is read as bytes only.
            if path.name.endswith((".duckdb", ".duckdb.last-good")) and not hits:
                try:
                    hits = leaks(dump_duckdb(path, con))
                except duckdb.Error as exc:
                    hits = [f"unreadable DuckDB file: {exc}"]
            if hits:
                found[str(path)] = hits
    finally:
        con.close()
    return found


@dataclasses.dataclass
class Timer:
    """Wall-clock bound of a block: `with Timer() as t: ...; t.seconds`."""

    seconds: float = 0.0

    def __enter__(self):
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self._t0
