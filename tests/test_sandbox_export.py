"""The sandbox's Export API over HTTP: auth, ranges, the loading lag, and the zip's layout."""
from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from datetime import datetime, timezone

import pytest
import requests

from ampkit.sandbox import SandboxConfig, start

API_KEY = "export-test-api-key-0001"
SECRET = "export-test-secret-0001"
OTHER_KEY, OTHER_SECRET = "export-test-api-key-0002", "export-test-secret-0002"


def ms(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def sandbox():
    config = SandboxConfig(api_keys=[(API_KEY, SECRET), (OTHER_KEY, OTHER_SECRET)], export_lag_seconds=7200,
                           export_part_max_rows=3)
    with start(config) as running:
        yield running


@pytest.fixture
def sb(sandbox):
    sandbox.control.reset()
    return sandbox


def send(sb, n, upload_ms, api_key=API_KEY, prefix="e"):
    sb.control.set_clock(upload_ms)
    events = [{"event_type": "Order Completed", "user_id": f"user-{i:04d}", "insert_id": f"{prefix}-{upload_ms}-{i}",
               "time": upload_ms - 1000} for i in range(n)]
    response = requests.post(sb.url + "/batch", json={"api_key": api_key, "events": events})
    assert response.status_code == 200


def export(sb, start_hour, end_hour, auth=(API_KEY, SECRET)):
    return requests.get(sb.url + "/api/2/export", params={"start": start_hour, "end": end_hour}, auth=auth)


def unzip(response):
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return {name: [json.loads(line) for line in gzip.decompress(archive.read(name)).splitlines()]
            for name in archive.namelist()}


@pytest.mark.parametrize("auth,status", [(None, 401), ((API_KEY, "wrong-secret"), 401),
                                         (("unknown-key", SECRET), 401), ((OTHER_KEY, SECRET), 401)])
def test_bad_basic_auth_is_401_and_never_echoes_the_secret(sb, auth, status):
    response = export(sb, "20260301T00", "20260301T01", auth=auth)
    assert response.status_code == status
    assert response.json()["error"]["http_code"] == 401
    assert SECRET not in response.text and "wrong-secret" not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("params", [
    {"start": "20260301T00"}, {"end": "20260301T00"}, {"start": "2026-03-01", "end": "20260301T05"},
    {"start": "20260301T24", "end": "20260302T00"}, {"start": "20260302T00", "end": "20260301T23"},
    {"start": "20240101T00", "end": "20250101T01"},
])
def test_bad_ranges_are_400(sb, params):
    response = requests.get(sb.url + "/api/2/export", params=params, auth=(API_KEY, SECRET))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid"


def test_empty_range_is_404(sb):
    sb.control.set_clock(ms(2026, 3, 5))
    response = export(sb, "20260301T00", "20260301T23")
    assert response.status_code == 404
    assert response.json()["error"]["http_code"] == 404


def test_an_upload_hour_is_exportable_two_hours_after_it_ends(sb):
    send(sb, 2, ms(2026, 3, 1, 20, 30))
    sb.control.set_clock(ms(2026, 3, 1, 22, 59, 59))
    assert export(sb, "20260301T20", "20260301T20").status_code == 404
    sb.control.set_clock(ms(2026, 3, 1, 23, 0))
    response = export(sb, "20260301T20", "20260301T20")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"


def test_zip_layout_partitions_and_row_format(sb):
    app = sb.control.health()["apps"][0]
    send(sb, 7, ms(2026, 3, 1, 5, 10))       # 7 rows with 3 per part: #0, #1, #2
    send(sb, 1, ms(2026, 3, 1, 17, 59, 59))  # another hour, two digits
    send(sb, 2, ms(2026, 3, 1, 18, 0), api_key=OTHER_KEY)  # another project: never in this export
    sb.control.set_clock(ms(2026, 3, 2, 12))
    response = export(sb, "20260301T00", "20260301T23")
    files = unzip(response)
    assert sorted(files) == [f"{app}/{app}_2026-03-01_17#0.json.gz", f"{app}/{app}_2026-03-01_5#0.json.gz",
                             f"{app}/{app}_2026-03-01_5#1.json.gz", f"{app}/{app}_2026-03-01_5#2.json.gz"]
    assert [len(files[f"{app}/{app}_2026-03-01_5#{n}.json.gz"]) for n in range(3)] == [3, 3, 1]
    row = files[f"{app}/{app}_2026-03-01_17#0.json.gz"][0]
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
    for field in ("event_time", "client_event_time", "server_upload_time", "server_received_time", "processed_time",
                  "client_upload_time"):
        assert stamp.match(row[field]), field
    assert row["server_upload_time"] == "2026-03-01 17:59:59.000000"
    assert row["$insert_id"].startswith("e-") and row["app"] == app
    # Only the hours asked for, inclusive at both ends.
    assert sorted(unzip(export(sb, "20260301T17", "20260301T17"))) == [f"{app}/{app}_2026-03-01_17#0.json.gz"]
    other = unzip(export(sb, "20260301T00", "20260301T23", auth=(OTHER_KEY, OTHER_SECRET)))
    assert sum(len(rows) for rows in other.values()) == 2


def test_export_over_the_size_cap_is_400():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], export_lag_seconds=0, export_max_bytes=2000)) as sb:
        send(sb, 20, ms(2026, 3, 1, 5))
        response = export(sb, "20260301T05", "20260301T05")
    assert response.status_code == 400
    assert "too large" in response.json()["error"]["message"].lower()


def test_lag_zero_exports_what_was_just_acknowledged():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], export_lag_seconds=0)) as sb:
        send(sb, 3, ms(2026, 3, 1, 5, 59))
        files = unzip(export(sb, "20260301T05", "20260301T05"))
    assert sum(len(rows) for rows in files.values()) == 3


def test_an_export_gap_leaves_out_an_upload_hour_the_dashboard_still_counts():
    config = SandboxConfig(api_keys=[(API_KEY, SECRET)], export_lag_seconds=0, export_missing_hours=("20260301T10",))
    with start(config) as sb:
        send(sb, 3, ms(2026, 3, 1, 9, 30))
        send(sb, 4, ms(2026, 3, 1, 10, 30))
        send(sb, 5, ms(2026, 3, 1, 11, 30))
        rows = [r for part in unzip(export(sb, "20260301T09", "20260301T11")).values() for r in part]
        assert sorted({r["server_upload_time"][:13] for r in rows}) == ["2026-03-01 09", "2026-03-01 11"]
        assert len(rows) == 8
        counts = requests.get(sb.url + "/api/2/events/segmentation", auth=(API_KEY, SECRET),
                              params={"e": '{"event_type":"Order Completed"}', "start": "20260301", "end": "20260301", "m": "totals"})
        assert counts.json()["data"]["series"][0] == [12]
    with pytest.raises(Exception, match="not an upload hour"):
        SandboxConfig(api_keys=[(API_KEY, SECRET)], export_missing_hours=("2026-03-01 10",))
