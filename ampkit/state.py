"""The sync's state in the warehouse: the lease, the watermark, the run ledger, the dead letters.

All of it lives in warehouse tables (BigQuery in production), so a wiped container loses
nothing and two hosts cannot run the sync at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from typing import Any

import pyarrow as pa

from ampkit import sql as sqlfiles
from ampkit.counts import Counts
from ampkit.errors import AmpkitError, LockedError, SchemaError

logger = logging.getLogger(__name__)

LEASE_NAME = "hourly_sync"


def new_run_id(now: dt.datetime) -> str:
    """A sortable, unique run id: the UTC start time plus a random suffix."""
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def holder_name(run_id: str) -> str:
    return f"{run_id}@{socket.gethostname()}:{os.getpid()}"


def operator() -> str:
    """Who is running ampkit, for approvals: the login name, or 'unknown' in a bare container."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def wall_clock() -> dt.datetime:
    # Leases use the real clock even when a run's clock is overridden: they guard real processes.
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Begun:
    """What a run's first job found: who holds the lease now, and where the watermark stands."""

    holder: str | None
    expires_at: dt.datetime | None
    watermark: dt.datetime | None
    schema_version: str | None
    kept_from: dt.datetime | None = None  # rows loaded earlier have only their counts (roll-up)
    deployed_map: str | None = None       # the data map version the open window was last synced with
    map_approved: bool = False            # whether this run's data map version was approved


def schema_version() -> str:
    """The version of ampkit's state tables: a digest of the file that creates them."""
    return hashlib.sha256(sqlfiles.text("schema_state").encode()).hexdigest()[:12]


def ensure_schema(warehouse) -> None:
    """Create ampkit's state tables (idempotent DDL) and remember the schema's version (I/O)."""
    warehouse.ensure_state()
    warehouse.run("schema_mark", {"schema_version": schema_version(), "now": wall_clock()})


def begin(warehouse, record: "RunRecord", holder: str, seconds: int) -> Begun:
    """A run's first job (I/O): take the lease for `seconds` and open the run's ledger row, both only
    if the lease is free, and read the watermark. Creates the state tables on the first run, and
    again only when their schema changed; raises LockedError naming the live holder."""
    now = wall_clock()
    expires_at = now + dt.timedelta(seconds=seconds)
    params = {"name": LEASE_NAME, "holder": holder, "now": now, "expires_at": expires_at,
              "run_id": record.run_id, "started_at": record.started_at, "mode": record.mode, "host": record.host,
              "data_map_version": record.data_map_version, "notebook_path": record.notebook_path}
    try:
        rows = warehouse.run("run_begin", params).to_pylist()
    except SchemaError:
        ensure_schema(warehouse)  # the first run on this warehouse
        rows = warehouse.run("run_begin", params).to_pylist()
    holders = {r["holder"] for r in rows}
    row = rows[0] if rows else {}
    utc = {k: row[k].astimezone(dt.timezone.utc) if row.get(k) else None for k in ("watermark", "kept_from")}
    begun = Begun(row.get("holder") if len(holders) == 1 else None, row.get("expires_at"),
                  utc["watermark"], row.get("schema_version"), utc["kept_from"],
                  row.get("deployed_map"), bool(row.get("map_approved")))
    if begun.holder != holder and begun.holder and is_dead(begun.holder):
        logger.warning("lease holder %s is gone; taking over", begun.holder)
        warehouse.run("lease_break", {"name": LEASE_NAME, "holder": begun.holder})
        return begin(warehouse, record, holder, seconds)
    if begun.holder != holder:
        raise LockedError(f"another sync holds the lease ({begun.holder or 'unknown'}, until {begun.expires_at})",
                          begun.holder or "unknown", begun.expires_at)
    warehouse.note_lease(LEASE_NAME, holder, expires_at)
    if begun.schema_version != schema_version():
        ensure_schema(warehouse)  # tables made by an older ampkit: new tables and columns, once
    return begun


def renew(warehouse, holder: str, seconds: int) -> dt.datetime:
    """Extend our lease (I/O); raises LockedError when another run took it meanwhile.

    A run that stalled past its lease (a GC pause, a stopped VM) must stop rather than record
    a window the run that took over is sending too.
    """
    expires_at = wall_clock() + dt.timedelta(seconds=seconds)
    rows = warehouse.run("lease_renew", {"name": LEASE_NAME, "holder": holder, "expires_at": expires_at}).to_pylist()
    if len(rows) != 1 or rows[0]["holder"] != holder:
        lost(rows[0] if rows else None)
    warehouse.note_lease(LEASE_NAME, holder, expires_at)
    return expires_at


class Lease:
    """The lease of a running run, renewed on a timer whatever the run is doing (a long send, a
    backfill planning its windows), so it expires only when the run is stuck or gone.

    A renewal that finds the lease taken marks it lost; the run checks `held()` between batches and
    stops. `quiet()` keeps renewals out while the run itself writes the lease row (its checkpoint
    renews it inside the transaction): two writers of one row would make that transaction abort.
    """

    def __init__(self, warehouse, holder: str, seconds: int):
        self.warehouse, self.holder, self.seconds = warehouse, holder, seconds
        self.expires_at = wall_clock() + dt.timedelta(seconds=seconds)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lost: LockedError | None = None
        self._thread = threading.Thread(target=self._renew_forever, name="ampkit-lease", daemon=True)

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._lock:
            pass  # a renewal under way finishes before the run records itself and lets go
        self._thread.join(timeout=5)

    def _renew_forever(self) -> None:
        interval = max(self.seconds / 3, 0.05)
        while not self._stop.wait(interval):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    self.expires_at = renew(self.warehouse, self.holder, self.seconds)
                except LockedError as exc:
                    self._lost = exc
                    return
                except AmpkitError as exc:  # a blip: the next tick tries again, well before expiry
                    logger.warning("the lease could not be renewed (%s); trying again", exc)

    def held(self) -> None:
        """Raise LockedError if a renewal found the lease taken by another run."""
        if self._lost is not None:
            raise self._lost

    @contextlib.contextmanager
    def quiet(self):
        with self._lock:
            yield
        self.held()


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


def position(warehouse) -> tuple[dt.datetime | None, dt.datetime | None, str | None]:
    """Where the sync stands, in one query (I/O): the watermark (the loaded_at up to which every
    staged row has an outcome), where row-level outcomes begin (rows loaded earlier have only
    their counts) and the deployed data map version; each None until there is one."""
    row = warehouse.run("watermark").to_pylist()[0]
    mark, kept = (row[k].astimezone(dt.timezone.utc) if row[k] else None for k in ("watermark", "kept_from"))
    return mark, kept, row["deployed_map"]


def watermark(warehouse) -> dt.datetime | None:
    """The watermark, or None before the first run (I/O)."""
    return position(warehouse)[0]


def kept_from(warehouse) -> dt.datetime | None:
    """Where row-level outcomes begin, or None before the first roll-up (I/O)."""
    return position(warehouse)[1]


@dataclasses.dataclass
class RunRecord(Counts):
    """One row of the run ledger."""

    run_id: str
    started_at: dt.datetime
    status: str = "running"
    mode: str = "sync"
    finished_at: dt.datetime | None = None
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    data_map_version: str = ""
    duration_seconds: float = 0.0
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


def finish(warehouse, record: RunRecord, holder: str) -> None:
    """A run's last job (I/O): its ledger row replaced by its final state, its working rows cleared,
    the lease given back. Also how a run that never got the lease records itself (skipped)."""
    warehouse.run("run_finish", {**record.params(), "name": LEASE_NAME, "holder": holder})


@dataclasses.dataclass(frozen=True)
class RollUp:
    """What a roll-up of row outcomes did: rows loaded before `kept_from` now have only their counts."""

    kept_from: dt.datetime
    days: int
    blocked: str = ""  # why it stopped short of the day it aimed for

    def __str__(self) -> str:
        text = f"row outcomes kept from {self.kept_from:%Y-%m-%d} ({self.days} day(s) rolled up)"
        return f"{text}; {self.blocked}" if self.blocked else text


def rollup_target(config, now: dt.datetime, watermark: dt.datetime | None, kept_from: dt.datetime | None) -> dt.datetime | None:
    """The day row outcomes are due to be kept from, or None when nothing is due (pure).

    Older than `outcome_retention_days`, and before the lookback behind the watermark, whichever is
    earlier: rows the hourly run may still read back over keep their outcomes."""
    if not config.outcome_retention_days or watermark is None:
        return None
    edge = min(now - dt.timedelta(days=config.outcome_retention_days),
               watermark - dt.timedelta(hours=config.lookback_hours))
    target = edge.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return target if kept_from is None or kept_from < target else None


def rollup_until(days: list[dict], target: dt.datetime) -> tuple[dt.datetime, str]:
    """How far a roll-up may go: up to `target`, or to the first loaded day with a staged row
    that has no outcome (only the row-level table can say which row that is) (pure)."""
    for day in days:
        if day["without_outcome"]:
            until = dt.datetime.combine(day["day"], dt.time(), dt.timezone.utc)
            return min(until, target), (f"stopped at {day['day']}: {day['without_outcome']:,} rows loaded that day "
                                        f"have no outcome yet (held by the data map, or never synced: "
                                        f"`ampkit sync --start {day['day']}` sends them)")
    return target, ""


def roll_up(warehouse, run_id: str, kept_from: dt.datetime | None, target: dt.datetime, now: dt.datetime) -> RollUp:
    """Roll up row outcomes loaded before `target` into their 15-minute counts (I/O, two jobs).

    Call it holding the lease: it rewrites ampkit_outcome_counts, which runs append to."""
    start = kept_from or dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    window = {"kept_from": start, "rollup_before": target}
    days = warehouse.run("outcomes_rollup_plan", window).to_pylist()
    until, blocked = rollup_until(days, target)
    if until <= start:
        return RollUp(start, 0, blocked)
    warehouse.run("outcomes_rollup", {"kept_from": start, "rollup_before": until, "run_id": run_id, "now": now})
    rolled = sum(1 for d in days if dt.datetime.combine(d["day"], dt.time(), dt.timezone.utc) < until)
    return RollUp(until, rolled, blocked)


RULE_COLUMNS = ("key_names", "key_sources", "key_actions", "key_rules", "key_reasons")
REJECT_COLUMNS = ("id", "insert_id", "name", "event_time", "loaded_at", "reason", "detail", "event")
REJECT_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("id", pa.int64()), ("insert_id", pa.string()), ("name", pa.string()),
    ("event_time", pa.timestamp("us", tz="UTC")), ("loaded_at", pa.timestamp("us", tz="UTC")),
    ("reason", pa.string()), ("detail", pa.string()), ("event", pa.string()),
])
# Rejected rows travel to the checkpoint as query parameters up to this size; more go to
# ampkit_rejects by a load job first (BigQuery takes requests of at most 10 MB).
REJECTS_AS_PARAMETERS_BYTES = 1_000_000


def rule_params(decisions: list[tuple[str, str | None, str, str, str | None]]) -> dict[str, list[str]]:
    """The data map's decisions per (name, source) as sync_extract.sql's parallel arrays ('' for NULL) (pure)."""
    columns = list(zip(*decisions)) if decisions else [()] * 5
    return {param: [v if v is not None else "" for v in values] for param, values in zip(RULE_COLUMNS, columns)}


def reject_params(warehouse, run_id: str, rejects: list[dict]) -> dict[str, list]:
    """A slice's rejected rows as sync_finalize.sql's parallel arrays; too many for a request's
    parameters go to ampkit_rejects first, and the arrays are then empty (I/O)."""
    size = sum(len(r.get("event") or "") + len(r.get("detail") or "") + 200 for r in rejects)
    if size > REJECTS_AS_PARAMETERS_BYTES:
        rows = [{"run_id": run_id, **{c: r.get(c) for c in REJECT_COLUMNS}} for r in rejects]
        warehouse.append("ampkit_rejects", pa.Table.from_pylist(rows, schema=REJECT_SCHEMA))
        rejects = []

    def text(value) -> str:
        if value is None:
            return ""
        return value.isoformat() if isinstance(value, dt.datetime) else str(value)
    return {"reject_ids": [int(r["id"]) for r in rejects],
            **{f"reject_{c}s": [text(r.get(c)) for r in rejects]
               for c in ("insert_id", "name", "event_time", "loaded_at", "reason", "detail", "event")}}


LAG_COLUMNS = ("lag_events", "lag_event_p50", "lag_event_p95", "lag_event_max", "lag_loaded_p50", "lag_loaded_p95",
               "lag_loaded_max", "newest_event_at")


def lag_by_hour(warehouse, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Per event hour in [since, until): events and p50/p95/max seconds to Amplitude over every run (I/O)."""
    return warehouse.run("lag_hours", {"since": since, "until": until}).to_pylist()


def runs(warehouse, limit: int = 20) -> list[dict]:
    """The last `limit` ledger rows, newest first, each with the lag of what it accepted and the age
    of its newest accepted event when it finished (two queries) (I/O)."""
    rows = warehouse.run("runs_list", {"limit": limit}).to_pylist()
    if not rows:
        return rows
    since = min(r["started_at"] for r in rows)
    lags = {r["run_id"]: r for r in warehouse.run("lag_runs", {"since": since}).to_pylist()}
    for r in rows:
        found = lags.get(r["run_id"], {})
        r.update({c: found.get(c) for c in LAG_COLUMNS})
        newest, done = r["newest_event_at"], r["finished_at"]
        r["newest_age_seconds"] = (done - newest).total_seconds() if newest and done else None
    return rows
