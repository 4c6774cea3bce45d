"""4. Concurrency: syncs started at once never both send; a dead holder's lease is taken over.

Each contender is a real `python -m ampkit sync --json` process on one DuckDB warehouse. To
make "the others arrive while the lease is held" certain rather than likely, the processes run
under the crash-point harness with a pause right after the winner wrote its ledger row: the
winner stalls (as on a slow network) holding the lease and no warehouse connection; every other
process then finds the lease taken and records `skipped_locked` (exit 0).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ampkit import sync

from . import support
from .support import NOW

SETTINGS = {"initial_lookback_hours": 1, "lookback_hours": 0, "max_events_per_request": 50}


def start_syncs(n: int, url: str, amp, barrier: str | None = None, **settings):
    """`n` `python -m ampkit sync --json` at once; with `barrier`, the lease winner stalls until it exists."""
    environ = support.env(url, amp.url, **{**SETTINGS, **settings})
    at = "return:state.Lease.__init__:1" if barrier else None  # reached by the lease's winner only
    return [support.ampkit("sync", "--json", "--progress", "none", environ=environ, at=at,
                           action=f"wait:{barrier}:120" if barrier else "kill",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]


def outcomes(children) -> list[tuple[int, dict]]:
    out = []
    for child in children:
        stdout, stderr = child.communicate(timeout=180)
        assert child.returncode == 0, f"exit {child.returncode}: {stderr.decode()[-800:]}"
        out.append((child.returncode, json.loads(stdout.decode().strip().splitlines()[-1])))
    return out


@pytest.mark.parametrize("n", [2, 5])
def test_syncs_started_at_once_one_sends_the_others_skip(n, wh_url, amp, prefix, rel, tmp_path):
    rows = support.spread(prefix, 1, 300, NOW - support.HOUR, NOW)
    support.insert(wh_url, rows)
    barrier = tmp_path / "the-others-are-done"
    children = start_syncs(n, wh_url, amp, barrier=str(barrier))
    # The winner stalls right after taking the lease; release it once every other process has ended.
    deadline = time.monotonic() + 120
    while sum(c.poll() is not None for c in children) < n - 1:
        assert time.monotonic() < deadline, "the other syncs never finished"
        time.sleep(0.05)
    barrier.touch()
    results = outcomes(children)
    statuses = sorted(r["status"] for _, r in results)
    assert statuses == ["ok"] + ["skipped_locked"] * (n - 1), statuses
    (winner,) = [r for _, r in results if r["status"] == "ok"]
    assert winner["accepted"] == len(rows)
    for _, r in results:
        if r["status"] == "skipped_locked":
            assert r["accepted"] == r["sent"] == 0 and "another sync holds the lease" in r["error"]
    ledger = sorted(r["status"] for r in support.ledger(wh_url).values())
    assert ledger == ["ok"] + ["skipped_locked"] * (n - 1), ledger
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), f"{n} at once")
    assert support.books(wh_url) == []


def test_plain_syncs_started_at_once_never_both_send(wh_url, amp, prefix, rel, soak):
    """No harness: three plain processes race; whatever the timing, each row is sent by one run only."""
    rows = support.spread(prefix, 1, 600, NOW - support.HOUR, NOW)
    support.insert(wh_url, rows)
    amp.control.inject("/batch", kind="delay", delay_seconds=0.05, share=1.0)
    results = outcomes(start_syncs(6 if soak else 3, wh_url, amp))
    assert {r["status"] for _, r in results} <= {"ok", "skipped_locked"}
    assert sum(r["accepted"] for _, r in results) == len(rows), [r for _, r in results]
    assert sum(r["extracted"] for _, r in results) == len(rows), "two runs extracted the same rows"
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "plain race")
    assert support.books(wh_url) == []


def foreign_lease(url: str, seconds: float) -> str:
    holder = "20220314T115900Z-deadbeef@other-host.example:4242"
    now = dt.datetime.now(dt.timezone.utc)
    support.query(url, "INSERT INTO ampkit_lease VALUES ('hourly_sync', ?, ?, ?)",
                  [holder, now - dt.timedelta(minutes=1), now + dt.timedelta(seconds=seconds)])
    return holder


def test_lease_of_a_holder_on_another_host_expires_then_the_next_run_takes_over(wh_url, amp, prefix, rel):
    rows = support.spread(prefix, 1, 100, NOW - support.HOUR, NOW)
    support.insert(wh_url, rows)
    holder = foreign_lease(wh_url, seconds=2.5)  # as if that host's run took a 2.5 s lease and died
    cfg = support.config(wh_url, amp.url, **SETTINGS)
    first = sync.run(cfg, progress="none")
    assert first.status == "skipped_locked" and "other-host.example" in first.error
    assert first.accepted == 0 and support.exported(amp.url, prefix) == {}
    (skipped,) = support.ledger(wh_url).values()
    assert skipped["status"] == "skipped_locked" and holder in skipped["error"]
    time.sleep(2.7)
    second = sync.run(cfg, progress="none")
    assert second.status == "ok" and second.accepted == len(rows)
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "after expiry")
    assert support.books(wh_url) == []


def test_small_lease_of_a_hung_local_holder_expires_then_the_next_run_takes_over(wh_url, amp, prefix, rel):
    """AMPKIT_LEASE_SECONDS=3: the holder is alive but stuck (not provably dead), so only expiry frees it."""
    rows = support.spread(prefix, 1, 100, NOW - support.HOUR, NOW)
    support.insert(wh_url, rows)
    environ = support.env(wh_url, amp.url, **{**SETTINGS, "lease_seconds": 3})
    trace = wh_url.split("///", 1)[1] + ".trace"
    # Frozen (SIGSTOP: its pid present, not provably dead, its renewals stopped too) right after it took the
    # lease and before its renewal timer or first window: no DuckDB connection is open then.
    hung = support.ampkit("-q", "sync", "--progress", "none", environ=environ, at="return:state.Lease.__init__:1",
                          action="stop", trace=trace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "STOP" not in (open(trace).read() if os.path.exists(trace) else ""):
            assert time.monotonic() < deadline and hung.poll() is None, "the holder never reached its stall"
            time.sleep(0.05)
        cfg = support.config(wh_url, amp.url, **SETTINGS)
        early = sync.run(cfg, progress="none")
        assert early.status == "skipped_locked", early.to_dict()
        time.sleep(3.2)
        taken = sync.run(cfg, progress="none")
        assert taken.status == "ok" and taken.accepted == len(rows)
        rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "hung holder expired")
    finally:
        hung.kill()
        hung.wait()
    statuses = sorted(r["status"] for r in support.ledger(wh_url).values())
    assert statuses == ["interrupted", "ok", "skipped_locked"], statuses


def test_stalled_holder_that_lost_its_lease_does_not_record_a_second_delivery(amp, prefix, rel):
    """On BigQuery (the local stand-in: no file lock serializes runs, as in production)."""
    from bigquery_standin import running  # tests/bigquery_standin.py
    with running() as bq:
        url = bq.url("analytics")
        rows = support.spread(prefix, 1, 100, NOW - support.HOUR, NOW)
        support.insert(url, rows)
        environ = support.env(url, amp.url, **{**SETTINGS, "lease_seconds": 2})
        trace = Path(tempfile.mkdtemp()) / "trace.txt"
        # Frozen (SIGSTOP: a stopped VM, renewals and all) after sending, before its checkpoint.
        stale = support.ampkit("sync", "--json", "--progress", "none", environ=environ, at="call:state.reject_params:1",
                               action="stop", trace=trace, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while "STOP" not in (trace.read_text() if trace.exists() else ""):
            assert time.monotonic() < deadline and stale.poll() is None, "the holder never reached its stall"
            time.sleep(0.05)
        time.sleep(2.2)  # its 2 s lease expires while it is frozen (sent, not yet recorded)
        taken = sync.run(support.config(url, amp.url, **SETTINGS), progress="none")
        assert taken.status == "ok"
        os.kill(stale.pid, signal.SIGCONT)  # it wakes up and tries to record what it sent
        stale.communicate(timeout=300)
        rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "stale holder")
        with bq.lock:
            ledger = bq.duckdb.execute("SELECT status, accepted FROM analytics.ampkit_runs").fetchall()
            recorded = bq.duckdb.execute("SELECT COUNT(*) FROM analytics.ampkit_deliveries WHERE outcome = 'accepted'").fetchone()[0]
    claimed = sum(accepted for status, accepted in ledger if status == "ok")
    assert claimed == recorded == len(rows), f"ok runs claim {claimed} accepted events, outcomes record {recorded}: {ledger}"
    assert [status for status, _ in ledger].count("ok") == 1, ledger


def test_dead_local_holder_is_taken_over_at_once(wh_url, amp, prefix, rel, caplog):
    """A run SIGKILLed while holding a one-hour lease: the next run on this host sees the pid gone."""
    rows = support.spread(prefix, 1, 100, NOW - support.HOUR, NOW)
    support.insert(wh_url, rows)
    environ = support.env(wh_url, amp.url, **{**SETTINGS, "lease_seconds": 3600})
    child = support.ampkit("-q", "sync", "--progress", "none", environ=environ, at="return:amplitude.Client.post:1",
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert support.killed_by_sigkill(support.finish(child))
    rel.killed()
    (lease,) = support.query(wh_url, "SELECT holder, expires_at FROM ampkit_lease")
    assert lease["holder"].endswith(f"@{socket.gethostname()}:{child.pid}")
    assert lease["expires_at"] > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=50)
    caplog.set_level(logging.WARNING, logger="ampkit")
    with support.Timer() as t:
        result = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    assert result.status == "ok" and t.seconds < 30
    assert any("is gone; taking over" in r.getMessage() for r in caplog.records)
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "dead local holder")
    statuses = sorted(r["status"] for r in support.ledger(wh_url).values())
    assert statuses == ["interrupted", "ok"]
    assert support.books(wh_url) == []


def test_lease_row_naming_a_dead_local_pid_is_broken(wh_url, amp, prefix, rel):
    rows = support.spread(prefix, 1, 50, NOW - support.HOUR, NOW)
    support.insert(wh_url, rows)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = dt.datetime.now(dt.timezone.utc)
    support.query(wh_url, "INSERT INTO ampkit_lease VALUES ('hourly_sync', ?, ?, ?)",
                  [f"20220314T110000Z-0badc0de@{socket.gethostname()}:{gone.pid}", now, now + dt.timedelta(hours=1)])
    result = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
    assert result.status == "ok" and result.accepted == len(rows)
    rel.delivered({r["insert_id"] for r in rows}, support.exported(amp.url, prefix), "dead pid in lease row")


def test_lease_row_naming_a_live_local_pid_is_respected(wh_url, amp, prefix):
    support.insert(wh_url, support.spread(prefix, 1, 20, NOW - support.HOUR, NOW))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = dt.datetime.now(dt.timezone.utc)
        support.query(wh_url, "INSERT INTO ampkit_lease VALUES ('hourly_sync', ?, ?, ?)",
                      [f"20220314T110000Z-0a11ve00@{socket.gethostname()}:{alive.pid}", now, now + dt.timedelta(hours=1)])
        result = sync.run(support.config(wh_url, amp.url, **SETTINGS), progress="none")
        assert result.status == "skipped_locked" and str(alive.pid) in result.error
        assert support.exported(amp.url, prefix) == {}
    finally:
        alive.kill()
        alive.wait()
