"""The hourly sync: extract -> data map -> transform -> send -> record, nothing lost, nothing twice.

`run()` is the one entry point: the CLI, the hourly notebook, the tests and the benchmarks all
call it. A run takes the lease, snapshots each window's rows that have no outcome yet, lets the
data map decide per (name, source), streams the transformed events (built in SQL) to Amplitude,
and records every row's outcome and the new watermark in one transaction. In every window
`extracted == accepted + sum(filtered) + sum(rejected)`, and the code checks it.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ampkit import amplitude, datamap as datamaps, state
from ampkit import warehouse as warehouses
from ampkit.config import Config
from ampkit.errors import AccountingError, AmpkitError, ConfigError, LockedError, SyncError, WarehouseError
from ampkit.progress import Progress
from ampkit.sender import Chunk, Sender

logger = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
# Rows per transform batch: the engine's batch and its lane-ordered copy are what Python holds at once.
STREAM_ROWS = 25_000
# A window with more staged rows than this, or more bytes of them (estimated from the text
# columns, see sync_slices.sql), is synced in slices of event time (whole minutes), each
# snapshotted, sent and recorded on its own, so a run's memory stays flat whatever the backlog.
SLICE_ROWS = 100_000
SLICE_BYTES = 50_000_000
# A slice of at least this many rows keeps the warehouse open while it is synced (`Warehouse.held`:
# one open and checkpoint instead of one per query). Smaller windows, the usual hourly run, let
# go of it between queries and are read whole before sending, so other processes (a notebook,
# `ampkit status`) get in as often as they can.
HOLD_ROWS = 10_000
# DuckDB's memory (MB) while a slice holds the warehouse, spilling to disk past it. Without a cap
# its cache of the blocks the slice's queries read grows with the tables, not with the slice.
# The cap is at least three times the slice's estimated bytes (its sorted events must fit), and
# a slice over the limits (one minute holding more) runs without it.
SLICE_MEMORY_MB = 128
SLICE_MEMORY_PER_BYTE = 3
# Events more than a day ahead of the run's clock cannot be real; Amplitude would chart them in the future.
FUTURE_TOLERANCE = dt.timedelta(days=1)
MAX_PROPERTIES_BYTES = 32_768
# Amplitude stores event and user properties nested at most 40 levels deep.
MAX_PROPERTIES_DEPTH = 40


def depth_pattern(levels: int) -> str:
    """A regex matching one balanced JSON bracket sequence (brackets only) nested at most `levels` deep.

    RE2 has no recursion, so the nesting is spelled out: each level wraps any number of the one below.
    """
    pattern = r"[\[{][\]}]"
    for _ in range(levels - 1):
        pattern = r"[\[{](?:" + pattern + r")*[\]}]"
    return "^" + pattern + "$"


@dataclasses.dataclass
class WindowResult:
    """One window of a run: its bounds and where each of its rows ended."""

    window_start: dt.datetime
    window_end: dt.datetime
    extracted: int = 0
    sent: int = 0
    accepted: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    requests: int = 0
    retries: int = 0

    def check(self) -> None:
        """Raise AccountingError unless every extracted row has exactly one outcome."""
        total = self.accepted + sum(self.filtered.values()) + sum(self.rejected.values())
        if total != self.extracted:
            raise AccountingError(
                f"window {self.window_start.isoformat()}..{self.window_end.isoformat()}: extracted {self.extracted} "
                f"!= accepted {self.accepted} + filtered {sum(self.filtered.values())} + rejected {sum(self.rejected.values())}")


@dataclasses.dataclass
class SyncResult:
    """The result of one run, as `ampkit sync --json` prints it."""

    status: str                     # ok | skipped_locked | dry_run | failed
    run_id: str
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    extracted: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    sent: int = 0
    accepted: int = 0
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    data_map_version: str = ""
    duration_seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    windows: list[WindowResult] = dataclasses.field(default_factory=list)
    request_log: list[dict] = dataclasses.field(default_factory=list)
    samples: list[dict] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    error: str = ""

    def add(self, w: WindowResult) -> None:
        self.windows.append(w)
        self.window_start = self.window_start or w.window_start
        self.window_end = w.window_end
        _absorb(self, w)

    def to_dict(self, details: bool = True) -> dict[str, Any]:
        """Plain JSON-able values; per-window details nested when there are several windows."""
        def iso(t):
            return t.isoformat() if t else None
        out = {
            "status": self.status, "run_id": self.run_id,
            "window_start": iso(self.window_start), "window_end": iso(self.window_end),
            "extracted": self.extracted, "filtered": dict(sorted(self.filtered.items())), "sent": self.sent,
            "accepted": self.accepted, "rejected": dict(sorted(self.rejected.items())),
            "data_map_version": self.data_map_version, "duration_seconds": round(self.duration_seconds, 3),
            "requests": self.requests, "retries": self.retries,
        }
        if self.error:
            out["error"] = self.error
        if self.warnings:
            out["warnings"] = self.warnings
        if self.samples:
            out["samples"] = self.samples
        if details and len(self.windows) > 1:
            out["windows"] = [{**{k: v for k, v in dataclasses.asdict(w).items()},
                               "window_start": iso(w.window_start), "window_end": iso(w.window_end)}
                              for w in self.windows]
        return out


def hourly_windows(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split (start, end] at whole UTC hours (pure)."""
    out, a = [], start
    while a < end:
        b = min(a.replace(minute=0, second=0, microsecond=0) + HOUR, end)
        out.append((a, b))
        a = b
    return out


def run(config: Config, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
        dry_run: bool = False, force: bool = False, yes: bool = True, notebook_path: str = "",
        progress: str = "auto", warehouse: warehouses.Warehouse | None = None) -> SyncResult:
    """Run the sync once (I/O): the open window from the watermark, or a backfill [start, end) of event time.

    Returns the SyncResult; `status` is `skipped_locked` when another run holds the lease.
    Raises SyncError (the run is recorded as failed, the watermark unmoved) when events are left
    undelivered, and ConfigError for bad settings.
    """
    _use_jemalloc()
    own = warehouse is None
    wh = warehouse or warehouses.open(config.warehouse, location=config.bigquery_location,
                                      storage_api=config.bigquery_storage_api)
    try:
        return _run(config, wh, start, end, dry_run, force, yes, notebook_path, progress)
    finally:
        if own:
            wh.close()


def _use_jemalloc() -> None:
    # Arrow's jemalloc pool hands the pages of freed batches back sooner than its default (mimalloc),
    # which kept each slice's copies resident (~20 MB more at the peak of a 1M-row sync). Set when a
    # sync runs, not when ampkit is imported; the environment variable still decides when set.
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        with contextlib.suppress(NotImplementedError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())


def _run(config, wh, start, end, dry_run, force, yes, notebook_path, progress) -> SyncResult:
    started = time.monotonic()
    now = config.clock()
    data_map = datamaps.load(config.data_map or None)
    run_id = state.new_run_id(now)
    holder = state.holder_name(run_id)
    mode = "dry_run" if dry_run else ("backfill" if start else "sync")
    record = state.RunRecord(run_id, now, mode=mode, data_map_version=data_map.version, notebook_path=notebook_path)
    result = SyncResult("ok", run_id, data_map_version=data_map.version)
    with contextlib.ExitStack() as stack:
        try:
            # Before touching the warehouse: a DuckDB file answers nothing while another run has it.
            stack.enter_context(wh.exclusive(state.LEASE_NAME, holder))
            wh.check_table("amplitude_events")
            wh.ensure_state()
            state.acquire(wh, holder, config.lease_seconds)
        except LockedError as exc:
            logger.warning("skipped: %s", exc)
            record.status, record.error = "skipped_locked", str(exc)
            record.finished_at = now
            wh.ensure_state()
            state.record_run(wh, record)
            result.status, result.error = "skipped_locked", str(exc)
            return result
        return _leased(config, wh, data_map, run_id, holder, record, result, started, now, start, end,
                       dry_run, force, yes, progress)


def _leased(config, wh, data_map, run_id, holder, record, result, started, now, start, end, dry_run, force, yes,
            progress) -> SyncResult:
    """The run once it holds the lease: send the windows, record the run, give the lease back."""
    try:
        state.start_run(wh, record)
        windows, lookback_start, move_watermark = _plan(config, wh, now, start, end, force, yes)
        if not windows:
            result.window_start, result.window_end = _open_window(config, wh, now, start, end)
        sender = None if dry_run else Sender(
            amplitude.Client(config), lanes=config.concurrency, max_events=config.max_events_per_request,
            budget_seconds=config.retry_budget_seconds, max_backoff_seconds=config.max_backoff_seconds,
            hold_seconds=config.throttle_hold_seconds)
        bar = Progress.make(progress, "sync")
        try:
            for i, (a, b, event_start, event_end) in enumerate(windows):
                lookback = lookback_start if i == 0 else a
                w = WindowResult(event_start if event_start != EPOCH else a, event_end if event_end != FAR_FUTURE else b)
                slices = _slices(wh, lookback, b, event_start, event_end)
                for k, (s, e, rows, size) in enumerate(slices):
                    cap = _memory_cap(rows, size)
                    small = rows < HOLD_ROWS
                    with contextlib.nullcontext() if small else wh.held(memory_limit=cap):
                        _absorb(w, _window(config, wh, data_map, run_id, holder, sender, bar, result, a, b, lookback,
                                           s, e, move_watermark and k == len(slices) - 1, dry_run, now, small))
                result.add(w)
                record.window_start, record.window_end = result.window_start, result.window_end
        finally:
            bar.close()
            if sender:
                sender.close()
        result.status = "dry_run" if dry_run else "ok"
    except BaseException as exc:
        result.status = "failed"
        result.error = config.redact(str(exc) or type(exc).__name__)
        try:
            _record(wh, record, result, started, "failed")
        finally:
            _let_go(wh, holder)
        if isinstance(exc, AmpkitError):
            # Re-raised with the redacted message: errors must never carry a secret.
            raise type(exc)(result.error) from None
        raise
    try:
        _record(wh, record, result, started, result.status)
    finally:
        _let_go(wh, holder)
    return result


def _let_go(wh, holder: str) -> None:
    """Give the lease back, whatever happened before; if even that fails, it expires on its own."""
    try:
        state.release(wh, holder)
    except AmpkitError as exc:
        logger.warning("the lease could not be given back (%s); it expires on its own", exc)


def _record(wh, record: state.RunRecord, result: SyncResult, started: float, status: str) -> None:
    result.duration_seconds = time.monotonic() - started
    record.status = status
    record.finished_at = record.started_at + dt.timedelta(seconds=result.duration_seconds)
    record.window_start, record.window_end = result.window_start, result.window_end
    record.extracted, record.sent, record.accepted = result.extracted, result.sent, result.accepted
    record.filtered, record.rejected = result.filtered, result.rejected
    record.duration_seconds, record.requests, record.retries = result.duration_seconds, result.requests, result.retries
    record.error = result.error
    state.finish_run(wh, record)


def _plan(config: Config, wh, now, start, end, force, yes):
    """The windows to run: (loaded_at from, loaded_at to, event from, event to), and how to move the watermark."""
    if start is not None:
        end = end or now
        if end <= start:
            raise ConfigError(f"backfill end {end.isoformat()} is not after start {start.isoformat()}")
        pending = int(wh.run("sync_estimate", {"event_start": start, "event_end": end, "window_end": now})
                      .column("pending")[0].as_py())
        logger.info("backfill estimate pending_rows=%d start=%s end=%s", pending, start.isoformat(), end.isoformat())
        if pending > config.confirm_threshold_events and not yes:
            raise ConfigError(f"the backfill would process about {pending:,} rows (over {config.confirm_threshold_events:,}); rerun with --yes")
        windows = [(EPOCH, now, a, b) for a, b in _event_hours(start, end)]
        return windows, EPOCH, False
    mark = state.watermark(wh)
    upper = now - dt.timedelta(seconds=config.settle_seconds)
    lower = mark or (upper - dt.timedelta(hours=config.initial_lookback_hours))
    horizon = now - dt.timedelta(days=config.dedup_horizon_days)
    if mark and mark < horizon and not force:
        earlier = int(wh.run("sync_unfinished", {"horizon": horizon, "window_start": mark}).column("runs")[0].as_py())
        if earlier:
            raise SyncError(f"the open window starts {mark.isoformat()}, beyond Amplitude's {config.dedup_horizon_days}-day "
                            f"dedup horizon, and an earlier run may have sent part of it; resend with --force if duplicates are acceptable")
    lookback = lower - dt.timedelta(hours=config.lookback_hours)
    hours = hourly_windows(lower, upper) if upper > lower else []
    if len(hours) > 2:
        # Hours without loaded rows need no window of their own; the first (it reaches back over
        # the lookback) and the last (it moves the watermark to the end) always run.
        loaded = {r["hour_end"] for r in wh.run("sync_hours", {"window_start": lower, "window_end": upper}).to_pylist()}
        hours = [w for i, w in enumerate(hours) if i in (0, len(hours) - 1) or w[1] in loaded]
    return [(a, b, EPOCH, FAR_FUTURE) for a, b in hours], lookback, True


def _open_window(config: Config, wh, now, start, end):
    """The bounds of a window with nothing to do, so an empty run still says what it looked at."""
    if start is not None:
        return start, end or now
    upper = now - dt.timedelta(seconds=config.settle_seconds)
    start = state.watermark(wh) or upper
    # A run whose clock is behind the watermark (a replayed hour) looked at nothing: never a backwards window.
    return start, max(start, upper)


def _event_hours(start: dt.datetime, end: dt.datetime):
    a = start
    while a < end:
        b = min(a.replace(minute=0, second=0, microsecond=0) + HOUR, end)
        yield a, b
        a = b


def _slices(wh, lookback_start, window_end, event_start, event_end) -> list[tuple[dt.datetime, dt.datetime, int, int]]:
    """The window's event-time range cut at whole minutes into slices of at most about SLICE_ROWS
    staged rows and SLICE_BYTES: (start, end, rows staged in it, their estimated bytes), upper bounds."""
    counts = wh.run("sync_slices", {"lookback_start": lookback_start, "window_end": window_end,
                                    "event_start": event_start, "event_end": event_end}).to_pylist()
    total = sum(r["row_count"] for r in counts)
    size = sum(r["text_bytes"] for r in counts)
    if total <= SLICE_ROWS and size <= SLICE_BYTES:
        return [(event_start, event_end, total, size)]
    slices, start, rows, size = [], event_start, 0, 0
    for r in counts:
        if rows and (rows + r["row_count"] > SLICE_ROWS or size + r["text_bytes"] > SLICE_BYTES):
            slices.append((start, r["minute"], rows, size))
            start, rows, size = r["minute"], 0, 0
        rows += r["row_count"]
        size += r["text_bytes"]
    slices.append((start, event_end, rows, size))
    return slices


def _memory_cap(rows: int, size: int) -> str | None:
    """DuckDB's memory limit for a slice of `rows` rows and `size` estimated bytes (None: no cap)."""
    if rows > SLICE_ROWS or size > SLICE_BYTES:
        return None
    return f"{max(SLICE_MEMORY_MB, -(-size * SLICE_MEMORY_PER_BYTE // 1_000_000))}MB"


def _absorb(w: "WindowResult | SyncResult", part: WindowResult) -> None:
    """Add the counts of `part` (a slice of a window, or a window of a run) to `w`'s."""
    w.extracted += part.extracted
    w.sent += part.sent
    w.accepted += part.accepted
    w.requests += part.requests
    w.retries += part.retries
    for src, dst in ((part.filtered, w.filtered), (part.rejected, w.rejected)):
        for k, v in src.items():
            dst[k] = dst.get(k, 0) + v


def _window(config, wh, data_map, run_id, holder, sender, bar, result: SyncResult, a, b, lookback_start,
            event_start, event_end, move_watermark, dry_run, now, small=False) -> WindowResult:
    w = WindowResult(event_start if event_start != EPOCH else a, event_end if event_end != FAR_FUTURE else b)
    w.extracted = int(wh.run("sync_snapshot", {
        "run_id": run_id, "lookback_start": lookback_start, "window_end": b,
        "event_start": event_start, "event_end": event_end}).column("extracted")[0].as_py())
    keys = wh.run("sync_keys", {"run_id": run_id}).to_pylist()
    decisions = []
    for row in keys:
        d = data_map.decide(row["name"] or "", row["source"])
        decisions.append((row["name"], row["source"], d.action, d.rule, d.reason))
        if d.rule == "unknown":
            result.warnings.append(f"'{row['name']}' ({row['source']}) is not in the data map; sent ({row['row_count']} rows)")
        elif d.rule == datamaps.UNKNOWN_HELD:
            result.warnings.append(f"'{row['name']}' ({row['source']}) is not in the data map; held ({row['row_count']} rows)")
    for warning in result.warnings[-len(keys):] if keys else []:
        logger.warning("data map: %s", warning)
    state.write_rules(wh, run_id, decisions)
    params = extract_params(config, run_id, now, lookback_start, b)
    dead_rows: list[dict] = []
    bar.total(w.extracted)
    batches = wh.stream("sync_extract", params, batch_rows=STREAM_ROWS)
    if small:
        # A small slice is read whole first: a DuckDB file stays locked while it is streamed, and
        # Amplitude may take minutes to answer (a 429 hold), which other processes should not wait out.
        batches = list(batches)
    for batch in batches:
        bad = pc.is_valid(batch.column("reject_reason"))
        keep = None
        if pc.any(bad).as_py():
            dead_rows += _dead_rows(run_id, batch.filter(bad), None, now)
            keep = pc.invert(bad)
        # One copy of the batch (rejects dropped, lanes together); the engine's batch goes at once.
        batch = _lane_ordered(batch, keep)
        if not batch.num_rows:
            continue
        if dry_run:
            if len(result.samples) < 3:
                result.samples.append(_sample(batch))
            w.sent += batch.num_rows
            w.accepted += batch.num_rows
            continue
        sent = sender.send(Chunk.from_batch(batch))
        w.sent += batch.num_rows
        w.requests += sent.requests
        w.retries += sent.retries
        result.request_log += sent.log
        w.accepted += sent.accepted
        if sent.dead:
            dead_rows += _dead_rows(run_id, batch, sent.dead, now)
        if sent.accepted + len(sent.dead) != batch.num_rows:
            raise AccountingError(f"sent {batch.num_rows} events but {sent.accepted} were accepted and {len(sent.dead)} dead-lettered")
        bar.update(batch.num_rows)
        state.renew(wh, holder, config.lease_seconds)
    if dry_run:
        counts = wh.run("sync_resolve", {"run_id": run_id, "start_time": params["start_time"]}).to_pylist()
        _tally(w, counts, dry_run=True, dead=dead_rows)
        wh.run("sync_discard", {"run_id": run_id})
        w.check()
        return w
    state.write_dead_letters(wh, dead_rows)
    counts = wh.run("sync_resolve", {"run_id": run_id, "start_time": params["start_time"]}).to_pylist()
    accepted_by_amplitude = w.accepted
    _tally(w, counts)
    if w.accepted != accepted_by_amplitude:
        raise AccountingError(f"Amplitude accepted {accepted_by_amplitude} events but the outcome table says {w.accepted}")
    w.check()
    try:
        wh.run("sync_finalize", {"run_id": run_id, "finished_at": config.clock(), "start_time": params["start_time"],
                                 "watermark": b, "move_watermark": move_watermark, "name": state.LEASE_NAME,
                                 "holder": holder, "lookback_start": lookback_start, "window_end": b})
    except WarehouseError:
        state.check_held(wh, holder)  # the fence refused the commit: say so, not the raw engine error
        raise
    # A large window is synced in event-time slices; say which part of it this was.
    part = "" if (event_start, event_end) == (EPOCH, FAR_FUTURE) else \
        f" event_time={_moment(event_start, 'start')}..{_moment(event_end, 'end')}"
    logger.info("window done loaded_at=%s..%s%s extracted=%d accepted=%d filtered=%d rejected=%d",
                a.isoformat(), b.isoformat(), part, w.extracted, w.accepted,
                sum(w.filtered.values()), sum(w.rejected.values()))
    return w


def extract_params(config: Config, run_id: str, now: dt.datetime, lookback_start: dt.datetime = EPOCH,
                   window_end: dt.datetime | None = None) -> dict:
    """The parameters of sync_extract.sql (and of sync_resolve.sql's start_time) for one window of a run:
    rows loaded in (lookback_start, window_end] (default: any loaded by `now`) (pure)."""
    return {"run_id": run_id, "lookback_start": lookback_start, "window_end": window_end or now,
            "start_time": dt.datetime.combine(config.amplitude_start_date, dt.time(), dt.timezone.utc),
            "min_id_length": config.min_id_length, "blocklist": list(amplitude.BLOCKLISTED_IDS),
            "future_limit": now + FUTURE_TOLERANCE, "max_properties_bytes": MAX_PROPERTIES_BYTES,
            "max_depth": MAX_PROPERTIES_DEPTH, "depth_pattern": depth_pattern(MAX_PROPERTIES_DEPTH),
            "flags_depth_pattern": depth_pattern(MAX_PROPERTIES_DEPTH - 1),
            "dedup_start": now - dt.timedelta(days=config.dedup_horizon_days), "lanes": config.concurrency}


def _lane_ordered(batch: pa.RecordBatch, keep: pa.Array | None = None) -> pa.RecordBatch:
    """The transform's batch (in time order) with each lane's events together, still in time order,
    and only the rows where `keep` is true (all when None), in one copy.

    One id always has one lane, so its events keep their order; a lane's events being contiguous
    makes every request a plain slice of the batch's buffer rather than a gathered copy.
    """
    # sort_indices is stable: within a lane the events stay in time order.
    order = pc.sort_indices(batch, [("lane", "ascending")])
    if keep is not None:
        order = order.filter(keep.take(order))
    return batch.take(order)


def _moment(t: dt.datetime, side: str) -> str:
    return t.isoformat() if t not in (EPOCH, FAR_FUTURE) else side


def _tally(w: WindowResult, counts: list[dict], dry_run: bool = False, dead: list[dict] | None = None) -> None:
    w.accepted, w.filtered, w.rejected = 0, {}, {}
    for row in counts:
        if row["outcome"] == "accepted":
            w.accepted += row["row_count"]
        elif row["outcome"] in ("filtered", "held"):
            w.filtered[row["reason"]] = w.filtered.get(row["reason"], 0) + row["row_count"]
        else:
            w.rejected[row["reason"]] = w.rejected.get(row["reason"], 0) + row["row_count"]
    if dry_run and dead:
        # In a dry run dead letters are not written, so the SQL counts them as accepted.
        by_reason = collections.Counter(d["reason"] for d in dead)
        w.accepted -= sum(by_reason.values())
        for k, v in by_reason.items():
            w.rejected[k] = w.rejected.get(k, 0) + v
        w.sent = w.accepted


def _dead_rows(run_id: str, batch: pa.RecordBatch, dead: list[tuple[int, str, str]] | None, now) -> list[dict]:
    """Dead-letter rows for the events of `batch` (all of them, with their SQL reason) or at `dead` indexes."""
    columns = ("id", "insert_id", "name", "event_time", "loaded_at", "event")
    if dead is None:
        rows = batch.select(list(columns) + ["reject_reason"]).to_pylist()
        picked = [(r, r["reject_reason"], "") for r in rows]
    else:
        picked = []
        for i, reason, detail in dead:
            row = {c: batch.column(c)[i].as_py() for c in columns}
            picked.append((row, reason, detail))
    return [{"run_id": run_id, "id": r["id"], "insert_id": r["insert_id"], "name": r["name"],
             "event_time": r["event_time"], "loaded_at": r["loaded_at"], "reason": reason,
             "detail": detail[:500], "event": (r["event"] or "").rstrip(","), "created_at": now,
             "replayed_run_id": None} for r, reason, detail in picked]


def _sample(batch: pa.RecordBatch) -> dict:
    import orjson
    return orjson.loads(batch.column("event")[0].as_py().rstrip(","))


def breakdown(config: Config, run_id: str):
    """A run's events per event type, outcome and rule or reason, as a DataFrame (I/O)."""
    with warehouses.open(config.warehouse, location=config.bigquery_location) as wh:
        return wh.run("sync_breakdown", {"run_id": run_id}).to_pandas()
