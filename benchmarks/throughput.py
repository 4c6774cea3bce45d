"""End-to-end sync throughput: ampkit against the SDK, a naive loop and the floor, side by side.

For each size the same seeded, staged warehouse is copied fresh for every run, and every run
gets a fresh sandbox process. ampkit runs `sync.run` (gzip off and on); the others read the same
rows and apply the same data map and transform (see baselines.py). Runs are interleaved
(method order rotates each round) so that a busy moment of the machine does not land on one
method only. Throughput is warehouse rows processed per second of wall time; all methods
process the same rows and deliver the same events, so ratios are ratios of wall time.
"""
from __future__ import annotations

import gzip as gz
from pathlib import Path
from typing import Any

import baselines
from common import Seeded, Timed, config, duck_url, fresh_copy, log, median, sandbox, seeded_warehouse

from ampkit import amplitude, sync  # noqa: E402

SDK_FLUSH_SIZES = (200, 500, 1000, 2000)


def capture_bodies_of(run) -> list[bytes]:
    """The request bodies a sync would send, serialized beforehand: `run(url)` runs it with posting replaced."""
    bodies: list[bytes] = []
    original = amplitude.Client.post

    def keep(self, events):
        bodies.append(self.body(events))
        return amplitude.Verdict("ok", 200)

    amplitude.Client.post = keep
    try:
        run("http://127.0.0.1:9")
    finally:
        amplitude.Client.post = original
    return bodies


def capture_bodies(seeded: Seeded, workdir: Path) -> list[bytes]:
    """ampkit's own request bodies for this warehouse (what the floor posts)."""
    path = fresh_copy(seeded.path, workdir, "capture.duckdb")
    return capture_bodies_of(lambda url: sync.run(config(duck_url(path), url, gzip=False, pace_eps_per_id=-1), progress="none"))


def run_ampkit(seeded: Seeded, workdir: Path, gzip: bool) -> dict[str, Any]:
    path = fresh_copy(seeded.path, workdir, "ampkit.duckdb")
    with sandbox(workdir) as box:
        cfg = config(duck_url(path), box.url, gzip=gzip)
        with Timed(box.pid) as timed:
            result = sync.run(cfg, progress="none")
        ingested = box.control.stats()["events_ingested"]
    if result.status != "ok" or ingested != result.accepted:
        raise RuntimeError(f"ampkit run not clean: status={result.status} accepted={result.accepted} sandbox={ingested}")
    return {"rows": result.extracted, "accepted": result.accepted, "seconds": timed.seconds,
            "other_cpu": timed.other_cpu, "requests": result.requests}


def run_floor(seeded: Seeded, workdir: Path, bodies: list[bytes], threads: int, compressed: bool) -> dict[str, Any]:
    with sandbox(workdir) as box:
        url = box.url
        with Timed(box.pid) as timed:
            out = baselines.floor(url, bodies, threads, gzipped=compressed)
    return {"rows": seeded.staged, "accepted": out["accepted"], "seconds": timed.seconds, "other_cpu": timed.other_cpu,
            "requests": out["requests"], "threads": threads}


def run_naive(seeded: Seeded, workdir: Path) -> dict[str, Any]:
    with sandbox(workdir) as box:
        with Timed(box.pid) as timed:
            out = baselines.naive(str(seeded.path), box.url)
    return {**out, "seconds": timed.seconds, "other_cpu": timed.other_cpu}


def run_sdk(seeded: Seeded, workdir: Path, rows: int, flush_queue_size: int) -> dict[str, Any]:
    with sandbox(workdir) as box:
        with Timed(box.pid) as timed:
            out = baselines.sdk(str(seeded.path), box.url, rows, flush_queue_size)
        ingested = box.control.stats()["events_ingested"]
    if not out["complete"] or out["accepted"] != out["tracked"]:
        raise RuntimeError(f"SDK run incomplete: {out}")
    return {**out, "sandbox_ingested": ingested, "seconds": timed.seconds, "other_cpu": timed.other_cpu,
            "flush_queue_size": flush_queue_size}


def tune_sdk(seeded: Seeded, workdir: Path, rows: int, sizes: tuple[int, ...] | None = None) -> tuple[int, list[dict]]:
    """The SDK's flush_queue_size with the best throughput on a small subset (one try each)."""
    tried = []
    for size in sizes or SDK_FLUSH_SIZES:
        r = run_sdk(seeded, workdir, rows, size)
        r["rows_per_s"] = r["rows"] / r["seconds"]
        tried.append(r)
        log(f"  SDK flush_queue_size={size}: {r['rows_per_s']:,.0f} rows/s")
    best = max(tried, key=lambda r: r["rows_per_s"])
    return best["flush_queue_size"], tried


def measure(sizes: list[int], repeats: int, sdk_rows: int, sdk_tune_rows: int, workdir: Path,
            cache: dict[int, Seeded]) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}, "sdk_rows": sdk_rows}
    for size in sizes:
        seeded = seeded_warehouse(size, workdir, cache)
        log(f"throughput: {seeded.staged:,} staged rows; capturing ampkit's request bodies for the floor")
        bodies = capture_bodies(seeded, workdir)
        zipped = [gz.compress(b, compresslevel=1) for b in bodies]
        flush, tried = tune_sdk(seeded, workdir, min(sdk_tune_rows, seeded.staged))
        methods = {
            "ampkit": lambda: run_ampkit(seeded, workdir, gzip=False),
            "ampkit_gzip": lambda: run_ampkit(seeded, workdir, gzip=True),
            # The floor is the faster of two and four posting threads, in each round.
            "floor": lambda: min((run_floor(seeded, workdir, bodies, t, False) for t in (2, 4)), key=lambda r: r["seconds"]),
            "floor_gzip": lambda: min((run_floor(seeded, workdir, zipped, t, True) for t in (2, 4)), key=lambda r: r["seconds"]),
            "naive": lambda: run_naive(seeded, workdir),
            "sdk": lambda: run_sdk(seeded, workdir, min(sdk_rows, seeded.staged), flush),
        }
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        names = list(methods)
        for i in range(repeats):
            for name in names[i % len(names):] + names[:i % len(names)]:
                r = methods[name]()
                r["rows_per_s"] = r["rows"] / r["seconds"]
                r["accepted_per_s"] = r["accepted"] / r["seconds"]
                runs[name].append(r)
                log(f"  {size:,} {name}: {r['rows_per_s']:,.0f} rows/s ({r['seconds']:.2f}s, other CPU {r['other_cpu']:.1f}s)")
        summary = {name: {"rows_per_s": median([r["rows_per_s"] for r in rs]),
                          "accepted_per_s": median([r["accepted_per_s"] for r in rs]),
                          "seconds": median([r["seconds"] for r in rs]),
                          "rows": rs[0]["rows"], "accepted": rs[0]["accepted"],
                          "other_cpu": median([r["other_cpu"] for r in rs]), "runs": rs}
                   for name, rs in runs.items()}
        out["sizes"][size] = {"staged": seeded.staged, "bodies": len(bodies),
                              "body_mb": sum(map(len, bodies)) / max(1, len(bodies)) / 1e6,
                              "gzip_ratio": sum(map(len, bodies)) / max(1, sum(map(len, zipped))),
                              "sdk_flush_queue_size": flush, "sdk_tuning": [{k: r[k] for k in ("flush_queue_size", "rows_per_s", "rows")} for r in tried],
                              "methods": summary}
    return out
