"""Dashboard REST on the sandbox: Event Segmentation, the Events List, and their limits."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import orjson
import pytest
import requests

from ampkit.sandbox import SandboxConfig, start

API_KEY = "dashboard-test-api-key-01"
SECRET = "dashboard-test-secret-01"


def ms(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def sandbox():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], time_zone="America/Los_Angeles")) as running:
        yield running


@pytest.fixture
def sb(sandbox):
    sandbox.control.reset()
    return sandbox


def seed(sb, *events):
    """(event_type, user_id, event time ms) triples, stored as already-ingested events."""
    sb.control.seed_events([{"event_type": t, "user_id": u, "time": when} for t, u, when in events])


def segmentation(sb, event_type, start, end, **params):
    return requests.get(sb.url + "/api/2/events/segmentation",
                        params={"e": orjson.dumps({"event_type": event_type}).decode(), "start": start, "end": end,
                                **params}, auth=(API_KEY, SECRET))


def test_daily_totals_bucket_by_event_time_in_the_project_time_zone(sb):
    seed(sb,
         ("Signup", "user-a0001", ms(2026, 3, 2, 7, 59)),   # 2026-03-01 23:59 in Los Angeles
         ("Signup", "user-a0001", ms(2026, 3, 2, 8, 0)),    # 2026-03-02 00:00 in Los Angeles
         ("Signup", "user-b0002", ms(2026, 3, 2, 20, 0)),
         ("Other", "user-b0002", ms(2026, 3, 2, 20, 0)),
         ("$identify", "user-b0002", ms(2026, 3, 2, 20, 0)))
    response = segmentation(sb, "Signup", "20260301", "20260303", m="totals")
    assert response.status_code == 200
    assert response.json() == {"data": {"series": [[1, 2, 0]], "seriesLabels": [0],
                                        "seriesCollapsed": [[{"setId": "", "value": 3}]],
                                        "xValues": ["2026-03-01", "2026-03-02", "2026-03-03"]}}
    uniques = segmentation(sb, "Signup", "20260301", "20260303").json()["data"]  # m defaults to uniques
    assert uniques["series"] == [[1, 2, 0]] and uniques["seriesCollapsed"][0][0]["value"] == 2
    everything = segmentation(sb, "_all", "20260302", "20260302", m="totals").json()["data"]
    assert everything["series"] == [[3]]  # Signup x2 + Other; $identify is not an event in charts


def test_hourly_weekly_and_monthly_intervals(sb):
    seed(sb, ("Signup", "user-a0001", ms(2026, 3, 2, 9, 30)), ("Signup", "user-a0002", ms(2026, 3, 2, 9, 45)))
    hourly = segmentation(sb, "Signup", "20260302T00", "20260302T03", m="totals", i="-3600000").json()["data"]
    assert hourly["xValues"] == ["2026-03-02T00:00:00", "2026-03-02T01:00:00", "2026-03-02T02:00:00",
                                 "2026-03-02T03:00:00"]
    assert hourly["series"] == [[0, 2, 0, 0]]  # 09:30Z is 01:30 in Los Angeles
    whole_day = segmentation(sb, "Signup", "20260302", "20260302", m="totals", i="-3600000").json()["data"]
    assert len(whole_day["xValues"]) == 24
    weekly = segmentation(sb, "Signup", "20260301", "20260314", m="totals", i="7").json()["data"]
    assert weekly["xValues"] == ["2026-02-23", "2026-03-02", "2026-03-09"] and weekly["series"] == [[0, 2, 0]]
    monthly = segmentation(sb, "Signup", "20260215", "20260331", m="totals", i="30").json()["data"]
    assert monthly["xValues"] == ["2026-02-01", "2026-03-01"] and monthly["series"] == [[0, 2]]


@pytest.mark.parametrize("params", [
    {"e": "not json", "start": "20260301", "end": "20260302"},
    {"e": '{"no_event_type": 1}', "start": "20260301", "end": "20260302"},
    {"e": '{"event_type": "Signup"}', "start": "20260301", "end": "20260302", "m": "pct_dau"},
    {"e": '{"event_type": "Signup"}', "start": "20260301", "end": "20260302", "i": "2"},
    {"e": '{"event_type": "Signup"}', "start": "20260302", "end": "20260301"},
    {"e": '{"event_type": "Signup"}', "start": "20250101", "end": "20260301"},
    {"e": '{"event_type": "Signup"}', "start": "20260301", "end": "20260309", "i": "-3600000"},
    {"e": '{"event_type": "Signup"}', "start": "2026-03-01", "end": "20260302"},
    {"start": "20260301", "end": "20260302"},
])
def test_bad_queries_are_400_in_the_dashboard_error_shape(sb, params):
    response = requests.get(sb.url + "/api/2/events/segmentation", params=params, auth=(API_KEY, SECRET))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["http_code"] == 400 and error["type"] == "invalid" and error["message"]


def test_dashboard_needs_basic_auth(sb):
    response = requests.get(sb.url + "/api/2/events/list", auth=(API_KEY, "not-the-secret"))
    assert response.status_code == 401
    assert requests.get(sb.url + "/api/2/events/list").status_code == 401


def test_events_list_counts_the_current_week_in_the_project_time_zone(sb):
    sb.control.set_clock(ms(2026, 3, 4, 12))  # a Wednesday
    seed(sb, ("Signup", "user-a0001", ms(2026, 3, 2, 8, 0)),   # Monday 00:00 in Los Angeles: this week
         ("Signup", "user-a0001", ms(2026, 3, 2, 7, 59)),      # Sunday 23:59 there: last week
         ("Checkout", "user-a0001", ms(2026, 2, 20)), ("$identify", "user-a0001", ms(2026, 3, 3)))
    response = requests.get(sb.url + "/api/2/events/list", auth=(API_KEY, SECRET))
    assert response.status_code == 200
    assert response.json() == {"data": [
        {"value": "Checkout", "display": "Checkout", "totals": 0, "non_active": False, "deleted": False,
         "hidden": False, "flow_hidden": False},
        {"value": "Signup", "display": "Signup", "totals": 1, "non_active": False, "deleted": False,
         "hidden": False, "flow_hidden": False}]}


def test_more_than_five_concurrent_requests_get_429(sb):
    sb.control.inject("dashboard", kind="delay", delay_seconds=0.6, count=6)
    answers = []

    def ask():
        answers.append(segmentation(sb, "Signup", "20260301", "20260301", m="totals"))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 200, 200, 200, 200, 429]
    refused = [r for r in answers if r.status_code == 429][0].json()["error"]
    assert refused["type"] == "rate_limit" and "concurrent" in refused["message"]


def test_query_cost_budget_per_five_minutes():
    config = SandboxConfig(api_keys=[(API_KEY, SECRET)], dashboard_cost_per_5_minutes=10)
    with start(config) as sb:
        sb.control.set_clock(ms(2026, 3, 10))
        assert segmentation(sb, "Signup", "20260301", "20260307").status_code == 200  # cost 7
        refused = segmentation(sb, "Signup", "20260301", "20260304")                  # 7 + 4 > 10
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit"
        sb.control.advance_clock(301)
        assert segmentation(sb, "Signup", "20260301", "20260304").status_code == 200
