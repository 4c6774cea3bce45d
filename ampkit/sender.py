"""The sender: delivers a chunk of serialized events to Amplitude, every one accepted or dead-lettered.

Events arrive already serialized (built in SQL), so the hot path only slices bytes. Each event
has a lane (a hash of its device or user id); lanes run concurrently and each sends its events
in time order, so one id's events never overtake each other. Per request:

- before it goes, the pacer keeps every id under Amplitude's per-id rate (1,000 events per
  second per device or user on the Batch API, 30 on HTTP V2, measured over a 30-second window):
  events of an id that would exceed it wait, with that id's later events, until the window
  slides, while the other ids keep flowing;
- 200 with Amplitude's JSON: accepted;
- 400 naming events: those are dead-lettered, the rest resent at once;
- 413: the request is bisected; a single event over the byte cap is dead-lettered, one under it
  is retried (a transient 413 cannot be the event's fault);
- 429: only the throttled devices and users are held (at least `throttle_hold_seconds`) while
  the rest keeps flowing; ids over their daily quota are dead-lettered as `quota`;
- 5xx, timeouts, dropped connections, non-JSON 200s: retried with capped exponential backoff and
  jitter, within the retry budget (time without progress, not since the start); past it the run fails
  and the watermark stays.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ampkit.amplitude import MAX_EVENTS_PER_REQUEST, Client, Verdict
from ampkit.errors import (FatalAmplitudeError, RetryableAmplitudeError, SyncError)

logger = logging.getLogger(__name__)

# Pacing (https://amplitude.com/docs/apis/analytics/batch-event-upload, .../http-v2): the per-id
# limit is counted over a 30-second window. The pacer aims `PACE_MARGIN` below it, and counts
# events from when Amplitude's answer arrived (never before Amplitude counted them) plus a
# little slack, so its window never ends before Amplitude's does.
PACE_WINDOW_SECONDS = 30.0
PACE_MARGIN = 0.05
PACE_SLACK_SECONDS = 0.25
# Shortest wait between two looks at paced ids, so a lane never spins on a window that frees
# a few events at a time.
PACE_MIN_WAIT_SECONDS = 0.05


@dataclasses.dataclass
class Chunk:
    """Serialized events and the per-event fields the sender may need.

    `buffer[offsets[i]:offsets[i+1]]` is event i followed by a comma. `keys[i]` identifies the id
    the event is paced by (its lane key: the device id, else the user id); equal ids have equal keys.
    """

    batch: pa.RecordBatch
    buffer: memoryview
    offsets: np.ndarray
    lanes: np.ndarray
    keys: np.ndarray | None = None
    events: pa.Array | None = None

    @classmethod
    def from_batch(cls, batch: pa.RecordBatch) -> "Chunk":
        events = batch.column("event")
        if events.null_count:
            raise SyncError("the transform produced an event without JSON; this is a bug in sync_extract.sql")
        if isinstance(events, pa.ChunkedArray):
            events = events.combine_chunks()
        _, offset_buffer, data = events.buffers()
        offsets = _offsets(events)
        lanes = batch.column("lane").to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(batch, memoryview(data) if data is not None else memoryview(b""), offsets, lanes,
                   id_keys(batch), events)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sizes(self, idx: np.ndarray) -> np.ndarray:
        return self.offsets[idx + 1] - self.offsets[idx]

    def payload(self, idx: np.ndarray) -> bytes:
        """The events at `idx` joined by commas (no trailing comma)."""
        return bytes(self.view(idx))

    def view(self, idx: np.ndarray) -> memoryview:
        """The events at `idx` joined by commas (no trailing comma), without a Python loop per event."""
        off, buf = self.offsets, self.buffer
        if not len(idx):
            return memoryview(b"")
        if idx[-1] - idx[0] == len(idx) - 1:
            return buf[off[idx[0]]: off[idx[-1] + 1] - 1]
        if self.events is None:
            return memoryview(b"".join([buf[off[i]: off[i + 1]] for i in idx.tolist()])[:-1])
        taken = self.events.take(pa.array(idx, pa.int64()))
        start, end = _offsets(taken)[[0, -1]]
        return memoryview(taken.buffers()[2])[start: end - 1]

    def ids_of(self, idx) -> list[tuple[str | None, str | None]]:
        """(device_id, user_id) of the events at `idx` (only on the throttling path)."""
        devices = self.batch.column("device_id")
        users = self.batch.column("user_id")
        return [(devices[i].as_py(), users[i].as_py()) for i in idx]


def _offsets(strings: pa.Array) -> np.ndarray:
    """An Arrow (large) string array's offsets as int64, without copying its data."""
    width = np.int64 if pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type) else np.int32
    offsets = np.frombuffer(strings.buffers()[1], dtype=width)[strings.offset: strings.offset + len(strings) + 1]
    return offsets.astype(np.int64, copy=False)


def id_keys(batch: pa.RecordBatch) -> np.ndarray | None:
    """Per event, an integer standing for the id it is paced by (`lane_key`, else device or user id).

    Hashes the distinct ids of the batch only (dictionary-encoded in Arrow), so the cost follows
    the number of ids, not of events; keys are stable for the life of the process.
    """
    names = batch.schema.names
    if "lane_key" in names:
        ids = batch.column("lane_key")
    elif "device_id" in names and "user_id" in names:
        ids = pc.coalesce(batch.column("device_id"), pc.binary_join_element_wise("user:", batch.column("user_id"), ""))
    else:
        return None
    encoded = pc.dictionary_encode(ids)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    hashes = np.fromiter((hash(v) for v in encoded.dictionary.to_pylist()), dtype=np.int64,
                         count=len(encoded.dictionary))
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False) if len(hashes) else np.zeros(len(encoded), np.int64)
    keys = hashes[indices] if len(hashes) else np.zeros(len(encoded), np.int64)
    if encoded.indices.null_count:
        keys[encoded.indices.is_null().to_numpy(zero_copy_only=False)] = 0
    return keys


class Pacer:
    """Keeps each id under `limit` events in any `window_seconds` (one lane's ids; not thread-safe).

    Counts live in a fixed table of slots indexed by the id's key (ids sharing a slot share its
    budget, which only errs on the safe side), and each sent request is remembered as the
    distinct slots it used with their counts, so expiring it is one vectorized subtraction.
    """

    SLOTS = 1 << 18

    def __init__(self, limit: int, window_seconds: float):
        self.limit = max(1, int(limit))
        self.window = window_seconds
        self._totals: np.ndarray | None = None
        self._sent: collections.deque[tuple[float, np.ndarray, np.ndarray]] = collections.deque()

    @classmethod
    def for_rate(cls, events_per_second: float, window_seconds: float = PACE_WINDOW_SECONDS,
                 margin: float = PACE_MARGIN, slack_seconds: float = PACE_SLACK_SECONDS) -> "Pacer":
        """A pacer for Amplitude's `events_per_second` per id over `window_seconds`, `margin` below it."""
        return cls(int(events_per_second * window_seconds * (1 - margin)), window_seconds + slack_seconds)

    def _expire(self, now: float) -> None:
        sent, totals = self._sent, self._totals
        while sent and sent[0][0] + self.window <= now:
            _, slots, counts = sent.popleft()
            totals[slots] -= counts

    def admit(self, keys: np.ndarray, now: float) -> np.ndarray | None:
        """Which of a request's events (in order) fit their ids' budgets now; None means all do."""
        if self._totals is None:
            self._totals = np.zeros(self.SLOTS, dtype=np.int32)
        self._expire(now)
        slots = keys & (self.SLOTS - 1)
        unique, inverse, counts = np.unique(slots, return_inverse=True, return_counts=True)
        room = self.limit - self._totals[unique]
        if (counts <= room).all():
            return None
        # The first `room` events of each id go (its earliest ones: the order within an id holds).
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.empty(len(keys), dtype=np.int64)
        rank[order] = np.arange(len(keys)) - np.repeat(starts, counts)
        return rank < room[inverse]

    def record(self, keys: np.ndarray, now: float) -> None:
        """Count a request's events as sent (call once Amplitude stored them)."""
        if self._totals is None:
            self._totals = np.zeros(self.SLOTS, dtype=np.int32)
        unique, counts = np.unique(keys & (self.SLOTS - 1), return_counts=True)
        counts = counts.astype(np.int32)
        self._totals[unique] += counts
        self._sent.append((now, unique, counts))

    def ready_at(self, keys: np.ndarray, now: float) -> float:
        """When the earliest of `keys` regains room: as its oldest counted request leaves the window."""
        slots = np.unique(keys & (self.SLOTS - 1))
        for at, used, _ in self._sent:
            if np.isin(used, slots, assume_unique=True).any():
                return max(at + self.window, now + PACE_MIN_WAIT_SECONDS)
        return now + PACE_MIN_WAIT_SECONDS


@dataclasses.dataclass
class SendResult:
    """What happened to a chunk: accepted count, dead letters (index, reason, detail), request log."""

    accepted: int = 0
    dead: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    requests: int = 0
    retries: int = 0
    paced: int = 0
    log: list[dict] = dataclasses.field(default_factory=list)

    def merge(self, other: "SendResult") -> None:
        self.accepted += other.accepted
        self.dead += other.dead
        self.requests += other.requests
        self.retries += other.retries
        self.paced += other.paced
        self.log += other.log


def split(sizes: np.ndarray, max_events: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut a sequence of event sizes into [start, end) requests within both limits (pure)."""
    out, start, n = [], 0, len(sizes)
    while start < n:
        window = np.cumsum(sizes[start: start + max_events])
        end = start + max(1, int(np.searchsorted(window, max_bytes, side="right")))
        out.append((start, end))
        start = end
    return out


class Sender:
    """Delivers chunks through a `Client`, concurrently by lane (I/O).

    `pace_eps` is the per-id rate the pacer keeps under over `pace_window_seconds` (None: the
    client's, from the settings, by default the endpoint's documented limit; 0: no pacing, only
    the reaction to 429s).
    """

    def __init__(self, client: Client, *, lanes: int, max_events: int = MAX_EVENTS_PER_REQUEST,
                 budget_seconds: float = 600.0, max_backoff_seconds: float = 60.0,
                 hold_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, pace_eps: float | None = None,
                 pace_window_seconds: float | None = None):
        self.client = client
        self.lanes = lanes
        self.max_events = max_events
        self.max_bytes = client.max_bytes
        # The budget is per stall: time without progress (a request that settled events), not a
        # deadline from the start; a healthy run 10 minutes in must survive its first 503.
        self.budget_seconds = budget_seconds
        self.progress_at = clock()
        self.max_backoff = max_backoff_seconds
        self.hold_seconds = hold_seconds
        self.sleep = sleep
        self.clock = clock
        self.started = clock()
        self.abort = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="ampkit-lane")
        self._random = random.Random()
        rate = getattr(client, "eps_per_id", 0) if pace_eps is None else pace_eps
        window = pace_window_seconds or getattr(client, "pace_window_seconds", PACE_WINDOW_SECONDS)
        # One pacer per lane: an id always maps to the same lane, so lanes never share an id.
        self._pacers: dict[int, Pacer] = collections.defaultdict(lambda: Pacer.for_rate(rate, window)) if rate and rate > 0 else {}
        self.pace_eps = rate if rate and rate > 0 else 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def send(self, chunk: Chunk) -> SendResult:
        """Deliver every event of `chunk`: each ends accepted or in `dead` (raises on fatal or budget)."""
        result = SendResult()
        if not len(chunk):
            return result
        # Time the warehouse spent between chunks (snapshot, extract, finalize) is not Amplitude stalling.
        self.progress_at = max(self.progress_at, self.clock())
        pacers = [self._pacers[int(lane)] if self.pace_eps else None for lane in np.unique(chunk.lanes)]
        jobs = [self._pool.submit(self._lane, chunk, np.flatnonzero(chunk.lanes == lane), pacer)
                for lane, pacer in zip(np.unique(chunk.lanes), pacers)]
        errors = []
        for job in jobs:
            try:
                result.merge(job.result())
            except BaseException as exc:  # re-raised below, after every lane stopped
                self.abort.set()
                errors.append(exc)
        if errors:
            fatal = [e for e in errors if isinstance(e, FatalAmplitudeError)]
            raise (fatal or errors)[0]
        return result

    def _requests(self, chunk: Chunk, idx: np.ndarray) -> list[np.ndarray]:
        return [idx[a:b] for a, b in split(chunk.sizes(idx), self.max_events, self.max_bytes)]

    def _lane(self, chunk: Chunk, idx: np.ndarray, pacer: Pacer | None = None) -> SendResult:
        result = SendResult()
        queue = collections.deque(self._requests(chunk, idx))
        held: list[np.ndarray] = []
        held_ids: set[str] = set()         # ids Amplitude throttled: their later events wait too
        held_keys = np.empty(0, np.int64)  # ids over their pacing budget: likewise
        release_at = 0.0
        throttled_until = 0.0              # when the ids Amplitude throttled may be tried again
        throttle_held = False
        pace_ready: float | None = None    # when the first paced id regains room
        keys = chunk.keys
        if keys is None:
            pacer = None
        while queue or held:
            if self.abort.is_set():
                raise SyncError("stopped: another lane failed")
            if held and (not queue or self.clock() >= release_at):
                wait = release_at - self.clock()
                if wait > 0:
                    if throttle_held:
                        self._check_budget(wait, "throttled ids")
                    self.sleep(wait)
                # Held events are earlier than the queue's, and their own order is the chunk's.
                released = np.sort(np.concatenate(held))
                held, held_ids, held_keys = [], set(), np.empty(0, np.int64)
                throttle_held, pace_ready = False, None
                queue.extendleft(reversed(self._requests(chunk, released)))
                continue
            request = queue.popleft()
            if held_ids:
                keep = np.array([d not in held_ids and u not in held_ids for d, u in chunk.ids_of(request)], bool)
                if not keep.all():
                    held.append(request[~keep])
                    request = request[keep]
                    if not len(request):
                        continue
            if len(held_keys):
                waiting = np.isin(keys[request], held_keys)
                if waiting.any():
                    held.append(request[waiting])
                    request = request[~waiting]
                    if not len(request):
                        continue
            if pacer is not None:
                now = self.clock()
                fits = pacer.admit(keys[request], now)
                if fits is not None:
                    late = request[~fits]
                    held.append(late)
                    held_keys = np.union1d(held_keys, keys[late])
                    result.paced += len(late)
                    ready = pacer.ready_at(keys[late], now)
                    pace_ready = ready if pace_ready is None else min(pace_ready, ready)
                    release_at = max(pace_ready, throttled_until if throttle_held else 0.0)
                    logger.debug("pacing: %d events of %d ids wait %.2fs", len(late), len(np.unique(keys[late])), ready - now)
                    request = request[fits]
                    if not len(request):
                        continue
            verdict = self._post(chunk, request, result)
            if verdict.kind == "ok":
                result.accepted += len(request)
                if pacer is not None:
                    pacer.record(keys[request], self.clock())
            elif verdict.kind == "rejected":
                bad = np.zeros(len(request), bool)
                for i, reason in verdict.rejected.items():
                    if 0 <= i < len(request):
                        bad[i] = True
                        result.dead.append((int(request[i]), reason, verdict.message))
                if not bad.any():
                    raise FatalAmplitudeError(f"Amplitude rejected the request: {verdict.message}", 400)
                if (~bad).any():
                    queue.appendleft(request[~bad])
            elif verdict.kind == "too_large":
                if len(request) == 1 and chunk.sizes(request)[0] > self.max_bytes:
                    result.dead.append((int(request[0]), "too_large", "a single event over Amplitude's request cap"))
                elif len(request) == 1:
                    # An event under the cap cannot be too large by itself: a transient 413 (a proxy, an
                    # overloaded edge) is waited out within the retry budget, never dead-lettered.
                    self._backoff(result.retries, "HTTP 413 on a single event under the size cap")
                    result.retries += 1
                    queue.appendleft(request)
                else:
                    half = len(request) // 2
                    queue.appendleft(request[half:])
                    queue.appendleft(request[:half])
            elif verdict.kind == "throttled":
                rest, hold_part = self._throttled(chunk, request, verdict, result, held_ids)
                if len(hold_part):
                    held.append(hold_part)
                    throttle_held = True
                    throttled_until = max(throttled_until, self.clock() + self.hold_seconds)
                    release_at = max(release_at, throttled_until)
                if len(rest):
                    if not len(hold_part) and len(rest) == len(request):
                        # A 429 naming no id: back off the whole request.
                        self._backoff(result.retries, "429 without throttled ids")
                        result.retries += 1
                    queue.appendleft(rest)
            else:
                raise FatalAmplitudeError(f"Amplitude refused the request: HTTP {verdict.status} {verdict.message}".strip(), verdict.status)
        return result

    def _throttled(self, chunk, request, verdict: Verdict, result: SendResult, held_ids: set):
        ids = chunk.ids_of(request)
        hold = np.zeros(len(request), bool)
        keep = np.ones(len(request), bool)
        for i, (device, user) in enumerate(ids):
            key_user = user
            if device in verdict.quota_ids or key_user in verdict.quota_ids:
                result.dead.append((int(request[i]), "quota", "the id exceeded Amplitude's daily quota"))
                keep[i] = False
            elif i in verdict.throttled_indexes or device in verdict.throttled_ids or key_user in verdict.throttled_ids:
                hold[i] = True
        for i in np.flatnonzero(hold):
            device, user = ids[i]
            held_ids.update(x for x in (device, user) if x)
        return request[keep & ~hold], request[hold]

    def _post(self, chunk: Chunk, request: np.ndarray, result: SendResult) -> Verdict:
        attempt = 0
        payload = chunk.view(request)
        while True:
            if self.abort.is_set():
                raise SyncError("stopped: another lane failed")
            t0 = self.clock()
            try:
                verdict = self.client.post(payload)
                error = None
            except RetryableAmplitudeError as exc:
                verdict, error = None, exc
            latency = self.clock() - t0
            result.requests += 1
            status = verdict.status if verdict else 0
            result.log.append({"t": round(t0 - self.started, 4), "latency_ms": round(latency * 1000, 2),
                               "events": len(request), "status": status, "attempt": attempt,
                               "kind": verdict.kind if verdict else "transport_error"})
            if verdict is not None and verdict.kind != "retry":
                if verdict.kind in ("ok", "rejected"):
                    self.progress_at = max(self.progress_at, self.clock())
                if attempt:
                    logger.info("request recovered status=%s events=%d attempts=%d", status, len(request), attempt + 1)
                return verdict
            reason = str(error) if error else f"HTTP {status} {verdict.message}"
            self._backoff(attempt, reason)
            attempt += 1
            result.retries += 1

    def _backoff(self, attempt: int, reason: str) -> None:
        delay = min(self.max_backoff, 0.25 * (2 ** attempt)) * (0.5 + self._random.random() / 2)
        self._check_budget(delay, reason)
        logger.warning("retrying attempt=%d delay=%.2fs reason=%s", attempt + 1, delay, reason)
        self.sleep(delay)

    def _check_budget(self, delay: float, reason: str) -> None:
        stalled = self.clock() + delay - self.progress_at
        if stalled > self.budget_seconds:
            raise SyncError(f"retry budget exhausted ({reason}): no progress for {stalled:.0f}s; "
                            "the window stays open and the next run resends it")
