"""Ingestion rules: decode, parse and validate an HTTP V2 / Batch request body (pure, no I/O).

The order of the checks is Amplitude's documented order (first failing rule wins):
missing body, invalid JSON, missing `api_key`/`events`, unknown key, 413, then per-event
problems collected over *all* events into one 400. Nothing here touches state: throttling,
dedup and storage happen in `service.py` once a request has passed every rule below.
"""
from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson

from ampkit.sandbox.config import Project
from ampkit.sandbox.reply import Reply

try:  # optional: a typed decoder that skips event properties, ~4x faster than orjson here
    import msgspec
except ImportError:  # pragma: no cover - exercised by forcing FAST_DECODE = False in tests
    msgspec = None

# https://amplitude.com/docs/apis/analytics/http-v2 ("limited to 1,024 characters").
MAX_STRING_LENGTH = 1024
# https://amplitude.com/docs/apis/analytics/http-v2 (device_id / user_id blocklist). Matched
# case-insensitively; `'""'` is the two-character string of a quoted empty string.
BLOCKLISTED_IDS = frozenset({
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", '""',
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
})


def _every_case(word: str) -> set[str]:
    variants = {""}
    for char in word:
        variants = {v + c for v in variants for c in {char.lower(), char.upper()}}
    return variants


# Every upper/lower-case spelling (about 1,200 strings), so the hot path needs no .lower() call.
_BLOCKLISTED_ANY_CASE = frozenset().union(*(_every_case(word) for word in BLOCKLISTED_IDS))
# Bodies this many times over the endpoint's byte cap are refused before parsing, so a
# runaway client cannot make the sandbox parse gigabytes just to say 413.
HARD_CAP_FACTOR = 3

_ERR_MISSING = "Request missing required field"
_ERR_INVALID = "Invalid field values on some events"
_ERR_ID_LENGTH = "Invalid id length for user_id or device_id"
_USER_DEVICE_NAMESPACE = uuid.UUID("6f1c2a52-6a55-4a8e-9a51-0d8f0a7e3c11")


@dataclass
class Accepted:
    """A request that passed every rule: its project and its events, split into columns."""

    project: Project
    event_types: list[str]
    user_ids: list[str | None]
    device_ids: list[str | None]  # as sent (None when absent); throttling counts these
    effective_device_ids: list[str]  # sent, or derived from user_id; dedup and storage use these
    times_ms: list[int]
    insert_ids: list[str | None]
    client_upload_ms: int | None


def decode(raw: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int) -> bytes | Reply:
    """Undo `Content-Encoding: gzip`; size limits apply to the decompressed bytes."""
    if not raw:
        return Reply.ingest_error(400, "Missing request body")
    if content_type and content_type.split(";", 1)[0].strip().lower() != "application/json":
        return Reply.ingest_error(400, "Invalid JSON request body")
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        data = raw
    elif encoding == "gzip":
        hard_cap = max_bytes * HARD_CAP_FACTOR
        try:
            inflater = zlib.decompressobj(wbits=31)
            data = inflater.decompress(raw, hard_cap + 1)
        except zlib.error:
            return Reply.ingest_error(400, "Invalid JSON request body")
        if len(data) > hard_cap:
            return Reply.ingest_error(413, "Payload too large")
    else:
        return Reply.ingest_error(400, "Invalid JSON request body")
    if not data:
        return Reply.ingest_error(400, "Missing request body")
    if len(data) > max_bytes * HARD_CAP_FACTOR:
        return Reply.ingest_error(413, "Payload too large")
    return data


def parse(data: bytes) -> dict | Reply:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Reply.ingest_error(400, "Invalid JSON request body")
    if not isinstance(body, dict):
        return Reply.ingest_error(400, "Invalid JSON request body")
    return body


def check_request(
    body: dict,
    decoded_bytes: int,
    projects: Mapping[str, Project],
    max_bytes: int,
    max_events: int,
    empty_events_ok: bool,
    secret_keys: frozenset[str] = frozenset(),
) -> tuple[Project, list] | Reply:
    """Request-level rules; keys are case-sensitive (`Events` is a missing `events`).

    A secret key sent as `api_key` by mistake is refused like any unknown key, but not echoed.
    """
    if body.get("api_key") is None:
        return Reply.ingest_error(400, _ERR_MISSING, missing_field="api_key")
    if body.get("events") is None:
        return Reply.ingest_error(400, _ERR_MISSING, missing_field="events")
    api_key = body["api_key"]
    project = projects.get(api_key) if isinstance(api_key, str) else None
    if project is None:
        # Amplitude echoes the rejected key; it is not one of ours, so that leaks nothing.
        shown = api_key if isinstance(api_key, str) else orjson.dumps(api_key).decode()
        if shown in secret_keys:
            shown = "[a secret key; not shown]"
        return Reply.ingest_error(400, f"Invalid API key: {shown}")
    events = body["events"]
    if not isinstance(events, list):
        return Reply.ingest_error(400, "Invalid event JSON")
    if decoded_bytes > max_bytes or len(events) > max_events:
        return Reply.ingest_error(413, "Payload too large")
    if not events and not empty_events_ok:
        return Reply.ingest_error(400, _ERR_MISSING, missing_field="events")
    return project, events


def min_id_length_of(body: dict, default: int) -> int:
    """`options.min_id_length` when it is a positive integer, else the project default."""
    options = body.get("options")
    if isinstance(options, dict):
        value = options.get("min_id_length")
        if type(value) is int and value > 0:
            return value
    return default


def check_events(
    project: Project,
    events: list,
    min_id_length: int,
    now_ms: int,
    client_upload_ms: int | None = None,
    silenced_devices: frozenset[str] = frozenset(),
) -> Accepted | Reply:
    """Per-event rules, collecting every bad index into one 400 (nothing is ingested then).

    Runs for every event the sandbox receives, so the common case is checked column-wise
    with C-level builtins (`map`, `set`, `min`); only a request that fails that check is
    walked event by event to say exactly which events are wrong.
    """
    columns = _columns(events)
    if columns is None:
        return Reply.ingest_error(400, "Invalid event JSON")
    if not _all_valid(*columns, min_id_length):
        checked = _check_each(events, min_id_length)
        if isinstance(checked, Reply):
            return checked
        columns = checked
    return _accept(project, columns, now_ms, client_upload_ms, silenced_devices)


def _accept(project: Project, columns: tuple[list, ...], now_ms: int, client_upload_ms: int | None,
            silenced_devices: frozenset[str]) -> Accepted | Reply:
    event_types, user_ids, device_ids, times, insert_ids = columns
    if None in times:
        times = [now_ms if t is None else t for t in times]
    if "" in insert_ids:
        insert_ids = [i or None for i in insert_ids]
    if silenced_devices:
        silenced = _silenced(device_ids, silenced_devices)
        if silenced is not None:
            return silenced
    if None in device_ids:
        effective = [d if d is not None else device_id_for_user(u) for d, u in zip(device_ids, user_ids)]
    else:
        effective = device_ids
    return Accepted(project, event_types, user_ids, device_ids, effective, times, insert_ids, client_upload_ms)


def _columns(events: list) -> tuple[list, ...] | None:
    try:
        return ([e.get("event_type") for e in events], [e.get("user_id") for e in events],
                [e.get("device_id") for e in events], [e.get("time") for e in events],
                [e.get("insert_id") for e in events])
    except AttributeError:  # an element that is not a JSON object
        return None


_STR = {str}
_STR_OR_NONE = {str, type(None)}
_INT_OR_NONE = {int, type(None)}


def _all_valid(event_types: list, user_ids: list, device_ids: list, times: list, insert_ids: list,
               min_id_length: int) -> bool:
    """True when no event breaks a rule (the fast path); False means "look closer"."""
    if not event_types:
        return True
    if set(map(type, event_types)) != _STR:
        return False
    if min(map(len, event_types)) == 0 or max(map(len, event_types)) > MAX_STRING_LENGTH:
        return False
    for ids in (user_ids, device_ids):
        if not set(map(type, ids)) <= _STR_OR_NONE:
            return False
        present = [i for i in ids if i is not None] if None in ids else ids
        if present and (min(map(len, present)) < min_id_length or max(map(len, present)) > MAX_STRING_LENGTH
                        or not _BLOCKLISTED_ANY_CASE.isdisjoint(present)):
            return False
    if None in user_ids and None in device_ids:
        if any(u is None and d is None for u, d in zip(user_ids, device_ids)):
            return False
    return set(map(type, times)) <= _INT_OR_NONE and set(map(type, insert_ids)) <= _STR_OR_NONE


def _ids_valid(user_ids: list, device_ids: list, min_id_length: int) -> bool:
    """What the typed decode does not check: blocklisted ids, an event with no id, and a
    minimum id length above the decoder's 5."""
    for ids in (user_ids, device_ids):
        present = [i for i in ids if i is not None] if None in ids else ids
        if present and (not _BLOCKLISTED_ANY_CASE.isdisjoint(present)
                        or (min_id_length and min(map(len, present)) < min_id_length)):
            return False
    if None in user_ids and None in device_ids:
        return not any(u is None and d is None for u, d in zip(user_ids, device_ids))
    return True


def _check_each(events: list, min_id_length: int) -> tuple[list, ...] | Reply:
    """The slow path: every event on its own, building Amplitude's index maps."""
    columns: tuple[list, ...] = ([], [], [], [], [])
    problems: dict[str, dict[str, list[int]]] = {}
    cap = MAX_STRING_LENGTH
    for index, event in enumerate(events):
        values = (event.get("event_type"), event.get("user_id"), event.get("device_id"), event.get("time"),
                  event.get("insert_id"))
        if _event_problems(index, *values, min_id_length, problems):
            continue
        event_type, user_id, device_id, time_ms, insert_id = values
        # Over-long strings are truncated rather than refused (Amplitude truncates values).
        for column, value in zip(columns, (event_type[:cap], user_id and user_id[:cap],
                                           device_id and device_id[:cap], time_ms, insert_id)):
            column.append(value)
    if problems:
        return _rejection(problems)
    return columns


FAST_DECODE = msgspec is not None

if msgspec is not None:
    from typing import Annotated

    # The constraints are the default rules, checked in C while decoding; an event that
    # breaks one (or a request with a lower options.min_id_length) takes the complete path.
    _EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING_LENGTH)]
    _Id = Annotated[str, msgspec.Meta(min_length=5, max_length=MAX_STRING_LENGTH)]

    class _FastEvent(msgspec.Struct, gc=False):
        event_type: _EventType
        user_id: _Id | None = None
        device_id: _Id | None = None
        time: int | None = None
        insert_id: str | None = None

    class _FastBody(msgspec.Struct, gc=False):
        api_key: str
        events: list[_FastEvent]
        options: dict | None = None
        client_upload_time: object = None

    _fast_decoder = msgspec.json.Decoder(_FastBody)


def accept_fast(
    data: bytes, projects: Mapping[str, Project], max_bytes: int, max_events: int, empty_events_ok: bool,
    default_min_id_length: int, now_ms: int, silenced_devices: frozenset[str] = frozenset(),
) -> Accepted | Reply | None:
    """The same rules as parse/check_request/check_events, for well-formed requests only.

    Decodes just the five fields the rules need (typed, so wrong types fail the decode).
    Returns None whenever anything looks wrong; the caller then takes the complete path,
    which produces Amplitude's exact error, so both paths always agree.
    """
    if not FAST_DECODE:
        return None
    try:
        body = _fast_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        # msgspec recurses to skip nested values it does not decode; the complete path answers.
        return None
    project = projects.get(body.api_key)
    events = body.events
    if project is None or len(data) > max_bytes or len(events) > max_events or not (events or empty_events_ok):
        return None
    options = {"options": body.options} if body.options is not None else {}
    min_id_length = min_id_length_of(options, default_min_id_length)
    columns = ([e.event_type for e in events], [e.user_id for e in events], [e.device_id for e in events],
               [e.time for e in events], [e.insert_id for e in events])
    if not _ids_valid(columns[1], columns[2], min_id_length if min_id_length > 5 else 0):
        return None
    upload = client_upload_ms_of({"client_upload_time": body.client_upload_time})
    return _accept(project, columns, now_ms, upload, silenced_devices)


def device_id_for_user(user_id: str) -> str:
    """Amplitude sets a missing device_id to a hash of user_id; ours is a stable UUIDv5."""
    return str(uuid.uuid5(_USER_DEVICE_NAMESPACE, user_id))


def client_upload_ms_of(body: dict) -> int | None:
    """The TS SDK sends a top-level ISO `client_upload_time`; absent or unreadable means None."""
    value = body.get("client_upload_time")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def _event_problems(index, event_type, user_id, device_id, time_ms, insert_id, min_id_length, problems) -> bool:
    """Record why one event is bad; False when it is only over-long (truncated, accepted)."""
    found = False

    def add(kind: str, name: str) -> None:
        nonlocal found
        found = True
        problems.setdefault(kind, {}).setdefault(name, []).append(index)

    if event_type is None:
        add("events_with_missing_fields", "event_type")
    elif type(event_type) is not str or not event_type:
        add("events_with_invalid_fields", "event_type")
    if user_id is None and device_id is None:
        # Which key Amplitude names here is unconfirmed; we list the index under both.
        add("events_with_missing_fields", "user_id")
        add("events_with_missing_fields", "device_id")
    for name, value in (("user_id", user_id), ("device_id", device_id)):
        if value is None:
            continue
        if type(value) is not str or value.lower() in BLOCKLISTED_IDS:
            add("events_with_invalid_fields", name)
        elif len(value) < min_id_length:
            add("events_with_invalid_id_lengths", name)
    if time_ms is not None and type(time_ms) is not int:
        add("events_with_invalid_fields", "time")
    if insert_id is not None and type(insert_id) is not str:
        add("events_with_invalid_fields", "insert_id")
    return found


def _rejection(problems: dict[str, dict[str, list[int]]]) -> Reply:
    if "events_with_missing_fields" in problems:
        error = _ERR_MISSING
    elif "events_with_invalid_fields" in problems:
        error = _ERR_INVALID
    else:
        error = _ERR_ID_LENGTH
    return Reply.ingest_error(400, error, **problems)


def _silenced(device_ids: list, silenced_devices: frozenset[str]) -> Reply | None:
    indexes = [i for i, d in enumerate(device_ids) if d is not None and d in silenced_devices]
    if not indexes:
        return None
    devices = sorted({device_ids[i] for i in indexes})
    return Reply.ingest_error(
        400, "Events silenced for device_id", eps_threshold=0, silenced_devices=devices,
        silenced_events=indexes, throttled_devices={}, throttled_events=[], exceeded_daily_quota_devices={},
    )

