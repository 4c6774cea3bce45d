"""The official `amplitude-analytics` SDK against the sandbox, through its 413, 429 and 5xx paths.

Every event the SDK reports delivered (callback code 200) must be in the export exactly once,
and the segmentation totals must match. The 429 is injected with empty throttled lists: with
ids listed, the SDK waits a hard-coded 30 s before resending them.
"""
from __future__ import annotations

import gzip
import io
import json
import threading
import time
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config

from ampkit.sandbox import SandboxConfig, start

API_KEY = "sdk-test-api-key-000001"
SECRET = "sdk-test-secret-000001"
EVENTS = 120


@pytest.fixture(scope="module")
def sandbox():
    with start(SandboxConfig(api_keys=[(API_KEY, SECRET)], export_lag_seconds=0)) as running:
        yield running


def export_rows(url):
    now = datetime.now(timezone.utc)
    params = {"start": f"{now - timedelta(hours=1):%Y%m%dT%H}", "end": f"{now:%Y%m%dT%H}"}
    response = requests.get(url + "/api/2/export", params=params, auth=(API_KEY, SECRET))
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    return [json.loads(line) for name in archive.namelist() for line in gzip.decompress(archive.read(name)).splitlines()]


def totals(url, event_type):
    today = datetime.now(timezone.utc)
    response = requests.get(url + "/api/2/events/segmentation", auth=(API_KEY, SECRET), params={
        "e": orjson.dumps({"event_type": event_type}).decode(), "m": "totals",
        "start": f"{today - timedelta(days=1):%Y%m%d}", "end": f"{today:%Y%m%d}"})
    assert response.status_code == 200, response.text
    return response.json()["data"]["seriesCollapsed"][0][0]["value"]


@pytest.mark.parametrize("use_batch", [True, False], ids=["batch", "http-v2"])
def test_sdk_delivers_each_event_exactly_once_through_413_429_and_5xx(sandbox, use_batch):
    control = sandbox.control
    control.reset()
    path = "/batch" if use_batch else "/2/httpapi"
    # Consumed in this order, one request each.
    control.inject(path, status=413)
    control.inject(path, status=429, throttled="none")
    control.inject(path, status=500)
    control.inject(path, status=502)
    control.inject(path, kind="ingested_then_500")
    control.inject(path, status=503)
    control.inject(path, status=504)
    # Not a dropped connection: SDK 1.3.0 loses that batch with no callback (its HTTP client
    # does not catch http.client.RemoteDisconnected); see docs/SANDBOX.md.

    outcomes: dict[str, int] = {}
    done = threading.Event()
    lock = threading.Lock()

    def callback(event, code, message=None):
        with lock:
            outcomes[event.insert_id] = code
            if len(outcomes) == EVENTS:
                done.set()

    config = Config(server_url=sandbox.url + path, use_batch=use_batch, flush_interval_millis=50,
                    flush_queue_size=30, flush_max_retries=12, callback=callback)
    client = Amplitude(API_KEY, config)
    event_type = f"SDK Test {path}"
    for i in range(EVENTS):
        client.track(BaseEvent(event_type=event_type, user_id=f"sdk-user-{i % 10:03d}",
                               device_id=f"sdk-device-{i % 7:03d}", event_properties={"n": i}))
    client.flush()
    assert done.wait(60), f"only {len(outcomes)} of {EVENTS} events got a callback"
    client.shutdown()

    delivered = {insert_id for insert_id, code in outcomes.items() if code == 200}
    assert len(delivered) == EVENTS
    statuses = control.stats()["requests_by_status"][path]
    for status in ("413", "429", "500", "502", "503", "504"):
        assert statuses.get(status), f"the SDK never met a {status}: {statuses}"
    assert not control.faults()  # every injected fault fired

    rows = [r for r in export_rows(sandbox.url) if r["event_type"] == event_type]
    counts = Counter(r["$insert_id"] for r in rows)
    assert set(counts) == delivered
    assert set(counts.values()) == {1}
    assert {r["data"]["path"] for r in rows} == {path}
    assert totals(sandbox.url, event_type) == len(delivered)


def test_sdk_min_id_length_option_reaches_the_sandbox(sandbox):
    sandbox.control.reset()
    codes: list[int] = []
    config = Config(server_url=sandbox.url + "/2/httpapi", flush_interval_millis=50, min_id_length=1,
                    callback=lambda event, code, message=None: codes.append(code))
    client = Amplitude(API_KEY, config)
    client.track(BaseEvent(event_type="Short Id", user_id="42"))
    client.flush()
    deadline = time.monotonic() + 20
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    client.shutdown()
    assert codes == [200]
