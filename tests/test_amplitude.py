import orjson
import pytest

from ampkit import amplitude


def j(obj) -> bytes:
    return orjson.dumps(obj)


@pytest.mark.parametrize("status, body, kind", [
    (200, j({"code": 200, "events_ingested": 3, "payload_size_bytes": 10, "server_upload_time": 1}), "ok"),
    (200, b"<html>ok</html>", "retry"),            # not Amplitude's JSON: nothing proven stored
    (200, b"", "retry"),
    (413, j({"code": 413, "error": "Payload too large"}), "too_large"),
    (413, b"<html>413</html>", "too_large"),
    (429, j({"code": 429, "error": "Too many requests", "throttled_devices": {"dev-1": 31}, "throttled_events": [0]}), "throttled"),
    (500, j({"code": 500}), "retry"),
    (502, b"<html>bad gateway</html>", "retry"),
    (503, j({"code": 503}), "retry"),
    (504, b"", "retry"),
    (400, j({"code": 400, "error": "Invalid API key: xyz"}), "fatal"),
    (400, j({"code": 400, "error": "Request missing required field", "missing_field": "api_key"}), "fatal"),
    (400, j({"code": 400, "error": "Invalid id length", "events_with_invalid_id_lengths": {"user_id": [1]}}), "rejected"),
    (400, b"<html>400 Bad Request</html>", "retry"),
    (403, j({"code": 403, "error": "Forbidden"}), "fatal"),
])
def test_classify(status, body, kind):
    assert amplitude.classify(status, body).kind == kind


def test_classify_400_lists_every_index_with_its_field():
    v = amplitude.classify(400, j({"code": 400, "events_with_missing_fields": {"event_type": [3]},
                                   "events_with_invalid_fields": {"time": [1, 3]},
                                   "events_with_invalid_id_lengths": {"device_id": [5]}}))
    assert v.rejected == {3: "amplitude_missing_fields:event_type", 1: "amplitude_invalid_fields:time",
                          5: "amplitude_invalid_id_lengths:device_id"}


def test_classify_429_separates_throttled_and_quota_ids():
    v = amplitude.classify(429, j({"code": 429, "throttled_devices": {"d1": 40}, "throttled_users": {"000123": 50},
                                   "exceeded_daily_quota_devices": {"d9": 500001}, "throttled_events": [0, 2]}))
    assert v.throttled_ids == {"d1", "000123"}
    assert v.quota_ids == {"d9"}
    assert v.throttled_indexes == {0, 2}
