"""Sandbox ingestion over HTTP on 127.0.0.1: every status and body of the checklist, throttling,
the daily quota, insert_id dedup, and the enriched event as export returns it."""
from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import datetime, timezone

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampkit.errors import ConfigError
from ampkit.sandbox.dedup import DedupIndex
from ampkit.sandbox import SandboxConfig, start
from ampkit.sandbox import ingest as ingest_module
from ampkit.sandbox.service import Request, Service

API_KEY = "ingest-test-api-key-0001"
SECRET = "ingest-test-secret-0001"
T0 = int(datetime(2026, 3, 2, 10, 15, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def sandbox():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], export_lag_seconds=0)) as running:
        yield running


@pytest.fixture
def sb(sandbox):
    sandbox.control.reset()
    return sandbox


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def post(http, sb, path, body, headers=None):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return http.post(sb.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})


def event(i=0, **fields):
    base = {"event_type": "Page Viewed", "user_id": f"user-{i:05d}", "device_id": f"device-{i:05d}",
            "insert_id": f"insert-{i:08d}", "time": T0 + i}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def exported(http, sb):
    """Every row the export API returns for the hours around T0 and now."""
    rows = []
    hours = {datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y%m%dT%H") for ms in (T0, sb.control.now_ms())}
    for hour in sorted(hours):
        response = http.get(sb.url + "/api/2/export", params={"start": hour, "end": hour}, auth=(API_KEY, SECRET))
        if response.status_code == 404:
            continue
        assert response.status_code == 200, response.text
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        for name in archive.namelist():
            rows += [json.loads(line) for line in gzip.decompress(archive.read(name)).splitlines()]
    return rows


def padded_body(total_bytes):
    """A one-event body of exactly `total_bytes` bytes."""
    body = {"api_key": API_KEY, "events": [event(0, event_properties={"pad": ""})]}
    overhead = len(orjson.dumps(body))
    body["events"][0]["event_properties"]["pad"] = "x" * (total_bytes - overhead)
    data = orjson.dumps(body)
    assert len(data) == total_bytes
    return data


# (name, path, body, extra headers, status, expected body: exact dict, or a callable check)
MISSING = "Request missing required field"
CASES = [
    ("empty body", "/2/httpapi", b"", {}, 400, {"code": 400, "error": "Missing request body"}),
    ("invalid JSON", "/2/httpapi", b'{"api_key": ', {}, 400, {"code": 400, "error": "Invalid JSON request body"}),
    ("JSON array body", "/batch", b"[]", {}, 400, {"code": 400, "error": "Invalid JSON request body"}),
    ("not a JSON content type", "/batch", orjson.dumps({"api_key": API_KEY, "events": [event()]}),
     {"Content-Type": "text/plain"}, 400, {"code": 400, "error": "Invalid JSON request body"}),
    ("missing api_key", "/2/httpapi", {"events": [event()]}, {}, 400,
     {"code": 400, "error": MISSING, "missing_field": "api_key"}),
    ("api_key and events missing: api_key first", "/batch", {"x": 1}, {}, 400,
     {"code": 400, "error": MISSING, "missing_field": "api_key"}),
    ("Events is not events (case-sensitive)", "/2/httpapi", {"api_key": API_KEY, "Events": [event()]}, {}, 400,
     {"code": 400, "error": MISSING, "missing_field": "events"}),
    ("unknown api key is echoed", "/batch", {"api_key": "not-a-real-key", "events": [event()]}, {}, 400,
     {"code": 400, "error": "Invalid API key: not-a-real-key"}),
    ("a secret key sent as api_key is not echoed", "/batch", {"api_key": SECRET, "events": [event()]}, {}, 400,
     {"code": 400, "error": "Invalid API key: [a secret key; not shown]"}),
    ("events is not a list", "/batch", {"api_key": API_KEY, "events": {"event_type": "x"}}, {}, 400,
     {"code": 400, "error": "Invalid event JSON"}),
    ("an event is not an object", "/batch", {"api_key": API_KEY, "events": [event(), "nope"]}, {}, 400,
     {"code": 400, "error": "Invalid event JSON"}),
    ("2,001 events", "/batch", {"api_key": API_KEY, "events": [event(i) for i in range(2001)]}, {}, 413,
     {"code": 413, "error": "Payload too large"}),
    ("2,001 events on HTTP V2", "/2/httpapi", {"api_key": API_KEY, "events": [event(i, time=None) for i in range(2001)]},
     {}, 413, {"code": 413, "error": "Payload too large"}),
    ("1,000,001 bytes on HTTP V2", "/2/httpapi", padded_body(1_000_001), {}, 413,
     {"code": 413, "error": "Payload too large"}),
    ("gzip measured after decompression", "/2/httpapi", gzip.compress(padded_body(1_000_001)),
     {"Content-Encoding": "gzip"}, 413, {"code": 413, "error": "Payload too large"}),
    ("corrupt gzip", "/2/httpapi", b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"}, 400,
     {"code": 400, "error": "Invalid JSON request body"}),
    ("missing event_type", "/2/httpapi", {"api_key": API_KEY, "events": [event(0), event(1, event_type=None)]}, {},
     400, {"code": 400, "error": MISSING, "events_with_missing_fields": {"event_type": [1]}}),
    ("no user_id and no device_id", "/batch",
     {"api_key": API_KEY, "events": [event(0, user_id=None, device_id=None), event(1)]}, {}, 400,
     {"code": 400, "error": MISSING, "events_with_missing_fields": {"user_id": [0], "device_id": [0]}}),
    ("short user_id with a valid device_id (Amplitude-Kotlin#105)", "/2/httpapi",
     {"api_key": API_KEY, "events": [event(0), event(1, user_id="2")]}, {}, 400,
     {"code": 400, "error": "Invalid id length for user_id or device_id",
      "events_with_invalid_id_lengths": {"user_id": [1]}}),
    ("short device_id", "/batch", {"api_key": API_KEY, "events": [event(0, device_id="abcd", user_id=None)]}, {},
     400, {"code": 400, "error": "Invalid id length for user_id or device_id",
           "events_with_invalid_id_lengths": {"device_id": [0]}}),
    ("blocklisted ids, any case", "/batch",
     {"api_key": API_KEY, "events": [event(0, user_id="NULL"), event(1, device_id="Undefined"), event(2),
                                     event(3, device_id="00000000-0000-0000-0000-000000000000"),
                                     event(4, user_id='""')]}, {}, 400,
     {"code": 400, "error": "Invalid field values on some events",
      "events_with_invalid_fields": {"user_id": [0, 4], "device_id": [1, 3]}}),
    ("time is not an integer", "/2/httpapi",
     {"api_key": API_KEY, "events": [event(0, time="2026-03-02T10:15:00Z"), event(1, time=1.5e12), event(2)]}, {},
     400, {"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {"time": [0, 1]}}),
    ("empty event_type, numeric user_id", "/batch",
     {"api_key": API_KEY, "events": [event(0, event_type=""), event(1, user_id=12345)]}, {}, 400,
     {"code": 400, "error": "Invalid field values on some events",
      "events_with_invalid_fields": {"event_type": [0], "user_id": [1]}}),
    ("every problem of every event in one 400", "/batch",
     {"api_key": API_KEY, "events": [event(0, event_type=None), event(1, user_id="ab"), event(2, time="x"),
                                     event(3)]}, {}, 400,
     {"code": 400, "error": MISSING, "events_with_missing_fields": {"event_type": [0]},
      "events_with_invalid_id_lengths": {"user_id": [1]}, "events_with_invalid_fields": {"time": [2]}}),
    ("GET on an ingestion path", "/2/httpapi", None, {}, 400, {"code": 400, "error": "Invalid request path"}),
    ("unknown path", "/2/httpapii", {"api_key": API_KEY, "events": [event()]}, {}, 400,
     {"code": 400, "error": "Invalid request path"}),
]


@pytest.mark.parametrize("name,path,body,headers,status,expected", CASES, ids=[c[0] for c in CASES])
def test_rejections_have_amplitudes_status_and_body_and_ingest_nothing(http, sb, name, path, body, headers, status,
                                                                       expected):
    if body is None:
        response = http.get(sb.url + path)
    else:
        response = post(http, sb, path, body, headers)
    assert response.status_code == status
    assert response.json() == expected
    assert response.json()["code"] == response.status_code
    assert sb.control.stats()["events_in_store"] == 0


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
def test_success_body_and_limits_that_pass(http, sb, path):
    sb.control.set_clock(T0 + 5000)
    body = orjson.dumps({"api_key": API_KEY, "events": [event(i) for i in range(2000)],
                         "options": {"min_id_length": 5}, "client_upload_time": "2026-03-02T10:15:04.000Z"})
    response = post(http, sb, path, body, {"Content-Type": "application/json; charset=UTF-8"})
    assert response.status_code == 200
    assert response.json() == {"code": 200, "events_ingested": 2000, "payload_size_bytes": len(body),
                               "server_upload_time": T0 + 5000}
    assert sb.control.stats()["events_in_store"] == 2000


def test_byte_caps_are_1000000_for_http_v2_and_20000000_for_batch(http, sb):
    assert post(http, sb, "/2/httpapi", padded_body(1_000_000)).status_code == 200
    big = padded_body(1_500_000)
    assert post(http, sb, "/2/httpapi", big).status_code == 413
    assert post(http, sb, "/batch", big).status_code == 200
    assert post(http, sb, "/batch", padded_body(20_000_001)).json() == {"code": 413, "error": "Payload too large"}


def test_gzip_bodies_are_accepted_and_payload_size_is_the_raw_size(http, sb):
    raw = orjson.dumps({"api_key": API_KEY, "events": [event(i) for i in range(50)]})
    compressed = gzip.compress(raw)
    response = post(http, sb, "/batch", compressed, {"Content-Encoding": "gzip"})
    assert response.json()["events_ingested"] == 50
    assert response.json()["payload_size_bytes"] == len(compressed)


def test_empty_events_array_is_a_200_with_nothing_ingested(http, sb):
    body = orjson.dumps({"api_key": API_KEY, "events": []})
    response = post(http, sb, "/2/httpapi", body)
    assert response.status_code == 200
    assert response.json()["events_ingested"] == 0
    assert response.json()["payload_size_bytes"] == len(body)


def test_empty_events_array_can_be_the_old_documented_400():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], empty_events_ok=False)) as strict:
        response = requests.post(strict.url + "/batch", json={"api_key": API_KEY, "events": []})
    assert response.status_code == 400
    assert response.json() == {"code": 400, "error": MISSING, "missing_field": "events"}


def test_options_min_id_length_allows_short_ids(http, sb):
    body = {"api_key": API_KEY, "events": [event(0, user_id="7", device_id=None)], "options": {"min_id_length": 1}}
    assert post(http, sb, "/2/httpapi", body).status_code == 200
    longer = {"api_key": API_KEY, "events": [event(0, user_id="user-7")], "options": {"min_id_length": 8}}
    assert post(http, sb, "/2/httpapi", longer).json()["events_with_invalid_id_lengths"] == {"user_id": [0]}


def test_a_request_with_one_bad_event_ingests_none_of_the_good_ones(http, sb):
    body = {"api_key": API_KEY, "events": [event(0), event(1), event(2, time="soon"), event(3)]}
    assert post(http, sb, "/batch", body).status_code == 400
    assert sb.control.stats()["events_in_store"] == 0
    del body["events"][2]
    assert post(http, sb, "/batch", body).json()["events_ingested"] == 3
    assert sb.control.stats()["events_in_store"] == 3


# -- throttling and the daily quota -------------------------------------------------------------


@pytest.fixture
def throttled():
    config = SandboxConfig(api_keys=[(API_KEY, SECRET)], httpapi_eps=2, batch_eps=5, throttle_window_seconds=10,
                           daily_quota=200)
    with start(config) as running:
        running.control.set_clock(T0)
        yield running


def test_device_over_the_eps_threshold_gets_429_naming_it_and_nothing_is_ingested(http, throttled):
    sb = throttled
    # 2 EPS over 10 s = 20 events per device in the window.
    burst = {"api_key": API_KEY, "events": [event(i, device_id="device-hot", user_id=f"user-{i:04d}")
                                            for i in range(20)]}
    assert post(http, sb, "/2/httpapi", burst).status_code == 200
    mixed = {"api_key": API_KEY, "events": [event(100, device_id="device-cool", user_id="user-cool"),
                                            event(101, device_id="device-hot", user_id="user-new1")]}
    response = post(http, sb, "/2/httpapi", mixed)
    assert response.status_code == 429
    assert response.json() == {"code": 429, "error": "Too many requests for some devices and users",
                               "eps_threshold": 2, "throttled_devices": {"device-hot": 3}, "throttled_users": {},
                               "throttled_events": [1]}
    assert sb.control.stats()["events_in_store"] == 20
    # Batch has its own (higher) threshold, and the window slides with the sandbox clock.
    assert post(http, sb, "/batch", mixed).status_code == 200
    sb.control.advance_clock(10)
    assert post(http, sb, "/2/httpapi", mixed).status_code == 200


def test_user_over_the_eps_threshold_is_named_in_throttled_users(http, throttled):
    sb = throttled
    events = [event(i, user_id="user-hot", device_id=f"device-{i:04d}") for i in range(51)]
    response = post(http, sb, "/batch", {"api_key": API_KEY, "events": events})
    assert response.status_code == 429
    body = response.json()
    assert body["throttled_users"] == {"user-hot": 6}
    assert body["throttled_devices"] == {}
    assert body["throttled_events"] == list(range(51))
    assert body["exceeded_daily_quota_users"] == {} and body["exceeded_daily_quota_devices"] == {}


def test_daily_quota_per_id_over_a_rolling_24_hours(http, throttled):
    sb = throttled
    for hour in range(4):  # 50 events an hour for one user stays under 5 EPS x 10 s
        batch = [event(hour * 100 + i, user_id="user-busy", device_id=f"device-{hour}-{i:03d}") for i in range(50)]
        assert post(http, sb, "/batch", {"api_key": API_KEY, "events": batch}).status_code == 200
        sb.control.advance_clock(3600)
    response = post(http, sb, "/batch", {"api_key": API_KEY, "events": [event(999, user_id="user-busy")]})
    assert response.status_code == 429
    assert response.json()["exceeded_daily_quota_users"] == {"user-busy": 201}
    assert response.json()["throttled_events"] == [0]
    sb.control.advance_clock(21 * 3600)  # the two oldest hours leave the rolling 24 h window
    assert post(http, sb, "/batch", {"api_key": API_KEY, "events": [event(999, user_id="user-busy")]}).status_code == 200


# -- dedup ---------------------------------------------------------------------------------------


def test_insert_id_dedup_per_device_for_seven_days(http, sb):
    sb.control.set_clock(T0)
    first = {"api_key": API_KEY, "events": [event(1, insert_id="same-insert-id")]}
    assert post(http, sb, "/batch", first).json()["events_ingested"] == 1
    # A resend is a 200 that counts the event (see docs/SANDBOX.md) but stores nothing new.
    assert post(http, sb, "/batch", first).json()["events_ingested"] == 1
    other_device = {"api_key": API_KEY, "events": [event(1, insert_id="same-insert-id", device_id="device-other")]}
    post(http, sb, "/batch", other_device)
    assert sb.control.stats()["events_in_store"] == 2
    sb.control.advance_clock(7 * 24 * 3600 - 1)
    post(http, sb, "/batch", first)
    assert sb.control.stats()["events_in_store"] == 2
    sb.control.advance_clock(2)
    post(http, sb, "/batch", first)
    stats = sb.control.stats()
    assert stats["events_in_store"] == 3
    assert stats["duplicates_dropped"] == 2


def test_dedup_key_admitted_by_a_request_that_read_the_clock_later_is_still_a_duplicate():
    index = DedupIndex(window_ms=7 * 24 * 3600 * 1000)
    assert index.admit(["d\x1fi"], now_ms=T0 + 1) == ([], ["d\x1fi"])
    # This request read the clock first but reached the ingest lock second.
    assert index.admit(["d\x1fi"], now_ms=T0) == ([0], [])


def test_dedup_inside_one_request_and_for_user_only_events(http, sb):
    events = [event(1, device_id=None, insert_id="u-1"), event(1, device_id=None, insert_id="u-1"),
              event(2, insert_id=None), event(2, insert_id=None)]
    assert post(http, sb, "/2/httpapi", {"api_key": API_KEY, "events": events}).json()["events_ingested"] == 4
    assert sb.control.stats()["events_in_store"] == 3  # events without insert_id are never deduplicated


def test_duplicates_can_be_left_out_of_events_ingested():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], count_duplicates_as_ingested=False)) as strict:
        body = {"api_key": API_KEY, "events": [event(1), event(1), event(2)]}
        assert requests.post(strict.url + "/batch", json=body).json()["events_ingested"] == 2


# -- the stored event ----------------------------------------------------------------------------


def test_stored_events_are_enriched_as_amplitude_exports_them(http, sb):
    sb.control.set_clock(T0 + 60_000)
    events = [
        event(1, app_version="3.1.0", ip="$remote", carrier="Vodafone", platform="iOS",
              event_properties={"long": "y" * 1500, "nested": {"list": ["z" * 1100]}}, price=2.5, quantity=3,
              revenue=1.0, productId="sku-1", session_id=1700000000000),
        event(2, device_id=None, time=None, insert_id=None, user_properties={"plan": "pro"}),
    ]
    post(http, sb, "/batch", {"api_key": API_KEY, "events": events, "client_upload_time": "2026-03-02T10:15:59.500Z"})
    rows = sorted(exported(http, sb), key=lambda r: r["user_id"])
    assert len(rows) == 2
    first, second = rows
    app = sb.control.health()["apps"][0]
    assert first["$insert_id"] == "insert-00000001" and "insert_id" not in first
    assert first["app"] == app
    assert first["event_time"] == first["client_event_time"] == "2026-03-02 10:15:00.001000"
    assert first["server_upload_time"] == first["server_received_time"] == "2026-03-02 10:16:00.000000"
    assert first["client_upload_time"] == "2026-03-02 10:15:59.500000"
    assert first["data"]["path"] == "/batch" and first["data_type"] == "event"
    assert first["ip_address"] == "127.0.0.1" and first["version_name"] == "3.1.0"
    assert first["device_carrier"] == "Vodafone" and first["session_id"] == 1700000000000
    assert len(first["event_properties"]["long"]) == 1024
    assert len(first["event_properties"]["nested"]["list"][0]) == 1024
    assert first["event_properties"]["$revenue"] == 7.5 and first["event_properties"]["$productId"] == "sku-1"
    assert len(first["uuid"]) == 36 and first["uuid"][14] == "4" and first["uuid"] != second["uuid"]
    assert isinstance(first["amplitude_id"], int)
    # No device_id: Amplitude derives one from user_id; no time: the upload time is used.
    assert second["device_id"] and second["device_id"] != second["user_id"]
    assert second["event_time"] == "2026-03-02 10:16:00.000000"
    assert second["session_id"] == -1 and second["$insert_id"] is None
    assert second["user_properties"] == {"plan": "pro"}
    # The same user keeps the same amplitude_id in later uploads.
    post(http, sb, "/batch", {"api_key": API_KEY, "events": [event(1, insert_id="later")]})
    again = [r for r in exported(http, sb) if r["$insert_id"] == "later"][0]
    assert again["amplitude_id"] == first["amplitude_id"]


def test_non_loopback_host_needs_allow_remote():
    with pytest.raises(ConfigError, match="not a loopback address"):
        SandboxConfig(api_keys=[(API_KEY, SECRET)], host="0.0.0.0")
    assert SandboxConfig(api_keys=[(API_KEY, SECRET)], host="0.0.0.0", allow_remote=True).allow_remote


# -- the fast decoder and the complete path agree --------------------------------------------------

_ids = st.one_of(st.none(), st.sampled_from(["user-00001", "dev-000002", "ab", "NULL", "n/a", "", "x" * 1030]),
                 st.integers(0, 99999))  # ids of every kind the rules care about
_events = st.lists(st.fixed_dictionaries({}, optional={
    "event_type": st.one_of(st.none(), st.sampled_from(["Signup", "", "e" * 1030]), st.integers(-5, 5)),
    "user_id": _ids, "device_id": _ids,
    "time": st.one_of(st.none(), st.integers(0, 2**45), st.floats(allow_nan=False, allow_infinity=False), st.just("10:00")),
    "insert_id": st.one_of(st.none(), st.sampled_from(["a", "", "same"]), st.integers(0, 9)),
    "event_properties": st.dictionaries(st.text(max_size=3), st.integers(-(2**40), 2**40), max_size=2),
}), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=_events, min_id_length=st.one_of(st.none(), st.integers(1, 8)))
def test_fast_decoder_and_complete_path_give_the_same_answer(events, min_id_length, monkeypatch_module):
    body = {"api_key": API_KEY, "events": events}
    if min_id_length is not None:
        body["options"] = {"min_id_length": min_id_length}
    raw = orjson.dumps(body)
    answers = []
    for fast in (True, False):
        monkeypatch_module.setattr(ingest_module, "FAST_DECODE", fast and ingest_module.msgspec is not None)
        service = _services[fast]
        service.reset()
        service.clock.set(T0)
        reply = service.handle(Request("POST", "/batch", {}, {"content-type": "application/json"}, raw, "127.0.0.1"))
        answers.append((reply.status, orjson.loads(reply.body), service.store.count()))
    assert answers[0] == answers[1]


_services: dict[bool, Service] = {}


@pytest.fixture(scope="module")
def monkeypatch_module():
    patcher = pytest.MonkeyPatch()
    for fast in (True, False):
        _services[fast] = Service(SandboxConfig(api_keys=[(API_KEY, SECRET)]))
    yield patcher
    patcher.undo()
    for service in _services.values():
        service.close()
