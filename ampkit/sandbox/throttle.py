"""Per-id rate limits: events per second over a sliding window, and a rolling daily quota.

No I/O of its own; every call takes `now_ms` from the caller's clock. Events count once
they are stored (a 429 stores nothing, and a duplicate dropped by insert_id dedup is not
stored), which makes "wait for the window to slide, then resend" work as the docs describe.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Returns (bucket index, id, events) for every id stored since `since_ms`, bucketed by `bucket_ms`.
Loader = Callable[[int, int], Iterable[tuple[int, str, int]]]


class RateWindow:
    """Events per id over the last `buckets` buckets of `bucket_ms` each (the current one included).

    At 100k+ events/s, keeping exact per-id totals would cost more than everything else in a
    request, and it almost always answers "nobody is near the limit". So the window keeps a
    cheap upper bound instead: no id can have more events in the window than the sum, over
    the requests in it, of the largest count of one id in each request. Only when that bound
    reaches the limit are exact totals loaded from the store, and kept up to date until the
    bound falls back under the limit.
    """

    def __init__(self, bucket_ms: int, buckets: int, load: Loader) -> None:
        self._bucket_ms = bucket_ms
        self._buckets = buckets
        self._load = load
        self._peaks: deque[list[int]] = deque()  # [bucket index, sum of request peaks]
        self._bound = 0
        self._exact: dict[int, Counter] | None = None  # bucket index -> counts, while exact
        self._totals: Counter = Counter()

    def over(self, counts: Counter, peak: int, limit: int, now_ms: int) -> dict[str, int]:
        """Ids whose window total plus `counts` would exceed `limit`, with that total."""
        self._expire(now_ms)
        if not counts:
            return {}
        if self._bound + peak <= limit:
            self._exact = None
            self._totals = Counter()
            return {}
        if self._exact is None:
            self._materialize(now_ms)
        totals = self._totals
        return {key: totals.get(key, 0) + n for key, n in counts.items() if totals.get(key, 0) + n > limit}

    def add(self, ids: list[str], peak: int, now_ms: int) -> None:
        """Count stored events: `ids` has one entry per event (no None); `peak` its largest count."""
        self._expire(now_ms)
        index = now_ms // self._bucket_ms
        if not self._peaks or self._peaks[-1][0] != index:
            self._peaks.append([index, 0])
        self._peaks[-1][1] += peak
        self._bound += peak
        if self._exact is not None:
            self._exact.setdefault(index, Counter()).update(ids)
            self._totals.update(ids)

    def clear(self) -> None:
        self._peaks.clear()
        self._bound = 0
        self._exact = None
        self._totals = Counter()

    def _materialize(self, now_ms: int) -> None:
        oldest = now_ms // self._bucket_ms - self._buckets + 1
        exact: dict[int, Counter] = {}
        for index, key, n in self._load(oldest * self._bucket_ms, self._bucket_ms):
            exact.setdefault(index, Counter())[key] += n
        totals: Counter = Counter()
        for counts in exact.values():
            totals.update(counts)
        self._exact, self._totals = exact, totals

    def _expire(self, now_ms: int) -> None:
        peaks = self._peaks
        current = now_ms // self._bucket_ms
        if peaks and peaks[-1][0] > current:
            # The clock was moved back; old counts no longer mean anything.
            self.clear()
            return
        oldest_kept = current - self._buckets + 1
        while peaks and peaks[0][0] < oldest_kept:
            self._bound -= peaks.popleft()[1]
        exact = self._exact
        if exact is not None:
            for index in [i for i in exact if i < oldest_kept]:
                for key, n in exact.pop(index).items():
                    left = self._totals[key] - n
                    if left > 0:
                        self._totals[key] = left
                    else:
                        del self._totals[key]


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


class DailyQuota:
    """Events per id over a rolling 24 h, in 1-hour steps (as the Batch API docs describe)."""

    def __init__(self, quota: int, load_users: Loader, load_devices: Loader) -> None:
        self.quota = quota
        self.users = RateWindow(3600 * 1000, 24, load_users)
        self.devices = RateWindow(3600 * 1000, 24, load_devices)

    def clear(self) -> None:
        self.users.clear()
        self.devices.clear()


class Throttle:
    """The limits of one project on one endpoint; the daily quota is shared across endpoints."""

    def __init__(self, eps: int, window_seconds: int, daily: DailyQuota, load_users: Loader,
                 load_devices: Loader, project_eps: int | None = None) -> None:
        self.eps = eps
        self._window_seconds = window_seconds
        self._users = RateWindow(1000, window_seconds, load_users)
        self._devices = RateWindow(1000, window_seconds, load_devices)
        self._daily = daily
        self._project_eps = project_eps
        self._project: deque[list[int]] = deque()  # [second, events], the last second only

    def check(self, users: IdCounts, devices: IdCounts, events: int, now_ms: int) -> Verdict:
        """Which ids this request would push over a limit. Does not count the request."""
        limit = self.eps * self._window_seconds
        window = self._window_seconds
        verdict = Verdict(self.eps)
        over_users = self._users.over(users.counts, users.peak, limit, now_ms)
        over_devices = self._devices.over(devices.counts, devices.peak, limit, now_ms)
        # The body reports an average rate, as Amplitude does ({"device": 31} for 30 EPS).
        verdict.throttled_users = {k: math.ceil(v / window) for k, v in over_users.items()}
        verdict.throttled_devices = {k: math.ceil(v / window) for k, v in over_devices.items()}
        quota = self._daily.quota
        verdict.exceeded_daily_quota_users = self._daily.users.over(users.counts, users.peak, quota, now_ms)
        verdict.exceeded_daily_quota_devices = self._daily.devices.over(devices.counts, devices.peak, quota, now_ms)
        if self._project_eps is not None:
            verdict.project_throttled = self._project_events(now_ms) + events > self._project_eps
        return verdict

    def record(self, users: IdCounts, devices: IdCounts, events: int, now_ms: int) -> None:
        """Count a request's stored events (duplicates already removed)."""
        self._users.add(users.ids, users.peak, now_ms)
        self._devices.add(devices.ids, devices.peak, now_ms)
        self._daily.users.add(users.ids, users.peak, now_ms)
        self._daily.devices.add(devices.ids, devices.peak, now_ms)
        if self._project_eps is not None:
            self._project_events(now_ms)
            second = now_ms // 1000
            if not self._project or self._project[-1][0] != second:
                self._project.append([second, 0])
            self._project[-1][1] += events

    def clear(self) -> None:
        self._users.clear()
        self._devices.clear()
        self._project.clear()

    def _project_events(self, now_ms: int) -> int:
        second = now_ms // 1000
        while self._project and self._project[0][0] != second:
            self._project.popleft()
        return self._project[0][1] if self._project else 0
