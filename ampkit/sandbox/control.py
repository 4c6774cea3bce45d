"""A small client for the sandbox's control API (`/_sandbox/...`), for tests and notebooks."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import requests

from ampkit.errors import AmpkitError


class Control:
    """Drive a running sandbox: faults, clock, stats, and stored events.

    >>> control = Control("http://127.0.0.1:8765")
    >>> control.inject("/batch", status=503, count=2)      # the next two batches fail
    >>> control.advance_clock(31)                          # a 30 s throttle window passes
    """

    def __init__(self, url: str, session: requests.Session | None = None, timeout_seconds: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._session = session or requests.Session()
        self._timeout_seconds = timeout_seconds

    def close(self) -> None:
        self._session.close()

    # -- lifecycle ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def reset(self, keep_events: bool = False, keep_clock: bool = False) -> dict[str, Any]:
        """Clear faults, stats, throttle windows and budgets; and events and the clock unless kept."""
        return self._call("POST", "reset", {"keep_events": keep_events, "keep_clock": keep_clock})

    # -- faults ---------------------------------------------------------------------------
    def inject(
        self,
        endpoint: str = "ingest",
        status: int | None = None,
        kind: str | None = None,
        count: int | None = None,
        share: float | None = None,
        after_ingest: bool = False,
        delay_seconds: float = 0.0,
        throttled: str | list[str] = "all",
        daily_quota: bool = False,
        body: Any = None,
    ) -> dict[str, Any]:
        """Make requests to `endpoint` fail; returns the fault as the sandbox stored it.

        `endpoint` is a path (`/batch`, `/2/httpapi`, `/api/2/export`, ...) or a group:
        `ingest`, `dashboard`, `export`, `api`, `*`. `kind` is `status` (JSON body, implied by
        `status`), `html`, `non_json` (a 200 that is not JSON), `delay`, `drop` (close the
        connection) or `ingested_then_500`. Fires for the next `count` requests (default 1),
        or for a `share` of them until cleared. For 429, `throttled` chooses which ids of the
        request are named (`all`, `none`, `first`, or a list of ids).
        """
        spec: dict[str, Any] = {"endpoint": endpoint, "after_ingest": after_ingest, "throttled": throttled,
                                "daily_quota": daily_quota}
        for name, value in (("status", status), ("kind", kind), ("share", share), ("body", body)):
            if value is not None:
                spec[name] = value
        if delay_seconds:
            spec["delay_seconds"] = delay_seconds
        if count is not None:
            spec["count"] = count
        return self._call("POST", "faults", spec)["faults"][0]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    # -- clock ----------------------------------------------------------------------------
    def now_ms(self) -> int:
        return self._call("GET", "clock")["now_ms"]

    def set_clock(self, now: int | datetime, frozen: bool = True) -> int:
        """Set the sandbox's "now" (epoch ms or an aware datetime); frozen unless told otherwise."""
        return self._call("POST", "clock", {"now_ms": to_ms(now), "frozen": frozen})["now_ms"]

    def advance_clock(self, seconds: float) -> int:
        return self._call("POST", "clock", {"advance_seconds": seconds})["now_ms"]

    def real_clock(self) -> int:
        return self._call("POST", "clock", {"real": True})["now_ms"]

    # -- observations ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def requests(self, limit: int | None = None, path: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("limit", limit), ("path", path)) if v is not None}
        return self._call("GET", "requests", params=params)["requests"]

    # -- stored events --------------------------------------------------------------------
    def delete_events(self, forget_insert_ids: bool = True, **filters: Any) -> int:
        """Delete stored events matching every filter; returns how many were deleted.

        Filters: `app`, `event_type(s)`, `user_id(s)`, `device_id(s)`, `insert_id(s)`,
        `event_start_ms`/`event_end_ms` (event time, end exclusive), `upload_start_ms`/
        `upload_end_ms` (upload time), or `all=True`. Times may be aware datetimes.
        """
        payload = {k: (to_ms(v) if isinstance(v, datetime) else v) for k, v in filters.items()}
        payload["forget_insert_ids"] = forget_insert_ids
        return self._call("POST", "events/delete", payload)["deleted"]

    def seed_events(self, events: list[dict[str, Any]], app: int | None = None,
                    upload_time: int | datetime | None = None, path: str | None = None) -> int:
        """Store events as if Amplitude already had them ("foreign" events); returns the count."""
        payload: dict[str, Any] = {"events": events}
        if app is not None:
            payload["app"] = app
        if upload_time is not None:
            payload["upload_time_ms"] = to_ms(upload_time)
        if path is not None:
            payload["path"] = path
        return self._call("POST", "events/seed", payload)["seeded"]

    def _call(self, method: str, action: str, payload: Any = None, params: dict[str, Any] | None = None) -> Any:
        url = f"{self.url}/_sandbox/{action}"
        try:
            response = self._session.request(method, url, json=payload, params=params, timeout=self._timeout_seconds)
        except requests.RequestException as exc:
            raise AmpkitError(f"sandbox control call {method} /_sandbox/{action} failed: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("error")
            except ValueError:
                message = response.text[:200]
            raise AmpkitError(f"sandbox control call {method} /_sandbox/{action} answered "
                              f"{response.status_code}: {message}")
        return response.json()


def to_ms(moment: int | datetime) -> int:
    """Epoch milliseconds from an int (returned as is) or an aware datetime."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("use a timezone-aware datetime (UTC) for sandbox times")
        return int(moment.astimezone(timezone.utc).timestamp() * 1000)
    return int(moment)
