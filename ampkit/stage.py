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
    seed.release(warehouse, run_time)
    before = _count(warehouse)
    # The first load of an empty staging table reads all of event_logs since the Amplitude start
    # date; every later run reads the lookback only, so its bytes follow new rows, not history.
    since = run_time - LOOKBACK if before else dt.datetime.combine(config.amplitude_start_date, dt.time(), dt.timezone.utc)
    warehouse.run("amplitude_events", {"run_time": run_time, "amplitude_start_date": config.amplitude_start_date,
                                       "stage_since": since})
    staged = _count(warehouse) - before
    logger.info("staged rows=%d run_time=%s", staged, run_time.isoformat())
    return StageResult(run_time, staged)


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
