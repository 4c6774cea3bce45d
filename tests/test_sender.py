"""Properties of batching and splitting, and of the sender's accounting, on real bytes."""
import numpy as np
import pyarrow as pa
from hypothesis import given, settings, strategies as st

from ampkit.sender import Chunk, split


@given(st.lists(st.integers(1, 5000), max_size=3000), st.integers(1, 2000), st.integers(1, 50_000))
def test_split_keeps_order_respects_limits_loses_nothing(sizes, max_events, max_bytes):
    sizes = np.array(sizes, dtype=np.int64)
    parts = split(sizes, max_events, max_bytes)
    if not parts:
        assert len(sizes) == 0
        return
    # Contiguous, in order, covering every event exactly once.
    assert [a for a, _ in parts] == [0] + [b for _, b in parts[:-1]]
    assert (parts[-1][1] if parts else 0) == len(sizes)
    for a, b in parts:
        assert 1 <= b - a <= max_events
        # Only a single event alone may exceed the byte cap (the 413 path then dead-letters it).
        assert sizes[a:b].sum() <= max_bytes or b - a == 1


def chunk_of(events: list[str], lanes: list[int]) -> Chunk:
    batch = pa.record_batch({"event": pa.array([e + "," for e in events]), "lane": pa.array(lanes, pa.int64()),
                             "device_id": pa.array(["d"] * len(events)), "user_id": pa.array([None] * len(events), pa.string())})
    return Chunk.from_batch(batch)


@given(st.lists(st.text(alphabet="abc{}\":,é", min_size=1, max_size=20), min_size=1, max_size=200), st.data())
def test_payload_joins_any_subset_in_order(events, data):
    chunk = chunk_of(events, [0] * len(events))
    idx = np.array(sorted(data.draw(st.sets(st.integers(0, len(events) - 1), min_size=1))), dtype=np.int64)
    assert chunk.payload(idx).decode() == ",".join(events[i] for i in idx)


@settings(max_examples=50)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=300))
def test_lanes_partition_the_chunk(lanes):
    chunk = chunk_of(['{"e":%d}' % i for i in range(len(lanes))], lanes)
    seen = np.concatenate([np.flatnonzero(chunk.lanes == lane) for lane in np.unique(chunk.lanes)])
    assert sorted(seen.tolist()) == list(range(len(lanes)))
    for lane in np.unique(chunk.lanes):
        idx = np.flatnonzero(chunk.lanes == lane)
        assert (np.diff(idx) > 0).all()  # a lane keeps the chunk's time order


class FakeClient:
    """Answers every request 200 and notes when (on the fake clock) it carried which events."""

    max_bytes = 10_000_000
    eps_per_id = 0

    def __init__(self, clock):
        self.clock = clock
        self.posts: list[tuple[float, list[str]]] = []

    def post(self, events):
        import json
        from ampkit.amplitude import Verdict
        body = json.loads(b"[" + bytes(events) + b"]")
        self.posts.append((self.clock(), [e["d"] + ":" + str(e["n"]) for e in body]))
        return Verdict("ok", 200)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=400), st.integers(1, 3), st.integers(1, 40))
def test_pacer_keeps_every_id_under_its_budget_and_in_order(ids, lanes, max_events):
    from ampkit.sender import Pacer, Sender
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731

    def sleep(seconds):
        now[0] += seconds

    client = FakeClient(clock)
    sender = Sender(client, lanes=lanes, max_events=max_events, sleep=sleep, clock=clock, pace_eps=10,
                    pace_window_seconds=1.0)
    events = ['{"d":"dev-%d","n":%d}' % (d, i) for i, d in enumerate(ids)]
    batch = pa.record_batch({"event": pa.array([e + "," for e in events]),
                             "lane": pa.array([d % lanes for d in ids], pa.int64()),
                             "lane_key": pa.array(["dev-%d" % d for d in ids])})
    try:
        result = sender.send(Chunk.from_batch(batch))
    finally:
        sender.close()
    assert result.accepted == len(ids)
    limit = Pacer.for_rate(10, 1.0).limit
    sent: dict[str, list[tuple[float, int]]] = {}
    for at, carried in client.posts:
        for event in carried:
            device, n = event.split(":")
            sent.setdefault(device, []).append((at, int(n)))
    for device, times in sent.items():
        assert [n for _, n in times] == sorted(n for _, n in times), f"{device}'s events overtook each other"
        stamps = [t for t, _ in times]
        for i, t in enumerate(stamps):  # no window of one second (+ slack) holds more than the budget
            assert sum(1 for u in stamps if t <= u < t + 1.0) <= limit


def test_pacer_admits_the_earliest_events_of_an_id_first():
    from ampkit.sender import Pacer
    pacer = Pacer(limit=3, window_seconds=10)
    keys = np.array([1, 2, 1, 1, 1, 2], dtype=np.int64)
    assert pacer.admit(keys, 0.0).tolist() == [True, True, True, True, False, True]
    pacer.record(keys[[0, 1, 2, 3, 5]], 0.0)
    assert pacer.admit(np.array([1, 2], dtype=np.int64), 5.0).tolist() == [False, True]
    assert pacer.ready_at(np.array([1], dtype=np.int64), 5.0) == 10.0
    assert pacer.admit(np.array([1, 1, 1], dtype=np.int64), 10.0) is None


class StormClient:
    """Answers 413 to a request over its byte cap, and to the next `storm` requests whatever their size."""

    max_bytes = 60
    eps_per_id = 0

    def __init__(self, storm: int):
        self.storm = storm

    def post(self, events):
        from ampkit.amplitude import Verdict
        if len(events) > self.max_bytes or self.storm > 0:
            self.storm -= 1
            return Verdict("too_large", 413, "payload too large")
        return Verdict("ok", 200)


def test_a_413_dead_letters_only_an_event_over_the_cap_and_waits_out_a_storm():
    from ampkit.sender import Sender
    events = ['{"d":"dev","n":%d}' % i for i in range(4)] + ['{"d":"dev","big":"%s"}' % ("x" * 80)]
    sender = Sender(StormClient(storm=12), lanes=1, max_events=4, sleep=lambda s: None, budget_seconds=60)
    try:
        result = sender.send(chunk_of(events, [0] * len(events)))
    finally:
        sender.close()
    assert result.accepted == 4 and result.retries > 0
    assert [(i, reason) for i, reason, _ in result.dead] == [(4, "too_large")]


class SlowThenFlakyClient:
    """A healthy but slow Amplitude (each request takes `latency` seconds of the fake clock), then one 503."""

    max_bytes = 10_000
    eps_per_id = 0

    def __init__(self, clock, latency: float, fail_at: int, failures: int = 1):
        self.clock, self.latency, self.fail_at, self.failures, self.calls = clock, latency, fail_at, failures, 0

    def post(self, events):
        from ampkit.amplitude import Verdict
        self.calls += 1
        self.clock.now += self.latency
        if self.fail_at <= self.calls < self.fail_at + self.failures:
            return Verdict("retry", 503, "unavailable")
        return Verdict("ok", 200)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_the_retry_budget_is_time_without_progress_not_time_since_the_start():
    from ampkit.sender import Sender
    clock = FakeClock()
    client = SlowThenFlakyClient(clock, latency=100.0, fail_at=12)
    sender = Sender(client, lanes=1, max_events=1, sleep=clock.sleep, clock=clock, budget_seconds=600)
    events = ['{"d":"dev","n":%d}' % i for i in range(15)]
    try:
        result = sender.send(chunk_of(events, [0] * len(events)))
    finally:
        sender.close()
    assert clock.now > 1200 and result.accepted == 15 and result.retries == 1  # 20 minutes in, one 503 survived


def test_a_stall_longer_than_the_budget_fails_the_run():
    import pytest
    from ampkit.errors import SyncError
    from ampkit.sender import Sender
    clock = FakeClock()
    client = SlowThenFlakyClient(clock, latency=30.0, fail_at=3, failures=10_000)
    sender = Sender(client, lanes=1, max_events=1, sleep=clock.sleep, clock=clock, budget_seconds=600,
                    max_backoff_seconds=60)
    try:
        with pytest.raises(SyncError, match="no progress for"):
            sender.send(chunk_of(['{"d":"dev","n":%d}' % i for i in range(5)], [0] * 5))
    finally:
        sender.close()
    # Progress stopped at 60 s (two accepted requests); the run gives up within one request of 60 + 600 s.
    assert client.calls > 3 and 600 < clock.now <= 60 + 600 + 30
