"""The sender: delivers a chunk of serialized events to Amplitude, every one accepted or dead-lettered.

Events arrive already serialized (built in SQL), so the hot path only slices bytes. Each event
has a lane (a hash of its device or user id); lanes run concurrently and each sends its events
in time order, so one id's events never overtake each other. Per request:

- 200 with Amplitude's JSON: accepted;
- 400 naming events: those are dead-lettered, the rest resent at once;
- 413: the request is bisected (a single event still too large is dead-lettered);
- 429: only the throttled devices and users are held (at least `throttle_hold_seconds`) while
  the rest keeps flowing; ids over their daily quota are dead-lettered as `quota`;
- 5xx, timeouts, dropped connections, non-JSON 200s: retried with capped exponential backoff and
  jitter, within the run's retry budget; past it the run fails and the watermark stays.
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

from ampkit.amplitude import MAX_EVENTS_PER_REQUEST, Client, Verdict
from ampkit.errors import (FatalAmplitudeError, RetryableAmplitudeError, SyncError)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Chunk:
    """Serialized events and the per-event fields the sender may need.

    `buffer[offsets[i]:offsets[i+1]]` is event i followed by a comma.
    """

    batch: pa.RecordBatch
    buffer: memoryview
    offsets: np.ndarray
    lanes: np.ndarray

    @classmethod
    def from_batch(cls, batch: pa.RecordBatch) -> "Chunk":
        events = batch.column("event")
        if events.null_count:
            raise SyncError("the transform produced an event without JSON; this is a bug in sync_extract.sql")
        if isinstance(events, pa.ChunkedArray):
            events = events.combine_chunks()
        if pa.types.is_string(events.type):
            events = events.cast(pa.large_string())
        _, offset_buffer, data = events.buffers()
        offsets = np.frombuffer(offset_buffer, dtype=np.int64)[events.offset: events.offset + len(events) + 1]
        lanes = batch.column("lane").to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(batch, memoryview(data) if data is not None else memoryview(b""), offsets, lanes)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sizes(self, idx: np.ndarray) -> np.ndarray:
        return self.offsets[idx + 1] - self.offsets[idx]

    def payload(self, idx: np.ndarray) -> bytes:
        """The events at `idx` joined by commas (no trailing comma)."""
        off, buf = self.offsets, self.buffer
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1:
            return bytes(buf[off[idx[0]]: off[idx[-1] + 1] - 1])
        return b"".join([buf[off[i]: off[i + 1]] for i in idx.tolist()])[:-1]

    def ids_of(self, idx) -> list[tuple[str | None, str | None]]:
        """(device_id, user_id) of the events at `idx` (only on the throttling path)."""
        devices = self.batch.column("device_id")
        users = self.batch.column("user_id")
        return [(devices[i].as_py(), users[i].as_py()) for i in idx]


@dataclasses.dataclass
class SendResult:
    """What happened to a chunk: accepted count, dead letters (index, reason, detail), request log."""

    accepted: int = 0
    dead: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    requests: int = 0
    retries: int = 0
    log: list[dict] = dataclasses.field(default_factory=list)

    def merge(self, other: "SendResult") -> None:
        self.accepted += other.accepted
        self.dead += other.dead
        self.requests += other.requests
        self.retries += other.retries
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
    """Delivers chunks through a `Client`, concurrently by lane (I/O)."""

    def __init__(self, client: Client, *, lanes: int, max_events: int = MAX_EVENTS_PER_REQUEST,
                 budget_seconds: float = 600.0, max_backoff_seconds: float = 60.0,
                 hold_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.lanes = lanes
        self.max_events = max_events
        self.max_bytes = client.max_bytes
        self.deadline = clock() + budget_seconds
        self.max_backoff = max_backoff_seconds
        self.hold_seconds = hold_seconds
        self.sleep = sleep
        self.clock = clock
        self.started = clock()
        self.abort = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="ampkit-lane")
        self._random = random.Random()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def send(self, chunk: Chunk) -> SendResult:
        """Deliver every event of `chunk`: each ends accepted or in `dead` (raises on fatal or budget)."""
        result = SendResult()
        if not len(chunk):
            return result
        jobs = [self._pool.submit(self._lane, chunk, np.flatnonzero(chunk.lanes == lane))
                for lane in np.unique(chunk.lanes)]
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

    def _lane(self, chunk: Chunk, idx: np.ndarray) -> SendResult:
        result = SendResult()
        queue = collections.deque(self._requests(chunk, idx))
        held: list[np.ndarray] = []
        held_ids: set[str] = set()
        release_at = 0.0
        while queue or held:
            if self.abort.is_set():
                raise SyncError("stopped: another lane failed")
            if held and (not queue or self.clock() >= release_at):
                wait = release_at - self.clock()
                if wait > 0:
                    self._check_budget(wait, "throttled ids")
                    self.sleep(wait)
                released = np.concatenate(held)
                held, held_ids = [], set()
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
            verdict = self._post(chunk, request, result)
            if verdict.kind == "ok":
                result.accepted += len(request)
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
                if len(request) == 1:
                    result.dead.append((int(request[0]), "too_large", "a single event over Amplitude's request cap"))
                else:
                    half = len(request) // 2
                    queue.appendleft(request[half:])
                    queue.appendleft(request[:half])
            elif verdict.kind == "throttled":
                rest, hold_part = self._throttled(chunk, request, verdict, result, held_ids)
                if len(hold_part):
                    held.append(hold_part)
                    release_at = max(release_at, self.clock() + self.hold_seconds)
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
        payload = chunk.payload(request)
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
        if self.clock() + delay > self.deadline:
            raise SyncError(f"retry budget exhausted ({reason}); the window stays open and the next run resends it")
