"""Reconciliation counting at warehouse scale, against the bare GROUP BY Looker itself would run.

`event_logs` is generated directly with DuckDB SQL (`range()`, not seed.fill, which would take
minutes at 100M rows): 30 days ending at NOW, a heavy-tailed mix of ~225 event names, every
column filled. `ampkit_stage_counts` and `ampkit_outcome_counts` hold plausible aggregates: the
15-minute buckets the hourly staging and sync would have recorded for those rows (2% never
staged, the data map's share filtered, 1% rejected), with their runs in `ampkit_runs`.

Measured, each from a fresh connection, alternating, median of the runs:
- ampkit: `recon_looker` + `recon_staged` + `recon_outcomes` via `warehouse.run` (the file
  opened once for the three, `Warehouse.held()`), as `reconcile.run` issues them (and, for
  context, `reconcile.run(..., row_level=False, segmentation_events=0)` end to end, which
  also checks the schema, reads the watermark and the data-map versions);
- bare: `SELECT DATE(timestamp), name, COUNT(*) FROM event_logs GROUP BY 1, 2`.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from common import NOW, config, duck_url, log, median

from ampkit import reconcile, warehouse as warehouses  # noqa: E402

DAYS = 30
BARE_SQL = "SELECT CAST(timestamp AS DATE) AS day, name, COUNT(*) AS n FROM event_logs GROUP BY 1, 2"


def build(path: Path, rows: int) -> float:
    """Generate `rows` event_logs rows and their stage/outcome aggregates; returns seconds taken."""
    started = time.perf_counter()
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()
    first = NOW - dt.timedelta(days=DAYS)
    with warehouses.open(duck_url(path)) as wh:
        wh.ensure_tables()
        with wh.connect() as con:
            con.execute("SET preserve_insertion_order = false")
            con.execute(f"""
                INSERT INTO event_logs
                SELECT i AS id,
                  CASE WHEN k < 40 THEN 'SearchSubmitted' WHEN k < 60 THEN 'ViewBlob' WHEN k < 70 THEN 'search.latencies.frontend.code-load'
                       WHEN k < 78 THEN 'codeintel.searchReferences' ELSE 'Event' || CAST(k AS VARCHAR) END AS name,
                  'https://sourcegraph.com/github.com/org/repo' AS url,
                  CASE WHEN i % 9 = 0 THEN 1000 + i % 50000 ELSE 0 END AS user_id,
                  CASE WHEN i % 13 = 0 THEN 'backend' ELSE md5(CAST(i % 400000 AS VARCHAR)) END AS anonymous_user_id,
                  CASE WHEN i % 13 = 0 THEN 'BACKEND' ELSE 'WEB' END AS source,
                  '{{}}' AS argument, '{{"source":"nav"}}' AS public_argument, '5188fes0101' AS version,
                  $first + to_microseconds(CAST(i * ({DAYS} * 86400000000 // {rows}) AS BIGINT)) AS timestamp,
                  '{{}}' AS feature_flags, DATE '2025-12-01' AS cohort_id, '' AS first_source_url, '' AS last_source_url,
                  '' AS referrer, md5(CAST(i % 400000 AS VARCHAR)) AS device_id, md5(CAST(i AS VARCHAR)) AS insert_id
                FROM (SELECT i, CAST(floor(300 * pow((i * 2654435761 % 1000003) / 1000003.0, 3)) AS INTEGER) AS k
                      FROM range({rows}) AS r(i))""", {"first": first})
            # What hourly staging and syncing would have counted: 15-minute buckets per name.
            con.execute("""
                CREATE TEMP TABLE buckets AS
                SELECT to_timestamp(epoch(timestamp)::BIGINT // 900 * 900) AS bucket, name, source, COUNT(*) AS n
                FROM event_logs GROUP BY 1, 2, 3""")
            con.execute("""
                INSERT INTO ampkit_stage_counts
                SELECT date_trunc('hour', bucket) + INTERVAL 1 HOUR, bucket, name, CAST(n * 0.98 AS BIGINT) FROM buckets""")
            con.execute("""
                INSERT INTO ampkit_runs (run_id, started_at, finished_at, status, mode)
                SELECT DISTINCT 'run-' || strftime(date_trunc('hour', bucket), '%Y%m%dT%H'), date_trunc('hour', bucket) + INTERVAL 65 MINUTE,
                       date_trunc('hour', bucket) + INTERVAL 66 MINUTE, 'ok', 'sync' FROM buckets""")
            con.execute("""
                INSERT INTO ampkit_outcome_counts
                SELECT 'run-' || strftime(date_trunc('hour', bucket), '%Y%m%dT%H'), bucket, name, date_trunc('hour', bucket) + INTERVAL 1 HOUR,
                       o.outcome, o.reason, CAST(n * 0.98 * o.share AS BIGINT)
                FROM buckets, (SELECT * FROM (VALUES ('accepted', NULL, 0.99), ('rejected', 'no_id', 0.01))) AS o(outcome, reason, share)
                WHERE source <> 'BACKEND' AND name NOT LIKE 'codeintel.%' AND name NOT LIKE 'search.latencies%'
                UNION ALL
                SELECT 'run-' || strftime(date_trunc('hour', bucket), '%Y%m%dT%H'), bucket, name, date_trunc('hour', bucket) + INTERVAL 1 HOUR,
                       'filtered', CASE WHEN source = 'BACKEND' THEN 'backend' ELSE 'codeintel_deny_list' END, CAST(n * 0.98 AS BIGINT)
                FROM buckets
                WHERE source = 'BACKEND' OR name LIKE 'codeintel.%' OR name LIKE 'search.latencies%'""")
            con.execute("CHECKPOINT")
    return time.perf_counter() - started


def _params(cfg) -> dict[str, Any]:
    start, end = (NOW - dt.timedelta(days=DAYS)).date(), NOW.date()
    zone = cfg.zone
    start_ts = dt.datetime.combine(start, dt.time(), zone).astimezone(dt.timezone.utc)
    end_ts = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc)
    mark = NOW - dt.timedelta(hours=1)
    return {"tz": cfg.time_zone, "start_ts": start_ts, "end_ts": end_ts, "watermark": mark,
            "lookback_start": mark - dt.timedelta(hours=cfg.lookback_hours), "recon_id": "bench",
            "start_time": dt.datetime.combine(cfg.amplitude_start_date, dt.time(), dt.timezone.utc),
            "lag_cutoff": NOW - dt.timedelta(seconds=cfg.export_lag_seconds),
            # The ledger's holes (none in a synced benchmark warehouse), as reconcile.run passes them.
            "gap_starts": [], "gap_ends": []}


def ampkit_counts(path: Path) -> tuple[float, int]:
    cfg = config(duck_url(path), "http://127.0.0.1:9", now=NOW)
    params = _params(cfg)
    wh = warehouses.open(duck_url(path))
    started = time.perf_counter()
    with wh.held():  # one open of the file for the three queries, as for the bare query's one
        rows = sum(wh.run(q, params).num_rows for q in ("recon_looker", "recon_staged", "recon_outcomes"))
    return time.perf_counter() - started, rows


def bare(path: Path) -> tuple[float, int]:
    import duckdb
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.sql(BARE_SQL).to_arrow_table().num_rows
    finally:
        con.close()
    return time.perf_counter() - started, rows


def reconcile_run(path: Path) -> tuple[float, int]:
    cfg = config(duck_url(path), "http://127.0.0.1:9", now=NOW)
    start, end = (NOW - dt.timedelta(days=DAYS)).date(), NOW.date()
    started = time.perf_counter()
    result = reconcile.run(cfg, start, end, row_level=False, segmentation_events=0)
    return time.perf_counter() - started, len(result.rows)


def measure(sizes: list[int], repeats: int, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    for size in sizes:
        path = workdir / f"recon-{size}.duckdb"
        built = build(path, size)
        log(f"recon: generated {size:,} event_logs rows in {built:.0f}s ({path.stat().st_size / 1e9:.1f} GB)")
        runs: dict[str, list[float]] = {"ampkit": [], "bare": [], "reconcile_run": []}
        rows: dict[str, int] = {}
        bare(path)  # one untimed pass, so the first timed query does not pay for a cold page cache alone
        for i in range(repeats):
            for name, fn in (("ampkit", ampkit_counts), ("bare", bare), ("reconcile_run", reconcile_run))[::1 if i % 2 == 0 else -1]:
                seconds, n = fn(path)
                runs[name].append(seconds)
                rows[name] = n
            log(f"  {size:,}: ampkit {runs['ampkit'][-1]:.2f}s, bare {runs['bare'][-1]:.2f}s, reconcile.run {runs['reconcile_run'][-1]:.2f}s")
        import profiling as prof
        per_row = prof.recon_looker_per_row(path, _params(config(duck_url(path), "http://127.0.0.1:9", now=NOW)))
        log(f"  {size:,}: the previous recon_looker (per-row time zone): {per_row:.2f}s")
        out["sizes"][size] = {"per_row_looker": per_row, "build_seconds": built, "gb": path.stat().st_size / 1e9, "result_rows": rows,
                              **{name: median(v) for name, v in runs.items()}, "runs": runs,
                              "ratio": median(runs["ampkit"]) / median(runs["bare"])}
        path.unlink()
    return out
