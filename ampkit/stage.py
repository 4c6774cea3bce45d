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
# A row streamed in more than this late waits for the next hour's sweep; none is lost.
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
    before = staged_rows(warehouse)
    _query(warehouse, config, run_time, since(config, run_time, first=not before))
    staged = staged_rows(warehouse) - before
    logger.info("staged rows=%d run_time=%s", staged, run_time.isoformat())
    return StageResult(run_time, staged)


def load(warehouse, config: Config, run_time: dt.datetime, previous: dt.datetime | None = None) -> None:
    """Run the staging query (one job; one more to see whether the table is empty, before the
    first run): what a sync run with `stage_in_run` does first. `previous` is the watermark, where
    the last run that finished a window left it (I/O)."""
    first = previous is None and not staged_rows(warehouse)
    _query(warehouse, config, run_time, since(config, run_time, first, previous))


def _query(warehouse, config: Config, run_time: dt.datetime, stage_since: dt.datetime) -> None:
    seed.release(warehouse, run_time)  # the synthetic rows whose time has come (no-op elsewhere)
    warehouse.run("amplitude_events", {"run_time": run_time, "amplitude_start_date": config.amplitude_start_date,
                                       "stage_since": stage_since})


def since(config: Config, run_time: dt.datetime, first: bool = False, previous: dt.datetime | None = None) -> dt.datetime:
    """Where a staging run starts reading event_logs (pure): the Amplitude start date for the first
    load of an empty table; else the lookback, so its bytes follow new rows, not history.

    A sub-hourly run reads RECENT only, unless it is the first of its hour to stage: the hour of
    `previous` (the last run that finished, when a run stages its own rows) is an earlier one, or,
    with no such run known, its minute is within the first interval of the hour. A run skipped or
    failed at :01 therefore leaves the sweep to the next one, not to the next hour."""
    if first:
        return dt.datetime.combine(config.amplitude_start_date, dt.time(), dt.timezone.utc)
    interval = config.sync_interval_minutes
    if interval >= 60:
        return run_time - LOOKBACK
    hour = run_time.replace(minute=0, second=0, microsecond=0)
    swept = previous >= hour if previous is not None else run_time.minute >= interval
    return run_time - RECENT if swept else run_time - LOOKBACK


def replay(warehouse, config: Config, start: dt.datetime, end: dt.datetime) -> list[StageResult]:
    """Run the staging query once an hour from `start` to `end`, as the schedule would have (I/O)."""
    results = []
    t = start
    while t <= end:
        results.append(run(warehouse, config, t))
        t += dt.timedelta(hours=1)
    return results


def staged_rows(warehouse) -> int:
    """Rows in amplitude_events (answered from metadata on BigQuery) (I/O)."""
    return int(warehouse.run("stage_count").column("staged")[0].as_py())
