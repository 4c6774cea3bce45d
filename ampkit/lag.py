"""How long events take to reach Amplitude: a run's lag histogram (pure).

Two lags per accepted event: from its `timestamp` (when it happened in the product) and from its
`loaded_at` (when the staging query loaded it) to the moment Amplitude accepted it. Each is kept
as counts per lag bucket and event hour, so runs, hours and days merge exactly in SQL
(`ampkit_lags`, `lag_runs.sql`, `lag_hours.sql`) while a run's memory stays flat: a backfill of
millions of rows holds a few thousand buckets.

Buckets round up to two significant figures (whole seconds under 100 s): a percentile read from
them is at most 10% (at 100 s; 1% at 990 s) above the exact one, never below, so "p95 <= 10 min"
read from the histogram holds for the events.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MEASURES = ("event", "loaded")  # lag from the event's timestamp, and from its loaded_at
_US = 1_000_000
_HOUR_US = 3600 * _US


def buckets(seconds: np.ndarray) -> np.ndarray:
    """Each lag (seconds, float) as its bucket: whole seconds up to 100, then two significant
    figures, rounded up; negative lags (a client clock ahead of ours) count as 0."""
    v = np.ceil(np.maximum(np.asarray(seconds, dtype=np.float64), 0.0)).astype(np.int64)
    big = v >= 100
    if big.any():
        step = 10 ** (np.floor(np.log10(v[big])).astype(np.int64) - 1)
        v[big] = -(-v[big] // step) * step
    return v


def quantile(histogram: list[tuple[int, int]], percent: int) -> int | None:
    """The smallest bucket whose cumulative count reaches `percent` % of the total, from (bucket,
    count) pairs: the definition `lag_runs.sql` uses too (in whole numbers, so the two agree)."""
    pairs = sorted(histogram)
    total = sum(n for _, n in pairs)
    if not total:
        return None
    seen = 0
    for bucket, n in pairs:
        seen += n
        if seen * 100 >= percent * total:
            return bucket
    return pairs[-1][0]


@dataclasses.dataclass
class Lags:
    """A run's accepted events as (event hour, measure, bucket) -> [events, newest time in µs]."""

    cells: dict[tuple[int, str, int], list[int]] = dataclasses.field(default_factory=dict)

    def add(self, accepted_at: dt.datetime, event_times: pa.Array, loaded_ats: pa.Array) -> None:
        """Count events Amplitude accepted at `accepted_at`, given their timestamps and loaded_at."""
        at = int(accepted_at.timestamp() * _US)
        event_us = _micros(event_times)
        hours = (event_us // _HOUR_US) * _HOUR_US
        for measure, times in (("event", event_us), ("loaded", _micros(loaded_ats))):
            present = (times >= 0) & (event_us >= 0)
            b = buckets((at - times[present]) / _US)
            table = pa.table({"hour": hours[present], "bucket": b, "time": times[present]})
            grouped = table.group_by(["hour", "bucket"]).aggregate([("time", "count"), ("time", "max")])
            for hour, bucket, n, newest in zip(*(grouped.column(c).to_numpy() for c in
                                                ("hour", "bucket", "time_count", "time_max"))):
                cell = self.cells.setdefault((int(hour), measure, int(bucket)), [0, 0])
                cell[0] += int(n)
                cell[1] = max(cell[1], int(newest))

    def merge(self, other: "Lags") -> None:
        for key, (n, newest) in other.cells.items():
            cell = self.cells.setdefault(key, [0, 0])
            cell[0] += n
            cell[1] = max(cell[1], newest)

    def params(self) -> dict[str, list]:
        """The histogram as sync_finalize.sql's array parameters."""
        keys = sorted(self.cells)
        return {"lag_hours": [_time(h) for h, _, _ in keys], "lag_measures": [m for _, m, _ in keys],
                "lag_buckets": [b for _, _, b in keys], "lag_counts": [self.cells[k][0] for k in keys],
                "lag_newest": [_time(self.cells[k][1]) for k in keys]}

    def summary(self) -> dict:
        """Per measure: events, p50, p95 and max (seconds); and the newest accepted event's time."""
        out: dict = {}
        for measure in MEASURES:
            hist: dict[int, int] = {}
            for (_, m, b), (n, _) in self.cells.items():
                if m == measure:
                    hist[b] = hist.get(b, 0) + n
            pairs = list(hist.items())
            out[measure] = {"events": sum(hist.values()), "p50": quantile(pairs, 50),
                            "p95": quantile(pairs, 95), "max": max(hist) if hist else None}
        newest = max((v[1] for (_, m, _), v in self.cells.items() if m == "event"), default=None)
        out["newest_event_at"] = _time(newest).isoformat() if newest is not None else None
        return out


def _micros(times: pa.Array) -> np.ndarray:
    """Timestamps as µs since the epoch (missing ones as -1)."""
    us = pc.cast(pc.cast(times, pa.timestamp("us", tz="UTC")), pa.int64())
    return pc.fill_null(us, -1).to_numpy(zero_copy_only=False)


def _time(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(us))
