"""The hourly sync: extract -> data map -> transform -> send -> record, nothing lost, nothing twice.

`run()` is the one entry point: the CLI, the hourly notebook, the tests and the benchmarks all
call it. A run is a `Run` with a frozen `Context` and four stages: plan (its windows), then per
slice of a window snapshot (the rows with no outcome yet, and which events they are), deliver
(the data map's decisions and the transform in one query, streamed to Amplitude) and checkpoint
(every row's outcome, the counts and the watermark in one transaction, fenced by the lease).
In every slice `extracted == accepted + sum(filtered) + sum(rejected)`, checked in the
transaction that records it.

On BigQuery every job costs a second or two and every byte read is billed, so the stages are few
jobs that read bounded partitions: an hourly run is seven whatever the clock reads (docs/BIGQUERY.md),
eight when it stages its own rows (`stage_in_run`), and a backfill a few per million rows.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import datetime as dt
import logging
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ampkit import amplitude, datamap as datamaps, guardrail, lag, stage, state
from ampkit import warehouse as warehouses
from ampkit.config import Config
from ampkit.counts import Counts
from ampkit.errors import AccountingError, AmpkitError, ConfigError, HeldError, LockedError, SyncError, WarehouseError
from ampkit.progress import Progress
from ampkit.sender import Chunk, Sender

logger = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
# Rows per transform batch: the engine's batch and its lane-ordered copy are what Python holds at once.
STREAM_ROWS = 25_000
# A window with more staged rows than the warehouse's `slice_rows`, or more bytes of them (estimated
# from the text columns, see sync_slices.sql), is synced in slices of event time (whole minutes),
# each snapshotted, sent and recorded on its own, so a run's memory stays flat whatever the backlog.
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


@dataclasses.dataclass(kw_only=True)
class WindowResult(Counts):
    """One window of a run: its bounds and where each of its rows ended."""

    window_start: dt.datetime
    window_end: dt.datetime

    def check(self, what: str = "") -> None:
        super().check(what or f"window {self.window_start.isoformat()}..{self.window_end.isoformat()}")


@dataclasses.dataclass
class SyncResult(Counts):
    """The result of one run, as `ampkit sync --json` prints it."""

    status: str                     # ok | skipped_locked | held | dry_run | failed
    run_id: str
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    data_map_version: str = ""
    duration_seconds: float = 0.0
    windows: list[WindowResult] = dataclasses.field(default_factory=list)
    request_log: list[dict] = dataclasses.field(default_factory=list)
    samples: list[dict] = dataclasses.field(default_factory=list)
    # A dry run's outcomes per (name, outcome, reason): it records none in the warehouse.
    events: list[dict] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    error: str = ""
    # The volume guardrail's verdict on the open window (guardrail.Verdict.to_dict()), if it judged one.
    guardrail: dict | None = None
    # How long the accepted events took to reach Amplitude (lag.Lags.summary()), if any were accepted.
    lag: dict | None = None

    def absorb(self, w: WindowResult) -> None:
        self.windows.append(w)
        self.window_start = self.window_start or w.window_start
        self.window_end = w.window_end
        self.add(w)

    def to_dict(self, details: bool = True) -> dict[str, Any]:
        """Plain JSON-able values; per-window details nested when there are several windows."""
        def iso(t):
            return t.isoformat() if t else None
        out = {
            "status": self.status, "run_id": self.run_id,
            "window_start": iso(self.window_start), "window_end": iso(self.window_end),
            **self.totals(),
            "data_map_version": self.data_map_version, "duration_seconds": round(self.duration_seconds, 3),
        }
        if self.error:
            out["error"] = self.error
        if self.warnings:
            out["warnings"] = self.warnings
        if self.samples:
            out["samples"] = self.samples
        if self.lag:
            out["lag"] = self.lag
        if self.guardrail:
            out["guardrail"] = {k: v for k, v in self.guardrail.items() if k != "hours"}
        if details and len(self.windows) > 1:
            out["windows"] = [{**w.totals(), "window_start": iso(w.window_start), "window_end": iso(w.window_end)}
                              for w in self.windows]
        return out


@dataclasses.dataclass(frozen=True)
class Window:
    """Rows loaded in (`lookback_start`, `end`] with event time in [`event_start`, `event_end`).

    `start` is where the window begins for the record (the watermark; the lookback reaches back
    before it for rows loaded late); a backfill's windows report their event time instead.
    """

    start: dt.datetime
    end: dt.datetime
    lookback_start: dt.datetime
    event_start: dt.datetime = EPOCH
    event_end: dt.datetime = FAR_FUTURE
    move_watermark: bool = False
    rows: int | None = None   # staged rows without an outcome, when the plan counted them
    text_bytes: int = 0

    @property
    def backfill(self) -> bool:
        return (self.event_start, self.event_end) != (EPOCH, FAR_FUTURE)

    def reported(self) -> tuple[dt.datetime, dt.datetime]:
        return (self.event_start, self.event_end) if self.backfill else (self.start, self.end)

    def params(self) -> dict[str, dt.datetime]:
        return {"lookback_start": self.lookback_start, "window_end": self.end,
                "event_start": self.event_start, "event_end": self.event_end}

    def slice(self, event_start: dt.datetime, event_end: dt.datetime, rows: int, size: int) -> "Window":
        return dataclasses.replace(self, event_start=event_start, event_end=event_end, rows=rows, text_bytes=size)


@dataclasses.dataclass(frozen=True)
class Context:
    """What a run works with, fixed when it starts."""

    config: Config
    warehouse: warehouses.Warehouse
    data_map: datamaps.DataMap
    run_id: str
    holder: str
    now: dt.datetime
    dry_run: bool = False
    # Rules or families whose volume departure the operator accepted for this run (--accept-volume).
    accept_volume: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a backfill will cost, printed before it asks for --yes."""

    rows: int
    windows: int
    jobs: int
    bytes: int
    seconds: float

    def __str__(self) -> str:
        return (f"{self.rows:,} rows in {self.windows:,} windows: about {self.jobs:,} warehouse jobs, "
                f"{self.bytes / 1e9:,.2f} GB read, {self.seconds / 3600:,.1f} h at Amplitude's rate limits")


# Amplitude's Batch API takes about 1,000 events/s per device id and its documented project-wide
# pace keeps a backfill near this rate; a BigQuery job costs about this much latency.
BACKFILL_EVENTS_PER_SECOND = 5_000
SECONDS_PER_JOB = 2.0
JOBS_PER_WINDOW = 3  # snapshot, deliver, checkpoint: a planned window needs no slicing query


def run(config: Config, *, start: dt.datetime | None = None, end: dt.datetime | None = None,
        dry_run: bool = False, force: bool = False, yes: bool = True, notebook_path: str = "",
        progress: str = "auto", warehouse: warehouses.Warehouse | None = None,
        accept_volume: tuple[str, ...] = ()) -> SyncResult:
    """Run the sync once (I/O): the open window from the watermark, or a backfill [start, end) of event time.

    Returns the SyncResult; `status` is `skipped_locked` when another run holds the lease, and
    `held` when the volume guardrail held the open window (`accept_volume` names the rules or
    families whose departure the operator accepts for this run).
    Raises SyncError (the run is recorded as failed, the watermark unmoved) when events are left
    undelivered, and ConfigError for bad settings.
    """
    _use_jemalloc()
    own = warehouse is None
    wh = warehouse or warehouses.open(config.warehouse, location=config.bigquery_location,
                                      storage_api=config.bigquery_storage_api)
    try:
        now = config.clock()
        data_map = datamaps.load(config.data_map or None)
        run_id = state.new_run_id(now)
        ctx = Context(config, wh, data_map, run_id, state.holder_name(run_id), now, dry_run, frozenset(accept_volume))
        return Run(ctx, notebook_path, progress).go(start, end, force, yes)
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


class Run:
    """One run of the sync: plan -> per slice (snapshot -> deliver -> checkpoint) -> finish."""

    def __init__(self, ctx: Context, notebook_path: str = "", progress: str = "auto"):
        self.ctx = ctx
        self.started = time.monotonic()
        mode = "dry_run" if ctx.dry_run else "sync"
        self.record = state.RunRecord(run_id=ctx.run_id, started_at=ctx.now, mode=mode,
                                      data_map_version=ctx.data_map.version, notebook_path=notebook_path)
        self.result = SyncResult("ok", ctx.run_id, data_map_version=ctx.data_map.version)
        self.progress = progress
        self.sender: Sender | None = None
        self.lease: state.Lease | None = None
        self.slice_rows = ctx.config.slice_rows or ctx.warehouse.slice_rows
        self.kept_from = EPOCH  # rows loaded earlier had their outcomes rolled up
        self.in_flight: Counts | None = None
        self.begun: state.Begun | None = None
        self.guard: guardrail.Guard | None = None
        self.lags = lag.Lags()
        self.staged = False  # this run staged its rows itself, so they need no settle time

    # -- the run ------------------------------------------------------------------------------
    def go(self, start, end, force, yes) -> SyncResult:
        ctx = self.ctx
        if start is not None and not ctx.dry_run:
            self.record.mode = "backfill"
        with contextlib.ExitStack() as stack:
            try:
                # Before touching the warehouse: a DuckDB file answers nothing while another run has it.
                stack.enter_context(ctx.warehouse.exclusive(state.LEASE_NAME, ctx.holder))
                ctx.warehouse.keep_copy()  # before this run opens it, let alone changes it
                ctx.warehouse.check_table("amplitude_events")
                begun = state.begin(ctx.warehouse, self.record, ctx.holder, ctx.config.lease_seconds)
            except LockedError as exc:
                return self._skipped(exc)
            self.lease = stack.enter_context(state.Lease(ctx.warehouse, ctx.holder, ctx.config.lease_seconds))
            try:
                self._deliver_all(begun, start, end, force, yes)
                self.result.status = "dry_run" if ctx.dry_run else "ok"
                if not ctx.dry_run:
                    self._roll_up(begun)
            except HeldError as exc:
                # The guardrail working, not a failure: the window waits, unsent, for a person.
                self.result.status, self.result.error = "held", exc.verdict.line()
                self.result.guardrail = exc.verdict.to_dict()
                logger.error("held: %s", self.result.error)
            except BaseException as exc:
                self.result.status = "failed"
                if self.in_flight is not None:  # extracted, and maybe sent and accepted, not recorded
                    self.result.add(self.in_flight)
                    self.result.windows[-1].add(self.in_flight)
                self.result.error = ctx.config.redact(str(exc) or type(exc).__name__)
                stack.close()  # the renewals stop before the run records itself and lets go
                self._finish()
                if isinstance(exc, AmpkitError):
                    # Re-raised with the redacted message and the original's attributes. The cause is
                    # kept for tracebacks unless the message held a secret: then the cause may too.
                    clean = _redacted(exc, self.result.error)
                    if self.result.error != (str(exc) or type(exc).__name__):
                        raise clean from None
                    raise clean from exc
                raise
        self._finish()
        return self.result

    def clock(self) -> dt.datetime:
        """The run's clock: its start (the config's clock) plus the time it has run, so a replayed
        run with a fixed clock still counts the seconds its requests took."""
        return self.ctx.now + dt.timedelta(seconds=time.monotonic() - self.started)

    def _skipped(self, exc: LockedError) -> SyncResult:
        logger.warning("skipped: %s", exc)
        self.record.status, self.record.error = "skipped_locked", str(exc)
        self.record.finished_at = self.ctx.now
        state.finish(self.ctx.warehouse, self.record, self.ctx.holder)
        self.result.status, self.result.error = "skipped_locked", str(exc)
        return self.result

    def _finish(self) -> None:
        """Record the run and give the lease back; if even that fails, the lease expires on its own."""
        r, rec = self.result, self.record
        r.duration_seconds = time.monotonic() - self.started
        r.lag = self.lags.summary() if self.lags.cells else None  # over every slice recorded, once
        rec.status, rec.error = r.status, r.error
        rec.finished_at = rec.started_at + dt.timedelta(seconds=r.duration_seconds)
        rec.window_start, rec.window_end = r.window_start, r.window_end
        rec.extracted, rec.sent, rec.accepted = r.extracted, r.sent, r.accepted
        rec.filtered, rec.rejected = r.filtered, r.rejected
        rec.duration_seconds, rec.requests, rec.retries = r.duration_seconds, r.requests, r.retries
        try:
            state.finish(self.ctx.warehouse, rec, self.ctx.holder)
        except AmpkitError as exc:
            try:
                state.release(self.ctx.warehouse, self.ctx.holder)
            except AmpkitError as again:
                logger.warning("the lease could not be given back (%s); it expires on its own", again)
            if r.status != "failed":
                raise
            logger.warning("the failed run could not be recorded (%s)", exc)

    def _roll_up(self, begun: state.Begun) -> None:
        """Once a day, roll up the row outcomes past their retention into counts (two more jobs).
        Housekeeping: if it fails, the run's delivery stands and the next run tries again."""
        ctx = self.ctx
        # The watermark as the run found it: an hour behind at worst, and no extra job to read it.
        target = state.rollup_target(ctx.config, ctx.now, begun.watermark, begun.kept_from)
        if target is None:
            return
        try:
            done = state.roll_up(ctx.warehouse, ctx.run_id, begun.kept_from, target, state.wall_clock())
        except AmpkitError as exc:
            self.result.warnings.append(f"roll-up of row outcomes failed, tried again next run: {ctx.config.redact(str(exc))}")
            logger.warning("%s", self.result.warnings[-1])
            return
        logger.info("roll-up: %s", done)
        if done.blocked:
            self.result.warnings.append(f"roll-up: {done}")

    def _deliver_all(self, begun: state.Begun, start, end, force, yes) -> None:
        ctx = self.ctx
        self.begun = begun
        self.kept_from = begun.kept_from or EPOCH
        if ctx.config.stage_in_run and start is None and not ctx.dry_run:
            # Under the lease: two runs staging at once could both insert a row (appends do not conflict).
            stage.load(ctx.warehouse, ctx.config, ctx.now, previous=begun.watermark)
            self.staged = True
        windows = self.plan(begun, start, end, force, yes)
        if not windows:
            self.result.window_start, self.result.window_end = self._empty_bounds(begun, start, end)
        if not ctx.dry_run:
            c = ctx.config
            self.sender = Sender(amplitude.Client(c), lanes=c.concurrency, max_events=c.max_events_per_request,
                                 budget_seconds=c.retry_budget_seconds, max_backoff_seconds=c.max_backoff_seconds,
                                 hold_seconds=c.throttle_hold_seconds)
        self.bar = Progress.make(self.progress, "sync")
        try:
            for window in windows:
                self.deliver(window)
        finally:
            self.bar.close()
            if self.sender:
                self.sender.close()

    # -- plan ---------------------------------------------------------------------------------
    def plan(self, begun: state.Begun, start, end, force, yes) -> list[Window]:
        """The windows to run: the open window from the watermark, or a backfill's windows."""
        ctx, config = self.ctx, self.ctx.config
        if start is not None:
            return self._backfill_plan(start, end or ctx.now, yes)
        mark = begun.watermark
        upper = self._upper()
        lower = mark or (upper - dt.timedelta(hours=config.initial_lookback_hours))
        horizon = ctx.now - dt.timedelta(days=config.dedup_horizon_days)
        if mark and mark < horizon and not force:
            earlier = int(ctx.warehouse.run("sync_unfinished", {"horizon": horizon, "window_start": mark})
                          .column("runs")[0].as_py())
            if earlier:
                raise SyncError(f"the open window starts {mark.isoformat()}, beyond Amplitude's {config.dedup_horizon_days}-day "
                                f"dedup horizon, and an earlier run may have sent part of it; resend with --force if duplicates are acceptable")
        if upper <= lower:
            return []
        # One window, whatever the clock reads: (watermark, now - settle], reaching back over the
        # lookback for rows loaded late. Slices cut it when it holds more than a slice.
        return [Window(lower, upper, lower - dt.timedelta(hours=config.lookback_hours), move_watermark=True)]

    def _backfill_plan(self, start: dt.datetime, end: dt.datetime, yes: bool) -> list[Window]:
        """A backfill of event time [start, end) in windows of loaded_at sized by rows: one query
        counts the rows without an outcome per loaded hour; hours with none cost nothing more."""
        ctx = self.ctx
        if end <= start:
            raise ConfigError(f"backfill end {end.isoformat()} is not after start {start.isoformat()}")
        hours = ctx.warehouse.run("sync_backfill_plan", {"event_start": start, "event_end": end, "window_end": ctx.now,
                                                         "kept_from": self.kept_from}).to_pylist()
        windows = pack(hours, start, end, self.slice_rows, ctx.warehouse.slice_bytes)
        estimate = estimate_backfill(windows)
        logger.info("backfill %s..%s: %s", start.isoformat(), end.isoformat(), estimate)
        if estimate.rows > ctx.config.confirm_threshold_events and not yes:
            raise ConfigError(f"the backfill would process {estimate} (over {ctx.config.confirm_threshold_events:,} rows); "
                              "rerun with --yes")
        self.result.warnings.append(f"backfill: {estimate}")
        return windows

    def _empty_bounds(self, begun: state.Begun, start, end):
        """The bounds of a run with nothing to do, so an empty run still says what it looked at."""
        if start is not None:
            return start, end or self.ctx.now
        upper = self._upper()
        start = begun.watermark or upper
        # A run whose clock is behind the watermark (a replayed hour) looked at nothing: never a backwards window.
        return start, max(start, upper)

    def _upper(self) -> dt.datetime:
        """Where the open window ends: the clock, less the settle time unless the run staged its rows
        itself (the scheduled query stamps loaded_at with its start and commits later)."""
        return self.ctx.now - dt.timedelta(seconds=0 if self.staged else self.ctx.config.settle_seconds)

    # -- per window ---------------------------------------------------------------------------
    def deliver(self, window: Window) -> WindowResult:
        """Sync one window, slice by slice; the watermark moves with its last slice."""
        a, b = window.reported()
        w = WindowResult(window_start=a, window_end=b)
        # In the run's result from the start, so a run that fails in it records the window it was in.
        self.result.absorb(w)
        self.guard = self._guard(window)
        slices = self._slices(window)
        for k, part in enumerate(slices):
            last = k == len(slices) - 1
            part = dataclasses.replace(part, move_watermark=window.move_watermark and last)
            small = (part.rows or 0) < HOLD_ROWS
            with contextlib.nullcontext() if small else self.ctx.warehouse.held(memory_limit=self._memory_cap(part)):
                done = self._slice(part, small)
            w.add(done)
            self.result.add(done)
        return w

    def _slices(self, window: Window) -> list[Window]:
        """The window cut at whole minutes of event time into slices of at most about `slice_rows`
        staged rows and the warehouse's `slice_bytes` (a planned window that fits needs no query)."""
        limit_rows, limit_bytes = self.slice_rows, self.ctx.warehouse.slice_bytes
        if window.rows is not None and window.rows <= limit_rows and window.text_bytes <= limit_bytes:
            return [window]
        counts = self.ctx.warehouse.run("sync_slices", window.params()).to_pylist()
        total, size = sum(r["row_count"] for r in counts), sum(r["text_bytes"] for r in counts)
        if total <= limit_rows and size <= limit_bytes:
            return [window.slice(window.event_start, window.event_end, total, size)]
        slices, start, rows, size = [], window.event_start, 0, 0
        for r in counts:
            if rows and (rows + r["row_count"] > limit_rows or size + r["text_bytes"] > limit_bytes):
                slices.append(window.slice(start, r["minute"], rows, size))
                start, rows, size = r["minute"], 0, 0
            rows += r["row_count"]
            size += r["text_bytes"]
        slices.append(window.slice(start, window.event_end, rows, size))
        return slices

    def _guard(self, window: Window) -> guardrail.Guard | None:
        """The volume guardrail over an open window (one query: the history of its hours); a backfill
        is a deliberate send, costed and confirmed before it starts, and is not weighed."""
        ctx, band = self.ctx, guardrail.Band.of(self.ctx.config)
        if window.backfill or band.mode == "off":
            return None
        hour_from = window.start.replace(minute=0, second=0, microsecond=0)
        hour_to = window.end.replace(minute=0, second=0, microsecond=0) + HOUR
        history = ctx.warehouse.run("guardrail_history", {"hour_from": hour_from, "hour_to": hour_to,
                                                          "weeks": band.weeks}).to_pylist()
        return guardrail.Guard(band, ctx.data_map, history, window.end, self.begun.deployed_map,
                               self.begun.map_approved, ctx.accept_volume)

    def _judge(self, rows: list[dict], part: Window) -> guardrail.Verdict:
        """Weigh a slice's rows; hold the window (discarding the snapshot) when the guardrail says so."""
        ctx = self.ctx
        verdict = self.guard.add(rows, final=part.move_watermark)
        self.result.guardrail = verdict.to_dict()
        if verdict.holds and not ctx.dry_run:
            ctx.warehouse.run("sync_discard", {"run_id": ctx.run_id})
            raise HeldError(verdict)
        line = verdict.line()
        if line and part.move_watermark and (ctx.dry_run or verdict.mode == "warn"):
            self.result.warnings.append(f"guardrail{' (dry run: would hold)' if verdict.mode == 'hold' else ''}: {line}")
            logger.warning("%s", self.result.warnings[-1])
        for d in verdict.accepted if part.move_watermark else ():
            logger.warning("guardrail: accepted for this window: %s", d)
        return verdict

    def _memory_cap(self, part: Window) -> str | None:
        """DuckDB's memory limit while a slice holds the warehouse (None: no cap)."""
        rows, size = part.rows or 0, part.text_bytes
        if rows > self.ctx.warehouse.slice_rows or size > self.ctx.warehouse.slice_bytes:
            return None
        return f"{max(SLICE_MEMORY_MB, -(-size * SLICE_MEMORY_PER_BYTE // 1_000_000))}MB"

    # -- per slice: snapshot -> deliver -> checkpoint -------------------------------------------
    def _slice(self, part: Window, small: bool) -> Counts:
        ctx = self.ctx
        rows = ctx.warehouse.run("sync_snapshot", {"run_id": ctx.run_id, "kept_from": self.kept_from,
                                                   **part.params()}).to_pylist()
        keys = _keys(rows)
        decisions = self._decide(keys)
        verdict = self._judge(rows, part) if self.guard else None
        counts = Counts(extracted=sum(k["row_count"] for k in keys))
        self.in_flight = counts  # what a failed run records of the slice it failed in
        params = {**extract_params(ctx.config, ctx.run_id, ctx.now, part.lookback_start, part.end),
                  **state.rule_params(decisions)}
        lags = lag.Lags()
        rejects = self._send(params, counts, small, lags)
        if ctx.dry_run:
            outcomes = ctx.warehouse.run("sync_resolve", {"run_id": ctx.run_id, "start_time": params["start_time"],
                                                          **state.reject_params(ctx.warehouse, ctx.run_id, [])}).to_pylist()
            counts.settle(outcomes)
            _dry_run_rejects(counts, rejects)
            self.result.events += dry_run_events(outcomes, rejects)
            ctx.warehouse.run("sync_discard", {"run_id": ctx.run_id})
            counts.check("dry run")
            self.in_flight = None
            return counts
        outcomes = self._checkpoint(part, params, counts, rejects, verdict, lags)
        self.lags.merge(lags)
        accepted_by_amplitude = counts.accepted
        counts.settle(outcomes)
        if counts.accepted != accepted_by_amplitude:  # checked in the transaction too; this says it in Python's words
            raise AccountingError(f"Amplitude accepted {accepted_by_amplitude} events but the outcome table says {counts.accepted}")
        counts.check("slice")
        self.in_flight = None
        part_text = "" if not part.backfill else \
            f" event_time={_moment(part.event_start, 'start')}..{_moment(part.event_end, 'end')}"
        logger.info("window done loaded_at=%s..%s%s extracted=%d accepted=%d filtered=%d rejected=%d",
                    part.start.isoformat(), part.end.isoformat(), part_text, counts.extracted, counts.accepted,
                    sum(counts.filtered.values()), sum(counts.rejected.values()))
        return counts

    def _decide(self, keys: list[dict]) -> list[tuple]:
        """The data map's decision per (name, source) of the snapshot, with a warning per unknown key."""
        decisions, warnings = [], []
        for row in keys:
            d = self.ctx.data_map.decide(row["name"] or "", row["source"])
            decisions.append((row["name"], row["source"], d.action, d.rule, d.reason))
            if d.rule == "unknown":
                warnings.append(f"'{row['name']}' ({row['source']}) is not in the data map; sent ({row['row_count']} rows)")
            elif d.rule == datamaps.UNKNOWN_HELD:
                warnings.append(f"'{row['name']}' ({row['source']}) is not in the data map; held ({row['row_count']} rows)")
        for warning in warnings:
            logger.warning("data map: %s", warning)
        self.result.warnings += warnings
        return decisions

    def _send(self, params: dict, counts: Counts, small: bool, lags: lag.Lags) -> list[dict]:
        """Stream the slice's events from the transform to Amplitude, counting how long the accepted
        ones took to get there in `lags`; returns the rejected rows."""
        ctx = self.ctx
        rejects: list[dict] = []
        self.bar.total(counts.extracted)
        batches = ctx.warehouse.stream("sync_extract", params, batch_rows=STREAM_ROWS)
        if small:
            # A small slice is read whole first: a DuckDB file stays locked while it is streamed, and
            # Amplitude may take minutes to answer (a 429 hold), which other processes should not wait out.
            batches = list(batches)
        for batch in batches:
            self.lease.held()
            bad = pc.is_valid(batch.column("reject_reason"))
            keep = None
            if pc.any(bad).as_py():
                rejects += _dead_rows(batch.filter(bad), None)
                keep = pc.invert(bad)
            # One copy of the batch (rejects dropped, lanes together); the engine's batch goes at once.
            batch = _lane_ordered(batch, keep)
            if not batch.num_rows:
                continue
            if ctx.dry_run:
                if len(self.result.samples) < 3:
                    self.result.samples.append(_sample(batch))
                counts.sent += batch.num_rows
                counts.accepted += batch.num_rows
                continue
            sent = self.sender.send(Chunk.from_batch(batch))
            counts.sent += batch.num_rows
            counts.requests += sent.requests
            counts.retries += sent.retries
            self.result.request_log += sent.log
            counts.accepted += sent.accepted
            accepted = batch
            if sent.dead:
                rejects += _dead_rows(batch, sent.dead)
                alive = np.ones(batch.num_rows, bool)
                alive[[i for i, _, _ in sent.dead]] = False
                accepted = batch.filter(pa.array(alive))
            lags.add(self.clock(), accepted.column("event_time"), accepted.column("loaded_at"))
            if sent.accepted + len(sent.dead) != batch.num_rows:
                raise AccountingError(f"sent {batch.num_rows} events but {sent.accepted} were accepted and {len(sent.dead)} dead-lettered")
            self.bar.update(batch.num_rows)
        return rejects

    def _checkpoint(self, part: Window, params: dict, counts: Counts, rejects: list[dict],
                    verdict: guardrail.Verdict | None, lags: lag.Lags) -> list[dict]:
        """Record the slice's outcomes, dead letters, counts, volumes, lags, accepted departures and
        the watermark in one transaction (I/O)."""
        ctx = self.ctx
        # Accepted departures are recorded with the slice that closes the window, once.
        accepted = verdict.accepted if verdict and part.move_watermark else []
        finalize = {"run_id": ctx.run_id, "finished_at": ctx.config.clock(), "start_time": params["start_time"],
                    "watermark": part.end, "move_watermark": part.move_watermark, "name": state.LEASE_NAME,
                    "holder": ctx.holder, "extracted": counts.extracted, "accepted": counts.accepted,
                    "window_start": part.start, "data_map_version": ctx.data_map.version,
                    "approved_by": state.operator(), "accepted_volumes": [d.key for d in accepted],
                    "accepted_notes": [str(d) for d in accepted],
                    "accepted_at": self.clock(), **lags.params(),
                    **state.reject_params(ctx.warehouse, ctx.run_id, rejects)}
        with self.lease.quiet():
            finalize["expires_at"] = state.wall_clock() + dt.timedelta(seconds=ctx.config.lease_seconds)
            try:
                outcomes = ctx.warehouse.run("sync_finalize", finalize).to_pylist()
            except WarehouseError as exc:
                if "the outcomes do not add up" in str(exc):
                    raise AccountingError(str(exc).split("ampkit: ", 1)[-1]) from exc
                state.check_held(ctx.warehouse, ctx.holder)  # the fence refused the commit: say so, not the raw engine error
                raise
            ctx.warehouse.note_lease(state.LEASE_NAME, ctx.holder, finalize["expires_at"])
        return outcomes


def _keys(rows: list[dict]) -> list[dict]:
    """The snapshot's rows per (name, source, loaded hour) as rows per (name, source), largest first (pure).

    An empty source is no source: the SQL matches rows to their decision on COALESCE(source, ''), so
    two keys for one (a decision each) would give their rows two decisions, which BigQuery's UPDATE
    in the checkpoint refuses."""
    tally: collections.Counter = collections.Counter()
    for r in rows:
        tally[(r["name"], r["source"] or None)] += r["row_count"]
    return [{"name": n, "source": s, "row_count": c}
            for (n, s), c in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0][0] or "", kv[0][1] or ""))]


def pack(hours: list[dict], start: dt.datetime, end: dt.datetime, rows: int, size: int) -> list[Window]:
    """A backfill's windows: consecutive loaded hours with rows to handle, packed up to `rows` rows
    and `size` bytes each (an hour over the limits is a window of its own, sliced later) (pure)."""
    windows: list[Window] = []
    first = last = None
    n = b = 0
    tick = dt.timedelta(microseconds=1)

    def close():
        # Loaded in [first, last + 1 h): the window's bounds are (first - 1 µs, last + 1 h - 1 µs].
        windows.append(Window(first, last + HOUR - tick, first - tick, start, end, False, n, b))
    for h in hours:
        if first is not None and (n + h["row_count"] > rows or b + h["text_bytes"] > size):
            close()
            first = None
        if first is None:
            first, n, b = h["hour"], 0, 0
        last = h["hour"]
        n += h["row_count"]
        b += h["text_bytes"]
    if first is not None:
        close()
    return windows


def estimate_backfill(windows: list[Window]) -> Estimate:
    """What a backfill's windows will cost: rows, jobs, bytes read (each row's staged text is read
    by the snapshot and the transform), wall time at Amplitude's pace and the jobs' latency (pure)."""
    rows = sum(w.rows or 0 for w in windows)
    jobs = 3 + JOBS_PER_WINDOW * len(windows)  # begin, plan, finish
    size = 2 * sum(w.text_bytes for w in windows)
    return Estimate(rows, len(windows), jobs, size, rows / BACKFILL_EVENTS_PER_SECOND + jobs * SECONDS_PER_JOB)


def _redacted(exc: AmpkitError, message: str) -> AmpkitError:
    """`exc` with `message` (secrets removed), keeping its class and attributes."""
    clone = copy.copy(exc)
    clone.args = (message,)
    return clone


def _dry_run_rejects(counts: Counts, rejects: list[dict]) -> None:
    # A dry run writes no dead letters, so the SQL counted its rejected rows as accepted.
    by_reason = collections.Counter(d["reason"] for d in rejects)
    counts.accepted -= sum(by_reason.values())
    for k, v in by_reason.items():
        counts.rejected[k] = counts.rejected.get(k, 0) + v
    counts.sent = counts.accepted


def dry_run_events(outcomes: list[dict], rejects: list[dict]) -> list[dict]:
    """A dry run's events per (name, outcome, reason): the SQL's outcomes, with the rows the
    transform rejected moved from accepted to their reason (pure)."""
    tally = collections.Counter({(r["name"], r["outcome"], r["reason"]): r["row_count"] for r in outcomes})
    for d in rejects:
        tally[(d["name"], "accepted", None)] -= 1
        tally[(d["name"], "rejected", d["reason"])] += 1
    return [{"name": n, "outcome": o, "reason": r, "events": v} for (n, o, r), v in tally.items() if v]


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


def _dead_rows(batch: pa.RecordBatch, dead: list[tuple[int, str, str]] | None) -> list[dict]:
    """Rejected rows of `batch`: all of them, with their SQL reason, or those at `dead`'s indexes."""
    columns = ("id", "insert_id", "name", "event_time", "loaded_at", "event")
    if dead is None:
        rows = batch.select(list(columns) + ["reject_reason"]).to_pylist()
        picked = [(r, r["reject_reason"], "") for r in rows]
    else:
        picked = []
        for i, reason, detail in dead:
            row = {c: batch.column(c)[i].as_py() for c in columns}
            picked.append((row, reason, detail))
    return [{"id": r["id"], "insert_id": r["insert_id"], "name": r["name"], "event_time": r["event_time"],
             "loaded_at": r["loaded_at"], "reason": reason, "detail": detail[:500],
             "event": (r["event"] or "").rstrip(",")} for r, reason, detail in picked]


def _sample(batch: pa.RecordBatch) -> dict:
    import orjson
    return orjson.loads(batch.column("event")[0].as_py().rstrip(","))


def breakdown(config: Config, result: SyncResult):
    """A run's events per event type, outcome and rule or reason, as a DataFrame: a dry run's from
    its result, a run's from the outcome counts it recorded (I/O)."""
    import pandas as pd
    if result.status == "dry_run":
        frame = pd.DataFrame(result.events, columns=["name", "outcome", "reason", "events"])
        return (frame.groupby(["name", "outcome", frame["reason"].fillna("")], as_index=False)["events"].sum()
                .replace({"reason": {"": None}}).sort_values("events", ascending=False, ignore_index=True))
    with warehouses.open(config.warehouse, location=config.bigquery_location) as wh:
        return wh.run("sync_breakdown", {"run_id": result.run_id}).to_pandas()
