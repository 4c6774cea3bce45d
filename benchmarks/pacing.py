"""Pacing under real limits: a backfill of heavy devices against the sandbox's per-id limits.

The input is written straight into `amplitude_events` with DuckDB's `range()`: `events` rows
spread evenly over one hour of event time, round-robin over `devices` device ids (no user id),
all staged before the run. `sync.run(config, start=, end=, yes=True)` backfills that hour
against a sandbox enforcing `eps` events per second per id over `window` seconds (Amplitude's
Batch API: 1,000 over 30 s), and the sender's pacer is told the same limit.

The lower bound: per id at most L = eps x window events in any window, so an id with n events
needs at least (ceil(n / L) - 1) windows before its last events may go; and what is left for
after the last boundary cannot go faster than the machine's floor rate (measured in the same
run). `minimum = (ceil(n / L) - 1) x window + leftover / floor rate`.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from common import NOW, Timed, config, duck_url, log, median, sandbox

from ampkit import sync, warehouse as warehouses  # noqa: E402

HOUR = dt.timedelta(hours=1)
FIRST_HOUR = NOW - 2 * HOUR


def build(path: Path, events: int, devices: int) -> None:
    """`events` staged rows of one sendable event type from `devices` devices over one hour."""
    with warehouses.open(duck_url(path)) as wh:
        wh.ensure_tables()
        with wh.connect() as con:
            con.execute(f"""
                INSERT INTO amplitude_events (id, name, url, user_id, anonymous_user_id, source, argument, public_argument,
                    version, timestamp, feature_flags, cohort_id, first_source_url, last_source_url, referrer, device_id,
                    insert_id, loaded_at)
                SELECT i + 1, 'SearchSubmitted', 'https://sourcegraph.com/search', 0, 'anon-' || CAST(i % {devices} AS VARCHAR),
                       'WEB', '{{}}', '{{"source":"nav"}}', '1.0.0',
                       $first + to_microseconds(CAST(i * 3600000000 // {events} AS BIGINT)), '{{}}', DATE '2026-01-05',
                       '', '', '', 'heavy-device-' || lpad(CAST(i % {devices} AS VARCHAR), 4, '0'),
                       'backfill-' || CAST(i AS VARCHAR), $loaded
                FROM range({events}) AS r(i)""", {"first": FIRST_HOUR, "loaded": NOW - dt.timedelta(minutes=30)})


def minimum_seconds(events: int, devices: int, eps: float, window: float, floor_rate: float) -> dict[str, float]:
    per_device = math.ceil(events / devices)
    limit = eps * window
    windows = max(0, math.ceil(per_device / limit) - 1)
    leftover = (per_device - windows * limit) * devices if windows else events
    by_limits = windows * window
    return {"by_limits": by_limits, "leftover_events": leftover,
            "with_floor": by_limits + leftover / floor_rate if floor_rate else by_limits}


def one_run(workdir: Path, events: int, devices: int, eps: int, window: int, pace: bool) -> dict[str, Any]:
    path = workdir / "pacing.duckdb"
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()
    build(path, events, devices)
    with sandbox(workdir, batch_eps=eps, throttle_window_seconds=window) as box:
        cfg = config(duck_url(path), box.url, now=NOW, pace_eps_per_id=eps if pace else -1,
                     pace_window_seconds=window, throttle_hold_seconds=window, gzip=False)
        with Timed(box.pid) as timed:
            result = sync.run(cfg, start=FIRST_HOUR, end=FIRST_HOUR + HOUR, yes=True, progress="none")
        stats = box.control.stats()
    by_status = stats["requests_by_status"].get("/batch", {})
    requests = sum(by_status.values())
    throttled = by_status.get("429", 0)
    if result.status != "ok" or result.accepted != events:
        raise RuntimeError(f"pacing run: status={result.status} accepted={result.accepted} of {events}")
    return {"seconds": timed.seconds, "other_cpu": timed.other_cpu, "requests": requests, "throttled": throttled,
            "throttled_share": throttled / requests if requests else 0.0, "events_throttled": stats["events_throttled"],
            "accepted": result.accepted, "pacing": pace}


def floor_rate(workdir: Path, events: int, devices: int) -> float:
    """Events per second the machine moves for this workload's own bodies, limits lifted (best of 2 and 4 threads)."""
    import baselines
    from throughput import capture_bodies_of
    path = workdir / "pacing-floor.duckdb"
    for p in (path, Path(str(path) + ".wal")):
        if p.exists():
            p.unlink()
    build(path, events, devices)
    bodies = capture_bodies_of(lambda url: sync.run(config(duck_url(path), url, now=NOW, gzip=False, pace_eps_per_id=-1),
                                                   start=FIRST_HOUR, end=FIRST_HOUR + HOUR, yes=True, progress="none"))
    best = 0.0
    for threads in (2, 4):
        with sandbox(workdir, batch_eps=10**9) as box:
            with Timed(box.pid) as timed:
                done = baselines.floor(box.url, bodies, threads)
        best = max(best, done["accepted"] / timed.seconds)
    return best


def measure(events: int, devices: int, eps: int, window: int, repeats: int, workdir: Path,
            without_pacer: bool) -> dict[str, Any]:
    rate = floor_rate(workdir, events, devices)
    log(f"pacing: the floor moves this workload's bodies at {rate:,.0f} events/s")
    runs = []
    for i in range(repeats):
        r = one_run(workdir, events, devices, eps, window, pace=True)
        runs.append(r)
        log(f"pacing: {events:,} events / {devices} devices in {r['seconds']:.1f}s, {r['throttled']} of {r['requests']} requests 429")
    bound = minimum_seconds(events, devices, eps, window, rate)
    seconds = median([r["seconds"] for r in runs])
    out = {"events": events, "devices": devices, "eps": eps, "window": window, "floor_rate": rate,
           "seconds": seconds, "minimum": bound, "ratio": seconds / bound["with_floor"] if bound["with_floor"] else float("nan"),
           "ratio_limits_only": seconds / bound["by_limits"] if bound["by_limits"] else float("nan"),
           "requests": median([r["requests"] for r in runs]), "throttled": median([r["throttled"] for r in runs]),
           "throttled_share": median([r["throttled_share"] for r in runs]), "runs": runs}
    if without_pacer:
        r = one_run(workdir, events, devices, eps, window, pace=False)
        log(f"pacing off: {r['seconds']:.1f}s, {r['throttled']} of {r['requests']} requests 429")
        out["without_pacer"] = r
    return out
