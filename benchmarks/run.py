"""ampkit's benchmark: every figure measured side by side in one run, written to benchmarks/RESULTS.md.

    ./run bench            # the full run (about 20-25 minutes on a 2-core machine)
    ./run bench --quick    # the same figures at small sizes, about a minute (what CI runs)
    python benchmarks/run.py --quick --output /tmp/RESULTS.md --only throughput,pacing

Everything is generated on the spot (seeded warehouses, sandboxes in their own processes), so
the command needs nothing but this checkout. Absolute numbers depend on the machine and on
what else runs on it (the CPU other processes used during each timed part is recorded);
the ratios between methods measured in the same run are the point.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import log  # noqa: E402

SECTIONS = ("throughput", "memory", "pacing", "reconcile", "seeding", "ingest", "notebook", "bigquery", "freshness", "profile")

FULL = {
    "throughput_sizes": [100_000, 1_000_000], "throughput_repeats": 3, "sdk_rows": 20_000, "sdk_tune_rows": 5_000,
    "sdk_flush_sizes": [200, 500, 1000, 2000],
    "memory_sizes": [100_000, 1_000_000, 10_000_000], "memory_repeats": {100_000: 3, 1_000_000: 3, 10_000_000: 2},
    "pacing": {"events": 2_000_000, "devices": 50, "eps": 1000, "window": 30, "repeats": 3, "without_pacer": True},
    "recon_sizes": [10_000_000, 100_000_000], "recon_repeats": 3,
    "seed_rows": 10_000_000, "seed_repeats": 3,
    "ingest_bodies": 400, "ingest_repeats": 3,
    "notebook_rows_per_day": 50_000, "notebook_repeats": 3,
    "profile_rows": 1_000_000,
    "freshness_hours": 24, "freshness_rows_per_day": 50_000,
}
QUICK = {
    "throughput_sizes": [30_000], "throughput_repeats": 1, "sdk_rows": 2_000, "sdk_tune_rows": 1_000,
    "sdk_flush_sizes": [200, 2000],
    "memory_sizes": [20_000, 100_000], "memory_repeats": {},
    "pacing": {"events": 200_000, "devices": 20, "eps": 750, "window": 10, "repeats": 1, "without_pacer": False},
    "recon_sizes": [1_000_000], "recon_repeats": 2,
    "seed_rows": 500_000, "seed_repeats": 1,
    "ingest_bodies": 40, "ingest_repeats": 1,
    "notebook_rows_per_day": 20_000, "notebook_repeats": 1,
    "profile_rows": None,
    "freshness_hours": 2, "freshness_rows_per_day": 20_000,
}
GOALS = {
    "sdk": 20.0,            # ampkit at least 20x the SDK
    "floor": 0.5,           # ampkit at least half the floor
    "memory_flat": 1.2,     # peak RSS at the largest size within 1.2x of the smallest
    "memory_mb": 500.0,
    "pacing_ratio": 1.2,    # within 1.2x the minimum
    "pacing_429": 0.01,     # under 1% of requests answered 429
    "recon_ratio": 1.5,
    "seed_seconds": 60.0,   # 10M rows
    "ingest_eps": 200_000.0,
    "freshness_p95_seconds": 600.0,  # event to Amplitude within 10 minutes at a 5-minute cadence
}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    versions = {}
    for dist in ("ampkit", "duckdb", "pyarrow", "numpy", "orjson", "msgspec", "requests", "sqlglot", "papermill",
                 "amplitude-analytics"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ampkit"], cwd=HERE.parent, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        commit += " (with uncommitted changes in ampkit/)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "versions": versions, "commit": commit,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "load_before": os.getloadavg()}


def run_sections(plan: dict[str, Any], only: set[str], workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    cache: dict[int, common.Seeded] = {}

    def section(name, fn):
        if name not in only:
            return
        log(f"== {name}")
        started = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:
            # One broken section must not throw away the others' half hour of measurements.
            log(f"section {name} failed:\n{traceback.format_exc()}")
            results.setdefault("failed_sections", []).append(name)
            return
        results[name]["section_seconds"] = time.perf_counter() - started

    def seeding_section():
        import seeding
        out, seeded = seeding.measure(plan["seed_rows"], plan["seed_repeats"], workdir)
        cache[plan["seed_rows"]] = seeded  # the memory runs reuse the last seeded warehouse of that size
        return out
    section("seeding", seeding_section)

    def throughput_section():
        import throughput
        throughput.SDK_FLUSH_SIZES = tuple(plan["sdk_flush_sizes"])
        return throughput.measure(plan["throughput_sizes"], plan["throughput_repeats"], plan["sdk_rows"],
                                  plan["sdk_tune_rows"], workdir, cache)
    section("throughput", throughput_section)

    def memory_section():
        import memory
        return memory.measure(plan["memory_sizes"], plan["memory_repeats"], workdir, cache)
    section("memory", memory_section)

    def pacing_section():
        import pacing
        p = plan["pacing"]
        return pacing.measure(p["events"], p["devices"], p["eps"], p["window"], p["repeats"], workdir, p["without_pacer"])
    section("pacing", pacing_section)

    def reconcile_section():
        import recon
        return recon.measure(plan["recon_sizes"], plan["recon_repeats"], workdir)
    section("reconcile", reconcile_section)

    def ingest_section():
        import argparse as _argparse
        import uuid

        import sandbox_ingest
        run_id = uuid.uuid4().hex[:8]
        warmup = [sandbox_ingest.make_body(-1 - i, run_id) for i in range(5)]
        bodies = [sandbox_ingest.make_body(i, run_id) for i in range(plan["ingest_bodies"])]
        runs = [sandbox_ingest.run_once(_argparse.Namespace(memory=False, threads=2), bodies, warmup)
                for _ in range(plan["ingest_repeats"])]
        if not all(r["ok"] for r in runs):
            raise RuntimeError(f"sandbox ingest: a run was not clean: {runs}")
        for r in runs:
            log(f"ingest: {r['events_per_second']:,} events/s (other processes {r['other_processes_cpu_seconds']} CPU-s)")
        return {"events": len(bodies) * sandbox_ingest.EVENTS_PER_BODY, "events_per_request": sandbox_ingest.EVENTS_PER_BODY,
                "events_per_second": common.median([r["events_per_second"] for r in runs]), "runs": runs,
                "mean_body_bytes": sum(map(len, bodies)) / len(bodies)}
    section("ingest", ingest_section)

    def notebook_section():
        import notebook
        return notebook.measure(plan["notebook_rows_per_day"], plan["notebook_repeats"], workdir)
    section("notebook", notebook_section)

    def bigquery_section():
        import bigquery
        return bigquery.measure()  # counts (jobs, bytes), the same in quick mode
    section("bigquery", bigquery_section)

    def freshness_section():
        import freshness
        return freshness.measure(plan["freshness_hours"], plan["freshness_rows_per_day"], workdir)
    section("freshness", freshness_section)

    def profile_section():
        import profiling as prof
        seeded = common.seeded_warehouse(plan["profile_rows"], workdir, cache)
        out = {"rows": seeded.staged, "phases": prof.phases(seeded, workdir), "extract_sql": prof.extract_sql(seeded, workdir)}
        for what in ("slices", "held", "sending"):
            out[f"without_{what}"] = prof.sync_without(seeded, workdir, what)
            log(f"ablation: sync without {what}: {out[f'without_{what}']['seconds']:.1f}s")
        # Memory without slices: one worker over the whole backlog as one window.
        import memory
        out["memory_without_slices"] = memory.one_run(seeded, workdir, slice_rows=10**12)
        log(f"ablation: peak RSS without slices: {out['memory_without_slices']['vmhwm_mb']:.0f} MB")
        return out
    if plan["profile_rows"]:
        section("profile", profile_section)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute (CI)")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"), help="where to write the results (markdown)")
    parser.add_argument("--only", default="", help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--workdir", default="", help="scratch directory (default: a temporary one, removed after)")
    parser.add_argument("--json", default="", help="also write the raw results as JSON here")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else FULL
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ampkit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = machine()
    try:
        results = run_sections(plan, only, workdir)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    info["seconds"] = time.perf_counter() - started
    import report
    text, table = report.render(info, plan, results, quick=args.quick, goals=GOALS)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "plan": {k: v for k, v in plan.items()}, "results": results},
                                              default=str, indent=1))
    print(table)
    print(f"\nwritten to {args.output} in {info['seconds']:.0f}s")
    if results.get("failed_sections"):
        print(f"failed sections: {', '.join(results['failed_sections'])} (see the log above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
