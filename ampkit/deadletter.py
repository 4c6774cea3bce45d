"""The dead-letter table: what could not be delivered, and replaying what can be fixed."""
from __future__ import annotations

import datetime as dt
import logging

from ampkit import state, sync, warehouse as warehouses
from ampkit.config import Config

logger = logging.getLogger(__name__)


def replay(config: Config, reasons: list[str], since: dt.datetime, *, progress: str = "none",
           force: bool = False) -> sync.SyncResult | None:
    """Send again the dead letters with these reasons since `since` (I/O).

    The rows go through the normal pipeline again (data map, transform, send) from the warehouse's
    current data, so a row fixed in the warehouse is sent as fixed, and one still broken is
    dead-lettered again. Returns the backfill's SyncResult, or None when nothing matched.
    """
    run_id = "replay-" + state.new_run_id(config.clock())
    with warehouses.open(config.warehouse, location=config.bigquery_location) as wh:
        wh.ensure_state()
        span = wh.run("deadletter_range", {"reasons": list(reasons), "since": since}).to_pylist()[0]
        if span["first_loaded"] is None:
            logger.info("no dead letters match reasons=%s since=%s", reasons, since.isoformat())
            return None
        found = wh.run("deadletter_forget", {"run_id": run_id, "reasons": list(reasons), "since": since,
                                             "lookback_start": span["first_loaded"],
                                             "window_end": span["last_loaded"]}).to_pylist()[0]
    if not found["rows_to_replay"]:
        logger.info("no dead letters match reasons=%s since=%s", reasons, since.isoformat())
        return None
    start = found["first_event"].replace(minute=0, second=0, microsecond=0)
    end = found["last_event"].replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    logger.info("replaying rows=%d from=%s to=%s", found["rows_to_replay"], start.isoformat(), end.isoformat())
    return sync.run(config, start=start, end=end, yes=True, force=force, progress=progress)


def counts(config: Config, since: dt.datetime) -> list[dict]:
    """Dead letters per reason since `since`, replayed or not (I/O)."""
    with warehouses.open(config.warehouse, location=config.bigquery_location) as wh:
        wh.ensure_state()
        return wh.run("deadletter_counts", {"since": since}).to_pylist()
