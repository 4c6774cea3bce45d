"""How fast the sandbox ingests: 2,000-event /batch bodies over keep-alive connections.

Starts the sandbox in a subprocess (on disk by default, as the demo runs it), pre-serializes
bodies with unique insert_ids (so nothing is deduplicated away), posts them from a couple of
threads over `requests.Session`s, checks every answer is 200 with all events ingested, and
prints a JSON result on stdout (a human summary goes to stderr).

The machine has two cores, shared with whatever else runs; the result says how much CPU
other processes used during the timed part (`other_processes_cpu_seconds`), since that is
what makes two runs differ. `--repeat N` runs N times on fresh sandboxes and reports each.

    python benchmarks/sandbox_ingest.py --quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ampkit.sandbox import SandboxConfig, spawn  # noqa: E402
from common import busy_cpu_seconds, cpu_seconds_of  # noqa: E402  (benchmarks/common.py)

API_KEY = "benchmark-api-key"
SECRET_KEY = "benchmark-secret-key"
EVENTS_PER_BODY = 2000
# Enough distinct ids that no device or user nears the 1,000 EPS batch limit.
USERS = 20_000
DEVICES = 25_000


def make_body(body_index: int, run_id: str) -> bytes:
    base_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    events = []
    for i in range(EVENTS_PER_BODY):
        n = body_index * EVENTS_PER_BODY + i
        events.append({
            "user_id": f"user-{n % USERS:06d}",
            "device_id": f"device-{n % DEVICES:06d}",
            "event_type": f"Benchmark Event {n % 40}",
            "time": base_ms + n * 7,
            "insert_id": f"{run_id}-{n:010d}",
            "platform": "Web",
            "library": "ampkit-benchmark/1",
            "event_properties": {"plan": "pro", "step": n % 13, "path": "/app/dashboard", "ok": True},
            "user_properties": {"country": "DE", "tier": n % 3},
        })
    return orjson.dumps({"api_key": API_KEY, "events": events})


def post_all(url: str, bodies: list[bytes], threads: int) -> tuple[float, int, list[str]]:
    """Post every body once, spread over `threads` keep-alive sessions; returns (seconds, events, errors)."""
    lock = threading.Lock()
    next_index = [0]
    ingested = [0]
    errors: list[str] = []

    def worker() -> None:
        with requests.Session() as session:
            headers = {"Content-Type": "application/json"}
            while True:
                with lock:
                    if next_index[0] >= len(bodies):
                        return
                    body = bodies[next_index[0]]
                    next_index[0] += 1
                response = session.post(f"{url}/batch", data=body, headers=headers, timeout=60)
                answer = response.json()
                with lock:
                    if response.status_code == 200:
                        ingested[0] += answer["events_ingested"]
                    else:
                        errors.append(f"{response.status_code} {str(answer)[:200]}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started, ingested[0], errors


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_once(args: argparse.Namespace, bodies: list[bytes], warmup: list[bytes]) -> dict:
    workdir = tempfile.mkdtemp(prefix="ampkit-bench-")
    db_path = None if args.memory else os.path.join(workdir, "sandbox.duckdb")
    config = SandboxConfig(api_keys=[(API_KEY, SECRET_KEY)], db_path=db_path, export_lag_seconds=0)
    sandbox = spawn(config, log_path=os.path.join(workdir, "sandbox.log"))
    try:
        post_all(sandbox.url, warmup, args.threads)
        before = (busy_cpu_seconds(), cpu_seconds_of(sandbox.pid), own_cpu_seconds())
        seconds, ingested, errors = post_all(sandbox.url, bodies, args.threads)
        after = (busy_cpu_seconds(), cpu_seconds_of(sandbox.pid), own_cpu_seconds())
        stats = sandbox.control.stats()
    finally:
        sandbox.stop()
    machine, server, client = (b - a for a, b in zip(before, after))
    expected = len(bodies) * EVENTS_PER_BODY
    return {
        "seconds": round(seconds, 3),
        "events_per_second": round(ingested / seconds) if seconds else 0,
        "events_ingested": ingested,
        "errors": errors[:5],
        "server_cpu_seconds": round(server, 2),
        "client_cpu_seconds": round(client, 2),
        "other_processes_cpu_seconds": round(max(machine - server - client, 0.0), 2),
        "ok": not errors and ingested == expected
        and stats["events_in_store"] == expected + len(warmup) * EVENTS_PER_BODY,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer bodies (200k events)")
    parser.add_argument("--bodies", type=int, default=None, help="how many 2,000-event bodies to post")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="in-memory store instead of a DuckDB file")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh sandbox")
    parser.add_argument("--warmup-bodies", type=int, default=5)
    args = parser.parse_args()
    bodies_n = args.bodies or (100 if args.quick else 400)
    run_id = uuid.uuid4().hex[:8]

    print(f"preparing {bodies_n} bodies of {EVENTS_PER_BODY} events ...", file=sys.stderr)
    warmup = [make_body(-1 - i, run_id) for i in range(args.warmup_bodies)]
    bodies = [make_body(i, run_id) for i in range(bodies_n)]
    mean_body_bytes = sum(map(len, bodies)) / len(bodies)
    runs = []
    for n in range(args.repeat):
        run = run_once(args, bodies, warmup)
        runs.append(run)
        print(f"run {n + 1}: {run['events_per_second']:,} events/s ({bodies_n} requests x {EVENTS_PER_BODY} events, "
              f"{mean_body_bytes / 1e6:.2f} MB each, {args.threads} threads, "
              f"{'memory' if args.memory else 'duckdb-file'}; other processes used "
              f"{run['other_processes_cpu_seconds']} CPU-s meanwhile)", file=sys.stderr)
    rates = [r["events_per_second"] for r in runs]
    result = {
        "benchmark": "sandbox_ingest",
        "store": "memory" if args.memory else "duckdb-file",
        "events": bodies_n * EVENTS_PER_BODY,
        "requests": bodies_n,
        "events_per_request": EVENTS_PER_BODY,
        "mean_body_bytes": round(mean_body_bytes),
        "threads": args.threads,
        "events_per_second": max(rates),
        "events_per_second_median": round(statistics.median(rates)),
        "runs": runs,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "target_events_per_second": 200_000,
        "ok": all(r["ok"] for r in runs),
    }
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
