"""What the sandbox has seen: counters by endpoint and status, and a bounded request log."""
from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

import orjson

# Responses bigger than this are logged truncated; a 429 naming 2,000 indexes stays whole.
_MAX_LOGGED_RESPONSE_BYTES = 64 * 1024


class Stats:
    """Thread-safe counters and the last `log_size` requests. Holds no secrets: request bodies
    are only kept when `record_bodies` is on, and then without their `api_key`."""

    def __init__(self, log_size: int, record_bodies: bool = False) -> None:
        self._lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self.record_bodies = record_bodies
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._by_status: Counter = Counter()
            self._counts: Counter = Counter()
            self._log.clear()

    def record(self, time_ms: int, method: str, path: str, status: int, request_bytes: int,
               response: bytes, content_type: str, meta: dict[str, Any], fault: str | None,
               body: Any = None) -> None:
        entry: dict[str, Any] = {
            "time_ms": time_ms, "method": method, "path": path, "status": status,
            "request_bytes": request_bytes, "events": meta.get("events"), "fault": fault,
        }
        if content_type == "application/json" and len(response) <= _MAX_LOGGED_RESPONSE_BYTES:
            entry["response"] = orjson.loads(response) if response else None
        elif content_type.startswith("text/"):
            entry["response"] = response[:512].decode("utf-8", "replace")
        if body is not None and self.record_bodies:
            entry["body"] = body
        with self._lock:
            self._by_status[(path, status)] += 1
            counts = self._counts
            counts["requests"] += 1
            if fault:
                counts["faults_injected"] += 1
            for key in ("events_received", "events_ingested", "events_stored", "duplicates_dropped",
                        "events_rejected", "events_throttled"):
                if meta.get(key):
                    counts[key] += meta[key]
            self._log.append(entry)

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_endpoint: dict[str, dict[str, int]] = {}
            for (path, status), n in sorted(self._by_status.items()):
                by_endpoint.setdefault(path, {})[str(status)] = n
            totals = {key: self._counts.get(key, 0) for key in (
                "requests", "events_received", "events_ingested", "events_stored", "duplicates_dropped",
                "events_rejected", "events_throttled", "faults_injected", "events_seeded", "events_deleted")}
            return {"requests_by_status": by_endpoint, **totals}

    def requests(self, limit: int | None = None, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            entries = [e for e in self._log if path is None or e["path"] == path]
        return entries[-limit:] if limit else entries
