"""Notebook overhead: the hourly-sync notebook through papermill against the same sync without it.

One seeded hour: two days are seeded, everything up to the last hour is staged an hour before
NOW and the last hour at NOW, so the hourly window (lookback 0) holds exactly that hour's rows.
Each run gets a fresh copy of the warehouse and a fresh sandbox, and syncs it one of three ways:
`ampkit.runner.run("hourly_sync")` (papermill, a kernel, the executed notebook and its HTML
report written, as the scheduled job does), `python -m ampkit sync` (the CLI, a fresh process)
and `sync.run` in-process (the library).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import API_KEY, NOW, SECRET_KEY, config, duck_url, fresh_copy, log, median, sandbox

from ampkit import runner, seed, stage, sync, warehouse as warehouses  # noqa: E402
from ampkit import config as configuration  # noqa: E402

RUN_NOW = NOW + dt.timedelta(minutes=5)
SETTINGS = {"settle_seconds": 0, "initial_lookback_hours": 1, "lookback_hours": 0, "export_lag_seconds": 0}


def build(path: Path, rows_per_day: int) -> int:
    """Two seeded days; all but the last hour staged at NOW - 1h, the last hour at NOW. Returns its rows."""
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()
    spec = seed.SeedSpec(start=(NOW - dt.timedelta(days=2)).date(), days=2, events_per_day=rows_per_day,
                         late_share=0.0, until=NOW)
    with warehouses.open(duck_url(path)) as wh:
        seed.fill(wh, spec)
        cfg = configuration.load({"warehouse": duck_url(path), "now": NOW}, env={}, path=os.devnull)
        stage.run(wh, cfg, NOW - dt.timedelta(hours=1))
        return stage.run(wh, cfg, NOW).staged


@contextlib.contextmanager
def environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _env(warehouse: str, url: str, workdir: Path) -> dict[str, str]:
    values = {"AMPKIT_WAREHOUSE": warehouse, "AMPKIT_AMPLITUDE_URL": url, "AMPKIT_NOW": RUN_NOW.isoformat(),
              "AMPKIT_RUNS_DIR": str(workdir / "runs"), "AMPKIT_REPORTS_DIR": str(workdir / "reports"),
              "AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_SECRET_KEY": SECRET_KEY, "AMPKIT_CONFIG": os.devnull}
    values.update({f"AMPKIT_{k.upper()}": str(v) for k, v in SETTINGS.items()})
    return values


def one_run(src: Path, workdir: Path, how: str) -> dict[str, Any]:
    path = fresh_copy(src, workdir, "notebook.duckdb")
    with sandbox(workdir) as box:
        env = _env(duck_url(path), box.url, workdir)
        started = time.perf_counter()
        if how == "notebook":
            with environment(env):
                cfg = config(duck_url(path), box.url, now=RUN_NOW, **SETTINGS)
                result = runner.run("hourly_sync", {"lookback_hours": 0, "progress": "none"}, config=cfg,
                                    log_path=str(workdir / "notebook.log"))
            ok = result.status == "ok"
        elif how == "cli":
            done = subprocess.run([sys.executable, "-m", "ampkit", "-q", "sync", "--progress", "none"], env={**os.environ, **env},
                                  cwd=str(workdir), capture_output=True, text=True, timeout=600)
            ok = done.returncode == 0
        else:
            result = sync.run(config(duck_url(path), box.url, now=RUN_NOW, **SETTINGS), progress="none")
            ok = result.status == "ok"
        seconds = time.perf_counter() - started
        ingested = box.control.stats()["events_ingested"]
    if not ok or not ingested:
        raise RuntimeError(f"notebook benchmark: the {how} run failed or sent nothing")
    return {"seconds": seconds, "accepted": ingested}


def measure(rows_per_day: int, repeats: int, workdir: Path) -> dict[str, Any]:
    src = workdir / "notebook-src.duckdb"
    hour_rows = build(src, rows_per_day)
    runs: dict[str, list[dict]] = {"notebook": [], "cli": [], "library": []}
    for i in range(repeats):
        for how in ("notebook", "cli", "library")[::1 if i % 2 == 0 else -1]:
            r = one_run(src, workdir, how)
            runs[how].append(r)
            log(f"notebook overhead: {how} {r['seconds']:.2f}s ({r['accepted']:,} events)")
    out = {"hour_rows": hour_rows, "accepted": runs["library"][0]["accepted"],
           **{how: median([r["seconds"] for r in rs]) for how, rs in runs.items()}, "runs": runs}
    out["overhead_vs_cli"] = out["notebook"] - out["cli"]
    out["overhead_vs_library"] = out["notebook"] - out["library"]
    return out
