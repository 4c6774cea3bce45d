"""The ways to move the same events without ampkit, for the side-by-side throughput figures.

Each reads the staged rows of the window from the same DuckDB warehouse with a plain cursor
loop, applies the same data map (one decision per (name, source), cached) and the same
transform and validity rules as `ampkit/sql/sync_extract.sql` (ids, redaction, JSON checks,
duplicate insert_ids), and sends what is left:

- `sdk`: the official `amplitude-analytics` SDK in batch mode (BaseEvent + track + flush);
- `naive`: one `json.dumps`-ed 2,000-event batch at a time with `requests.post`;
- `floor`: not a way to sync at all, the fastest this machine can move the bytes: ampkit's own
  request bodies, serialized beforehand, posted over keep-alive connections.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import threading
import time
from typing import Any, Iterator

import requests

from common import API_KEY, NOW

from ampkit import amplitude, datamap as datamaps  # noqa: E402

ROWS_SQL = """
SELECT id, name, source, timestamp, user_id, device_id, anonymous_user_id, public_argument, feature_flags,
       cohort_id, first_source_url, referrer, version, insert_id
FROM amplitude_events
WHERE loaded_at > $lookback AND loaded_at <= $window_end
ORDER BY timestamp, id
"""
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
TOKEN = re.compile(r"(sgp_|ghp_|gho_|github_pat_|glpat-|xox[abprs]-|AKIA)[A-Za-z0-9_-]{8,}|[A-Fa-f0-9]{40,}")
BLOCKLIST = frozenset(amplitude.BLOCKLISTED_IDS)
START_TIME = dt.datetime(2020, 12, 1, tzinfo=dt.timezone.utc)
FUTURE_LIMIT = NOW + dt.timedelta(days=1)
BATCH = 2000


def rows(warehouse_path: str, limit: int | None = None, batch_rows: int = 10_000) -> Iterator[tuple]:
    """The window's staged rows in time order, as plain tuples (a cursor loop)."""
    import duckdb
    con = duckdb.connect(warehouse_path, read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        sql = ROWS_SQL + (f" LIMIT {int(limit)}" if limit else "")
        cursor = con.execute(sql, {"lookback": NOW - dt.timedelta(hours=7), "window_end": NOW + dt.timedelta(minutes=1)})
        while True:
            chunk = cursor.fetchmany(batch_rows)
            if not chunk:
                return
            yield from chunk
    finally:
        con.close()


def transform(row_iter) -> Iterator[dict[str, Any]]:
    """The same decisions as ampkit's data map and SQL transform, one row at a time in Python."""
    data_map = datamaps.load(None)
    decide = functools.lru_cache(maxsize=None)(lambda name, source: data_map.decide(name or "", source).sends)
    seen: set[str] = set()
    for (rid, name, source, ts, user_id, device_id, anonymous, public_argument, flags, cohort, first_url,
         referrer, version, insert_id) in row_iter:
        if not decide(name, source) or ts is None or ts < START_TIME:
            continue
        user_key = f"{user_id:06d}" if user_id and user_id > 0 else None
        raw_device = (device_id or "").strip() or (None if anonymous in ("backend", "") or anonymous is None else anonymous.strip())
        device_key = raw_device if raw_device and len(raw_device) >= 5 and raw_device.lower() not in BLOCKLIST else None
        if not name or not name.strip() or (user_key is None and device_key is None) or ts > FUTURE_LIMIT:
            continue
        text = TOKEN.sub("[redacted-token]", EMAIL.sub("[redacted-email]", (public_argument or "").strip() or "{}"))
        try:
            properties = json.loads(text)
        except ValueError:
            continue
        if not isinstance(properties, dict) or len(text) > 32_768:
            continue
        insert_id = insert_id or "sg-" + hashlib.sha256(f"event_logs:{rid}".encode()).hexdigest()
        if insert_id in seen:
            continue
        seen.add(insert_id)
        flags_text = (flags or "").strip() or "{}"
        try:
            flag_values = json.loads(flags_text) if flags_text.startswith("{") else None
        except ValueError:
            flag_values = None
        user_properties = {"anonymous_user_id": None if anonymous in ("backend", "") else anonymous,
                           "feature_flags": flag_values, "cohort_id": cohort.isoformat() if cohort else None,
                           "first_source_url": first_url, "referrer": referrer}
        event = {"event_type": name, "time": int(ts.timestamp() * 1000), "insert_id": insert_id,
                 "event_properties": properties, "user_properties": user_properties}
        if user_key:
            event["user_id"] = user_key
        if device_key:
            event["device_id"] = device_key
        if source is not None:
            event["platform"] = source
        if version is not None:
            event["app_version"] = version
        yield event


def naive(warehouse_path: str, url: str) -> dict[str, Any]:
    """Read, transform, and post one json.dumps-ed batch at a time with requests.post."""
    accepted = requests_made = 0
    read = [0]
    batch: list[dict] = []

    def post(events: list[dict]) -> None:
        nonlocal accepted, requests_made
        response = requests.post(url + "/batch", data=json.dumps({"api_key": API_KEY, "events": events}),
                                 headers={"Content-Type": "application/json"}, timeout=60)
        requests_made += 1
        if response.status_code != 200:
            raise RuntimeError(f"naive loop: HTTP {response.status_code} {response.text[:200]}")
        accepted += response.json()["events_ingested"]

    for event in transform(_counting(rows(warehouse_path), read)):
        batch.append(event)
        if len(batch) == BATCH:
            post(batch)
            batch = []
    if batch:
        post(batch)
    return {"rows": read[0], "accepted": accepted, "requests": requests_made}


def sdk(warehouse_path: str, url: str, limit: int, flush_queue_size: int) -> dict[str, Any]:
    """Read, transform into BaseEvents and track them with the SDK in batch mode; wait for every callback."""
    from amplitude import Amplitude, BaseEvent, Config
    done = threading.Event()
    lock = threading.Lock()
    codes: dict[int, int] = {}
    tracked = 0
    finished = False

    def callback(event, code, message=None):
        with lock:
            codes[code] = codes.get(code, 0) + 1
            if finished and sum(codes.values()) >= tracked:
                done.set()

    config = Config(server_url=url + "/batch", use_batch=True, flush_queue_size=flush_queue_size,
                    flush_interval_millis=100, callback=callback)
    client = Amplitude(API_KEY, config)
    read = [0]
    for event in transform(_counting(rows(warehouse_path, limit=limit), read)):
        client.track(BaseEvent(event_type=event["event_type"], user_id=event.get("user_id"), device_id=event.get("device_id"),
                               time=event["time"], insert_id=event["insert_id"], platform=event.get("platform"),
                               app_version=event.get("app_version"), event_properties=event["event_properties"],
                               user_properties=event["user_properties"]))
        tracked += 1
    with lock:
        finished = True
        if sum(codes.values()) >= tracked:
            done.set()
    client.flush()
    ok = done.wait(600)
    client.shutdown()
    return {"rows": read[0], "accepted": codes.get(200, 0), "tracked": tracked, "codes": codes, "complete": ok}


def _counting(iterable, counter: list[int]):
    for item in iterable:
        counter[0] += 1
        yield item


def floor(url: str, bodies: list[bytes], threads: int, gzipped: bool = False) -> dict[str, Any]:
    """Post ready-made bodies (already gzipped when `gzipped`) over `threads` keep-alive sessions;
    every answer must be a 200."""
    headers = {"Content-Type": "application/json", **({"Content-Encoding": "gzip"} if gzipped else {})}
    lock = threading.Lock()
    state = {"next": 0, "accepted": 0, "errors": []}

    def worker() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    if state["next"] >= len(bodies):
                        return
                    body = bodies[state["next"]]
                    state["next"] += 1
                response = session.post(url + "/batch", data=body, headers=headers, timeout=60)
                with lock:
                    if response.status_code == 200:
                        state["accepted"] += response.json()["events_ingested"]
                    else:
                        state["errors"].append(f"{response.status_code} {response.text[:200]}")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if state["errors"]:
        raise RuntimeError(f"{'gzip ' if gzipped else ''}floor: {state['errors'][:3]}")
    return {"accepted": state["accepted"], "requests": len(bodies)}
