"""The sandbox's control API: injected faults of every kind, the clock, stats, and stored events."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
import requests

from ampkit.errors import AmpkitError
from ampkit.sandbox import Control, SandboxConfig, start

API_KEY = "fault-test-api-key-00001"
SECRET = "fault-test-secret-00001"


def ms(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def sandbox():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], export_lag_seconds=0, fault_seed=7)) as running:
        yield running


@pytest.fixture
def sb(sandbox):
    sandbox.control.reset()
    return sandbox


def events(*ids, prefix="ins"):
    return [{"event_type": "Clicked", "user_id": f"user-{i}", "device_id": f"device-{i}",
             "insert_id": f"{prefix}-{i}"} for i in ids]


def post(sb, path="/batch", batch=None, **kwargs):
    return requests.post(sb.url + path, json={"api_key": API_KEY, "events": batch or events("a0001")}, **kwargs)


def stored(sb):
    return sb.control.stats()["events_in_store"]


@pytest.mark.parametrize("status,error", [(500, "Internal server error"), (502, "Bad gateway"),
                                          (503, "Service unavailable"), (504, "Gateway timeout"),
                                          (413, "Payload too large"), (403, "Forbidden")])
def test_status_faults_fail_the_next_n_requests_and_ingest_nothing(sb, status, error):
    sb.control.inject("/batch", status=status, count=2)
    for _ in range(2):
        response = post(sb)
        assert response.status_code == status
        assert response.json() == {"code": status, "error": error}
    assert stored(sb) == 0
    assert post(sb).status_code == 200
    assert stored(sb) == 1


def test_ingested_then_500_stores_the_events_and_a_resend_is_deduplicated(sb):
    sb.control.inject("/batch", kind="ingested_then_500")
    assert post(sb).status_code == 500
    assert stored(sb) == 1
    assert post(sb).status_code == 200
    assert stored(sb) == 1


def test_faults_match_their_endpoint_only(sb):
    sb.control.inject("/2/httpapi", status=503)
    assert post(sb, "/batch").status_code == 200
    assert post(sb, "/2/httpapi").status_code == 503
    sb.control.inject("ingest", status=502, count=2)
    assert post(sb, "/batch").status_code == 502 and post(sb, "/2/httpapi").status_code == 502
    sb.control.inject("export", status=504)
    response = requests.get(sb.url + "/api/2/export", params={"start": "20260301T00", "end": "20260301T00"},
                            auth=(API_KEY, SECRET))
    assert response.status_code == 504 and response.json()["error"]["http_code"] == 504


def test_429_fault_names_real_ids_and_indexes_of_the_request(sb):
    batch = events("a0001", "b0002", "a0001", "c0003")
    sb.control.inject("/batch", status=429, throttled="first")
    body = post(sb, batch=batch).json()
    assert body == {"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 1000,
                    "throttled_devices": {"device-a0001": 1001}, "throttled_users": {"user-a0001": 1001},
                    "throttled_events": [0, 2]}
    sb.control.inject("/2/httpapi", status=429, throttled=["device-c0003"], daily_quota=True)
    body = post(sb, "/2/httpapi", batch=batch).json()
    assert body["throttled_events"] == [3] and body["eps_threshold"] == 30
    assert body["exceeded_daily_quota_devices"] == {"device-c0003": 500001}
    sb.control.inject("/batch", status=429, throttled="none")
    body = post(sb, batch=batch).json()
    assert body["throttled_events"] == [] and body["throttled_devices"] == {} and body["throttled_users"] == {}
    assert stored(sb) == 0


def test_html_and_non_json_bodies(sb):
    sb.control.inject("/batch", kind="html", status=502)
    response = post(sb)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html" and "<html>" in response.text
    sb.control.inject("/batch", kind="non_json")
    response = post(sb)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert stored(sb) == 0


def test_dropped_connection_before_and_after_ingesting(sb):
    sb.control.inject("/batch", kind="drop")
    with pytest.raises(requests.ConnectionError):
        post(sb)
    assert stored(sb) == 0
    sb.control.inject("/batch", kind="drop", after_ingest=True)
    with pytest.raises(requests.ConnectionError):
        post(sb)
    assert stored(sb) == 1


def test_delay_then_answer_normally(sb):
    sb.control.inject("/batch", kind="delay", delay_seconds=0.4)
    started = time.monotonic()
    assert post(sb).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_a_share_of_requests_until_cleared_is_repeatable_with_a_seed():
    def pattern():
        with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], fault_seed=42)) as sb:
            sb.control.inject("/batch", status=503, share=0.5)
            codes = [post(sb, batch=events(f"n{i:04d}")).status_code for i in range(20)]
            assert len(sb.control.faults()) == 1  # a share without count stays until cleared
            sb.control.clear_faults()
            assert post(sb, batch=events("z9999")).status_code == 200
            return codes

    first = pattern()
    assert first == pattern()
    assert 0 < first.count(503) < 20 and set(first) == {200, 503}


def test_bad_fault_specs_are_refused(sb):
    with pytest.raises(AmpkitError, match="status between 400 and 599"):
        sb.control.inject("/batch", status=200)
    with pytest.raises(AmpkitError, match="fault kind"):
        sb.control.inject("/batch", kind="explode")
    with pytest.raises(AmpkitError, match="share"):
        sb.control.inject("/batch", status=500, share=2)


def test_clock_set_advance_and_release(sb):
    control = sb.control
    assert control.set_clock(datetime(2026, 3, 1, tzinfo=timezone.utc)) == ms(2026, 3, 1)
    assert control.advance_clock(90) == ms(2026, 3, 1, 0, 1, 30)
    assert post(sb).json()["server_upload_time"] == ms(2026, 3, 1, 0, 1, 30)
    assert abs(control.real_clock() - time.time() * 1000) < 5000


def test_stats_and_request_log_never_hold_the_keys(sb):
    post(sb)
    post(sb)
    requests.post(sb.url + "/batch", json={"api_key": "someone-elses-key", "events": events("x0001")})
    sb.control.inject("/batch", status=503)
    post(sb)
    stats = sb.control.stats()
    assert stats["requests_by_status"]["/batch"] == {"200": 2, "400": 1, "503": 1}
    assert stats["events_ingested"] == 2 and stats["events_stored"] == 1 and stats["duplicates_dropped"] == 1
    assert stats["faults_injected"] == 1 and stats["events_in_store"] == 1
    log = sb.control.requests()
    assert [entry["status"] for entry in log] == [200, 200, 400, 503]
    assert log[2]["response"] == {"code": 400, "error": "Invalid API key: someone-elses-key"}
    assert API_KEY not in repr(log) and SECRET not in repr(log) and SECRET not in repr(stats)


def test_delete_events_by_type_and_time_then_resend_restores_them(sb):
    batch = [{"event_type": t, "user_id": "user-d0001", "insert_id": f"{t}-{h}", "time": ms(2026, 3, 1, h)}
             for t in ("Viewed", "Bought") for h in (4, 5, 6)]
    assert post(sb, batch=batch).status_code == 200
    deleted = sb.control.delete_events(event_type="Viewed", event_start_ms=ms(2026, 3, 1, 5),
                                       event_end_ms=datetime(2026, 3, 1, 6, tzinfo=timezone.utc))
    assert deleted == 1 and stored(sb) == 5
    post(sb, batch=batch)  # the deleted insert_id was forgotten, so this resend stores it again
    assert stored(sb) == 6
    with pytest.raises(AmpkitError, match="at least one filter"):
        sb.control.delete_events()
    assert sb.control.delete_events(all=True) == 6


def test_seeded_foreign_events_are_exported_and_deduplicate_later_sends(sb):
    app = sb.control.health()["apps"][0]
    foreign = [{"event_type": "Imported", "user_id": "user-f0001", "device_id": "device-f0001",
                "insert_id": "foreign-1", "time": ms(2026, 3, 1, 3)}]
    assert sb.control.seed_events(foreign, app=app, upload_time=ms(2026, 3, 1, 3, 30)) == 1
    response = requests.get(sb.url + "/api/2/export", params={"start": "20260301T03", "end": "20260301T03"},
                            auth=(API_KEY, SECRET))
    assert response.status_code == 200
    sb.control.set_clock(ms(2026, 3, 1, 4))
    post(sb, batch=foreign)
    assert stored(sb) == 1
    sb.control.set_clock(ms(2026, 3, 8, 4))  # more than 7 days after the seeded upload
    post(sb, batch=foreign)
    assert stored(sb) == 2


def test_reset_clears_events_faults_and_clock(sb):
    post(sb)
    sb.control.inject("/batch", status=500, count=5)
    sb.control.set_clock(ms(2020, 1, 1))
    sb.control.reset()
    assert stored(sb) == 0 and sb.control.faults() == []
    assert abs(sb.control.now_ms() - time.time() * 1000) < 5000
    assert post(sb).status_code == 200


def test_control_client_reports_an_unreachable_sandbox():
    with pytest.raises(AmpkitError, match="failed"):
        Control("http://127.0.0.1:9", timeout_seconds=2).health()


def test_clearing_faults_ends_delays_in_progress_and_the_released_resends_store_once(sb):
    sb.control.inject("/batch", kind="delay", delay_seconds=60, share=1.0)
    batch = events("a0001", "a0002", "a0003")
    answers = []
    # A client that timed out and resent the same events: every copy is in flight when released.
    senders = [threading.Thread(target=lambda: answers.append(post(sb, batch=batch, timeout=30).status_code))
               for _ in range(6)]
    for t in senders:
        t.start()
    deadline = time.monotonic() + 30
    while sb.control.faults()[0]["hits"] < 6:  # every copy has arrived and sleeps in the delay
        assert time.monotonic() < deadline, sb.control.faults()
        time.sleep(0.01)
    assert answers == [], "a delayed request answered before the faults were cleared"
    sb.control.clear_faults()
    for t in senders:
        t.join(timeout=20)
    assert answers == [200] * 6
    assert stored(sb) == 3
