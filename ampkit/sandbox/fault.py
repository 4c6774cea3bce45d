"""Fault injection: which requests fail, and what the failure looks like (pure, thread-safe).

A fault matches an endpoint and fires for the next `count` matching requests, or for a
`share` of them (seeded, so a test is repeatable). With `after_ingest` the request is first
processed normally (events stored) and the fault replaces the answer: the "ingested, then
500" case that makes client retries create duplicates unless insert_ids are stable.
"""
from __future__ import annotations

import random
import threading
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ampkit.sandbox.reply import Reply

KINDS = ("status", "html", "non_json", "delay", "drop")
INGEST_PATHS = ("/2/httpapi", "/batch")
DASHBOARD_PATHS = ("/api/2/events/segmentation", "/api/2/events/list")
EXPORT_PATH = "/api/2/export"
_GROUPS = {
    "*": None,
    "ingest": INGEST_PATHS,
    "dashboard": DASHBOARD_PATHS,
    "export": (EXPORT_PATH,),
    "api": DASHBOARD_PATHS + (EXPORT_PATH,),
}
_MESSAGES = {
    400: "Invalid request path", 403: "Forbidden", 408: "Request timeout", 413: "Payload too large",
    429: "Too many requests for some devices and users", 500: "Internal server error",
    502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
}
_REASONS = {400: "Bad Request", 403: "Forbidden", 413: "Request Entity Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
            504: "Gateway Time-out"}


class FaultSpecError(ValueError):
    """Raised when a fault specification is malformed (answered 400 by the control API)."""


@dataclass
class Fault:
    """One injected failure; see `FaultPlan.add` for the meaning of each field."""

    id: int
    endpoint: str
    kind: str
    status: int | None = None
    count: int | None = 1
    share: float | None = None
    after_ingest: bool = False
    delay_seconds: float = 0.0
    throttled: Any = "all"
    daily_quota: bool = False
    body: Any = None
    hits: int = 0

    def matches(self, path: str) -> bool:
        group = _GROUPS.get(self.endpoint, (self.endpoint,))
        if group is None:
            return not path.startswith("/_sandbox")
        return path in group

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultPlan:
    """The active faults, first added first matched."""

    seed: int | None = None
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cleared: threading.Event = field(default_factory=threading.Event)
    _next_id: int = 1

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(self, spec: dict[str, Any]) -> Fault:
        """Validate a spec (the control API's JSON) and activate it.

        Keys: `endpoint` (a path, or `ingest`, `dashboard`, `export`, `api`, `*`), `kind`
        (`status`, `html`, `non_json`, `delay`, `drop`, or the alias `ingested_then_500`),
        `status`, `count` (default 1; null with a share means "until cleared"), `share`
        (0-1), `after_ingest`, `delay_seconds`, and for 429: `throttled` (`all`, `none`,
        `first` or a list of user/device ids) and `daily_quota`; `body` overrides the JSON body.
        """
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind == "ingested_then_500":
            kind, spec["after_ingest"] = "status", True
            spec.setdefault("status", 500)
        if kind is None:
            kind = "status" if spec.get("status") is not None else ("delay" if spec.get("delay_seconds") else None)
        if kind not in KINDS:
            raise FaultSpecError(f"fault kind must be one of {', '.join(KINDS)} or ingested_then_500")
        endpoint = spec.pop("endpoint", "ingest")
        if not isinstance(endpoint, str) or not (endpoint in _GROUPS or endpoint.startswith("/")):
            raise FaultSpecError("fault endpoint must be a path or one of ingest, dashboard, export, api, *")
        status = spec.pop("status", None)
        if kind in ("status", "html"):
            if type(status) is not int or not 400 <= status <= 599:
                raise FaultSpecError("status and html faults need a status between 400 and 599")
        elif status is not None:
            raise FaultSpecError(f"{kind} faults take no status")
        share = spec.pop("share", None)
        if share is not None and not (isinstance(share, (int, float)) and 0 < share <= 1):
            raise FaultSpecError("share must be a number in (0, 1]")
        count = spec.pop("count", 1 if share is None else None)
        if count is not None and (type(count) is not int or count < 1):
            raise FaultSpecError("count must be a positive integer (or null with a share)")
        delay = spec.pop("delay_seconds", 0.0) or 0.0
        if not isinstance(delay, (int, float)) or delay < 0 or delay > 600:
            raise FaultSpecError("delay_seconds must be between 0 and 600")
        throttled = spec.pop("throttled", "all")
        if not (throttled in ("all", "none", "first") or
                (isinstance(throttled, list) and all(isinstance(t, str) for t in throttled))):
            raise FaultSpecError("throttled must be all, none, first or a list of ids")
        after_ingest = bool(spec.pop("after_ingest", False))
        daily_quota = bool(spec.pop("daily_quota", False))
        body = spec.pop("body", None)
        if spec:
            raise FaultSpecError(f"unknown fault keys: {', '.join(sorted(spec))}")
        with self._lock:
            fault = Fault(self._next_id, endpoint, kind, status, count, share and float(share), after_ingest,
                          float(delay), throttled, daily_quota, body)
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def take(self, path: str) -> Fault | None:
        """The fault this request meets, if any (and use one of its `count`)."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(path):
                    continue
                if fault.share is not None and self._random.random() >= fault.share:
                    continue
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Remove every fault; requests sleeping in an injected delay answer at once."""
        with self._lock:
            self._faults.clear()
            self._cleared.set()
            self._cleared = threading.Event()

    def pause(self, seconds: float) -> None:
        """Sleep an injected delay, cut short when the faults are cleared (a test's gate)."""
        with self._lock:
            cleared = self._cleared
        cleared.wait(seconds)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]


def reply_for(fault: Fault, path: str, raw: bytes, content_encoding: str | None, eps_threshold: int,
              daily_quota: int) -> Reply:
    """What a request meeting `fault` is answered (kinds status, html, non_json, drop)."""
    if fault.kind == "drop":
        return Reply(0, drop=True)
    if fault.kind == "non_json":
        return Reply(200, b"<html><body>OK</body></html>", content_type="text/html")
    status = fault.status or 500
    if fault.kind == "html":
        reason = _REASONS.get(status, "Error")
        page = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
                f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
        return Reply(status, page.encode(), content_type="text/html")
    if fault.body is not None:
        return Reply.json(status, fault.body)
    if path not in INGEST_PATHS:
        kinds = {429: "rate_limit", 401: "unauthorized", 403: "forbidden", 404: "not_found"}
        return Reply.dashboard_error(status, kinds.get(status, "invalid" if status < 500 else "error"),
                                     f"Injected fault ({status})")
    if status == 429:
        return Reply.json(429, throttle_body(fault, raw, content_encoding, eps_threshold, daily_quota))
    return Reply.ingest_error(status, _MESSAGES.get(status, "Injected fault"))


def throttle_body(fault: Fault, raw: bytes, content_encoding: str | None, eps_threshold: int,
                  daily_quota: int) -> dict[str, Any]:
    """A 429 naming real ids and indexes of this request, so a client can hold only those."""
    events = _events_of(raw, content_encoding)
    if fault.throttled == "none" or not events:
        chosen: set[str] = set()
    elif fault.throttled == "all":
        chosen = {v for e in events for v in (e.get("user_id"), e.get("device_id")) if isinstance(v, str)}
    elif fault.throttled == "first":
        chosen = {v for v in (events[0].get("user_id"), events[0].get("device_id")) if isinstance(v, str)}
    else:
        chosen = set(fault.throttled)
    users = {e.get("user_id") for e in events if e.get("user_id") in chosen}
    devices = {e.get("device_id") for e in events if e.get("device_id") in chosen}
    indexes = [i for i, e in enumerate(events) if e.get("user_id") in users or e.get("device_id") in devices]
    body: dict[str, Any] = {
        "code": 429, "error": _MESSAGES[429], "eps_threshold": eps_threshold,
        "throttled_devices": {d: eps_threshold + 1 for d in sorted(devices)},
        "throttled_users": {u: eps_threshold + 1 for u in sorted(users)},
        "throttled_events": indexes,
    }
    if fault.daily_quota:
        body["exceeded_daily_quota_users"] = {u: daily_quota + 1 for u in sorted(users)}
        body["exceeded_daily_quota_devices"] = {d: daily_quota + 1 for d in sorted(devices)}
    return body


def _events_of(raw: bytes, content_encoding: str | None) -> list[dict]:
    try:
        data = zlib.decompress(raw, wbits=31) if (content_encoding or "").lower() == "gzip" else raw
        body = orjson.loads(data)
    except (zlib.error, orjson.JSONDecodeError):
        return []
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return []
    # Keep positions: throttled_events are indexes into the request as sent.
    return [e if isinstance(e, dict) else {} for e in events]
