"""Seeding: `seed.fill` writing N synthetic event_logs rows into a fresh DuckDB warehouse, wall time."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import Seeded, config, duck_url, log, median, seed_spec, NOW

from ampkit import seed, stage, warehouse as warehouses  # noqa: E402


def one_run(path: Path, rows: int) -> dict[str, Any]:
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()
    started = time.perf_counter()
    with warehouses.open(duck_url(path)) as wh:
        result = seed.fill(wh, seed_spec(rows))
    return {"seconds": time.perf_counter() - started, "rows": result.rows}


def measure(rows: int, repeats: int, workdir: Path) -> tuple[dict[str, Any], Seeded]:
    """Time `repeats` fills; the last warehouse is then staged and returned for the memory runs."""
    runs = []
    path = workdir / f"seeded-{rows}.duckdb"
    for i in range(repeats):
        r = one_run(path, rows)
        runs.append(r)
        log(f"seeding: {r['rows']:,} rows in {r['seconds']:.1f}s ({r['rows'] / r['seconds']:,.0f} rows/s)")
    with warehouses.open(duck_url(path)) as wh:
        staged = stage.run(wh, config(duck_url(path), "http://127.0.0.1:9", now=NOW), NOW).staged
    seconds = median([r["seconds"] for r in runs])
    return ({"rows": runs[-1]["rows"], "seconds": seconds, "rows_per_s": runs[-1]["rows"] / seconds, "runs": runs},
            Seeded(path, runs[-1]["rows"], staged, seconds))
