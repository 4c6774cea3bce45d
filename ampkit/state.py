"""The sync's state in the warehouse: the lease, the watermark, the run ledger, the dead letters.

All of it lives in warehouse tables (BigQuery in production), so a wiped container loses
nothing and two hosts cannot run the sync at once.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import uuid
from typing import Any, Iterable

import pyarrow as pa

from ampkit.errors import LockedError

logger = logging.getLogger(__name__)

LEASE_NAME = "hourly_sync"
DEAD_LETTER_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("id", pa.int64()), ("insert_id", pa.string()), ("name", pa.string()),
    ("event_time", pa.timestamp("us", tz="UTC")), ("loaded_at", pa.timestamp("us", tz="UTC")),
    ("reason", pa.string()), ("detail", pa.string()), ("event", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")), ("replayed_run_id", pa.string()),
])
RULE_SCHEMA = pa.schema([("run_id", pa.string()), ("name", pa.string()), ("source", pa.string()),
                         ("action", pa.string()), ("rule", pa.string()), ("reason", pa.string())])


def new_run_id(now: dt.datetime) -> str:
    """A sortable, unique run id: the UTC start time plus a random suffix."""
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def holder_name(run_id: str) -> str:
    return f"{run_id}@{socket.gethostname()}:{os.getpid()}"


def wall_clock() -> dt.datetime:
    # Leases use the real clock even when a run's clock is overridden: they guard real processes.
    return dt.datetime.now(dt.timezone.utc)


def acquire(warehouse, holder: str, seconds: int) -> None:
    """Take the lease for `seconds` (I/O); raises LockedError naming the live holder."""
    now = wall_clock()
    expires_at = now + dt.timedelta(seconds=seconds)
    table = warehouse.run("lease_acquire", {"name": LEASE_NAME, "holder": holder, "now": now,
                                            "expires_at": expires_at})
    rows = table.to_pylist()
    if rows and rows[0]["holder"] != holder and is_dead(rows[0]["holder"]):
        logger.warning("lease holder %s is gone; taking over", rows[0]["holder"])
        warehouse.run("lease_break", {"name": LEASE_NAME, "holder": rows[0]["holder"]})
        return acquire(warehouse, holder, seconds)
    if not rows or rows[0]["holder"] != holder:
        current = rows[0] if rows else {"holder": "unknown", "expires_at": None}
        raise LockedError(f"another sync holds the lease ({current['holder']}, until {current['expires_at']})",
                          current["holder"], current["expires_at"])
    warehouse.note_lease(LEASE_NAME, holder, expires_at)


def renew(warehouse, holder: str, seconds: int) -> None:
    """Extend our lease (I/O); raises LockedError when another run took it meanwhile.

    A run that stalled past its lease (a GC pause, a stopped VM) must stop rather than record
    a window the run that took over is sending too.
    """
    expires_at = wall_clock() + dt.timedelta(seconds=seconds)
    rows = warehouse.run("lease_renew", {"name": LEASE_NAME, "holder": holder, "expires_at": expires_at}).to_pylist()
    if not rows or rows[0]["holder"] != holder:
        lost(rows[0] if rows else None)
    warehouse.note_lease(LEASE_NAME, holder, expires_at)


def lost(current: dict | None) -> None:
    """Raise the error of a run that lost its lease to `current` (a lease row, or None)."""
    who = current["holder"] if current else "nobody"
    raise LockedError(f"this run lost the sync lease (now held by {who}): it stalled past lease_seconds; it stops "
                      "without recording its window, which the next run sends again (insert_ids make that safe)",
                      who, current["expires_at"] if current else None)


def check_held(warehouse, holder: str) -> None:
    """Raise LockedError unless `holder` still holds the lease (I/O)."""
    rows = warehouse.run("lease_holder", {"name": LEASE_NAME}).to_pylist()
    if not rows or rows[0]["holder"] != holder:
        lost(rows[0] if rows else None)


def is_dead(holder: str) -> bool:
    """True when `holder` ran on this host and its process is gone (a crashed run)."""
    try:
        host, pid = holder.rsplit("@", 1)[1].rsplit(":", 1)
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, IndexError, PermissionError, OSError):
        return False
    return False


def release(warehouse, holder: str) -> None:
    """Give the lease back (I/O)."""
    warehouse.run("lease_release", {"name": LEASE_NAME, "holder": holder})


def watermark(warehouse) -> dt.datetime | None:
    """The loaded_at up to which every staged row has an outcome, or None before the first run (I/O)."""
    value = warehouse.run("watermark").column("watermark")[0].as_py()
    return value.astimezone(dt.timezone.utc) if value else None


@dataclasses.dataclass
class RunRecord:
    """One row of the run ledger."""

    run_id: str
    started_at: dt.datetime
    status: str = "running"
    mode: str = "sync"
    finished_at: dt.datetime | None = None
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    extracted: int = 0
    sent: int = 0
    accepted: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    data_map_version: str = ""
    duration_seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    notebook_path: str = ""
    host: str = dataclasses.field(default_factory=socket.gethostname)
    error: str = ""

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "started_at": self.started_at, "finished_at": self.finished_at or self.started_at,
            "status": self.status, "mode": self.mode,
            "window_start": self.window_start or self.started_at, "window_end": self.window_end or self.started_at,
            "extracted": self.extracted, "sent": self.sent, "accepted": self.accepted,
            "filtered_total": sum(self.filtered.values()), "rejected_total": sum(self.rejected.values()),
            "filtered": json.dumps(self.filtered, sort_keys=True), "rejected": json.dumps(self.rejected, sort_keys=True),
            "data_map_version": self.data_map_version, "duration_seconds": float(self.duration_seconds),
            "requests": self.requests, "retries": self.retries, "notebook_path": self.notebook_path,
            "host": self.host, "error": self.error,
        }


def start_run(warehouse, record: RunRecord) -> None:
    """Write the ledger row of a starting run; earlier runs left 'running' become 'interrupted' (I/O)."""
    warehouse.run("runs_start", {"run_id": record.run_id, "started_at": record.started_at, "mode": record.mode,
                                 "host": record.host, "data_map_version": record.data_map_version,
                                 "notebook_path": record.notebook_path})


def finish_run(warehouse, record: RunRecord) -> None:
    """Replace the run's ledger row with its final state (I/O)."""
    warehouse.run("runs_finish", record.params())


def record_run(warehouse, record: RunRecord) -> None:
    """Write a complete ledger row for a run that never started work, e.g. skipped_locked (I/O)."""
    finish_run(warehouse, record)


def write_rules(warehouse, run_id: str, decisions: Iterable[tuple[str, str | None, str, str, str | None]]) -> None:
    """Write the data map's decision per (name, source) of the window (I/O)."""
    rows = [{"run_id": run_id, "name": n, "source": s, "action": a, "rule": r, "reason": why}
            for n, s, a, r, why in decisions]
    warehouse.append("ampkit_run_rules", pa.Table.from_pylist(rows, schema=RULE_SCHEMA))


def write_dead_letters(warehouse, rows: list[dict]) -> None:
    """Append dead-lettered events (I/O)."""
    if rows:
        warehouse.append("ampkit_dead_letters", pa.Table.from_pylist(rows, schema=DEAD_LETTER_SCHEMA))


def runs(warehouse, limit: int = 20) -> list[dict]:
    """The last `limit` ledger rows, newest first (I/O)."""
    return warehouse.run("runs_list", {"limit": limit}).to_pylist()
