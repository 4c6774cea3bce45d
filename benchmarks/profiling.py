"""Where a sync's time goes, and what each optimisation gives: measured live, in the same run.

`phases()` runs one ampkit sync with every warehouse query, the sender and the per-slice
checkpoint timed (wall and this process's CPU), next to the sandbox's CPU. `ablations()` runs
the same work with one optimisation taken back at a time.
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import re
import resource
import time
from pathlib import Path
from typing import Any

from common import NOW, Seeded, Timed, config, cpu_seconds_of, duck_url, fresh_copy, log, sandbox

from ampkit import sender as senders, sql as sqlfiles, state, sync, warehouse as warehouses  # noqa: E402

# recon_looker.sql before it counted per 15-minute bucket (one time-zone conversion per row).
RECON_LOOKER_PER_ROW = """
SELECT DATE(timestamp, @tz) AS day, name,
  COUNT(*) AS looker,
  COUNTIF(timestamp < @start_time) AS before_start
FROM event_logs
WHERE timestamp >= @start_ts AND timestamp < @end_ts
GROUP BY 1, 2
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _patched(obj, name, value):
    original = obj.__dict__[name] if isinstance(obj, type) else getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)


def phases(seeded: Seeded, workdir: Path) -> dict[str, Any]:
    """One ampkit sync (gzip off) with its parts timed."""
    wall: dict[str, float] = collections.defaultdict(float)
    cpu: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()

    def timed(label, fn):
        def wrapper(*args, **kwargs):
            key = label(args) if callable(label) else label
            c, t = _cpu(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                wall[key] += time.perf_counter() - t
                cpu[key] += _cpu() - c
                calls[key] += 1
        return wrapper

    run, stream, held = warehouses.DuckDBWarehouse.run, warehouses.DuckDBWarehouse.stream, warehouses.DuckDBWarehouse.held
    append = warehouses.DuckDBWarehouse.append

    def timed_stream(self, query, params=None, batch_rows=warehouses.BATCH_ROWS):
        it = stream(self, query, params, batch_rows)
        key = f"query {query} (streamed)"
        while True:
            c, t = _cpu(), time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                wall[key] += time.perf_counter() - t
                cpu[key] += _cpu() - c
            calls[key] += 1
            yield batch

    @contextlib.contextmanager
    def timed_held(self, **options):
        c, t = _cpu(), time.perf_counter()
        cm = held(self, **options)
        cm.__enter__()
        wall["open the warehouse (per slice)"] += time.perf_counter() - t
        cpu["open the warehouse (per slice)"] += _cpu() - c
        try:
            yield
        finally:
            c, t = _cpu(), time.perf_counter()
            cm.__exit__(None, None, None)
            wall["close + checkpoint (per slice)"] += time.perf_counter() - t
            cpu["close + checkpoint (per slice)"] += _cpu() - c
            calls["close + checkpoint (per slice)"] += 1

    path = fresh_copy(seeded.path, workdir, "phases.duckdb")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(warehouses.DuckDBWarehouse, "run", timed(lambda a: f"query {a[1]}", run)))
        stack.enter_context(_patched(warehouses.DuckDBWarehouse, "append", timed(lambda a: f"append {a[1]}", append)))
        stack.enter_context(_patched(warehouses.DuckDBWarehouse, "stream", timed_stream))
        stack.enter_context(_patched(warehouses.DuckDBWarehouse, "held", timed_held))
        stack.enter_context(_patched(senders.Sender, "send", timed("send (lanes, HTTP, sandbox)", senders.Sender.send)))
        stack.enter_context(_patched(senders.Chunk, "from_batch", classmethod(timed("chunk (offsets, lanes, id keys)", senders.Chunk.from_batch.__func__))))
        stack.enter_context(_patched(sync, "_dead_rows", timed("dead-letter rows", sync._dead_rows)))
        with sandbox(workdir) as box:
            before = cpu_seconds_of(box.pid)
            c, t = _cpu(), time.perf_counter()
            result = sync.run(config(duck_url(path), box.url, gzip=False), progress="none")
            total_wall, total_cpu = time.perf_counter() - t, _cpu() - c
            sandbox_cpu = cpu_seconds_of(box.pid) - before
    parts = [{"part": k, "wall": wall[k], "cpu": cpu[k], "calls": calls[k]} for k in sorted(wall, key=lambda k: -wall[k])]
    accounted = sum(p["wall"] for p in parts)
    parts.append({"part": "everything else (Python glue, ledger rows, lease, plan)", "wall": max(0.0, total_wall - accounted),
                  "cpu": float("nan"), "calls": 0})
    return {"rows": result.extracted, "accepted": result.accepted, "wall": total_wall, "cpu": total_cpu,
            "sandbox_cpu": sandbox_cpu, "parts": parts}


def extract_sql(seeded: Seeded, workdir: Path) -> dict[str, Any]:
    """The transform query over one whole window, as shipped and with its two fixes taken back."""
    import duckdb
    path = fresh_copy(seeded.path, workdir, "extract.duckdb")
    run_id = "ablation"
    with warehouses.open(duck_url(path)) as wh:
        wh.ensure_tables()
        keys = wh.run("sync_snapshot", {"run_id": run_id, "lookback_start": sync.EPOCH, "window_end": NOW + dt.timedelta(minutes=1),
                                        "event_start": sync.EPOCH, "event_end": sync.FAR_FUTURE}).to_pylist()
        from ampkit import datamap
        data_map = datamap.load(None)
        rules = state.rule_params([(r["name"], r["source"], *(lambda d: (d.action, d.rule, d.reason))(
            data_map.decide(r["name"] or "", r["source"]))) for r in keys])
        wh.run("sync_extract", {**sync.extract_params(config(duck_url(path), "http://127.0.0.1:9"), run_id, NOW), **rules})
    params = sync.extract_params(config(duck_url(path), "http://127.0.0.1:9"), run_id, NOW)
    shipped = sqlfiles.duckdb_statements("sync_extract")[-1]
    variants = {"as shipped": shipped}
    plain_try = re.sub(r"CASE WHEN JSON_VALID\((?P<x>.+?)\) THEN TRY\(JSON\((?P=x)\)\) END", r"TRY(JSON(\g<x>))", shipped)
    if plain_try != shipped:
        variants["SAFE.PARSE_JSON as plain TRY(JSON())"] = plain_try
    guard = "CASE TYPEOF(properties_text) WHEN 'BLOB' THEN OCTET_LENGTH(CAST(properties_text AS BLOB)) ELSE LENGTH(CAST(properties_text AS TEXT)) END > 1024 AND "
    if guard in plain_try:
        variants["... and no length test before the long-value regex"] = plain_try.replace(guard, "")
    out = {}
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, statement in variants.items():
            used = warehouses._used_params(statement, params)
            t = time.perf_counter()
            rows = sum(b.num_rows for b in con.sql(statement, params=used).to_arrow_reader(50_000))
            out[name] = {"seconds": time.perf_counter() - t, "rows": rows}
            log(f"ablation: extract {name}: {out[name]['seconds']:.2f}s")
    finally:
        con.close()
    return out


def sync_without(seeded: Seeded, workdir: Path, what: str) -> dict[str, Any]:
    """One ampkit sync with one optimisation taken back: `slices` (one window at once) or `held`;
    or `sending` made free (every event "accepted" at once, no HTTP): what the warehouse side
    alone allows, the ceiling of any tuning of the sender."""
    path = fresh_copy(seeded.path, workdir, "ablation.duckdb")
    with contextlib.ExitStack() as stack:
        if what == "slices":
            stack.enter_context(_patched(warehouses.DuckDBWarehouse, "slice_rows", 10**12))
            stack.enter_context(_patched(warehouses.DuckDBWarehouse, "slice_bytes", 10**15))
        elif what == "held":
            stack.enter_context(_patched(warehouses.DuckDBWarehouse, "held", lambda self, **_: contextlib.nullcontext()))
        elif what == "sending":
            stack.enter_context(_patched(senders.Sender, "send", lambda self, chunk: senders.SendResult(accepted=len(chunk))))
        with sandbox(workdir) as box:
            with Timed(box.pid) as timed:
                result = sync.run(config(duck_url(path), box.url, gzip=False), progress="none")
    return {"seconds": timed.seconds, "rows": result.extracted, "rows_per_s": result.extracted / timed.seconds}


def recon_looker_per_row(path: Path, params: dict[str, Any]) -> float:
    """The old recon_looker (a time-zone conversion per row), for the reconciliation ablation."""
    import duckdb
    statement = sqlfiles.duckdb_statements(_write_old(path.parent))[-1]
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        t = time.perf_counter()
        con.sql(statement, params=warehouses._used_params(statement, params)).to_arrow_table()
        return time.perf_counter() - t
    finally:
        con.close()


def _write_old(directory: Path) -> str:
    p = directory / "recon_looker_per_row.sql"
    p.write_text(RECON_LOOKER_PER_ROW)
    return str(p)
