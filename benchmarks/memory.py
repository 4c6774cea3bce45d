"""Peak RSS of one sync, each in a fresh process, the sandbox in another.

    python benchmarks/memory.py --worker WAREHOUSE.duckdb SANDBOX_URL   # one sync, prints JSON

The parent (run.py) seeds and stages each size once, then for every run copies the warehouse,
starts a fresh sandbox process and a fresh worker process; the worker runs `sync.run` over the
whole staged backlog and reports its peak resident set: the kernel's high-water mark of its
own address space (`VmHWM` in /proc/self/status). `ru_maxrss` is reported too, but Linux
carries it over from the parent across fork and exec, so a child of a large parent (run.py
holding request bodies) shows the parent's size there; VmHWM starts afresh at exec.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Seeded, config, duck_url, fresh_copy, log, median, sandbox, seeded_warehouse  # noqa: E402


def worker(warehouse: str, url: str, slice_rows: int | None = None) -> dict[str, Any]:
    from ampkit import sync
    from ampkit import warehouse as warehouses
    if slice_rows:
        warehouses.DuckDBWarehouse.slice_rows = slice_rows  # only for the ablation that takes slicing back
        warehouses.DuckDBWarehouse.slice_bytes = 10**15
    started = time.perf_counter()
    result = sync.run(config(duck_url(warehouse), url), progress="none")
    seconds = time.perf_counter() - started
    hwm = 0
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) // 1024
    return {"status": result.status, "rows": result.extracted, "accepted": result.accepted, "seconds": seconds,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vmhwm_mb": hwm}


def one_run(seeded: Seeded, workdir: Path, slice_rows: int | None = None) -> dict[str, Any]:
    path = fresh_copy(seeded.path, workdir, "memory.duckdb")
    with sandbox(workdir) as box:
        extra = [str(slice_rows)] if slice_rows else []
        done = subprocess.run([sys.executable, __file__, "--worker", str(path), box.url, *extra],
                              capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["status"] != "ok":
        raise RuntimeError(f"memory worker sync ended {out['status']}")
    return out


def measure(sizes: list[int], repeats: dict[int, int], workdir: Path, cache: dict[int, Seeded]) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    for size in sizes:
        seeded = seeded_warehouse(size, workdir, cache)
        runs = []
        for i in range(repeats.get(size, 1)):
            r = one_run(seeded, workdir)
            runs.append(r)
            log(f"memory: {seeded.staged:,} rows -> peak RSS {r['vmhwm_mb']:.0f} MB ({r['seconds']:.1f}s)")
        out["sizes"][size] = {"rows": seeded.staged, "peak_mb": median([r["vmhwm_mb"] for r in runs]),
                              "maxrss_mb": median([r["maxrss_mb"] for r in runs]),
                              "vmhwm_mb": median([r["vmhwm_mb"] for r in runs]),
                              "seconds": median([r["seconds"] for r in runs]), "runs": runs}
    return out


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) == 5 else None)))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
