"""Freshness at a 5-minute cadence: a simulated day of runs, and how long events take to reach Amplitude.

The embedded warehouse is seeded with a day of traffic in which every row is committed to
event_logs after a log-normal delay (median 20 s, 5% over about four minutes, capped at 30 min)
and 1% of rows 2 to 30 hours late; a sandbox in its own process stands in for Amplitude. A fixed
clock steps through the day every 5 minutes and each step is one scheduled run with the settings
`ampkit schedule --interval-minutes 5` writes (`sync_interval_minutes=5`, `stage_in_run`): it
releases the rows whose commit time has come, stages and sends them. The lag is what ampkit
records (`ampkit_lags`: from each event's timestamp to Amplitude's acceptance, by the run's clock,
which adds the seconds each run really took), over every run but the first (which sends the
backlog before the day). Nothing lost, nothing twice: every row that arrived is staged once, every
staged row of the windows has one outcome, and Amplitude's export holds each accepted insert_id once.
"""
from __future__ import annotations

import collections
import datetime as dt
import time
from pathlib import Path
from typing import Any

from common import NOW, config, duck_url, log, sandbox

from ampkit import dashboard, lag, seed, sync, warehouse as warehouses  # noqa: E402

INTERVAL = dt.timedelta(minutes=5)
COMMIT_DELAY_SECONDS = 20.0


def measure(hours: int, rows_per_day: int, workdir: Path) -> dict[str, Any]:
    path = workdir / "freshness.duckdb"
    url = duck_url(path)
    begin = NOW - dt.timedelta(hours=hours)
    with warehouses.open(url) as wh:
        seed.fill(wh, seed.SeedSpec(start=(NOW - dt.timedelta(days=2)).date(), days=2, events_per_day=rows_per_day,
                                    dirty_share=0.005, late_share=0.01, until=NOW,
                                    commit_delay_seconds=COMMIT_DELAY_SECONDS))
    results: list[sync.SyncResult] = []
    walls: list[float] = []
    with sandbox(workdir) as box:
        def cfg(t: dt.datetime):
            return config(url, box.url, now=t, sync_interval_minutes=5, stage_in_run=True, initial_lookback_hours=1)
        results.append(sync.run(cfg(begin), progress="none"))  # the backlog before the day
        t = begin
        while t < NOW:
            t += INTERVAL
            started = time.perf_counter()
            results.append(sync.run(cfg(t), progress="none"))
            walls.append(time.perf_counter() - started)
        day = results[1:]
        with warehouses.open(url) as wh, wh.connect() as con:
            first = results[0].run_id
            histogram = collections.Counter()
            for measure_, seconds, n in con.sql(
                    f"SELECT measure, lag_seconds, SUM(row_count) FROM ampkit_lags WHERE run_id <> '{first}' "
                    "GROUP BY 1, 2").fetchall():
                histogram[(measure_, int(seconds))] += int(n)
            books = con.sql(f"""
                SELECT (SELECT COUNT(*) FROM event_logs WHERE timestamp >= TIMESTAMP '{begin:%Y-%m-%d %H:%M:%S}+00') AS arrived,
                       (SELECT COUNT(*) FROM amplitude_events WHERE timestamp >= TIMESTAMP '{begin:%Y-%m-%d %H:%M:%S}+00') AS staged,
                       (SELECT COUNT(*) FROM (SELECT id FROM amplitude_events GROUP BY id HAVING COUNT(*) > 1)) AS staged_twice,
                       (SELECT COUNT(*) FROM amplitude_events WHERE loaded_at > TIMESTAMP '{begin - dt.timedelta(hours=1):%Y-%m-%d %H:%M:%S}+00') AS in_windows,
                       (SELECT COUNT(*) FROM ampkit_deliveries) AS decided,
                       (SELECT COUNT(DISTINCT id) FROM ampkit_deliveries) AS decided_ids,
                       (SELECT COUNT(*) FROM ampkit_deliveries WHERE outcome = 'accepted') AS accepted
            """).fetchall()[0]
            waiting = con.sql(f"SELECT COUNT(*) FROM seed_late_arrivals WHERE arrive_at <= TIMESTAMP '{NOW:%Y-%m-%d %H:%M:%S}+00'").fetchall()[0][0]
        arrived, staged, staged_twice, in_windows, decided, decided_ids, accepted = books
        amp = dashboard.Dashboard(config(url, box.url))
        try:
            wall_now = dt.datetime.now(dt.timezone.utc)
            exported = amp.insert_ids(wall_now - dt.timedelta(hours=2), wall_now + dt.timedelta(hours=1))
        finally:
            amp.close()
    stored_twice = sum(1 for v in exported.values() if v > 1)
    per = {m: [(b, n) for (mm, b), n in histogram.items() if mm == m] for m in lag.MEASURES}
    out = {
        "hours": hours, "interval_minutes": 5, "runs": len(day),
        "statuses": dict(collections.Counter(r.status for r in day)),
        "events": sum(n for _, n in per["event"]),
        "p50_seconds": lag.quantile(per["event"], 50), "p95_seconds": lag.quantile(per["event"], 95),
        "p99_seconds": lag.quantile(per["event"], 99), "max_seconds": max((b for b, _ in per["event"]), default=None),
        "loaded_p95_seconds": lag.quantile(per["loaded"], 95),
        "run_wall_p50_seconds": sorted(walls)[len(walls) // 2], "run_wall_p95_seconds": sorted(walls)[int(len(walls) * 0.95)],
        "arrived": arrived, "staged": staged, "staged_twice": staged_twice, "not_yet_released": waiting,
        "rows_in_windows": in_windows, "decided": decided, "decided_twice": decided - decided_ids,
        "accepted": accepted, "exported_ids": len(exported), "stored_twice": stored_twice,
        "accepted_by_runs": sum(r.accepted for r in results),
    }
    out["nothing_lost_nothing_twice"] = (arrived == staged and staged_twice == 0 and waiting == 0
                                         and decided == decided_ids == in_windows and stored_twice == 0
                                         and accepted == len(exported) == out["accepted_by_runs"])
    log(f"freshness: {out['runs']} runs over {hours} h, p50 {out['p50_seconds']} s, p95 {out['p95_seconds']} s, "
        f"exactly once: {out['nothing_lost_nothing_twice']}")
    return out
