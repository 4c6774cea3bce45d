"""The Export API's formats: hour ranges in, a zip of gzipped JSON lines out (pure, no I/O).

Rows come from the store as Arrow batches in arrival order and leave in Amplitude's export
schema: `$insert_id` (not `insert_id`), a per-row `uuid`, an `amplitude_id`, and timestamps
as `YYYY-MM-DD HH:MM:SS.ffffff` in UTC.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import uuid as uuid_module
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pyarrow as pa

from ampkit.sandbox.ingest import MAX_STRING_LENGTH, device_id_for_user
from ampkit.sandbox.reply import Reply

HOUR_MS = 3600 * 1000
_HOUR_PATTERN = re.compile(r"^\d{8}T\d{2}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Device/context fields copied as they were sent; `carrier` is exported as `device_carrier`.
_COPIED = ("platform", "os_name", "os_version", "device_brand", "device_manufacturer", "device_model",
           "country", "region", "city", "dma", "language", "library", "location_lat", "location_lng",
           "idfa", "idfv", "adid", "android_id", "event_id", "partner_id", "plan", "ingestion_metadata")
_REVENUE = (("price", "$price"), ("quantity", "$quantity"), ("revenue", "$revenue"),
            ("productId", "$productId"), ("revenueType", "$revenueType"), ("currency", "$currency"))


class ExportTooLarge(Exception):
    """Raised when the export would exceed the configured size cap (Amplitude's is 4 GB)."""


def parse_range(start: str | None, end: str | None, max_days: int) -> tuple[int, int] | Reply:
    """`start`/`end` as `YYYYMMDDTHH` (UTC, both hours included) -> [start_ms, end_ms)."""
    if not start or not end:
        return Reply.dashboard_error(400, "invalid", "Missing required parameter", "start and end are required")
    bounds = []
    for name, value in (("start", start), ("end", end)):
        if not _HOUR_PATTERN.match(value):
            return Reply.dashboard_error(400, "invalid", f"Invalid {name}", f"{name} must be YYYYMMDDTHH")
        try:
            bounds.append(datetime.strptime(value, "%Y%m%dT%H").replace(tzinfo=timezone.utc))
        except ValueError:
            return Reply.dashboard_error(400, "invalid", f"Invalid {name}", f"{value} is not a valid hour")
    first, last = bounds
    if last < first:
        return Reply.dashboard_error(400, "invalid", "Invalid range", "end is before start")
    if last - first > timedelta(days=max_days):
        return Reply.dashboard_error(400, "invalid", "Invalid range", f"the range is longer than {max_days} days")
    return _ms(first), _ms(last) + HOUR_MS


def ready_before_ms(now_ms: int, lag_seconds: int) -> int:
    """Upload times before this are exportable.

    Amplitude loads an upload hour when it ends and serves it `lag` later (20:00-21:00 is
    exportable at 23:00 with the 2 h lag). A lag of 0 means no loading delay at all: every
    acknowledged event is exportable at once, which is what tests usually want.
    """
    if lag_seconds <= 0:
        return now_ms + 1
    return (now_ms - lag_seconds * 1000) // HOUR_MS * HOUR_MS


def without_hours(batches: Iterable[pa.RecordBatch], hours: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    """The batches without rows uploaded in `hours` (`YYYYMMDDTHH`, UTC): an export gap."""
    import pyarrow.compute as pc
    starts = [_ms(datetime.strptime(h, "%Y%m%dT%H").replace(tzinfo=timezone.utc)) for h in hours]
    for batch in batches:
        if starts:
            hour = pc.multiply(pc.divide(batch.column("upload_ms"), HOUR_MS), HOUR_MS)
            batch = batch.filter(pc.invert(pc.is_in(hour, pa.array(starts, batch.column("upload_ms").type))))
        if batch.num_rows:
            yield batch


def build_zip(app: int, batches: Iterable[pa.RecordBatch], read_body: Callable[[int], tuple[dict, bytes]],
              salt: bytes, part_max_rows: int, max_bytes: int) -> bytes | None:
    """The export archive, or None when there is no row. Raises ExportTooLarge over `max_bytes`.

    `read_body(offset)` returns a stored request's header and body; rows of one body
    arrive together, so each body is parsed once.
    """
    buffer = io.BytesIO()
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED)
    lines: list[bytes] = []
    hour = part = None
    total_bytes = 0
    rows = 0
    parsed_body: tuple[int, dict, list] = (-1, {}, [])  # (body_offset, its header, its events)

    def flush() -> None:
        if lines:
            archive.writestr(entry_name(app, hour, part), gzip.compress(b"".join(lines), 6, mtime=0))
            lines.clear()

    for batch in batches:
        for record in batch.to_pylist():
            row_hour = record["upload_ms"] // HOUR_MS
            if row_hour != hour:
                flush()
                hour, part = row_hour, 0
            elif len(lines) >= part_max_rows:
                flush()
                part += 1
            if record["body_offset"] != parsed_body[0]:
                header, data = read_body(record["body_offset"])
                parsed_body = (record["body_offset"], header, orjson.loads(data)["events"])
            record.update(parsed_body[1])
            event = parsed_body[2][record["idx"]]
            line = dumps(to_row(record, event, app, row_uuid(salt, record["seq"]))) + b"\n"
            total_bytes += len(line)
            if total_bytes > max_bytes:
                raise ExportTooLarge(f"export is over {max_bytes} bytes")
            lines.append(line)
            rows += 1
    flush()
    archive.close()
    return buffer.getvalue() if rows else None


def dumps(row: dict[str, Any]) -> bytes:
    """One export line; orjson stops at 255 levels of nesting, the standard library goes deeper."""
    try:
        return orjson.dumps(row)
    except orjson.JSONEncodeError:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()


def entry_name(app: int, hour: int, part: int) -> str:
    """`{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz`: UTC upload hour, H not padded, n from 0."""
    start = _EPOCH + timedelta(hours=hour)
    return f"{app}/{app}_{start:%Y-%m-%d}_{start.hour}#{part}.json.gz"


def to_row(record: dict[str, Any], event: dict[str, Any], app: int, uuid: str) -> dict[str, Any]:
    """One stored event (its index row and the event as sent) in Amplitude's export schema."""
    event = truncate(event)
    upload = format_ms(record["upload_ms"])
    event_time = format_ms(record["event_ms"])
    user_id = record["user_id"]
    device_id = record["device_id"] or device_id_for_user(user_id)
    event_properties = event.get("event_properties") if isinstance(event.get("event_properties"), dict) else {}
    event_properties = {**event_properties, **_revenue(event)}
    user_properties = event.get("user_properties") if isinstance(event.get("user_properties"), dict) else {}
    ip = event.get("ip")
    session_id = event.get("session_id")
    row: dict[str, Any] = {
        "$insert_id": record["insert_id"],
        "amplitude_attribution_ids": None,
        "amplitude_id": amplitude_id(app, user_id or device_id),
        "app": app,
        "client_event_time": event_time,
        "client_upload_time": format_ms(record["client_upload_ms"] or record["upload_ms"]),
        "data": {"path": record["path"], "group_first_event": {}, "group_ids": {},
                 "user_properties_updated": bool(user_properties)},
        "data_type": "event",
        "device_carrier": event.get("carrier"),
        "device_family": None,
        "device_id": device_id,
        "device_type": None,
        "event_properties": event_properties,
        "event_time": event_time,
        "event_type": record["event_type"],
        "group_properties": event.get("group_properties") or {},
        "groups": event.get("groups") or {},
        "ip_address": record["request_ip"] if ip == "$remote" else ip,
        "is_attribution_event": False,
        "paying": None,
        "processed_time": upload,
        "sample_rate": None,
        "server_received_time": upload,
        "server_upload_time": upload,
        "session_id": session_id if type(session_id) is int else -1,
        "start_version": None,
        "user_id": user_id,
        "user_properties": user_properties,
        "uuid": uuid,
        "version_name": event.get("version_name") or event.get("app_version"),
    }
    for name in _COPIED:
        row.setdefault(name, event.get(name))
    return row


def row_uuid(salt: bytes, seq: int) -> str:
    """A version-4-shaped UUID, unique per stored row and stable across exports."""
    digest = bytearray(hashlib.blake2b(seq.to_bytes(8, "big"), key=salt, digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid_module.UUID(bytes=bytes(digest)))


def amplitude_id(app: int, identity: str) -> int:
    """Stable per user (or per device when anonymous), like Amplitude's own ids: 12 digits."""
    digest = hashlib.blake2b(f"{app}:{identity}".encode(), digest_size=8).digest()
    return 10**11 + int.from_bytes(digest, "big") % (9 * 10**11)


def format_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%S.%f")
    except OverflowError:  # a `time` thousands of years off; Amplitude accepts it, datetime cannot
        return None


def truncate(value: Any) -> Any:
    """Cut every string to 1,024 characters, as Amplitude does with property values.

    Walks the value with its own stack: properties may nest deeper than Python's recursion limit.
    """
    if isinstance(value, str):
        return value[:MAX_STRING_LENGTH]
    if not isinstance(value, (dict, list)):
        return value
    root = value.copy()
    stack = [root]
    while stack:
        node = stack.pop()
        for key, item in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(item, str):
                if len(item) > MAX_STRING_LENGTH:
                    node[key] = item[:MAX_STRING_LENGTH]
            elif isinstance(item, (dict, list)):
                node[key] = item.copy()
                stack.append(node[key])
    return root


def _revenue(event: dict[str, Any]) -> dict[str, Any]:
    found = {name: event[key] for key, name in _REVENUE if key in event}
    price, quantity = event.get("price"), event.get("quantity")
    if "$price" in found and "$revenue" in found:
        # With price, quantity and revenue all sent, revenue = price x quantity (http-v2 docs).
        if isinstance(price, (int, float)) and isinstance(quantity, int):
            found["$revenue"] = price * quantity
    if "$price" in found and "$quantity" not in found:
        found["$quantity"] = 1
    return found


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)
