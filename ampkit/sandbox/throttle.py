"""Per-id rate limits: events per second over a sliding window, and a rolling daily quota.

Pure state, no I/O; every call takes `now_ms` from the caller's clock. Only accepted events
are counted (a 429 ingests nothing, so it does not count), which makes "wait for the window
to slide, then resend" work exactly as the docs describe.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field


class RateWindow:
    """Counts per id over the last `buckets` buckets of `bucket_ms` each (the current one included).

    At 100k+ events/s, keeping exact per-id totals costs more than everything else in a
    request, and almost always answers "nobody is near the limit". So the window keeps a cheap
    upper bound first: no id can have more events in the window than the sum, over requests,
    of the largest count of one id in each request. Only when that bound reaches the limit
    are exact totals built (from the buckets) and kept up to date until the window empties.
    """

    def __init__(self, bucket_ms: int, buckets: int) -> None:
        self._bucket_ms = bucket_ms
        self._buckets = buckets
        self._history: deque[_Bucket] = deque()
        self._bound = 0
        self._totals: Counter | None = None

    def over(self, counts: Counter, limit: int, now_ms: int) -> dict[str, int]:
        """Ids whose window total plus `counts` would exceed `limit`, with that total."""
        self._expire(now_ms)
        if not counts:
            return {}
        if self._bound + max(counts.values()) <= limit:
            return {}
        totals = self._exact()
        return {key: totals.get(key, 0) + n for key, n in counts.items() if totals.get(key, 0) + n > limit}

    def total(self, key: str, now_ms: int) -> int:
        self._expire(now_ms)
        return self._exact().get(key, 0)

    def add(self, ids: list[str], peak: int, now_ms: int) -> None:
        """Count `ids` (one entry per event, no None); `peak` is the largest count of one id."""
        self._expire(now_ms)
        index = now_ms // self._bucket_ms
        history = self._history
        if not history or history[-1].index != index:
            if history:
                history[-1].compact()
            history.append(_Bucket(index))
        bucket = history[-1]
        bucket.pending.append(ids)
        bucket.peak_sum += peak
        self._bound += peak
        if self._totals is not None:
            self._totals.update(ids)

    def clear(self) -> None:
        self._history.clear()
        self._bound = 0
        self._totals = None

    def _exact(self) -> Counter:
        if self._totals is None:
            totals: Counter = Counter()
            for bucket in self._history:
                totals.update(bucket.compact())
            self._totals = totals
        return self._totals

    def _expire(self, now_ms: int) -> None:
        history = self._history
        if not history:
            return
        current = now_ms // self._bucket_ms
        if history[-1].index > current:
            # The clock was moved back; old counts no longer mean anything.
            self.clear()
            return
        oldest_kept = current - self._buckets + 1
        while history and history[0].index < oldest_kept:
            bucket = history.popleft()
            self._bound -= bucket.peak_sum
            totals = self._totals
            if totals is not None:
                for key, n in bucket.compact().items():
                    left = totals[key] - n
                    if left > 0:
                        totals[key] = left
                    else:
                        del totals[key]
        if not history:
            self._totals = None


class _Bucket:
    """One bucket's ids: lists as they arrive, folded into a Counter once the bucket closes."""

    __slots__ = ("index", "pending", "counts", "peak_sum")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pending: list[list[str]] = []
        self.counts: Counter = Counter()
        self.peak_sum = 0

    def compact(self) -> Counter:
        for ids in self.pending:
            self.counts.update(ids)
        self.pending.clear()
        return self.counts


@dataclass
class Verdict:
    """Why a request is throttled. Empty maps everywhere means it may go through."""

    eps_threshold: int
    throttled_users: dict[str, int] = field(default_factory=dict)
    throttled_devices: dict[str, int] = field(default_factory=dict)
    exceeded_daily_quota_users: dict[str, int] = field(default_factory=dict)
    exceeded_daily_quota_devices: dict[str, int] = field(default_factory=dict)
    project_throttled: bool = False

    def __bool__(self) -> bool:
        return bool(self.throttled_users or self.throttled_devices or self.exceeded_daily_quota_users
                    or self.exceeded_daily_quota_devices or self.project_throttled)


class Throttle:
    """The limits of one project on one endpoint; the daily quota is shared across endpoints."""

    def __init__(self, eps: int, window_seconds: int, daily: DailyQuota, project_eps: int | None = None) -> None:
        self.eps = eps
        self._window_seconds = window_seconds
        self._users = RateWindow(1000, window_seconds)
        self._devices = RateWindow(1000, window_seconds)
        self._daily = daily
        self._project_eps = project_eps
        self._project = RateWindow(1000, 1)

    def check(self, users: IdCounts, devices: IdCounts, events: int, now_ms: int) -> Verdict:
        """Which ids this request would push over a limit. Does not count the request."""
        limit = self.eps * self._window_seconds
        window = self._window_seconds
        verdict = Verdict(self.eps)
        over_users = self._users.over(users.counts, limit, now_ms)
        over_devices = self._devices.over(devices.counts, limit, now_ms)
        # The body reports an average rate, as Amplitude does ({"device": 31} for 30 EPS).
        verdict.throttled_users = {k: math.ceil(v / window) for k, v in over_users.items()}
        verdict.throttled_devices = {k: math.ceil(v / window) for k, v in over_devices.items()}
        verdict.exceeded_daily_quota_users = self._daily.users.over(users.counts, self._daily.quota, now_ms)
        verdict.exceeded_daily_quota_devices = self._daily.devices.over(devices.counts, self._daily.quota, now_ms)
        if self._project_eps is not None:
            verdict.project_throttled = bool(self._project.over(Counter({"*": events}), self._project_eps, now_ms))
        return verdict

    def record(self, users: IdCounts, devices: IdCounts, events: int, now_ms: int) -> None:
        self._users.add(users.ids, users.peak, now_ms)
        self._devices.add(devices.ids, devices.peak, now_ms)
        self._daily.users.add(users.ids, users.peak, now_ms)
        self._daily.devices.add(devices.ids, devices.peak, now_ms)
        if self._project_eps is not None:
            self._project.add(["*"] * events, events, now_ms)

    def clear(self) -> None:
        self._users.clear()
        self._devices.clear()
        self._project.clear()


class DailyQuota:
    """Events per id over a rolling 24 h, in 1-hour steps (as the Batch API docs describe)."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self.users = RateWindow(3600 * 1000, 24)
        self.devices = RateWindow(3600 * 1000, 24)

    def clear(self) -> None:
        self.users.clear()
        self.devices.clear()


@dataclass(frozen=True)
class IdCounts:
    """One request's ids of one kind: every occurrence (no None), per-id counts, the largest count."""

    ids: list[str]
    counts: Counter
    peak: int


def id_counts(ids: list[str | None]) -> IdCounts:
    """Events without that id (None) are not counted."""
    if None in ids:
        ids = [i for i in ids if i is not None]
    counts = Counter(ids)
    return IdCounts(ids, counts, max(counts.values(), default=0))
