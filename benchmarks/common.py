"""What every benchmark shares: the seeded warehouses, the sandbox, timing and CPU accounting.

All data is generated here on each run (nothing is read from a previous run), the sandbox is
always a separate process (`ampkit.sandbox.spawn`), and every timed part records how much CPU
the rest of the machine used meanwhile, since this is a 2-core machine that others share.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ampkit import config as configuration  # noqa: E402
from ampkit import seed, stage, warehouse as warehouses  # noqa: E402

API_KEY = "benchmark-api-key-0123456789"
SECRET_KEY = "benchmark-secret-key-0123456789"
# The clock of every seeded warehouse: seven days of history end here, and are staged here.
NOW = dt.datetime(2026, 1, 8, tzinfo=dt.timezone.utc)
SEED_DAYS = 7
WEEKEND_FACTOR = 0.55  # seed.generate: weekend days carry 55% of a weekday's traffic


def env() -> dict[str, str]:
    """The environment a sync reads its keys from (the benchmark's own pair, never a real one)."""
    return {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_SECRET_KEY": SECRET_KEY}


def config(warehouse: str, sandbox_url: str, **overrides: Any) -> configuration.Config:
    """A Config for a benchmark run: the warehouse, the sandbox, the seeded clock; overrides win."""
    values = {"warehouse": warehouse, "amplitude_url": sandbox_url, "now": NOW + dt.timedelta(minutes=1),
              "settle_seconds": 0, "initial_lookback_hours": 1, "export_lag_seconds": 0,
              "runs_dir": str(Path(warehouse.split(":///", 1)[-1]).parent / "runs"),
              "reports_dir": str(Path(warehouse.split(":///", 1)[-1]).parent / "reports")}
    values.update(overrides)
    return configuration.load(values, env=env(), path=os.devnull)


def duck_url(path: str | Path) -> str:
    return f"duckdb:///{path}"


def seed_spec(rows: int) -> seed.SeedSpec:
    """Seven days ending at NOW sized so that seed.fill writes about `rows` rows."""
    start = (NOW - dt.timedelta(days=SEED_DAYS)).date()
    weight = sum(WEEKEND_FACTOR if (start + dt.timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(SEED_DAYS))
    return seed.SeedSpec(start=start, days=SEED_DAYS, events_per_day=max(1, round(rows / weight)),
                         late_share=0.0, until=NOW)


@dataclasses.dataclass
class Seeded:
    """A seeded and staged warehouse file to copy for each run."""

    path: Path
    rows: int
    staged: int
    seed_seconds: float


def seeded_warehouse(rows: int, workdir: Path, cache: dict[int, Seeded] | None = None) -> Seeded:
    """Seed about `rows` rows of event_logs with seed.fill and stage them all at NOW (one load)."""
    if cache is not None and rows in cache:
        return cache[rows]
    path = workdir / f"seeded-{rows}.duckdb"
    if path.exists():
        path.unlink()
    with warehouses.open(duck_url(path)) as wh:
        result = seed.fill(wh, seed_spec(rows))
        staged = stage.run(wh, configuration.load({"warehouse": duck_url(path), "now": NOW}, env={}, path=os.devnull), NOW)
    out = Seeded(path, result.rows, staged.staged, result.seconds)
    if cache is not None:
        cache[rows] = out
    return out


def fresh_copy(src: Path, workdir: Path, name: str) -> Path:
    """A private copy of a warehouse file (a sync writes its ledger into it)."""
    dst = workdir / name
    for p in (dst, Path(str(dst) + ".wal")):
        if p.exists():
            p.unlink()
    shutil.copyfile(src, dst)
    return dst


@contextlib.contextmanager
def sandbox(workdir: Path, **settings: Any) -> Iterator[Any]:
    """A fresh sandbox in its own process (a DuckDB-file store, as the demo runs it)."""
    from ampkit.sandbox import SandboxConfig, spawn
    box = Path(tempfile.mkdtemp(prefix="sandbox-", dir=workdir))
    values = {"api_keys": [(API_KEY, SECRET_KEY)], "db_path": str(box / "sandbox.duckdb"), "export_lag_seconds": 0}
    values.update(settings)
    process = spawn(SandboxConfig(**values), log_path=str(box / "sandbox.log"))
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(box, ignore_errors=True)


def cpu_seconds_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine (all processes, all cores) has spent so far."""
    with open("/proc/stat") as handle:
        ticks = [int(v) for v in handle.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


class Timed:
    """Wall time of a block, and the CPU the machine spent outside this process and `pids` meanwhile."""

    def __init__(self, *pids: int):
        self.pids = [p for p in pids if p]
        self.seconds = 0.0
        self.other_cpu = 0.0

    def _sample(self) -> tuple[float, float, float]:
        watched = 0.0
        for pid in self.pids:
            try:
                watched += cpu_seconds_of(pid)
            except OSError:
                pass
        return busy_cpu_seconds(), own_cpu_seconds(), watched

    def __enter__(self) -> "Timed":
        self._before = self._sample()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0
        machine, own, watched = (b - a for a, b in zip(self._before, self._sample()))
        self.other_cpu = max(0.0, machine - own - watched)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def repeat(n: int, fn: Callable[[int], dict]) -> list[dict]:
    return [fn(i) for i in range(n)]
