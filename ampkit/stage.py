"""The staging step: the scheduled query that loads amplitude_events from event_logs."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from ampkit import seed
from ampkit.config import Config

logger = logging.getLogger(__name__)

# How far back in event time each staging run looks for rows streamed into event_logs late
# (scheduled/amplitude_events.sql spells the same interval out).
LOOKBACK = dt.timedelta(hours=72)
# A sub-hourly run looks back this far only, except the first run of each hour, which sweeps the
# whole LOOKBACK: at five minutes, twelve sweeps an hour would read three days of event_logs each.
# A row streamed in more than this late waits at most an hour for the sweep; none is lost.
RECENT = dt.timedelta(hours=2)


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One run of the staging query: when it ran and how many rows it loaded."""

    run_time: dt.datetime
    staged: int


def run(warehouse, config: Config, run_time: dt.datetime | None = None) -> StageResult:
    """Run `amplitude_events.sql` for `run_time` (default: the config's clock); idempotent (I/O)."""
    run_time = run_time or config.clock()
    warehouse.check_table("event_logs")  # the source is the company's: never created here
    warehouse.ensure_tables()  # amplitude_events and ampkit's tables are ours to create
    warehouse.check_table("amplitude_events")
    before = _count(warehouse)
    load(warehouse, config, run_time, first=not before)
    staged = _count(warehouse) - before
    logger.info("staged rows=%d run_time=%s", staged, run_time.isoformat())
    return StageResult(run_time, staged)


def load(warehouse, config: Config, run_time: dt.datetime, first: bool = False) -> None:
    """Run the staging query alone (one job): what a sync run with `stage_in_run` does first (I/O)."""
    seed.release(warehouse, run_time)
    warehouse.run("amplitude_events", {"run_time": run_time, "amplitude_start_date": config.amplitude_start_date,
                                       "stage_since": since(config, run_time, first)})


def since(config: Config, run_time: dt.datetime, first: bool = False) -> dt.datetime:
    """Where a staging run starts reading event_logs (pure): the Amplitude start date for the first
    load of an empty table; else the lookback, so its bytes follow new rows, not history (RECENT
    for a sub-hourly run that is not its hour's first)."""
    if first:
        return dt.datetime.combine(config.amplitude_start_date, dt.time(), dt.timezone.utc)
    interval = config.sync_interval_minutes
    if interval < 60 and run_time.minute >= interval:
        return run_time - RECENT
    return run_time - LOOKBACK


def replay(warehouse, config: Config, start: dt.datetime, end: dt.datetime) -> list[StageResult]:
    """Run the staging query once an hour from `start` to `end`, as the schedule would have (I/O)."""
    results = []
    t = start
    while t <= end:
        results.append(run(warehouse, config, t))
        t += dt.timedelta(hours=1)
    return results


def _count(warehouse) -> int:
    return int(warehouse.run("stage_count").column("staged")[0].as_py())
