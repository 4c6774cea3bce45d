"""The sync at BigQuery's scale, counted on the stand-in that bills and contends like BigQuery
(tests/bigquery_standin.py) through the real google-cloud-bigquery client: jobs per hourly run,
bytes per hourly run at 1x and 10x history, and what a backfill since 2020-12-01 costs.

    python benchmarks/bigquery.py                      # this checkout
    python benchmarks/bigquery.py --ampkit /old/tree   # another checkout's ampkit (a "before")

Jobs and bytes are counts, not timings: they do not depend on the machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NOW = dt.datetime(2022, 3, 14, 12, 0, tzinfo=dt.timezone.utc)
START = dt.datetime(2020, 12, 1, tzinfo=dt.timezone.utc)
# A backfill since 2020-12-01 of this many staged rows (the "100M rows"), spread evenly.
BACKFILL_ROWS = 100_000_000
BACKFILL_UNTIL = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def _ensure(wh) -> None:
    from ampkit import state
    wh.ensure_tables()
    if hasattr(state, "ensure_schema"):
        state.ensure_schema(wh)


def _config(bq, amplitude_url: str, **overrides):
    from ampkit import config as configuration
    values = {"warehouse": bq.url(), "amplitude_url": amplitude_url, "now": NOW, "settle_seconds": 0,
              "export_lag_seconds": 0, "retry_budget_seconds": 60, "max_backoff_seconds": 0.5}
    values.update(overrides)
    return configuration.load(values)


def _rolled_up(bq, kept_from: dt.datetime) -> None:
    """The state a daily roll-up leaves (a checkout without one ignores the row): the measured
    hourly run is one of the 23 a day that have no roll-up to do."""
    bq.sql("INSERT INTO analytics.ampkit_state (key, value, run_id, updated_at) VALUES ('outcomes_kept_from', ?, 'h', ?)",
           [kept_from, NOW])


def _cost(bq, cfg, **options) -> dict[str, Any]:
    import inspect
    from ampkit import sync
    if "accept_volume" in inspect.signature(sync.run).parameters:
        # The synthetic history is sparser than the new hour, a flood to the volume guardrail:
        # accepted, so the run sends and its guardrail query is counted (a checkout without one has none).
        options.setdefault("accept_volume", ("all",))
    before = len(bq.bills)
    result = sync.run(cfg, progress="none", **options)
    bills = bq.bills[before:]
    return {"status": result.status, "extracted": result.extracted, "windows": len(result.windows),
            "jobs": len(bills), "statements": sum(b["statements"] for b in bills),
            "bytes": sum(b["bytes_processed"] for b in bills), "billed": sum(b["bytes_billed"] for b in bills),
            "loads": sum(b["kind"] == "load" for b in bills),
            "rollup_jobs": len(rollup := [b for b in bills if "roll" in b["query"].split("\n", 1)[0].lower()]),
            "rollup_bytes": sum(b["bytes_processed"] for b in rollup)}


def measure() -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from bigquery_standin import new_hour as _new_hour, running, synced_history as _history
    from ampkit import warehouse as warehouses
    from ampkit.sandbox import SandboxConfig, start
    key, secret = "benchapikey0123456789abcdefABCDEF", "benchsecret9876543210fedcbaFEDCBA"
    os.environ["AMPLITUDE_API_KEY"], os.environ["AMPLITUDE_SECRET_KEY"] = key, secret
    out: dict[str, Any] = {}
    with start(SandboxConfig(api_keys=[(key, secret)], export_lag_seconds=0)) as sandbox:
        def fresh():
            bq = running()
            standin = bq.__enter__()
            with warehouses.open(standin.url()) as wh:
                _ensure(wh)
            return bq, standin

        # Jobs per hourly run: the clock on the hour, and a real clock (seconds past it).
        for label, at in (("on_the_hour", NOW), ("real_clock", NOW + dt.timedelta(minutes=7, seconds=13))):
            ctx, bq = fresh()
            try:
                _new_hour(bq, 300, NOW - dt.timedelta(hours=2))
                _new_hour(bq, 300, NOW - dt.timedelta(hours=1), first_id=1001)
                first = _config(bq, sandbox.url, now=NOW - dt.timedelta(hours=1) + dt.timedelta(seconds=at.second + 60 * at.minute))
                _cost(bq, first)  # a first run leaves a watermark the way the clock does
                _rolled_up(bq, NOW.replace(hour=0))
                out[f"hourly_{label}"] = _cost(bq, _config(bq, sandbox.url, now=at))
            finally:
                ctx.__exit__(None, None, None)
        def with_history(days: int, kept_from: dt.datetime, **overrides) -> dict[str, Any]:
            """One hourly run after `days` of synced history, row outcomes kept from `kept_from`."""
            ctx, bq = fresh()
            try:
                _history(bq, days, 400, NOW - dt.timedelta(hours=8))
                _new_hour(bq, 300, NOW - dt.timedelta(hours=1))
                bq.sql("INSERT INTO analytics.ampkit_state (key, value, run_id, updated_at) VALUES ('watermark', ?, 'h', ?)",
                       [NOW - dt.timedelta(hours=1), NOW])
                _rolled_up(bq, kept_from)
                return {**_cost(bq, _config(bq, sandbox.url, **overrides)), "history_rows": days * 400, "days": days}
            finally:
                ctx.__exit__(None, None, None)
        # Bytes per hourly run at 1x and 10x history.
        for label, days in (("history_1x", 14), ("history_10x", 140)):
            out[label] = with_history(days, NOW.replace(hour=0))
        # A run of a 5-minute cadence that stages its own rows (issue 17): 60 new events in event_logs,
        # the run 6 minutes past the hour (a two-hour staging lookback) and 1 minute past (the hour's sweep).
        from ampkit.config import FIELDS as _fields
        if "stage_in_run" in _fields:
            def five_minute(days: int, minute: int) -> dict[str, Any]:
                ctx, bq = fresh()
                try:
                    _history(bq, days, 400, NOW - dt.timedelta(hours=8))
                    bq.sql("""INSERT INTO analytics.event_logs (id, name, source, timestamp, public_argument, device_id, insert_id)
                              SELECT id, name, source, timestamp, public_argument, device_id, insert_id FROM analytics.amplitude_events""")
                    at = NOW + dt.timedelta(minutes=minute)
                    bq.sql("""INSERT INTO analytics.event_logs (id, name, source, timestamp, public_argument, device_id)
                              SELECT 5000000 + range, 'SearchResultsQueried', 'WEB', CAST(? AS TIMESTAMPTZ) + to_microseconds(range * 5000000),
                                     '{"query":"repo:sourcegraph"}', 'device-' || CAST(range % 31 AS VARCHAR) FROM range(60)""",
                           [at - dt.timedelta(minutes=5)])
                    bq.sql("INSERT INTO analytics.ampkit_state (key, value, run_id, updated_at) VALUES ('watermark', ?, 'h', ?)", [NOW, NOW])
                    _rolled_up(bq, NOW.replace(hour=0))
                    cfg = _config(bq, sandbox.url, now=at, sync_interval_minutes=5, stage_in_run=True)
                    return {**_cost(bq, cfg), "history_rows": days * 400, "days": days}
                finally:
                    ctx.__exit__(None, None, None)
            for label, days in (("five_minute_1x", 14), ("five_minute_10x", 140)):
                out[label] = five_minute(days, 6)
            out["five_minute_sweep"] = five_minute(14, 1)
        # The first run of a day, with a day of row outcomes past retention to roll up (10 days here).
        from ampkit.config import FIELDS
        if "outcome_retention_days" in FIELDS:  # not in a checkout from before the roll-up
            for label, days in (("rollup_1x", 14), ("rollup_10x", 140)):
                out[label] = with_history(days, NOW.replace(hour=0) - dt.timedelta(days=11), outcome_retention_days=10)
        # A backfill of 3 days (72 loaded hours of 50 rows), small windows so there are several.
        ctx, bq = fresh()
        try:
            for h in range(72):
                _new_hour(bq, 50, NOW - dt.timedelta(hours=72 - h), first_id=1 + 100 * h)
            from ampkit.config import FIELDS
            cfg = _config(bq, sandbox.url, **({"slice_rows": 1000} if "slice_rows" in FIELDS else {}))
            out["backfill_3_days"] = _cost(bq, cfg, start=NOW - dt.timedelta(days=4), end=NOW)
            out["backfill_3_days_again"] = _cost(bq, cfg, start=NOW - dt.timedelta(days=4), end=NOW)
        finally:
            ctx.__exit__(None, None, None)
    out["backfill_100m"] = estimate_100m(out["backfill_3_days"])
    return out


def estimate_100m(small: dict[str, Any]) -> dict[str, Any]:
    """A backfill of BACKFILL_ROWS since 2020-12-01: the planner's own estimate when the checkout has
    one; else the per-window cost measured on the small backfill, times one window per event hour."""
    from ampkit import sync
    hours = int((BACKFILL_UNTIL - START) / dt.timedelta(hours=1))
    per_hour = BACKFILL_ROWS // hours
    if hasattr(sync, "estimate_backfill"):
        plan = [{"hour": START + dt.timedelta(hours=h), "row_count": per_hour, "text_bytes": per_hour * 600}
                for h in range(hours)]
        e = sync.estimate_backfill(sync.pack(plan, START, BACKFILL_UNTIL, 2_000_000, 4_000_000_000))
        return {"rows": e.rows, "windows": e.windows, "jobs": e.jobs, "seconds": e.seconds, "how": "the planner's estimate"}
    per_window = small["jobs"] / max(small["windows"], 1)
    jobs = int(per_window * hours)
    return {"rows": per_hour * hours, "windows": hours, "jobs": jobs, "seconds": jobs * 2.0 + per_hour * hours / 5_000,
            "how": f"{per_window:.1f} jobs per event-hour window, as measured"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ampkit", default="", help="a checkout whose ampkit to measure (default: this one)")
    parser.add_argument("--json", default="", help="write the figures here")
    args = parser.parse_args()
    if args.ampkit:
        sys.path.insert(0, str(Path(args.ampkit).resolve()))
    import ampkit
    figures = {"ampkit": str(Path(ampkit.__file__).parent), **measure()}
    text = json.dumps(figures, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
