"""1. Crashes: `python -m ampkit sync` SIGKILLed in every phase, then a normal re-run.

Two kinds of kill points:

- named points: the crash-point harness (`crashpoint.py`) lets the real `python -m ampkit sync`
  run and SIGKILLs it when it reaches a precise place: in the lease transaction, between
  ledger statements, mid-snapshot, after the transform, after Amplitude acknowledged a request
  that ampkit has not recorded, during a backoff, between dead letters and the outcome commit,
  inside the uncommitted finalize transaction, before the lease is released...;
- random moments: plain SIGKILLs after a random delay while the sandbox answers slowly
  (a `delay` fault) and requests are small, so kills land in every phase.

After each kill a normal run completes the job. Then the sandbox export holds exactly the
sendable insert_ids, each once; every row has exactly one outcome; and the ledger
(`ampkit_runs`) shows the killed run honestly: `interrupted` if it started work and never
finished, absent if it died before writing its ledger row, `ok` if it had finished.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import random
import subprocess
import time

import pytest

from ampkit import sync

from . import support
from .support import HOUR, MINUTE, NOW

# Small requests, two lanes, one or two slices per run (60 rows each: an hour of window_rows): many
# steps to die between.
SETTINGS = {"max_events_per_request": 10, "concurrency": 2, "lookback_hours": 1, "slice_rows": 60,
            "retry_budget_seconds": 30, "max_backoff_seconds": 0.3, "throttle_hold_seconds": 0.3,
            "request_timeout_seconds": 5}


def window_rows(prefix: str, first_id: int, end: dt.datetime, per_hour: int = 60, hours: int = 2):
    """`hours` hours of rows loaded up to `end`: sendable ones, plus one rejected (no id) and one filtered per hour.

    Returns (rows, sendable insert_ids, {id: expected (outcome, reason)}).
    """
    rows, expected, outcomes = [], set(), {}
    next_id = first_id
    for hour in range(hours, 0, -1):
        top = end - (hour - 1) * HOUR
        for r in support.spread(prefix, next_id, per_hour, top - HOUR, top):
            rows.append(r)
            expected.add(r["insert_id"])
            outcomes[r["id"]] = ("accepted", None)
        next_id += per_hour
        rows.append(support.row(next_id, prefix, loaded_at=top - 30 * MINUTE, device_id=None, user_id=0,
                                anonymous_user_id=""))
        outcomes[next_id] = ("rejected", "no_id")
        rows.append(support.row(next_id + 1, prefix, loaded_at=top - 29 * MINUTE, name="codeintel.hover"))
        outcomes[next_id + 1] = ("filtered", "codeintel_deny_list")
        next_id += 2
    return rows, expected, outcomes


@dataclasses.dataclass(frozen=True)
class Point:
    name: str
    at: str
    ledger: str                 # the killed run's ledger row after the re-run: absent | interrupted | ok
    faults: tuple = ()          # sandbox faults that make the point reachable
    windows: int = 1            # hourly windows of data (2 for points in or after the second window)

    def __str__(self) -> str:
        return self.name


POINTS = [
    Point("lease-row-created-not-taken", "stmt:run_begin#2:1", "absent"),
    Point("ledger-row-written", "qreturn:run_begin:1", "interrupted"),
    Point("extract-snapshot-mid-statement", "stmt:sync_snapshot#3:1", "interrupted"),
    Point("extract-second-window", "qreturn:sync_snapshot:2", "interrupted", windows=2),
    Point("transform-data-map-decided", "return:sync.Run._decide:1", "interrupted"),
    Point("transform-first-batch-built", "call:sender.Chunk.from_batch:1", "interrupted"),
    Point("send-acknowledged-not-recorded", "return:amplitude.Client.post:1", "interrupted"),
    Point("send-mid-window", "return:amplitude.Client.post:4", "interrupted"),
    Point("send-during-backoff", "call:sender.Sender._backoff:1", "interrupted",
          faults=({"endpoint": "/batch", "status": 503, "count": 1},)),
    Point("send-holding-throttled-ids", "return:sender.Sender._throttled:1", "interrupted",
          faults=({"endpoint": "/batch", "status": 429, "count": 1, "throttled": "first"},)),
    Point("send-ingested-then-500", "return:amplitude.Client.post:1", "interrupted",
          faults=({"endpoint": "/batch", "kind": "ingested_then_500", "count": 1},)),
    Point("checkpoint-dead-letters-prepared", "return:state.reject_params:1", "interrupted"),
    Point("checkpoint-finalize-uncommitted", "stmt:sync_finalize#4:1", "interrupted"),
    Point("checkpoint-finalize-before-commit", "stmt:sync_finalize#COMMIT:1", "interrupted"),
    Point("checkpoint-first-window-committed", "qreturn:sync_finalize:1", "interrupted", windows=2),
    Point("ledger-finish-between-statements", "stmt:run_finish#INSERT:1", "interrupted"),
    Point("release-pending", "stmt:run_finish#-1:1", "ok"),
]
SOAK_POINTS = [  # more places, and the same places later in the run
    Point("lease-taken", "stmt:run_begin#3:1", "absent"),
    Point("ledger-marking-earlier-runs", "stmt:run_begin#4:1", "absent"),
    Point("extract-snapshot-done", "qreturn:sync_snapshot:1", "interrupted"),
    Point("transform-query-started", "qcall:sync_extract:1", "interrupted"),
    Point("send-before-first-request", "call:amplitude.Client.post:1", "interrupted"),
    Point("send-second-window", "return:amplitude.Client.post:9", "interrupted", windows=2),
    Point("checkpoint-before-dead-letters", "call:state.reject_params:1", "interrupted"),
    Point("checkpoint-outcomes-decided", "stmt:sync_finalize#5:1", "interrupted"),
    Point("checkpoint-lease-renewed", "stmt:sync_finalize#3:1", "interrupted"),
    Point("ledger-finishing", "call:state.finish:1", "interrupted"),
    Point("send-later-request", "return:amplitude.Client.post:7", "interrupted", windows=2),
    Point("send-last-window-start", "call:amplitude.Client.post:8", "interrupted", windows=2),
    Point("checkpoint-second-window-dead-letters", "return:state.reject_params:2", "interrupted", windows=2),
    Point("checkpoint-second-window-uncommitted", "stmt:sync_finalize#4:2", "interrupted", windows=2),
    Point("checkpoint-second-window-committed", "qreturn:sync_finalize:2", "interrupted", windows=2),
    Point("transform-second-window", "qcall:sync_extract:2", "interrupted", windows=2),
    Point("send-second-backoff", "call:sender.Sender._backoff:2", "interrupted", windows=2,
          faults=({"endpoint": "/batch", "status": 502, "count": 2},)),
]


DEAD_LETTER_PROBLEM = "rejected rows without their dead letter"


def _param(point: Point):
    return pytest.param(point, id=point.name)


def kill_then_rerun(request, tmp_path, amp, prefix, rel, point: Point):
    url = support.fresh_warehouse(tmp_path)
    rows, expected, outcomes = window_rows(prefix, 1, NOW, hours=point.windows)
    support.insert(url, rows)
    settings = {**SETTINGS, "initial_lookback_hours": point.windows}
    for fault in point.faults:
        amp.control.inject(**fault)
    trace = tmp_path / "trace.txt"
    child = support.ampkit("-q", "sync", "--progress", "none", environ=support.env(url, amp.url, **settings),
                           at=point.at, trace=trace, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code = support.finish(child)
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    fired = trace.read_text() if trace.exists() else ""
    assert support.killed_by_sigkill(code) and "KILL" in fired, \
        f"the run was not killed at {point.at} (exit {code}); trace: {fired!r}; stderr: {stderr[-800:]}"
    rel.killed()
    amp.control.clear_faults()

    killed = support.ledger(url)
    if point.ledger == "interrupted":
        # Before any re-run the ledger already says the run never finished.
        assert killed, f"killed at {point.name}, the run left no ledger row at all"
        assert [r["status"] for r in killed.values()] == ["running"], killed

    result = sync.run(support.config(url, amp.url, **settings), progress="none")
    assert result.status == "ok", result.error
    support.identity(result)
    rel.delivered(expected, support.exported(amp.url, prefix), f"killed at {point.name}")

    after = support.ledger(url)
    killed_status = {run_id: after[run_id]["status"] for run_id in killed if run_id in after}
    if point.ledger == "absent":
        assert not killed, f"a run killed before writing its ledger row left one: {killed}"
    else:
        assert killed_status and list(killed_status.values()) == [point.ledger], \
            f"killed at {point.name}: ledger shows {killed_status or 'no row for the killed run'}"
    if point.ledger == "interrupted":
        (row,) = [after[k] for k in killed_status]
        assert "killed or crashed" in (row["error"] or ""), row
    assert after[result.run_id]["status"] == "ok"
    got = support.outcome_of(url, outcomes)
    assert got == outcomes, {k: (v, got.get(k)) for k, v in outcomes.items() if got.get(k) != v}
    assert support.watermark(url) == NOW
    assert support.books(url) == []


@pytest.mark.parametrize("point", [_param(p) for p in POINTS])
def test_sigkill_at_named_point_then_rerun(point, request, tmp_path, amp, prefix, rel):
    kill_then_rerun(request, tmp_path, amp, prefix, rel, point)


@pytest.mark.slow
@pytest.mark.parametrize("point", [_param(p) for p in SOAK_POINTS])
def test_sigkill_at_later_points_soak(point, request, tmp_path, amp, prefix, rel, soak):
    if not soak:
        pytest.skip("soak mode only (--soak or AMPKIT_SOAK=1)")
    kill_then_rerun(request, tmp_path, amp, prefix, rel, point)


def _phases(trace) -> list[str]:
    if not trace.exists():
        return ["startup"]
    phases = [line.split()[1] for line in trace.read_text().splitlines() if line.startswith("phase ")]
    return phases or ["startup"]


@pytest.mark.timeout(1800)  # soak: 80 kill-and-rerun cycles
def test_sigkill_at_random_moments_then_rerun(request, tmp_path, amp, prefix, rel, soak):
    """Plain SIGKILLs after a random delay while Amplitude is slow; each followed by a normal run."""
    cycles = 80 if soak else 8
    rng = random.Random(0x5EED)
    url = support.fresh_warehouse(tmp_path)
    amp.control.inject("/batch", kind="delay", delay_seconds=0.1, share=1.0)
    expected: set[str] = set()
    hit = collections.Counter()
    kills = restored = 0
    dropped: list[str] = []
    for cycle in range(cycles):
        now = NOW + cycle * HOUR
        rows, sendable, _ = window_rows(prefix, 1 + cycle * 200, now, per_hour=90, hours=1)
        support.insert(url, rows)
        expected |= sendable
        trace = tmp_path / f"trace-{cycle}.txt"
        environ = support.env(url, amp.url, now=now.isoformat(), initial_lookback_hours=1, **SETTINGS)
        child = support.ampkit("-q", "sync", "--progress", "none", environ=environ, trace=trace,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Python's start-up time varies by machine; count from the moment the run takes its lease.
        deadline = time.monotonic() + 60
        while "phase lease" not in (trace.read_text() if trace.exists() else "") and child.poll() is None:
            assert time.monotonic() < deadline, "the sync never reached its lease"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        child.kill()
        code = support.finish(child)
        phase = _phases(trace)[-1] if support.killed_by_sigkill(code) else "finished"
        hit[phase] += 1
        if support.killed_by_sigkill(code):
            kills += 1
            rel.killed()
        if support.damaged(url):
            # DuckDB's own bug (see DuckDBWarehouse.good_copy): killed mid-checkpoint, its file fails its
            # checksums. Put back as a user would; the runs since the copy are then sent again.
            support.restore(url, environ)
            restored += 1
            rel.restored()
        result = sync.run(support.config(url, amp.url, now=now, initial_lookback_hours=1, **SETTINGS), progress="none")
        assert result.status == "ok", result.error
        support.identity(result)
        rel.delivered(expected, support.exported(amp.url, prefix), f"cycle {cycle}, killed in phase {phase}")
        problems = support.books(url)
        dropped += [p for p in problems if p.startswith(DEAD_LETTER_PROBLEM)]
        others = [p for p in problems if not p.startswith(DEAD_LETTER_PROBLEM)]
        assert others == [], f"cycle {cycle} (killed in {phase}): {others}"
        rel.subcase()
    rel.subcase(-1)  # the test itself is one case
    statuses = collections.Counter(r["status"] for r in support.ledger(url).values())
    assert statuses["running"] == 0 and statuses["ok"] >= cycles
    assert kills >= cycles * 0.5, f"only {kills} of {cycles} runs were killed mid-way; phases: {dict(hit)}"
    print(f"random kills by phase: {dict(hit)}; DuckDB files damaged and put back: {restored}")
    assert not dropped, dropped


def test_a_warehouse_damaged_by_a_kill_is_put_back_and_nothing_is_lost_or_sent_twice(tmp_path, amp, prefix, rel):
    """DuckDB's own bug, made on purpose: after two runs the file fails its checksums (as a kill
    inside DuckDB's checkpoint leaves it). The sync says so and how to restore; a sync that finds it
    damaged keeps the good copy; after `ampkit restore-warehouse` the next run re-sends the second
    run's events, which Amplitude keeps once."""
    from ampkit.errors import DamagedError
    url = support.fresh_warehouse(tmp_path)
    path = tmp_path / "warehouse.duckdb"
    expected: set[str] = set()
    for hour in range(2):
        now = NOW + hour * HOUR
        rows, sendable, _ = window_rows(prefix, 1 + hour * 200, now, hours=1)
        support.insert(url, rows)
        expected |= sendable
        result = sync.run(support.config(url, amp.url, now=now, initial_lookback_hours=1, **SETTINGS), progress="none")
        assert result.status == "ok", result.error
    rel.delivered(expected, support.exported(amp.url, prefix), "two runs")
    copy = tmp_path / "warehouse.duckdb.last-good"
    assert copy.exists()
    support.damage(path)
    kept = copy.read_bytes()
    config = support.config(url, amp.url, now=NOW + HOUR, initial_lookback_hours=1, **SETTINGS)
    with pytest.raises(DamagedError, match="`ampkit restore-warehouse` puts back its last good copy"):
        sync.run(config, progress="none")
    assert copy.read_bytes() == kept, "a damaged file replaced the good copy"
    support.restore(url, support.env(url, amp.url))
    rel.restored()
    result = sync.run(config, progress="none")
    assert result.status == "ok", result.error
    assert result.accepted > 0, "the second run's events were not sent again"
    rel.delivered(expected, support.exported(amp.url, prefix), "after the copy was put back")
    assert support.books(url) == []
    assert len(list(tmp_path.glob("warehouse.duckdb.set-aside-*"))) == 1


def test_several_kills_in_a_row_then_one_rerun(request, tmp_path, amp, prefix, rel):
    """Three runs killed back to back (each taking over the dead one's lease), then one clean run."""
    url = support.fresh_warehouse(tmp_path)
    rows, expected, outcomes = window_rows(prefix, 1, NOW, hours=2)
    support.insert(url, rows)
    environ = support.env(url, amp.url, initial_lookback_hours=2, **SETTINGS)
    points = ["return:amplitude.Client.post:3", "return:state.reject_params:1", "qreturn:sync_finalize:1"]
    for at in points:
        child = support.ampkit("-q", "sync", "--progress", "none", environ=environ, at=at,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert support.killed_by_sigkill(support.finish(child)), at
        rel.killed()
        rel.subcase()
    rel.subcase(-1)
    started = support.ledger(url)
    assert sorted(r["status"] for r in started.values()) == ["interrupted", "interrupted", "running"]
    result = sync.run(support.config(url, amp.url, initial_lookback_hours=2, **SETTINGS), progress="none")
    assert result.status == "ok"
    rel.delivered(expected, support.exported(amp.url, prefix), "three kills in a row")
    after = support.ledger(url)
    assert sorted(after[k]["status"] for k in started) == ["interrupted"] * 3
    assert support.outcome_of(url, outcomes) == outcomes
    assert support.books(url) == []


def test_dead_letters_of_a_killed_run_are_not_counted_twice(tmp_path, amp, prefix, rel):
    """Killed between its dead letters and its outcome commit: the re-run's dead letters are the only ones."""
    from ampkit import deadletter
    url = support.fresh_warehouse(tmp_path)
    rows, expected, outcomes = window_rows(prefix, 1, NOW, hours=1)
    support.insert(url, rows)
    settings = {**SETTINGS, "initial_lookback_hours": 1}
    child = support.ampkit("-q", "sync", "--progress", "none", environ=support.env(url, amp.url, **settings),
                           at="return:state.reject_params:1", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert support.killed_by_sigkill(support.finish(child))
    rel.killed()
    cfg = support.config(url, amp.url, **settings)
    assert sync.run(cfg, progress="none").status == "ok"
    rel.delivered(expected, support.exported(amp.url, prefix), "killed after dead letters")
    rejected = support.query(url, "SELECT reason, COUNT(*) AS n FROM ampkit_deliveries WHERE outcome = 'rejected' GROUP BY reason")
    listed = deadletter.counts(cfg, dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
    assert {r["reason"]: r["events"] for r in listed} == {r["reason"]: r["n"] for r in rejected}
    assert {r["reason"]: r["open_events"] for r in listed} == {r["reason"]: r["n"] for r in rejected}


@pytest.mark.parametrize("how", ["killed", "failed"])
def test_dead_letters_of_committed_windows_survive_a_later_crash(how, tmp_path, amp, prefix, rel):
    """Window 1 commits a rejected row; the run then dies (SIGKILL) or fails (outage) in window 2."""
    url = support.fresh_warehouse(tmp_path)
    rows, expected, outcomes = window_rows(prefix, 1, NOW, hours=2)
    support.insert(url, rows)
    settings = {**SETTINGS, "initial_lookback_hours": 2, "retry_budget_seconds": 1}
    if how == "killed":
        child = support.ampkit("-q", "sync", "--progress", "none", environ=support.env(url, amp.url, **settings),
                               at="qreturn:sync_finalize:1", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert support.killed_by_sigkill(support.finish(child))
        rel.killed()
    else:
        barrier, trace = tmp_path / "outage-is-on", tmp_path / "trace.txt"
        child = support.ampkit("-q", "sync", "--progress", "none", environ=support.env(url, amp.url, **settings),
                               at="qreturn:sync_finalize:1", action=f"wait:{barrier}:60", trace=trace,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Window 1 commits; the run stalls there until Amplitude goes down, then fails in window 2.
        deadline = time.monotonic() + 60
        while "WAIT" not in (trace.read_text() if trace.exists() else ""):
            assert time.monotonic() < deadline and child.poll() is None, "the run never committed window 1"
            time.sleep(0.02)
        amp.control.inject("/batch", status=503, share=1.0)
        barrier.touch()
        assert support.finish(child) == 1
        amp.control.clear_faults()
        assert [r["status"] for r in support.ledger(url).values()] == ["failed"]
    first_window = support.query(url, "SELECT d.id, d.reason FROM ampkit_deliveries AS d WHERE d.outcome = 'rejected'")
    assert first_window, "window 1 did not commit its rejected row before the crash"
    assert sync.run(support.config(url, amp.url, **settings), progress="none").status == "ok"
    rel.delivered(expected, support.exported(amp.url, prefix), f"{how} in window 2")
    assert support.books(url) == []


@pytest.mark.parametrize("at", [
    pytest.param("return:amplitude.Client.post:1", id="send-acknowledged-not-recorded"),
    pytest.param("qcall:sync_finalize:1", id="checkpoint-before-the-finalize-job"),
    pytest.param("qreturn:sync_finalize:1", id="checkpoint-first-window-committed"),
])
def test_sigkill_on_bigquery_then_rerun(at, request, amp, prefix, rel):
    """The production backend (the local BigQuery stand-in): the same promise after a kill."""
    from bigquery_standin import running  # tests/bigquery_standin.py
    settings = {**SETTINGS, "initial_lookback_hours": 2}
    with running() as bq:
        url = bq.url("analytics")
        rows, expected, outcomes = window_rows(prefix, 1, NOW, hours=2)
        support.insert(url, rows)
        child = support.ampkit("-q", "sync", "--progress", "none", environ=support.env(url, amp.url, **settings),
                               at=at, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        code = support.finish(child)
        stderr = child.stderr.read().decode(errors="replace")
        child.stderr.close()
        assert support.killed_by_sigkill(code), f"not killed at {at} (exit {code}): {stderr[-600:]}"
        rel.killed()
        read = support.StandinReader(bq)
        killed = {r["run_id"]: r for r in read("SELECT run_id, status FROM ampkit_runs")}
        assert [r["status"] for r in killed.values()] == ["running"]
        result = sync.run(support.config(url, amp.url, **settings), progress="none")
        assert result.status == "ok", result.error
        support.identity(result)
        rel.delivered(expected, support.exported(amp.url, prefix), f"BigQuery, killed at {at}")
        after = {r["run_id"]: r["status"] for r in read("SELECT run_id, status FROM ampkit_runs")}
        assert [after[k] for k in killed] == ["interrupted"] and after[result.run_id] == "ok"
        got = {r["id"]: (r["outcome"], r["reason"]) for r in read("SELECT id, outcome, reason FROM ampkit_deliveries")}
        assert got == outcomes
        problems = support.standin_books(bq)
        assert [p for p in problems if not p.startswith(DEAD_LETTER_PROBLEM)] == []
        assert problems == []
