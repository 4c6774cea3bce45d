"""2. A hostile Amplitude: every event delivered once, or the run fails loudly and the next run finishes.

The sandbox's fault injection plays every refusal Amplitude (or a proxy in front of it) gives:
429 storms naming ids or none, daily quotas, 413s (JSON and nginx HTML), every 5xx, 408/409/425,
"ingested, then 500", timeouts (a `delay` past `request_timeout_seconds`, after which the
sandbox still stores the request), dropped connections, a 200 with an HTML body, a 400 HTML
page from the edge, 401/403/404. A long outage is played with small `retry_budget_seconds` /
`max_backoff_seconds` instead of real waiting. Every run is timed: none may outlive its retry
budget by more than a request timeout and a little slack.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import pytest

from ampkit import sync
from ampkit.errors import AmpkitError, FatalAmplitudeError, SyncError

from . import support
from .support import HOUR, NOW

BASE = {"initial_lookback_hours": 1, "lookback_hours": 0, "max_events_per_request": 20, "concurrency": 2,
        "retry_budget_seconds": 20, "max_backoff_seconds": 0.1, "throttle_hold_seconds": 0.1,
        "request_timeout_seconds": 1.0}
SLACK = 8.0  # seconds of DuckDB and process work a run may add to its retry budget and last timeout


def load(url: str, prefix: str, n: int, first_id: int = 1, end=NOW) -> set[str]:
    rows = support.spread(prefix, first_id, n, end - HOUR, end)
    support.insert(url, rows)
    return {r["insert_id"] for r in rows}


def bounded_run(cfg, **kwargs):
    """sync.run under a wall-clock bound: budget + one request timeout + slack."""
    bound = cfg.retry_budget_seconds + cfg.request_timeout_seconds + SLACK
    with support.Timer() as t:
        try:
            result, error = sync.run(cfg, progress="none", **kwargs), None
        except AmpkitError as exc:
            result, error = None, exc
    assert t.seconds <= bound, f"the run took {t.seconds:.1f}s, over its bound of {bound:.1f}s"
    return result, error


@dataclasses.dataclass(frozen=True)
class Storm:
    """Faults the sandbox plays during one run that ampkit must ride out."""

    name: str
    faults: tuple
    settings: tuple = ()


def _storms(soak: bool):
    n = 10 if soak else 1
    five_xx = (500, 501, 502, 503, 504, 505, 507, 508, 511, 599)
    return [
        Storm("429-storm-throttled-ids", ({"status": 429, "count": 30 * n, "throttled": "all"},)),
        Storm("429-storm-first-id-only", ({"status": 429, "count": 30 * n, "throttled": "first"},)),
        Storm("429-storm-no-ids", ({"status": 429, "count": 8 * n, "throttled": "none"},)),
        Storm("413-json", ({"status": 413, "count": 3},)),
        Storm("413-nginx-html", ({"kind": "html", "status": 413, "count": 3},)),
        Storm("every-5xx-json", tuple({"status": s, "count": 2 * n} for s in five_xx)),
        Storm("5xx-nginx-html", tuple({"kind": "html", "status": s, "count": 2 * n} for s in (500, 502, 503, 504))),
        Storm("408-409-425-retryable", tuple({"status": s, "count": 2} for s in (408, 409, 425))),
        Storm("400-html-from-the-edge", ({"kind": "html", "status": 400, "count": 3},)),
        Storm("ingested-then-500", ({"kind": "ingested_then_500", "count": 6 * n},)),
        Storm("ingested-then-5xx-html", tuple({"kind": "html", "status": s, "after_ingest": True, "count": 2 * n}
                                             for s in (502, 503))),
        Storm("timeout-then-ingested", ({"kind": "delay", "delay_seconds": 1.3, "count": 3},)),
        Storm("timeout-not-ingested", ({"status": 503, "delay_seconds": 1.3, "count": 3},)),
        Storm("dropped-connections", ({"kind": "drop", "count": 6 * n},)),
        Storm("dropped-after-ingest", ({"kind": "drop", "after_ingest": True, "count": 4 * n},)),
        Storm("200-with-html-body", ({"kind": "non_json", "count": 6 * n},)),
        Storm("200-html-after-ingest", ({"kind": "non_json", "after_ingest": True, "count": 4 * n},)),
        # 413 by count: a share could chain 413s down to a single event (test_413_storm_reaching_single_events...).
        Storm("everything-at-once", ({"status": 413, "count": 2},) + tuple(
            {**f, "share": 0.04 * (2 if soak else 1)} for f in (
                {"status": 429, "throttled": "first"}, {"status": 500}, {"status": 502},
                {"status": 503}, {"status": 504}, {"kind": "ingested_then_500"}, {"kind": "drop"},
                {"kind": "non_json"}, {"kind": "html", "status": 502}, {"kind": "delay", "delay_seconds": 1.5}))),
    ]


STORMS = _storms(False)


@pytest.mark.parametrize("storm", STORMS, ids=[s.name for s in STORMS])
def test_storm_every_event_delivered_once(storm, wh_url, amp, prefix, rel, soak):
    storm = {s.name: s for s in _storms(soak)}[storm.name]
    expected = load(wh_url, prefix, 2000 if soak and storm.name == "everything-at-once" else 200)
    for fault in storm.faults:
        amp.control.inject("/batch", **fault)
    budget = {"retry_budget_seconds": 120} if soak else {}  # ten times longer storms need more budget
    cfg = support.config(wh_url, amp.url, **{**BASE, **budget, **dict(storm.settings)})
    result, error = bounded_run(cfg)
    faults = amp.control.stats()["faults_injected"]
    amp.control.clear_faults()
    assert error is None, f"{storm.name}: the run failed: {error}"
    assert result.status == "ok"
    support.identity(result)
    assert faults > 0, "the storm never hit"
    rel.delivered(expected, support.exported(amp.url, prefix), storm.name)
    assert support.books(wh_url) == []
    assert support.watermark(wh_url) == NOW


def test_daily_quota_ids_are_dead_lettered_the_rest_delivered_once(wh_url, amp, prefix, rel):
    expected = load(wh_url, prefix, 200)
    amp.control.inject("/batch", status=429, count=2, throttled="first", daily_quota=True)
    result, error = bounded_run(support.config(wh_url, amp.url, **BASE))
    assert error is None and result.status == "ok"
    support.identity(result)
    quota = {r["insert_id"] for r in support.query(wh_url, "SELECT insert_id FROM ampkit_dead_letters WHERE reason = 'quota'")}
    assert 1 <= len(quota) <= 2 and result.rejected == {"quota": len(quota)}
    rel.delivered(expected - quota, support.exported(amp.url, prefix), "daily quota")
    assert support.books(wh_url) == []


@dataclasses.dataclass(frozen=True)
class Outage:
    name: str
    fault: dict
    error: str             # what the loud failure says
    kind: type = SyncError


OUTAGES = [
    Outage("10-minute-503-outage", {"status": 503, "share": 1.0}, "retry budget exhausted"),
    Outage("outage-of-dropped-connections", {"kind": "drop", "share": 1.0}, "retry budget exhausted"),
    Outage("outage-of-timeouts", {"kind": "delay", "delay_seconds": 1.5, "share": 1.0}, "retry budget exhausted"),
    Outage("endless-429-naming-ids", {"status": 429, "share": 1.0, "throttled": "all"}, "retry budget exhausted"),
    Outage("endless-429-naming-none", {"status": 429, "share": 1.0, "throttled": "none"}, "retry budget exhausted"),
    Outage("401-unauthorized", {"status": 401, "share": 1.0}, "HTTP 401", FatalAmplitudeError),
    Outage("403-forbidden", {"status": 403, "share": 1.0}, "HTTP 403", FatalAmplitudeError),
    Outage("404-not-found", {"status": 404, "share": 1.0}, "HTTP 404", FatalAmplitudeError),
]


@pytest.mark.parametrize("outage", OUTAGES, ids=[o.name for o in OUTAGES])
def test_outage_fails_loudly_watermark_unmoved_next_run_completes(outage, wh_url, amp, prefix, rel, soak):
    expected = load(wh_url, prefix, 200)
    budget = 10.0 if soak else 1.0
    cfg = support.config(wh_url, amp.url, **{**BASE, "retry_budget_seconds": budget, "max_backoff_seconds": 0.3,
                                             "request_timeout_seconds": 0.5})
    amp.control.inject("/batch", **outage.fault)
    result, error = bounded_run(cfg)
    amp.control.clear_faults()
    assert result is None and isinstance(error, outage.kind), f"expected a loud {outage.kind.__name__}, got {result or error!r}"
    assert outage.error in str(error)
    assert support.watermark(wh_url) is None, "a failed run moved the watermark"
    (failed,) = support.ledger(wh_url).values()
    assert failed["status"] == "failed" and outage.error in failed["error"], failed
    assert not support.query(wh_url, "SELECT * FROM ampkit_deliveries"), "a failed run recorded outcomes"
    assert not support.query(wh_url, "SELECT * FROM ampkit_lease WHERE holder IS NOT NULL"), "a failed run kept the lease"
    # Amplitude is back: the next run finishes the job, and what the outage let through is not doubled.
    again = sync.run(support.config(wh_url, amp.url, **BASE), progress="none")
    assert again.status == "ok" and again.accepted == len(expected)
    rel.delivered(expected, support.exported(amp.url, prefix), outage.name)
    assert support.books(wh_url) == []
    assert support.watermark(wh_url) == NOW


def test_outage_in_the_middle_of_a_window(wh_url, amp, prefix, rel):
    """Amplitude goes down after a few requests of a window got through: the window is resent, deduplicated."""
    first = load(wh_url, prefix, 60, end=NOW - HOUR)
    second = load(wh_url, prefix, 300, first_id=1000)
    amp.control.inject("/batch", kind="delay", delay_seconds=0.05, share=1.0)
    stop = threading.Event()

    def outage_after_some_requests():
        while not stop.is_set():
            if amp.control.stats()["requests_by_status"].get("/batch", {}).get("200", 0) >= 6:
                amp.control.clear_faults()  # faults match first-added first: the outage replaces the delay
                amp.control.inject("/batch", status=503, share=1.0)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=outage_after_some_requests)
    watcher.start()
    cfg = support.config(wh_url, amp.url, **{**BASE, "initial_lookback_hours": 2, "retry_budget_seconds": 2,
                                             "max_backoff_seconds": 0.3})
    try:
        result, error = bounded_run(cfg)
    finally:
        stop.set()
        watcher.join()
    amp.control.clear_faults()
    assert isinstance(error, SyncError), result
    through = support.exported(amp.url, prefix)
    assert through, "nothing got through before the outage"
    mark = support.watermark(wh_url)
    assert mark is None or mark <= NOW - HOUR, "the watermark moved past a window that was not delivered"
    again = sync.run(support.config(wh_url, amp.url, **{**BASE, "initial_lookback_hours": 2}), progress="none")
    assert again.status == "ok"
    rel.delivered(first | second, support.exported(amp.url, prefix), "outage mid-window")
    assert support.books(wh_url) == []


def test_413_storm_reaching_single_events_still_delivers(wh_url, amp, prefix, rel):
    expected = load(wh_url, prefix, 8)
    amp.control.inject("/batch", status=413, count=7)
    cfg = support.config(wh_url, amp.url, **{**BASE, "max_events_per_request": 4, "concurrency": 1})
    result, error = bounded_run(cfg)
    amp.control.clear_faults()
    assert error is None and result.status == "ok"
    rel.delivered(expected, support.exported(amp.url, prefix), "413 storm down to single events")
    assert result.rejected == {}, f"small events dead-lettered: {result.rejected}"


def test_zero_throttle_hold_is_refused(wh_url, amp, prefix):
    """A zero hold would let a 429 storm spin without waiting, so without a budget check: refused up front."""
    environ = support.env(wh_url, amp.url, **{**BASE, "throttle_hold_seconds": 0})
    child = subprocess.run([sys.executable, "-m", "ampkit", "sync", "--progress", "none"], env=environ,
                           capture_output=True, text=True, timeout=60)
    lines = child.stderr.strip().splitlines()
    assert child.returncode == 1 and len(lines) == 1 and "throttle_hold_seconds" in lines[0], child.stderr


def test_429_storm_with_a_tiny_hold_is_still_bounded(wh_url, amp, prefix, tmp_path):
    """An endless 429 storm with a 1 ms hold: the run still ends (in a child, so a hang cannot hang the suite)."""
    load(wh_url, prefix, 20)
    amp.control.inject("/batch", status=429, share=1.0, throttled="all")
    environ = support.env(wh_url, amp.url, **{**BASE, "throttle_hold_seconds": 0.001, "retry_budget_seconds": 0.5,
                                              "concurrency": 1})
    child = support.ampkit("-q", "sync", "--progress", "none", environ=environ,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = child.communicate(timeout=4.5)  # starting Python and the run take ~2 s; the budget is 0.5 s
        code = child.returncode
    except subprocess.TimeoutExpired:
        child.kill()
        _, stderr = child.communicate()
        code = None
    finally:
        amp.control.clear_faults()
    assert code is not None, "the run hung in a 429 storm past its 0.5 s retry budget"
    assert code == 1 and b"retry budget exhausted (throttled ids)" in stderr, stderr.decode()[-500:]
